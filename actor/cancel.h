// SPDX-License-Identifier: AGPL-3.0-or-later
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

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/errors.h"
#include "discovery/mutex.h"

namespace tractor {

namespace internal {
struct ScopeState;
}  // namespace internal

class ActorNursery;
struct RootOptions;

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

 private:
  // What runs tasks, children or signal handlers inside the scope reaches
  // its state.
  friend class TaskGroup;
  friend void OpenNursery(const std::function<void(ActorNursery&)>& body);
  friend void OpenRootActor(const RootOptions& options,
                            const std::function<void()>& fn);

  const std::shared_ptr<internal::ScopeState>& state() const { return state_; }

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
  void Spawn(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every task in the group (and the body).
  void Cancel();
  bool cancel_called() const;

 private:
  TaskGroup();
  ~TaskGroup();
  void Record(std::exception_ptr e) ABSL_LOCKS_EXCLUDED(mu_);

  CancelScope scope_;
  Mutex mu_;
  CondVar cv_;  // signalled when `running_` drops to 0
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  // Joined by `Open` (or the destructor).
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::exception_ptr> errors_ ABSL_GUARDED_BY(mu_);
  std::exception_ptr outer_cancel_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tractor

// The scope machinery (`internal::Wait`, the task lock, ...) is not part of
// this API. It is still included here for now, for the runtime's own files
// (and discovery) that reach it through this header; new code includes
// actor/internal/scope.h itself.
#include "actor/internal/scope.h"  // IWYU pragma: keep

#endif  // TRACTOR_ACTOR_CANCEL_H_
