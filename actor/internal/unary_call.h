// One blocking unary RPC, issued with gRPC's callback API and waited for on
// the calling task's thread.
#ifndef TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
#define TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/time/time.h"
#include "actor/cancel.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

// Runs one unary RPC and waits for it. The wait is a checkpoint unless
// `shielded`; when it is cancelled the RPC is cancelled (TryCancel) and
// awaited before the cancellation propagates, so no callback outlives the
// call. Returns the status and fills `*reply`. `start(context, request,
// reply, done)` issues the call, e.g.
// `stub->async()->Info(c, r, p, std::move(done))`.
template <class Req, class Reply, class StartFn>
grpc::Status CallUnary(const StartFn& start, Req req, Reply* reply,
                       absl::Time deadline, bool shielded) {
  struct Call {
    grpc::ClientContext context;
    Req req;
    Reply reply;
    std::mutex mu;
    std::condition_variable_any cv;
    bool done = false;  // guarded by mu
    grpc::Status status;
  };
  auto call = std::make_shared<Call>();
  call->req = std::move(req);
  call->context.set_deadline(absl::ToChronoTime(deadline));
  start(&call->context, &call->req, &call->reply, [call](grpc::Status st) {
    std::lock_guard<std::mutex> lk(call->mu);
    call->status = std::move(st);
    call->done = true;
    call->cv.notify_all();
  });
  std::unique_lock<std::mutex> lk(call->mu);
  {
    std::optional<ScopeBinding> shield;
    if (shielded) shield.emplace(NewScope(nullptr, absl::InfiniteFuture(), true));
    try {
      Wait(call->cv, lk, [&] { return call->done; });
    } catch (...) {
      call->context.TryCancel();
      ScopeBinding bind(NewScope(nullptr, absl::InfiniteFuture(), true));
      Wait(call->cv, lk, [&] { return call->done; });
      throw;
    }
  }
  *reply = std::move(call->reply);
  return call->status;
}

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_UNARY_CALL_H_
