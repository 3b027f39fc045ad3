// SPDX-License-Identifier: AGPL-3.0-or-later
// The machinery behind cancel scopes (actor/cancel.h): the scope chain of a
// thread, the actor's task lock, and `Wait`, the blocking primitive every
// wait of a task goes through, so that every wait is a checkpoint.
#ifndef TRACTOR_ACTOR_INTERNAL_SCOPE_H_
#define TRACTOR_ACTOR_INTERNAL_SCOPE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"

namespace tractor::internal {

// Shared state of one cancel scope; see CancelScope.
struct ScopeState {
  std::shared_ptr<ScopeState> parent;
  std::stop_source source;
  std::optional<std::stop_callback<std::function<void()>>> link;
  std::atomic<bool> cancel_called{false};
  std::atomic<bool> caught{false};
  // This scope's own deadline, as nanoseconds since the Unix epoch.
  std::atomic<int64_t> deadline_ns{INT64_MAX};
  bool shield = false;
  // Set on the scope of a dialog's task (its `DialogSession`), before the
  // scope is shared: `CurrentContext()` finds the innermost one on the
  // calling thread's scope chain.
  std::weak_ptr<void> dialog;

  absl::Time deadline() const {
    int64_t ns = deadline_ns.load(std::memory_order_relaxed);
    return ns == INT64_MAX ? absl::InfiniteFuture() : absl::FromUnixNanos(ns);
  }
  void set_deadline(absl::Time t) {
    deadline_ns.store(t == absl::InfiniteFuture() ? INT64_MAX
                                                  : absl::ToUnixNanos(t));
  }
  // Requests the stop of this scope's source, which runs the stop
  // callbacks of the waits inside it (and of its nested scopes) on the
  // calling thread: each takes the mutex its waiter waits with, so a caller
  // must not hold such a mutex.
  void Cancel() {
    cancel_called.store(true);
    source.request_stop();
  }
};

// The earliest deadline on the scope chain of `s` (up to a shield).
absl::Time EffectiveDeadline(const ScopeState* s);

// The innermost scope of the calling thread (may be null).
std::shared_ptr<ScopeState> CurrentScope();

// Makes `scope` the calling thread's innermost scope until destroyed.
class ScopeBinding {
 public:
  explicit ScopeBinding(std::shared_ptr<ScopeState> scope);
  ScopeBinding(const ScopeBinding&) = delete;
  ScopeBinding& operator=(const ScopeBinding&) = delete;
  ~ScopeBinding();

 private:
  std::shared_ptr<ScopeState> previous_;
};

// Creates a scope nested in `parent` (or in the current scope when null).
std::shared_ptr<ScopeState> NewScope(std::shared_ptr<ScopeState> parent,
                                     absl::Time deadline, bool shield);

// Throws Cancelled if the calling thread's scope chain is cancelled or past
// its deadline; a scope found past its deadline is cancelled first (which
// runs the stop callbacks of the waits inside it: see `Wait`).
void ThrowIfCancelled();

// True when `ThrowIfCancelled` would throw. Changes nothing.
bool CancelPending();

// The actor's task lock (one user task at a time). A no-op when the actor
// runs free threads.
void SetSingleTaskMode(bool on);
void AcquireTaskLock();
void ReleaseTaskLock();
bool HoldsTaskLock();
// Lets every task waiting for the task lock run first (FIFO), then resumes.
void YieldTaskLock();

// Marks the calling thread as a user task of this actor for its lifetime:
// takes the task lock (if in single-task mode) and releases it at the end.
class UserTask {
 public:
  UserTask();
  UserTask(const UserTask&) = delete;
  UserTask& operator=(const UserTask&) = delete;
  ~UserTask();
};

// Blocks on `cv` (with `mu` held) until `pred()` is true. A checkpoint:
// throws Cancelled when the thread's scope chain is cancelled or its
// deadline passes, also when the condition became true together with the
// cancel (as it does when `pred()` already holds on entry). Returns false
// when `until` passed first (`pred()` still false). Hands the task lock to
// other tasks while blocked and takes it back without holding `mu`.
//
// `mu` is released while blocked, like a condition-variable wait, and also
// on the way out; `pred()` is checked again under it before returning true.
// `pred` is called with `mu` held: a lambda that reads members guarded by
// `mu` says so with `ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu)`.
//
// A cancel wakes the wait through a stop callback on the scope that takes
// `mu` and signals `cv`. So a thread must not cancel a scope while holding a
// `Mutex` that a task inside that scope waits with, nor reach a checkpoint
// (which cancels a scope whose deadline passed) while holding a `Mutex`
// other than the one it waits with.
//
// With a `blocker`, the wait blocks in `blocker->Block` instead of on `cv`
// (a cancel calls `blocker->Wake` as well as signalling `cv`).
class Blocker;
bool WaitImpl(CondVar& cv, Mutex& mu, absl::FunctionRef<bool()> pred,
              absl::Time until, Blocker* blocker = nullptr)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

// How a `Wait` blocks when not (only) on its condition variable: a task
// waiting on a dialog drives the dialog's completion queue itself
// (actor/internal/dialog.h), so the message it waits for wakes no other
// thread first.
class Blocker {
 public:
  virtual ~Blocker() = default;
  // Blocks until something may have changed the wait's condition, `Wake`
  // is called, or `deadline` passes. Called with `mu` (the wait's mutex)
  // held; returns with it held, and may release it meanwhile.
  virtual void Block(Mutex& mu, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
  // Ends a `Block` in progress soon. Called with `mu` held, from any thread.
  virtual void Wake() = 0;
};

// Calls `pred` for `Wait`, which holds the mutex the predicate declares it
// needs (the analysis cannot tie a lambda's capability to `Wait`'s `mu`).
template <class Pred>
bool CallPredicate(Pred& pred) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return pred();
}

template <class Pred>
bool Wait(CondVar& cv, Mutex& mu, Pred pred,
          absl::Time until = absl::InfiniteFuture(),
          Blocker* blocker = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  if (CallPredicate(pred) && !CancelPending()) return true;
  return WaitImpl(
      cv, mu, [&pred]() -> bool { return CallPredicate(pred); }, until,
      blocker);
}

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_SCOPE_H_
