// Structured cancellation inside one actor
// (docs/design.md#tasks-and-cancellation).
//
// A task is a thread. Scopes nest: a `CancelScope` may carry a deadline, and
// cancelling it cancels everything started inside it, including tasks that
// a `TaskGroup` runs on other threads and the remote dialogs they opened.
// Every runtime call that waits is a checkpoint: when the enclosing scope is
// cancelled, it throws `Cancelled`, which unwinds to the scope that was
// cancelled and stops there. CPU-bound loops call `Checkpoint()`.
//
// By default an actor runs one user task at a time: a task holds the actor's
// task lock while it runs and hands it over only at checkpoints, like a
// single-threaded trio actor, so user state needs no locks.
#ifndef TRACTOR_ACTOR_CANCEL_H_
#define TRACTOR_ACTOR_CANCEL_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/errors.h"

namespace tractor {

namespace internal {
struct ScopeState;
}  // namespace internal

// Thrown at a checkpoint when an enclosing scope is cancelled. It is caught by
// the scope that was cancelled. Not a `std::exception`, so generic handlers do
// not swallow it; code that catches it with `catch (...)` must rethrow.
class Cancelled final {
 public:
  explicit Cancelled(std::shared_ptr<internal::ScopeState> scope)
      : scope_(std::move(scope)) {}
  const char* what() const { return "Cancelled"; }
  const std::shared_ptr<internal::ScopeState>& scope() const { return scope_; }

 private:
  std::shared_ptr<internal::ScopeState> scope_;
};

// `FailAfter`'s deadline passed.
class TooSlowError : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "TooSlowError"; }
};

// A region of code that can be cancelled as a whole, optionally with a
// deadline. Thread-safe: `Cancel()` may be called from any thread, also
// before or after `Run`. The scope object must outlive `Run`; one `Run` per
// scope.
class CancelScope {
 public:
  CancelScope();
  // A scope whose deadline is `timeout` from the start of `Run`.
  explicit CancelScope(absl::Duration timeout, bool shield = false);
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  ~CancelScope();

  // Runs `fn` in this scope on the calling thread. Returns normally when
  // `fn` returns or when this scope's cancellation unwound it; rethrows
  // anything else.
  void Run(const std::function<void()>& fn);

  // Cancels the scope and everything inside it. Idempotent.
  void Cancel();
  bool cancel_called() const;
  // True when `Run` ended because this scope was cancelled.
  bool cancelled_caught() const;
  // Moves the deadline (absolute).
  void SetDeadline(absl::Time deadline);

  const std::shared_ptr<internal::ScopeState>& state() const { return state_; }

 private:
  std::shared_ptr<internal::ScopeState> state_;
  absl::Duration timeout_;
};

// Runs `fn`; if it takes longer than `timeout`, cancels it and returns false.
bool MoveOnAfter(absl::Duration timeout, const std::function<void()>& fn);

// Runs `fn`; if it takes longer than `timeout`, cancels it and throws
// `TooSlowError`.
void FailAfter(absl::Duration timeout, const std::function<void()>& fn);

// Throws `Cancelled` if an enclosing scope was cancelled, and lets other
// tasks of this actor run.
void Checkpoint();

// Sleeps for `d`; a checkpoint.
void Sleep(absl::Duration d);

// A nursery of tasks (threads) inside one actor. `Open` runs `body`, which
// may `Spawn` tasks; it returns when every task has finished. The first
// error cancels all the others; one error is rethrown as itself, several as
// an `ActorErrorGroup`. Thread-safe: `Spawn` and `Cancel` may be called from
// any task inside the group while it is open.
class TaskGroup {
 public:
  static void Open(const std::function<void(TaskGroup&)>& body);

  // Starts `fn` as a new task inside the group.
  void Spawn(std::function<void()> fn);
  // Cancels every task in the group (and the body).
  void Cancel();
  bool cancel_called() const;

 private:
  TaskGroup();
  ~TaskGroup();
  void Record(std::exception_ptr e);

  CancelScope scope_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  int running_ = 0;                       // guarded by mu_
  std::vector<std::thread> threads_;      // guarded by mu_
  std::vector<std::exception_ptr> errors_;  // guarded by mu_
  std::exception_ptr outer_cancel_;       // guarded by mu_
};

namespace internal {

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

  absl::Time deadline() const {
    int64_t ns = deadline_ns.load(std::memory_order_relaxed);
    return ns == INT64_MAX ? absl::InfiniteFuture() : absl::FromUnixNanos(ns);
  }
  void set_deadline(absl::Time t) {
    deadline_ns.store(t == absl::InfiniteFuture() ? INT64_MAX
                                                  : absl::ToUnixNanos(t));
  }
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
  ~ScopeBinding();

 private:
  std::shared_ptr<ScopeState> previous_;
};

// Creates a scope nested in `parent` (or in the current scope when null).
std::shared_ptr<ScopeState> NewScope(std::shared_ptr<ScopeState> parent,
                                     absl::Time deadline, bool shield);

// Throws Cancelled if the calling thread's scope chain is cancelled.
void ThrowIfCancelled();

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
  ~UserTask();
};

// Blocks on `cv` (with `lk` held) until `pred()` is true. A checkpoint:
// throws Cancelled when the thread's scope is cancelled (or its deadline
// passes). Returns false if `until` passed first. Hands the task lock to
// other tasks while blocked.
bool WaitImpl(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lk,
              const std::function<bool()>& pred, absl::Time until);

template <class Pred>
bool Wait(std::condition_variable_any& cv, std::unique_lock<std::mutex>& lk,
          Pred pred, absl::Time until = absl::InfiniteFuture()) {
  if (pred()) {
    ThrowIfCancelled();
    return true;
  }
  return WaitImpl(cv, lk, pred, until);
}

}  // namespace internal
}  // namespace tractor

#endif  // TRACTOR_ACTOR_CANCEL_H_
