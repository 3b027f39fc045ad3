// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/scope.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "actor/errors.h"

namespace tractor::internal {
namespace {

thread_local std::shared_ptr<ScopeState> t_scope;
thread_local int t_task_depth = 0;  // >0: this thread is a user task
thread_local bool t_holds_lock = false;

// A FIFO lock, so that a task handing over at a checkpoint lets the tasks
// already waiting run first.
struct TaskLock {
  Mutex mu;
  CondVar cv;
  uint64_t next_ticket ABSL_GUARDED_BY(mu) = 0;
  uint64_t serving ABSL_GUARDED_BY(mu) = 0;
  std::atomic<bool> enabled{true};
};

TaskLock& GetTaskLock() {
  static auto* lock = new TaskLock;
  return *lock;
}

// Returns the outermost cancelled scope on the chain, or null.
std::shared_ptr<ScopeState> CancelTarget(const std::shared_ptr<ScopeState>& s) {
  std::shared_ptr<ScopeState> target;
  absl::Time now = absl::InfinitePast();
  for (ScopeState* p = s.get(); p != nullptr; p = p->parent.get()) {
    bool cancelled = p->cancel_called.load(std::memory_order_acquire);
    if (!cancelled && p->deadline() != absl::InfiniteFuture()) {
      if (now == absl::InfinitePast()) now = absl::Now();
      if (p->deadline() <= now) {
        p->Cancel();
        cancelled = true;
      }
    }
    if (cancelled) {
      target = (p == s.get()) ? s : nullptr;
      if (!target) {
        // Find the owning shared_ptr by walking again.
        for (auto q = s; q; q = q->parent) {
          if (q.get() == p) {
            target = q;
            break;
          }
        }
      }
    }
    if (p->shield) break;
  }
  return target;
}

}  // namespace

absl::Time EffectiveDeadline(const ScopeState* s) {
  absl::Time d = absl::InfiniteFuture();
  for (; s != nullptr; s = s->parent.get()) {
    d = std::min(d, s->deadline());
    if (s->shield) break;
  }
  return d;
}

std::shared_ptr<ScopeState> CurrentScope() { return t_scope; }

ScopeBinding::ScopeBinding(std::shared_ptr<ScopeState> scope)
    : previous_(std::move(t_scope)) {
  t_scope = std::move(scope);
}

ScopeBinding::~ScopeBinding() { t_scope = std::move(previous_); }

std::shared_ptr<ScopeState> NewScope(std::shared_ptr<ScopeState> parent,
                                     absl::Time deadline, bool shield) {
  if (!parent) parent = t_scope;
  auto s = std::make_shared<ScopeState>();
  s->parent = parent;
  s->shield = shield;
  s->set_deadline(deadline);
  if (parent && !shield) {
    ScopeState* raw = s.get();
    s->link.emplace(parent->source.get_token(),
                    std::function<void()>([raw] { raw->source.request_stop(); }));
  }
  return s;
}

bool CancelPending() {
  absl::Time now = absl::InfinitePast();
  for (const ScopeState* p = t_scope.get(); p != nullptr;
       p = p->parent.get()) {
    if (p->cancel_called.load(std::memory_order_acquire)) return true;
    const absl::Time deadline = p->deadline();
    if (deadline != absl::InfiniteFuture()) {
      if (now == absl::InfinitePast()) now = absl::Now();
      if (deadline <= now) return true;
    }
    if (p->shield) break;
  }
  return false;
}

void ThrowIfCancelled() {
  if (!t_scope) return;
  if (!t_scope->source.stop_requested() &&
      EffectiveDeadline(t_scope.get()) == absl::InfiniteFuture()) {
    return;
  }
  if (auto target = CancelTarget(t_scope)) throw Cancelled(std::move(target));
}

void SetSingleTaskMode(bool on) { GetTaskLock().enabled.store(on); }

void AcquireTaskLock() {
  TaskLock& l = GetTaskLock();
  if (!l.enabled.load() || t_holds_lock) return;
  MutexLock lock(&l.mu);
  const uint64_t ticket = l.next_ticket++;
  while (l.serving != ticket) l.cv.Wait(&l.mu);
  t_holds_lock = true;
}

void ReleaseTaskLock() {
  if (!t_holds_lock) return;
  TaskLock& l = GetTaskLock();
  {
    MutexLock lock(&l.mu);
    ++l.serving;
  }
  t_holds_lock = false;
  l.cv.SignalAll();
}

bool HoldsTaskLock() { return t_holds_lock; }

// Hands the task lock to every task already waiting for it, then takes it
// back: releasing and queueing again happen in one step, so the caller
// cannot jump the queue.
void YieldTaskLock() {
  if (!t_holds_lock) return;
  TaskLock& l = GetTaskLock();
  MutexLock lock(&l.mu);
  if (l.next_ticket == l.serving + 1) return;  // nobody is waiting
  ++l.serving;
  const uint64_t ticket = l.next_ticket++;
  l.cv.SignalAll();
  while (l.serving != ticket) l.cv.Wait(&l.mu);
}

UserTask::UserTask() {
  if (t_task_depth++ == 0) AcquireTaskLock();
}

UserTask::~UserTask() {
  if (--t_task_depth == 0) ReleaseTaskLock();
}

namespace {

// Wakes a `Wait` on `cv` when its scope is cancelled. It takes `mu` first,
// so the wake-up cannot fall between the waiter's last look at its scope
// and its wait on `cv`.
struct Waker {
  CondVar* cv;
  Mutex* mu;
  Blocker* blocker;
  void operator()() const {
    MutexLock lock(mu);
    cv->SignalAll();
    if (blocker != nullptr) blocker->Wake();
  }
};

enum class WaitOutcome { kReady, kCancelled, kTimedOut };

// The blocking part of `WaitImpl`, with `mu` held throughout (but while
// blocked on `cv`). Only looks at the scope chain (`CancelPending`): raising
// a cancel may cancel a scope, which runs stop callbacks that take the
// mutexes of other waiters, `mu` among them.
WaitOutcome BlockUntil(CondVar& cv, Mutex& mu, absl::FunctionRef<bool()> pred,
                       absl::Time until, const ScopeState* scope,
                       Blocker* blocker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  for (;;) {
    if (pred()) return WaitOutcome::kReady;
    if (CancelPending()) return WaitOutcome::kCancelled;
    absl::Time deadline = until;
    if (scope != nullptr) deadline = std::min(deadline, EffectiveDeadline(scope));
    if (blocker != nullptr) {
      if (absl::Now() < deadline) blocker->Block(mu, deadline);
    } else if (deadline == absl::InfiniteFuture()) {
      cv.Wait(&mu);
    } else if (absl::Now() < deadline) {
      cv.WaitWithDeadline(&mu, deadline);
    }
    if (pred()) return WaitOutcome::kReady;
    if (CancelPending()) return WaitOutcome::kCancelled;
    if (until != absl::InfiniteFuture() && absl::Now() >= until) {
      return WaitOutcome::kTimedOut;
    }
  }
}

// Leaves the blocking part of `WaitImpl`: releases `mu`, then drops the
// stop callback (its destructor waits for a run in progress on a cancelling
// thread, which may be waiting for `mu`) and takes the task lock back.
void Leave(Mutex& mu, std::optional<std::stop_callback<Waker>>& waker,
           bool handed_over) ABSL_UNLOCK_FUNCTION(mu) {
  mu.Unlock();
  waker.reset();
  if (handed_over) AcquireTaskLock();
}

// Raises a pending cancel of the calling thread (if it is still pending)
// with `mu` released, and holds `mu` again before returning or throwing.
void RaiseCancelWithout(Mutex& mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  mu.Unlock();
  try {
    ThrowIfCancelled();
  } catch (...) {
    mu.Lock();
    throw;
  }
  mu.Lock();
}

}  // namespace

bool WaitImpl(CondVar& cv, Mutex& mu, absl::FunctionRef<bool()> pred,
              absl::Time until, Blocker* blocker) {
  const std::shared_ptr<ScopeState> scope = t_scope;
  for (;;) {
    // A cancel pending on entry is raised at once, without handing the task
    // lock over (as when the condition already holds).
    if (CancelPending()) RaiseCancelWithout(mu);
    if (pred()) return true;

    // Neither the task lock nor the stop callback is taken with `mu` held:
    // the task lock is waited for, and the callback runs at once, on this
    // thread, when the scope is already cancelled.
    const bool handed_over = t_holds_lock;
    std::optional<std::stop_callback<Waker>> waker;
    mu.Unlock();
    if (handed_over) ReleaseTaskLock();
    if (scope) waker.emplace(scope->source.get_token(), Waker{&cv, &mu, blocker});
    mu.Lock();
    WaitOutcome outcome;
    try {
      outcome = BlockUntil(cv, mu, pred, until, scope.get(), blocker);
    } catch (...) {  // thrown by `pred`
      Leave(mu, waker, handed_over);
      mu.Lock();
      throw;
    }
    Leave(mu, waker, handed_over);
    if (outcome == WaitOutcome::kTimedOut) {
      mu.Lock();
      return false;
    }
    // A checkpoint: a cancel that arrived together with the condition (or
    // while this task waited for the task lock) wins, as it does when the
    // condition already held on entry.
    try {
      ThrowIfCancelled();
    } catch (...) {
      mu.Lock();
      throw;
    }
    mu.Lock();
    // `mu` was released on the way out: the condition is checked again
    // under it, and a cancel seen but withdrawn meanwhile (a deadline moved
    // later) means waiting again.
    if (outcome == WaitOutcome::kReady && pred()) return true;
  }
}

}  // namespace tractor::internal
