// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/cancel.h"

#include <utility>

#include "actor/internal/scope.h"

namespace tractor {

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
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  internal::Wait(cv, mu, [] { return false; }, absl::Now() + d);
}

TaskGroup::TaskGroup() = default;

TaskGroup::~TaskGroup() {
  // Only when the body threw before `Open` joined them.
  std::vector<std::thread> threads;
  {
    MutexLock lock(&mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) {
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
        MutexLock lock(&group.mu_);
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
    MutexLock lock(&group.mu_);
    internal::Wait(group.cv_, group.mu_,
                   [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu_) {
                     return group.running_ == 0;
                   });
  });
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors;
  std::exception_ptr outer_cancel;
  {
    MutexLock lock(&group.mu_);
    threads.swap(group.threads_);
    errors = group.errors_;
    outer_cancel = group.outer_cancel_;
  }
  for (auto& t : threads) t.join();
  if (errors.size() == 1) std::rethrow_exception(errors[0]);
  if (errors.size() > 1) {
    throw ActorErrorGroup(std::to_string(errors.size()) + " tasks failed",
                          errors);
  }
  if (outer_cancel) std::rethrow_exception(outer_cancel);
  internal::ThrowIfCancelled();
}

void TaskGroup::Spawn(std::function<void()> fn) {
  MutexLock lock(&mu_);
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
          MutexLock lock(&mu_);
          if (!outer_cancel_) outer_cancel_ = std::current_exception();
        }
      } catch (...) {
        Record(std::current_exception());
      }
    }
    MutexLock lock(&mu_);
    if (--running_ == 0) cv_.SignalAll();
  });
}

void TaskGroup::Record(std::exception_ptr e) {
  {
    MutexLock lock(&mu_);
    errors_.push_back(std::move(e));
  }
  scope_.Cancel();
}

void TaskGroup::Cancel() { scope_.Cancel(); }

bool TaskGroup::cancel_called() const { return scope_.cancel_called(); }

}  // namespace tractor
