// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/blocking_call.h"

#include <optional>
#include <thread>

#include "discovery/thread_name.h"

namespace tractor::discovery {
namespace {

// How long the driving thread stays after the last RPC completed: the next
// RPC of a burst (a hedged lookup's, a registration's refresh of several
// registrars) finds it there.
constexpr absl::Duration kDriverLinger = absl::Milliseconds(5);

// The queue of `DrivenQueue()` and who drives it. Never destroyed (RPCs may
// be in flight when the process ends).
struct Driver {
  grpc::CompletionQueue cq;
  Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  bool running ABSL_GUARDED_BY(mu) = false;
};

Driver& TheDriver() {
  static Driver* const driver = new Driver;
  return *driver;
}

// The driving thread: delivers completions until nothing was in flight for
// `kDriverLinger`, then leaves (a later RPC starts another). It waits with
// no timeout while an RPC is in flight (a WaitFor may take long).
void Drive(Driver& d) {
  NameThisThread("calls");
  for (;;) {
    bool idle;
    {
      MutexLock lock(&d.mu);
      idle = d.in_flight == 0;
    }
    void* tag = nullptr;
    bool ok = false;
    const grpc::CompletionQueue::NextStatus st =
        idle ? d.cq.AsyncNext(&tag, &ok,
                              absl::ToChronoTime(absl::Now() + kDriverLinger))
             : d.cq.AsyncNext(&tag, &ok, gpr_inf_future(GPR_CLOCK_REALTIME));
    if (st == grpc::CompletionQueue::GOT_EVENT) {
      static_cast<blocking_call_internal::DrivenOp*>(tag)->Complete(ok);
      MutexLock lock(&d.mu);
      --d.in_flight;
      continue;
    }
    MutexLock lock(&d.mu);
    if (d.in_flight == 0) {
      d.running = false;
      return;
    }
  }
}

}  // namespace

grpc::CompletionQueue* DrivenQueue() { return &TheDriver().cq; }

namespace blocking_call_internal {

void Issue(DrivenOp* op, absl::FunctionRef<void()> post) {
  Driver& d = TheDriver();
  bool start;
  {
    MutexLock lock(&d.mu);
    ++d.in_flight;
    start = !d.running;
    d.running = true;
  }
  // Detached: it touches nothing but the never-destroyed driver once its
  // last RPC completed, and leaves soon after.
  if (start) std::thread([&d] { Drive(d); }).detach();
  post();
}

}  // namespace blocking_call_internal

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
