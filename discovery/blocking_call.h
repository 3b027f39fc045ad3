// SPDX-License-Identifier: AGPL-3.0-or-later
// Blocking unary RPCs that their caller can cancel.
//
// gRPC's synchronous stubs block the calling thread until the RPC ends, with
// no way in for a cancellation that arrives meanwhile. The helpers here issue
// the RPC with gRPC's callback API and wait for its completion through a
// `CallWaiter`, which the caller supplies to decide how it waits and when it
// gives up. When the waiter gives up (returns false or throws), the RPC is
// cancelled with `ClientContext::TryCancel` and awaited, so it never outlives
// the call, and the helper returns CANCELLED (or lets the exception through).
//
//   grpc::Status s = BlockingUnaryCall(
//       [&](auto* ctx, auto* req, auto* rep, auto done) {
//         stub->async()->List(ctx, req, rep, std::move(done));
//       },
//       v1::ListRequest(), &reply,
//       {.deadline = absl::Now() + absl::Seconds(1), .waiter = &waiter});
//
// Callers without a cancellation source pass no waiter (the wait ends with
// the RPC, at its deadline at the latest). Threads with a `std::stop_token`
// use `StopTokenWaiter`. A runtime with its own notion of cancellation (the
// actor runtime's cancel scopes) implements `CallWaiter` with its own
// blocking primitive, so its waits stay checkpoints.
//
// Nothing here depends on the actor runtime.
#ifndef TRACTOR_DISCOVERY_BLOCKING_CALL_H_
#define TRACTOR_DISCOVERY_BLOCKING_CALL_H_

#include <functional>
#include <memory>
#include <stop_token>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/async_unary_call.h"

namespace tractor::discovery {

// How a blocking call waits for its RPC to complete, and learns that its
// caller was cancelled.
//
// Both methods are called on the calling thread holding the call's mutex
// `mu`; `cv` is signalled (under `mu`) when the RPC completes, and `done()`
// (which requires `mu`) tells whether it has. Like a condition-variable wait
// they may release `mu` while blocked, and must hold it again when they
// return or throw.
//
// An implementation is used by one call at a time unless it says otherwise;
// it is owned by the caller and must outlive the call.
class CallWaiter {
 public:
  virtual ~CallWaiter() = default;

