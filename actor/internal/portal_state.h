// What a `Portal` knows about the actor it reaches.
#ifndef TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
#define TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "actor/internal/child_proc.h"
#include "actor/payload.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// Shared by every copy of a portal (and, for a RunInActor child, by the
// result waiter). `aid`, `addr`, `channel` and `proc` are set before the
// state is shared; the result fields are guarded by `mu`, and `cv` is
// notified when the result is ready.
struct PortalState {
  v1::Aid aid;
  std::string addr;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<ChildProc> proc;  // set for children of this actor

  std::mutex mu;
  std::condition_variable_any cv;
  bool has_result_task = false;  // guarded by mu
  bool result_ready = false;     // guarded by mu
  std::optional<Payload> result;  // guarded by mu
  std::exception_ptr error;       // guarded by mu
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
