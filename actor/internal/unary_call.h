// One blocking unary RPC, issued with gRPC's callback API and waited for on
// the calling task's thread.
#ifndef TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
#define TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_

#include <optional>
#include <utility>

#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/task_waiter.h"
#include "discovery/blocking_call.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

// Runs one unary RPC and waits for it with `discovery::BlockingUnaryCall`
// and a `TaskWaiter`: the wait is a checkpoint unless `shielded`; when it is
// cancelled the RPC is cancelled and awaited before `Cancelled` propagates.
// `*reply` is filled when the status is OK. `start(context, request, reply,
// done)` issues the call, e.g. `stub->async()->Info(c, r, p,
// std::move(done))`.
template <class Req, class Reply, class StartFn>
grpc::Status CallUnary(const StartFn& start, Req req, Reply* reply,
                       absl::Time deadline, bool shielded) {
  TaskWaiter waiter;
  std::optional<ScopeBinding> shield;
  if (shielded) shield.emplace(NewScope(nullptr, absl::InfiniteFuture(), true));
  return discovery::BlockingUnaryCall(
      start, std::move(req), reply,
      {.deadline = deadline, .waiter = &waiter});
}

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
