// SPDX-License-Identifier: AGPL-3.0-or-later
// Waiting for a blocking gRPC call as an actor task waits for anything: at
// a checkpoint.
#ifndef TRACTOR_ACTOR_TASK_WAITER_H_
#define TRACTOR_ACTOR_TASK_WAITER_H_

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "discovery/blocking_call.h"
#include "discovery/mutex.h"

namespace tractor {

// A `discovery::CallWaiter` for code running in an actor task: the wait is
// a checkpoint (a cancelled scope or a passed deadline ends it by throwing
// `Cancelled`, after the RPC was cancelled and awaited), and in single-task
// mode it hands the task lock to other tasks while blocked. Use it with
// `discovery::BlockingUnaryCall` to call any gRPC service from a task:
//
//   tractor::TaskWaiter waiter;
//   grpc::Status s = discovery::BlockingUnaryCall(
//       [&](auto* c, auto* req, auto* rep, auto done) {
//         stub->async()->Method(c, req, rep, std::move(done));
//       },
//       request, &reply, {.waiter = &waiter});
//
// Thread-compatible; used by one call at a time, on the task's thread.
class TaskWaiter final : public discovery::CallWaiter {
 public:
  bool Wait(Mutex& mu, CondVar& cv, absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override;
  // Shielded from cancellation; still hands over the task lock.
  void WaitUncancellable(Mutex& mu, CondVar& cv,
                         absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override;
};

}  // namespace tractor

#endif  // TRACTOR_ACTOR_TASK_WAITER_H_
