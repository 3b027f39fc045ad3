// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/blocking_call.h"

#include <optional>

namespace tractor::discovery {

void CallWaiter::WaitUncancellable(Mutex& mu, CondVar& cv,
                                   absl::FunctionRef<bool()> done) {
  while (!done()) cv.Wait(&mu);
}

namespace {

// Wakes a `StopTokenWaiter::Wait` on `cv` when its token is stopped. It
// takes `mu` first, so the wake-up cannot fall between the waiter's last
// look at the token and its wait on `cv`.
struct StopWaker {
  Mutex* mu;
  CondVar* cv;
  void operator()() const {
    MutexLock lock(mu);
    cv->SignalAll();
  }
};

}  // namespace

bool StopTokenWaiter::Wait(Mutex& mu, CondVar& cv,
                           absl::FunctionRef<bool()> done) {
  if (done()) return true;
  if (token_.stop_requested()) return false;
  // The callback is registered and dropped with `mu` released: it runs at
  // once, on this thread, when a stop was requested meanwhile, and dropping
  // it waits for a run in progress on the stopping thread, which takes `mu`.
  std::optional<std::stop_callback<StopWaker>> waker;
  mu.Unlock();
  waker.emplace(token_, StopWaker{&mu, &cv});
  mu.Lock();
  while (!done() && !token_.stop_requested()) cv.Wait(&mu);
  mu.Unlock();
  waker.reset();
  mu.Lock();
  return done();
}

namespace blocking_call_internal {

void Completion::Finish(grpc::Status status) {
  MutexLock lock(&mu_);
  status_ = std::move(status);
  done_ = true;
  cv_.SignalAll();
}

bool Completion::done() const {
  MutexLock lock(&mu_);
  return done_;
}

void Completion::CancelAndWaitLocked(grpc::ClientContext& context,
                                     CallWaiter* waiter) {
  if (done_) return;
  // Outside the mutex: gRPC may complete the RPC on this thread.
  mu_.Unlock();
  context.TryCancel();
  mu_.Lock();
  if (waiter != nullptr) {
    waiter->WaitUncancellable(
        mu_, cv_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; });
  } else {
    while (!done_) cv_.Wait(&mu_);
  }
}

void Completion::CancelAndWait(grpc::ClientContext& context,
                               CallWaiter* waiter) {
  MutexLock lock(&mu_);
  CancelAndWaitLocked(context, waiter);
}

grpc::Status Completion::Await(grpc::ClientContext& context,
                               CallWaiter* waiter) {
  MutexLock lock(&mu_);
  if (waiter == nullptr) {
    while (!done_) cv_.Wait(&mu_);
    return status_;
  }
  try {
    waiter->Wait(mu_, cv_,
                 [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; });
  } catch (...) {
    CancelAndWaitLocked(context, waiter);
    throw;
  }
  // Whatever the waiter returned, the RPC's completion is what counts: an
  // RPC that completed before the waiter gave up keeps its status.
  if (done_) return status_;
  CancelAndWaitLocked(context, waiter);
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      "the call was cancelled by its caller");
}

}  // namespace blocking_call_internal
}  // namespace tractor::discovery
