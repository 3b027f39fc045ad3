// SPDX-License-Identifier: AGPL-3.0-or-later
// The project's mutex and condition variable: thin wrappers over
// `absl::Mutex` and `absl::CondVar` that clang's thread-safety analysis
// understands (`ABSL_GUARDED_BY(mu_)`, `ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)`)
// and that ThreadSanitizer sees.
//
//   class Counter {
//    public:
//     void Add() ABSL_LOCKS_EXCLUDED(mu_) {
//       tractor::MutexLock lock(&mu_);
//       ++n_;
//       cv_.SignalAll();
//     }
//     void AwaitAtLeast(int n) ABSL_LOCKS_EXCLUDED(mu_) {
//       tractor::MutexLock lock(&mu_);
//       while (n_ < n) cv_.Wait(&mu_);
//     }
//
//    private:
//     tractor::Mutex mu_;
//     tractor::CondVar cv_;
//     int n_ ABSL_GUARDED_BY(mu_) = 0;
//   };
//
// Every component uses these (the actor runtime, the registrar, discovery),
// so they live in discovery's lower layer, which depends on nothing of
// theirs. A task of the actor runtime waits with `internal::Wait` (a
// cancellation checkpoint) rather than with `CondVar::Wait` directly.
//
// ThreadSanitizer: `--config=tsan` links the Abseil and gRPC that
// tools/tsan_deps.sh builds with -fsanitize=thread, and defines
// TRACTOR_TSAN_INSTRUMENTED_DEPS. That Abseil announces each lock, unlock
// and wait of an `absl::Mutex` to TSan itself, so these wrappers add
// nothing: announcing the same mutex twice would be a double lock to TSan.
// Built with TSan against Debian's uninstrumented Abseil instead (without
// that define), TSan cannot see Abseil's locking; these wrappers then
// announce each lock, unlock and wait with the `__tsan_mutex_*` interface,
// which gives TSan the happens-before edges (and lock-order checks) of a
// mutex of its own. Outside TSan they compile to the bare Abseil calls.
#ifndef TRACTOR_DISCOVERY_MUTEX_H_
#define TRACTOR_DISCOVERY_MUTEX_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#if defined(__SANITIZE_THREAD__)
#define TRACTOR_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TRACTOR_THREAD_SANITIZER 1
#endif
#endif

// Whether this file announces locking and hand-offs to TSan (TSan, with
// Abseil and gRPC not instrumented).
#if defined(TRACTOR_THREAD_SANITIZER) && \
    !defined(TRACTOR_TSAN_INSTRUMENTED_DEPS)
#define TRACTOR_TSAN_ANNOUNCE 1
#include <sanitizer/tsan_interface.h>
#endif

namespace tractor {

class CondVar;

// A hand-off through code ThreadSanitizer cannot see, such as an
// uninstrumented gRPC's completion queues (an operation's tag is posted on
// one thread and comes back from `Next` on another): the posting thread
// calls `HandOff(x)` before posting, the receiving thread `TakeOver(x)` once
// it has the tag, both with the same `x`. Under TSan with Debian's gRPC they
// are a release and an acquire of `x`; otherwise (and with the instrumented
// gRPC, whose own synchronization TSan sees) nothing, so they hide no race.
inline void HandOff(const void* x) {
#ifdef TRACTOR_TSAN_ANNOUNCE
  __tsan_release(const_cast<void*>(x));
#else
  (void)x;
#endif
}
inline void TakeOver(const void* x) {
#ifdef TRACTOR_TSAN_ANNOUNCE
  __tsan_acquire(const_cast<void*>(x));
#else
  (void)x;
#endif
}

// An exclusive, non-reentrant mutex. Thread-safe; not copyable or movable.
// A `Mutex` must not be destroyed while held or waited on.
class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  // For a mutex with static storage duration:
  //   ABSL_CONST_INIT tractor::Mutex mu(absl::kConstInit);
  explicit constexpr Mutex(absl::ConstInitType) : mu_(absl::kConstInit) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
#ifdef TRACTOR_TSAN_ANNOUNCE
  ~Mutex() { __tsan_mutex_destroy(&mu_, __tsan_mutex_not_static); }
#endif

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_pre_lock(&mu_, 0);
#endif
    mu_.Lock();
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_post_lock(&mu_, 0, 0);
#endif
  }

  void Unlock() ABSL_UNLOCK_FUNCTION() {
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_pre_unlock(&mu_, 0);
#endif
    mu_.Unlock();
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_post_unlock(&mu_, 0);
#endif
  }

  // Dies unless the mutex is held (by some thread: Abseil does not record
  // the owner); tells the thread-safety analysis that the caller holds it.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() { mu_.AssertHeld(); }

 private:
  friend class CondVar;

  // Tells TSan that a wait on a condition variable released the mutex
  // (before the wait) and acquired it again (after it): the real unlock and
  // lock happen inside Abseil.
  void AnnotateWaitBegin() {
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_pre_unlock(&mu_, 0);
    __tsan_mutex_post_unlock(&mu_, 0);
#endif
  }
  void AnnotateWaitEnd() {
#ifdef TRACTOR_TSAN_ANNOUNCE
    __tsan_mutex_pre_lock(&mu_, 0);
    __tsan_mutex_post_lock(&mu_, 0, 0);
#endif
  }

  absl::Mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

// A condition variable used with a `Mutex`. Waits may wake spuriously:
// wait in a loop that re-checks the condition. Thread-safe.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases `mu`, blocks until signalled (or spuriously woken), and holds
  // `mu` again.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu->AnnotateWaitBegin();
    cv_.Wait(&mu->mu_);
    mu->AnnotateWaitEnd();
  }

  // Like `Wait`, but gives up at `deadline` (absl::Now's clock). Returns
  // true when it gave up, false when it was signalled (or woke spuriously).
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu->AnnotateWaitBegin();
    const bool timed_out = cv_.WaitWithDeadline(&mu->mu_, deadline);
    mu->AnnotateWaitEnd();
    return timed_out;
  }

  // Like `WaitWithDeadline`, with a timeout relative to now.
  bool WaitWithTimeout(Mutex* mu, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu->AnnotateWaitBegin();
    const bool timed_out = cv_.WaitWithTimeout(&mu->mu_, timeout);
    mu->AnnotateWaitEnd();
    return timed_out;
  }

  // Wakes one waiter / every waiter. Need not hold the mutex, but a waker
  // that changes the condition must change it with the mutex held.
  void Signal() { cv_.Signal(); }
  void SignalAll() { cv_.SignalAll(); }

 private:
  absl::CondVar cv_;
};

}  // namespace tractor

#endif  // TRACTOR_DISCOVERY_MUTEX_H_
