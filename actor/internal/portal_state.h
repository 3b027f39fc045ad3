// SPDX-License-Identifier: AGPL-3.0-or-later
// What a `Portal` knows about the actor it reaches.
#ifndef TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
#define TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "actor/internal/child_proc.h"
#include "actor/payload.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// Shared by every copy of a portal (and, for a RunInActor child, by the
// result waiter). `aid`, `addr`, `channel` and `proc` are set before the
// state is shared; the result fields are guarded by `mu`, and `cv` is
// signalled when the result is ready.
struct PortalState {
  v1::Aid aid;
  std::string addr;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<ChildProc> proc;  // set for children of this actor

  Mutex mu;
  CondVar cv;
  bool has_result_task ABSL_GUARDED_BY(mu) = false;
  bool result_ready ABSL_GUARDED_BY(mu) = false;
  std::optional<Payload> result ABSL_GUARDED_BY(mu);
  std::exception_ptr error ABSL_GUARDED_BY(mu);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
