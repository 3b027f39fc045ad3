#include "discovery/blocking_call.h"

namespace tractor::discovery {

void CallWaiter::WaitUncancellable(std::unique_lock<std::mutex>& lk,
                                   std::condition_variable_any& cv,
                                   absl::FunctionRef<bool()> done) {
  cv.wait(lk, [&] { return done(); });
}

bool StopTokenWaiter::Wait(std::unique_lock<std::mutex>& lk,
                           std::condition_variable_any& cv,
                           absl::FunctionRef<bool()> done) {
  return cv.wait(lk, token_, [&] { return done(); });
}

namespace blocking_call_internal {

void Completion::Finish(grpc::Status status) {
  std::lock_guard<std::mutex> lk(mu_);
  status_ = std::move(status);
  done_ = true;
  cv_.notify_all();
}

bool Completion::done() const {
  std::lock_guard<std::mutex> lk(mu_);
  return done_;
}

void Completion::CancelAndWaitLocked(std::unique_lock<std::mutex>& lk,
                                     grpc::ClientContext& context,
                                     CallWaiter* waiter) {
  if (!lk.owns_lock()) lk.lock();
  auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; };
  if (done()) return;
  // Outside the mutex: gRPC may complete the RPC on this thread.
  lk.unlock();
  context.TryCancel();
  lk.lock();
  if (waiter != nullptr) {
    waiter->WaitUncancellable(lk, cv_, done);
  } else {
    cv_.wait(lk, done);
  }
}

void Completion::CancelAndWait(grpc::ClientContext& context,
                               CallWaiter* waiter) {
  std::unique_lock<std::mutex> lk(mu_);
  CancelAndWaitLocked(lk, context, waiter);
}

grpc::Status Completion::Await(grpc::ClientContext& context,
                               CallWaiter* waiter) {
  std::unique_lock<std::mutex> lk(mu_);
  auto done = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; };
  if (waiter == nullptr) {
    cv_.wait(lk, done);
    return status_;
  }
  try {
    waiter->Wait(lk, cv_, done);
  } catch (...) {
    CancelAndWaitLocked(lk, context, waiter);
    throw;
  }
  if (!lk.owns_lock()) lk.lock();
  // Whatever the waiter returned, the RPC's completion is what counts: an
  // RPC that completed before the waiter gave up keeps its status.
  if (done_) return status_;
  CancelAndWaitLocked(lk, context, waiter);
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      "the call was cancelled by its caller");
}

}  // namespace blocking_call_internal
}  // namespace tractor::discovery
