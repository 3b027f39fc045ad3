// SPDX-License-Identifier: AGPL-3.0-or-later
// One blocking unary RPC, driven by the calling task's own thread.
#ifndef TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
#define TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_

#include <algorithm>
#include <memory>
#include <optional>
#include <stop_token>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/internal/busy_wait.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

// What cancelling the calling task's scope does to its RPC.
struct CancelRpc {
  grpc::ClientContext* context;
  void operator()() const noexcept { context->TryCancel(); }
};

// Runs `call(&context)`, a unary RPC on gRPC's sync API, on the calling
// task's thread: no other thread takes part in the wait, so the answer
// wakes the task directly (docs/architecture.md, "Performance").
//
// The call is a checkpoint unless `shielded`: it first raises a pending
// cancel; its deadline is the earlier of `deadline` and the task's scope
// deadline; cancelling the task's scope cancels the RPC
// (`ClientContext::TryCancel`), and a cancel that arrived while the RPC ran
// is raised after it returned, whatever its status. In single-task mode the
// task lock goes to other tasks while the RPC runs. Returns the RPC's
// status.
template <class CallFn>
grpc::Status CallUnary(grpc::ClientContext& context, const CallFn& call,
                       absl::Time deadline, bool shielded) {
  std::shared_ptr<ScopeState> scope = shielded ? nullptr : CurrentScope();
  absl::Time scope_deadline = absl::InfiniteFuture();
  if (scope) {
    ThrowIfCancelled();
    scope_deadline = EffectiveDeadline(scope.get());
    deadline = std::min(deadline, scope_deadline);
  }
  if (deadline != absl::InfiniteFuture()) {
    context.set_deadline(absl::ToChronoTime(deadline));
  }
  grpc::Status status;
  {
    // Destroyed before `context` is touched again: a concurrent cancel has
    // then finished with it.
    std::optional<std::stop_callback<CancelRpc>> on_cancel;
    if (scope) on_cancel.emplace(scope->source.get_token(), CancelRpc{&context});
    const bool handed_over = HoldsTaskLock();
    if (handed_over) ReleaseTaskLock();
    BusyWait::NoteIo();
    status = call(&context);
    if (handed_over) AcquireTaskLock();
  }
  if (scope) {
    // gRPC times the deadline on a clock of its own, which can end the call
    // a little before absl::Now() reaches it: a call that ran out of the
    // scope's time ends in the scope's cancellation, not in a transport
    // error, so wait out that difference before looking.
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        deadline == scope_deadline) {
      const absl::Duration early = deadline - absl::Now();
      if (early > absl::ZeroDuration()) absl::SleepFor(early);
    }
    ThrowIfCancelled();
  }
  return status;
}

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