  // Blocks until `done()` is true, or the caller is cancelled. Returns true
  // when `done()` is true. Returns false, or throws, when the caller was
  // cancelled first: the RPC is then cancelled and awaited with
  // `WaitUncancellable` before the blocking call returns CANCELLED (or the
  // exception propagates).
  virtual bool Wait(Mutex& mu, CondVar& cv, absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // Blocks until `done()` is true, whatever happens to the caller; used
  // after the RPC was cancelled, so it completes promptly. Must not throw.
  // The default waits on `cv`.
  virtual void WaitUncancellable(Mutex& mu, CondVar& cv,
                                 absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

// A `CallWaiter` cancelled through a `std::stop_token`: `Wait` returns false
// as soon as a stop is requested on it. Thread-safe; may serve several calls
// at once. Does not own the stop source.
class StopTokenWaiter final : public CallWaiter {
 public:
  explicit StopTokenWaiter(std::stop_token token) : token_(std::move(token)) {}

  bool Wait(Mutex& mu, CondVar& cv, absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override;

 private:
  const std::stop_token token_;
};

// Options of one call.
struct CallOptions {
  // When the RPC fails with DEADLINE_EXCEEDED (set on the ClientContext).
  absl::Time deadline = absl::InfiniteFuture();
  // gRPC's wait_for_ready: wait for an unreachable server to come up (until
  // the deadline) instead of failing UNAVAILABLE at once.
  bool wait_for_ready = false;
  // How the caller waits; null waits until the RPC ends, uncancellably.
  // Not owned; must outlive the call.
  CallWaiter* waiter = nullptr;
};

namespace blocking_call_internal {

// The completion state shared by a call and gRPC's callback. The callback
// holds only this (never the ClientContext), so the context, and the channel
// reference it holds, are always released by the caller's thread: releasing
// the last reference to a channel on one of gRPC's callback threads can
// deadlock or crash gRPC. Thread-safe.
class Completion {
 public:
  // Records the RPC's final status and wakes the waiter (gRPC's callback).
  void Finish(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // True once `Finish` ran.
  bool done() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits as described at `CallWaiter` and returns the final status, or
  // CANCELLED when `waiter` gave up first (then `context` was cancelled and
  // the RPC awaited). Rethrows what `waiter` threw, after the same.
  grpc::Status Await(grpc::ClientContext& context, CallWaiter* waiter)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unless the RPC has completed, cancels it and waits for its completion
  // (with `waiter->WaitUncancellable` when there is a waiter).
  void CancelAndWait(grpc::ClientContext& context, CallWaiter* waiter)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // `CancelAndWait` with `mu_` held (released while cancelling).
  void CancelAndWaitLocked(grpc::ClientContext& context, CallWaiter* waiter)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  CondVar cv_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blocking_call_internal

// gRPC's callback API without its threads. A unary RPC prepared on
// `DrivenQueue()` (`stub->PrepareAsyncMethod(context, request,
// DrivenQueue())`) and handed to `StartDriven` runs `done` with its status
// once it completes, like `stub->async()->Method(context, request, reply,
// done)`, on a thread of this library's that waits on that queue only while
// such RPCs are in flight (and a moment after the last, for the next of a
// burst), then leaves.
//
// Why: the callback API starts two threads (`nexting_thread`) that wait in
// gRPC's poller for as long as the process keeps a channel that used it.
// With gRPC's Linux poller every thread waiting on a completion queue may
// take another queue's socket events and must then wake that queue's
// owner, and two threads on one queue keep that role between them: in an
// actor that registered, they took most of the socket events of its calls
// and dialogs (docs/architecture.md#threads). A registering actor's
// registry calls are rare; this thread is there only while one runs.
//
// `done` runs on that thread, must not block, and may start more RPCs. The
// context and the reply must outlive the RPC (until `done` is called);
// `done` is called after the library dropped every reference to them.
grpc::CompletionQueue* DrivenQueue();

namespace blocking_call_internal {

// An operation on `DrivenQueue()`: its tag, completed once on the driving
// thread (which then forgets it).
class DrivenOp {
 public:
  virtual ~DrivenOp() = default;
  virtual void Complete(bool ok) = 0;
};

// Counts `op` as in flight, makes sure a thread drives the queue, then runs
// `post`, which posts `op`'s one operation with `op` as its tag.
void Issue(DrivenOp* op, absl::FunctionRef<void()> post);

template <class Reply>
class DrivenUnary final : public DrivenOp {
 public:
  DrivenUnary(std::unique_ptr<grpc::ClientAsyncResponseReader<Reply>> reader,
              std::function<void(grpc::Status)> done)
      : reader_(std::move(reader)), done_(std::move(done)) {}

  void Post(Reply* reply) {
    reader_->StartCall();
    reader_->Finish(reply, &status_, static_cast<DrivenOp*>(this));
  }

  void Complete(bool) override {
    // The reader lives in the call's arena, which the caller's context
    // owns: it goes before `done`, after which the context may go.
    reader_.reset();
    std::function<void(grpc::Status)> done = std::move(done_);
    grpc::Status status = std::move(status_);
    delete this;
    done(std::move(status));
  }

 private:
  std::unique_ptr<grpc::ClientAsyncResponseReader<Reply>> reader_;
  std::function<void(grpc::Status)> done_;
  grpc::Status status_;
};

}  // namespace blocking_call_internal

// Starts the unary RPC `reader` (prepared on `DrivenQueue()`, not started)
// and calls `done` with its status once it completed and `*reply` is
// filled. See `DrivenQueue`. Thread-safe.
template <class Reply>
void StartDriven(std::unique_ptr<grpc::ClientAsyncResponseReader<Reply>> reader,
                 Reply* reply, std::function<void(grpc::Status)> done) {
  auto* op = new blocking_call_internal::DrivenUnary<Reply>(std::move(reader),
                                                            std::move(done));
  blocking_call_internal::Issue(op, [op, reply] { op->Post(reply); });
}

// One unary RPC issued with gRPC's callback API (or `StartDriven`), whose
// completion is awaited later; several can be in flight at once (start them all, then await each).
// Owns the request, the reply and the ClientContext. Destroying a call that
// has not completed cancels the RPC and waits for it to end (promptly), so
// nothing gRPC uses outlives the object.
//
// Thread-safe: `TryCancel` and `done` may be called from any thread; `Await`
// and `reply()` are for the owner.
template <class Request, class Reply>
class UnaryCall {
 public:
  // Issues the RPC: calls `start(context, request, reply, done)`, which must
  // call `stub->async()->Method(context, request, reply, std::move(done))`,
  // or `StartDriven(stub->PrepareAsyncMethod(context, *request,
  // DrivenQueue()), reply, std::move(done))` (no callback threads),
  // exactly once (`done` is a `std::function<void(grpc::Status)>`).
  template <class StartFn>
  static std::unique_ptr<UnaryCall> Start(StartFn&& start, Request request,
                                          const CallOptions& options = {}) {
    std::unique_ptr<UnaryCall> call(new UnaryCall(std::move(request)));
    if (options.deadline != absl::InfiniteFuture()) {
      call->context_.set_deadline(absl::ToChronoTime(options.deadline));
    }
    if (options.wait_for_ready) call->context_.set_wait_for_ready(true);
    call->waiter_ = options.waiter;
    std::shared_ptr<blocking_call_internal::Completion> completion =
        call->completion_;
    try {
      std::forward<StartFn>(start)(
          &call->context_, static_cast<const Request*>(&call->request_),
          &call->reply_,
          std::function<void(grpc::Status)>([completion](grpc::Status status) {
            completion->Finish(std::move(status));
          }));
    } catch (...) {
      // No RPC to wait for.
      completion->Finish(
          grpc::Status(grpc::StatusCode::INTERNAL, "the call did not start"));
      throw;
    }
    return call;
  }

  UnaryCall(const UnaryCall&) = delete;
  UnaryCall& operator=(const UnaryCall&) = delete;
  ~UnaryCall() { completion_->CancelAndWait(context_, waiter_); }

  // Blocks until the RPC completes (or until the waiter given in the options
  // gives up, see `CallWaiter`) and returns its status. Calling it again
  // returns the same status at once.
  grpc::Status Await() { return completion_->Await(context_, waiter_); }

  // Cancels the RPC if it has not completed; it then ends CANCELLED.
  void TryCancel() { context_.TryCancel(); }

  // True once the RPC has completed.
  bool done() const { return completion_->done(); }

  // The reply; meaningful after `Await` returned OK.
  Reply& reply() { return reply_; }

 private:
  explicit UnaryCall(Request request)
      : request_(std::move(request)),
        completion_(std::make_shared<blocking_call_internal::Completion>()) {}

  grpc::ClientContext context_;
  const Request request_;
  Reply reply_;
  CallWaiter* waiter_ = nullptr;
  const std::shared_ptr<blocking_call_internal::Completion> completion_;
};

// Issues one unary RPC (see `UnaryCall::Start` for `start`) and blocks until
// it completes, its deadline passes, or `options.waiter` gives up. Returns the
// RPC's status (CANCELLED when the waiter gave up first) and, on OK, moves the
// reply into `*reply`. Rethrows what the waiter threw, after cancelling and
// awaiting the RPC. Thread-safe (each call is independent).
template <class Request, class Reply, class StartFn>
grpc::Status BlockingUnaryCall(StartFn&& start, Request request, Reply* reply,
                               const CallOptions& options = {}) {
  auto call = UnaryCall<Request, Reply>::Start(std::forward<StartFn>(start),
                                               std::move(request), options);
  grpc::Status status = call->Await();
  if (status.ok()) *reply = std::move(call->reply());
  return status;
}

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_BLOCKING_CALL_H_
