#include "actor/cancel.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "glog/logging.h"

namespace tractor {
namespace internal {
namespace {

thread_local std::shared_ptr<ScopeState> t_scope;
thread_local int t_task_depth = 0;  // >0: this thread is a user task
thread_local bool t_holds_lock = false;

// A FIFO lock, so that a task handing over at a checkpoint lets the tasks
// already waiting run first.
struct TaskLock {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t next_ticket = 0;
  uint64_t serving = 0;
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
  std::unique_lock<std::mutex> lk(l.mu);
  uint64_t ticket = l.next_ticket++;
  l.cv.wait(lk, [&] { return l.serving == ticket; });
  t_holds_lock = true;
}

void ReleaseTaskLock() {
  if (!t_holds_lock) return;
  TaskLock& l = GetTaskLock();
  {
    std::lock_guard<std::mutex> lk(l.mu);
    ++l.serving;
  }
  t_holds_lock = false;
  l.cv.notify_all();
}

bool HoldsTaskLock() { return t_holds_lock; }

// Hands the task lock to every task already waiting for it, then takes it
// back: releasing and queueing again happen in one step, so the caller
// cannot jump the queue.
void YieldTaskLock() {
  if (!t_holds_lock) return;
  TaskLock& l = GetTaskLock();
  std::unique_lock<std::mutex> lk(l.mu);
  if (l.next_ticket == l.serving + 1) return;  // nobody is waiting
  ++l.serving;
  uint64_t ticket = l.next_ticket++;
  l.cv.notify_all();
  l.cv.wait(lk, [&] { return l.serving == ticket; });
}

UserTask::UserTask() {
  if (t_task_depth++ == 0) AcquireTaskLock();
}

UserTask::~UserTask() {
  if (--t_task_depth == 0) ReleaseTaskLock();
}

bool WaitImpl(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lk,
              const std::function<bool()>& pred, absl::Time until) {
  bool handed_over = false;
  if (t_holds_lock) {
    // Never take the task lock while holding `lk`: drop `lk` first.
    lk.unlock();
    ReleaseTaskLock();
    lk.lock();
    handed_over = true;
  }
  struct Reacquire {
    std::unique_lock<std::mutex>& lk;
    bool active;
    ~Reacquire() {
      if (!active) return;
      bool owned = lk.owns_lock();
      if (owned) lk.unlock();
      AcquireTaskLock();
      if (owned) lk.lock();
    }
  } reacquire{lk, handed_over};

  std::stop_token token;
  if (t_scope) token = t_scope->source.get_token();
  while (!pred()) {
    ThrowIfCancelled();
    absl::Time deadline = until;
    if (t_scope) deadline = std::min(deadline, EffectiveDeadline(t_scope.get()));
    if (deadline == absl::InfiniteFuture()) {
      cv.wait(lk, token, pred);
    } else {
      absl::Duration left = deadline - absl::Now();
      if (left > absl::ZeroDuration()) {
        cv.wait_for(lk, token, absl::ToChronoNanoseconds(left), pred);
      }
    }
    if (pred()) break;
    ThrowIfCancelled();
    if (until != absl::InfiniteFuture() && absl::Now() >= until) return false;
  }
  // A checkpoint: a cancel that arrived together with the condition (or
  // while this task waited for the task lock) wins, as it does when the
  // condition already held on entry.
  if (handed_over) {
    reacquire.active = false;
    lk.unlock();
    AcquireTaskLock();
    lk.lock();
  }
  ThrowIfCancelled();
  return true;
}

}  // namespace internal

CancelScope::CancelScope() : CancelScope(absl::InfiniteDuration()) {}

CancelScope::CancelScope(absl::Duration timeout, bool shield)
    : state_(internal::NewScope(nullptr, absl::InfiniteFuture(), shield)),
      timeout_(timeout) {}

CancelScope::~CancelScope() = default;

void CancelScope::Run(const std::function<void()>& fn) {
  if (timeout_ != absl::InfiniteDuration()) {
    SetDeadline(absl::Now() + timeout_);
  }
  internal::ScopeBinding bind(state_);
  try {
    fn();
  } catch (const Cancelled& c) {
    if (c.scope() != state_) throw;
    state_->caught.store(true);
  }
}

void CancelScope::Cancel() { state_->Cancel(); }

bool CancelScope::cancel_called() const {
  return state_->cancel_called.load();
}

bool CancelScope::cancelled_caught() const { return state_->caught.load(); }

void CancelScope::SetDeadline(absl::Time deadline) {
  state_->set_deadline(deadline);
}

bool MoveOnAfter(absl::Duration timeout, const std::function<void()>& fn) {
  CancelScope scope(timeout);
  scope.Run(fn);
  return !scope.cancelled_caught();
}

void FailAfter(absl::Duration timeout, const std::function<void()>& fn) {
  if (!MoveOnAfter(timeout, fn)) {
    throw TooSlowError("deadline of " + absl::FormatDuration(timeout) +
                       " exceeded");
  }
}

void Checkpoint() {
  internal::ThrowIfCancelled();
  internal::YieldTaskLock();
}

void Sleep(absl::Duration d) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock<std::mutex> lk(mu);
  internal::Wait(cv, lk, [] { return false; }, absl::Now() + d);
}

TaskGroup::TaskGroup() = default;

TaskGroup::~TaskGroup() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void TaskGroup::Open(const std::function<void(TaskGroup&)>& body) {
  TaskGroup group;
  group.scope_.Run([&] {
    try {
      body(group);
    } catch (const Cancelled& c) {
      if (c.scope() != group.scope_.state()) {
        std::lock_guard<std::mutex> lk(group.mu_);
        group.outer_cancel_ = std::current_exception();
      }
      group.scope_.Cancel();
    } catch (...) {
      group.Record(std::current_exception());
    }
    // Wait for every task; this wait itself must not be cut short by the
    // group's own cancellation, so it runs shielded.
    auto shielded = internal::NewScope(nullptr, absl::InfiniteFuture(), true);
    internal::ScopeBinding bind(shielded);
    std::unique_lock<std::mutex> lk(group.mu_);
    internal::Wait(group.cv_, lk, [&] { return group.running_ == 0; });
  });
  for (auto& t : group.threads_) t.join();
  group.threads_.clear();
  if (group.errors_.size() == 1) std::rethrow_exception(group.errors_[0]);
  if (group.errors_.size() > 1) {
    throw ActorErrorGroup(
        std::to_string(group.errors_.size()) + " tasks failed",
        group.errors_);
  }
  if (group.outer_cancel_) std::rethrow_exception(group.outer_cancel_);
  internal::ThrowIfCancelled();
}

void TaskGroup::Spawn(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  ++running_;
  auto scope = scope_.state();
  threads_.emplace_back([this, scope, fn = std::move(fn)] {
    {
      internal::UserTask task;
      internal::ScopeBinding bind(internal::NewScope(scope,
                                                     absl::InfiniteFuture(),
                                                     false));
      try {
        fn();
      } catch (const Cancelled& c) {
        // Expected when the group (or an outer scope) was cancelled; only an
        // outer cancellation must reach the group's owner.
        if (c.scope() != scope) {
          std::lock_guard<std::mutex> lk(mu_);
          if (!outer_cancel_) outer_cancel_ = std::current_exception();
        }
      } catch (...) {
        Record(std::current_exception());
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (--running_ == 0) cv_.notify_all();
  });
}

void TaskGroup::Record(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    errors_.push_back(std::move(e));
  }
  scope_.Cancel();
}

void TaskGroup::Cancel() { scope_.Cancel(); }

bool TaskGroup::cancel_called() const { return scope_.cancel_called(); }

}  // namespace tractor
