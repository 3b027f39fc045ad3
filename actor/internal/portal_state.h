// SPDX-License-Identifier: AGPL-3.0-or-later
// What a `Portal` knows about the actor it reaches.
#ifndef TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
#define TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/call_once.h"
#include "absl/base/thread_annotations.h"
#include "actor/internal/child_proc.h"
#include "actor/internal/dialog_transport.h"
#include "actor/payload.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

class Dialog;

// Shared by every copy of a portal (and, for a RunInActor child, by the
// result waiter). `aid`, `addr`, `channel` and `proc` are set before the
// state is shared; the result fields are guarded by `mu`, and `cv` is
// signalled when the result is ready.
struct PortalState {
  v1::Aid aid;
  std::string addr;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<ChildProc> proc;  // set for children of this actor

  // The `Actor` stub on `channel`, made by the first call and kept for the
  // portal's calls and dialogs: gRPC registers each of the service's methods
  // with the channel when a stub is made (a lock and a table lookup each),
  // work a call would otherwise repeat every time. `channel` must not change
  // once this was called.
  const std::shared_ptr<v1::Actor::Stub>& stub() {
    absl::call_once(stub_once_, [this] {
      stub_ = std::shared_ptr<v1::Actor::Stub>(v1::Actor::NewStub(channel));
    });
    return stub_;
  }

  // The `Actor/Open` method on `channel`, registered once for the portal's
  // dialogs (as `stub()`). `channel` must not change once this was called.
  const std::shared_ptr<const OpenMethod>& open_method() {
    absl::call_once(open_once_, [this] {
      open_method_ = std::make_shared<const OpenMethod>(channel);
    });
    return open_method_;
  }

  Mutex mu;
  CondVar cv;
  bool has_result_task ABSL_GUARDED_BY(mu) = false;
  bool result_ready ABSL_GUARDED_BY(mu) = false;
  std::optional<Payload> result ABSL_GUARDED_BY(mu);
  std::exception_ptr error ABSL_GUARDED_BY(mu);
  // A caller's dialog built ahead for the portal's next `OpenContext`
  // (`Dialog::Prepare`), or null: built when an `OpenContext` returns, so
  // that the next open does not build its completion queue, `ClientContext`
  // and call on its way to sending `Start`. Taken by one open only; dropped
  // unopened with the portal.
  std::shared_ptr<Dialog> spare_dialog ABSL_GUARDED_BY(mu);

 private:
  absl::once_flag stub_once_;
  std::shared_ptr<v1::Actor::Stub> stub_;  // set once, by `stub()`
  absl::once_flag open_once_;
  std::shared_ptr<const OpenMethod> open_method_;  // set once
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_PORTAL_STATE_H_
