// SPDX-License-Identifier: AGPL-3.0-or-later
// The callee side of the runtime: what happens when a call arrives.
//
// Every remote task goes through four named steps, whether it came as an
// `Actor/Open` stream (a dialog) or as a unary `Actor/Call`:
//
//   1. Validate  the `Start`: a cid, a "namespace:function" name, an enabled
//                namespace, a known function of the expected kind, an
//                argument of the declared type. A failure is answered with
//                an `Error` at once; no task starts.
//   2. Admit     the task into this actor's task table (the gate): refused
//                with `ContextCancelled` naming the canceller once the actor
//                was cancelled, with `MessagingError` for a cid already
//                running. Before any of this, a `Start` that arrives while
//                `max_tasks` tasks run is refused at once, on the thread
//                that read it, with `ActorTooBusy` (RESOURCE_EXHAUSTED on
//                `Actor/Call`): no thread is taken for it. A dialog whose
//                `Start` did not set `no_ack` is sent `StartAck` now,
//                before the function is invoked.
//   3. Invoke    the exported function on a pooled thread, as a user task
//                (the task lock in single-task mode), inside the task's
//                cancel scope.
//   4. Finish    with exactly one terminal message: `Return`, or the
//                `Error` the function raised, or `ContextCancelled` naming
//                who cancelled it; then leave the task table.
//
// A unary call enters as itself, on gRPC's async API from the accept queue:
// the thread that took its arrival runs the task (another thread waits on
// the queue in its place) and writes its terminal message as the reply,
// with no stream inbox or outbox. A dialog's task
// runs on the thread that accepted its stream, which drives the stream's
// completion queue whenever the task waits on it (actor/internal/dialog.h).
// docs/architecture.md follows one call through these steps.
#ifndef TRACTOR_ACTOR_INTERNAL_TASK_SERVER_H_
#define TRACTOR_ACTOR_INTERNAL_TASK_SERVER_H_

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/export.h"
#include "actor/internal/call_watcher.h"
#include "actor/internal/dialog.h"
#include "actor/internal/dialog_protocol.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.pb.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// What the transport of a unary call tells the call's task about its
// client (see `UnaryCallServer`, actor/internal/actor_service.h).
class CallClient {
 public:
  virtual ~CallClient() = default;
  // The task `s` runs: the client going away (it cancelled its RPC, or the
  // connection broke) cancels it, at once if it went already.
  virtual void Watch(std::shared_ptr<DialogSession> s) = 0;
  // The task ended.
  virtual void Unwatch() = 0;
};

// Cancels a task on behalf of its own caller, who went away.
void CancelForCaller(const std::shared_ptr<DialogSession>& s);

// Runs this actor's remote tasks. Thread-safe. Owned by the process's
// `Runtime`; it must outlive the gRPC server that feeds it (the runtime
// cancels every task and waits for them before it stops the server).
class TaskServer {
 public:
  static constexpr size_t kDefaultMaxTasks = 1024;
  // How long an accepted stream may take to send its Start.
  static constexpr absl::Duration kStartWait = absl::Seconds(10);

  // `max_tasks` 0 means `kDefaultMaxTasks`.
  TaskServer(std::shared_ptr<const v1::Aid> self,
             std::set<std::string> enable_modules,
             size_t max_tasks = 0);

  // A dialog just accepted, on the thread that accepted it: reads its
  // `Start` and runs its task on this thread; returns when the task ended.
  void ServeDialog(std::shared_ptr<Dialog> dialog);

  // A unary `Actor/Call` arrived, as the bytes in `request`: on the thread
  // that took its arrival, without blocking, decodes it into `*msg` and
  // takes one of the `max_tasks` slots. False: the call is refused with
  // `*refusal` (INVALID_ARGUMENT saying why for a request that does not
  // decode; RESOURCE_EXHAUSTED, the `ActorTooBusy` error as its details,
  // beyond `max_tasks`). True: `ServeCall` must follow.
  bool OpenCall(const grpc::ByteBuffer& request, v1::Msg* msg,
                grpc::Status* refusal) ABSL_LOCKS_EXCLUDED(mu_);
  // What `ServeCall` leaves: the reply, and the ended task's session. The
  // task has left the table and its slot is free; the caller lets go of
  // the session once the reply is on its way, so that freeing the task's
  // memory is not on the reply's path.
  struct CallOutcome {
    v1::Msg reply;
    std::shared_ptr<DialogSession> session;  // null if no task started
  };
  // Serves the call `OpenCall` accepted: the calling thread is the task's
  // and blocks until the task ends; the outcome's reply is the task's
  // terminal message. `client` cancels the task if the caller goes away.
  // The Start's cid, func and caller move into the task's session.
  CallOutcome ServeCall(v1::Msg* msg, CallClient* client)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The queue unary calls are bound to (see CallWatcher).
  CallWatcher& call_watcher() { return watcher_; }

  // Cancels the task `cid` on behalf of `requester`. False: no such task.
  bool CancelTask(const std::string& cid, const v1::Aid& requester)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels every task and refuses new ones (naming `requester`); returns
  // once they ended or `bound` passed. Waits on the calling thread (not a
  // checkpoint): with no task running it returns at once, without waking
  // any other thread.
  void CancelAllTasks(const v1::Aid& requester, absl::Duration bound)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same without waiting: cancels every task and refuses new ones
  // (naming `requester`), then runs `drained` once they ended: at once, on
  // this thread, when none runs; otherwise on the thread of the task that
  // ends last, or on the thread of a `CancelAllTasks` (the actor's
  // shutdown) once its bounded wait is over, whichever comes first. After
  // the shutdown's wait, `drained` runs at once. `drained` must not block.
  void CancelAllTasksThen(const v1::Aid& requester,
                          std::function<void()> drained)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Fills the task fields of `Actor/Stats`: running tasks, the limit, and
  // one entry per task in the table.
  void FillStats(v1::ActorStats* stats) const ABSL_LOCKS_EXCLUDED(mu_);

  // Refuses new tasks (as the actor is going away) without cancelling.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  bool IsEnabled(const std::string& ns) const {
    return enable_modules_.count(ns) > 0;
  }
  const std::set<std::string>& enable_modules() const {
    return enable_modules_;
  }

 private:
  // Step 1. Returns the endpoint, or fills `*error`.
  const Endpoint* Validate(const v1::Start& start, bool unary,
                           v1::Error* error) const;
  // Step 2. Registers the task, or fills `*error`.
  bool Admit(const std::shared_ptr<DialogSession>& s, v1::Error* error)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Step 3 and 4's message: runs the function (which may take `*args`),
  // returns the terminal message.
  v1::Msg Invoke(const std::shared_ptr<DialogSession>& s, const Endpoint& ep,
                 v1::Payload* args);
  // Step 4's bookkeeping: leaves the task table.
  void Leave(const std::shared_ptr<DialogSession>& s) ABSL_LOCKS_EXCLUDED(mu_);

  // Moves the Start's cid, func and caller into the new session (its
  // other fields stay).
  std::shared_ptr<DialogSession> NewSession(v1::Start* start,
                                            const Endpoint& ep);
  // Takes one of the `max_tasks` slots, or returns false.
  bool TakeSlot() ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseSlot() ABSL_LOCKS_EXCLUDED(mu_);
  // The refusal of a task beyond `max_tasks`.
  v1::Error TooBusyError(const std::string& cid) const;
  // The first step of both CancelAllTasks: records `requester` and cancels
  // every task's scope.
  void CancelAll(const v1::Aid& requester) ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<const v1::Aid> self_aid_;
  const v1::Aid& self_;  // *self_aid_
  const std::set<std::string> enable_modules_;
  const size_t max_tasks_;
  // Parent of every task's scope: cancelling it cancels every task.
  const std::shared_ptr<ScopeState> service_scope_;
  CallWatcher watcher_;

  mutable Mutex mu_;
  CondVar drained_cv_;  // signalled when tasks_ empties
  // A running task, and when it was admitted (a count).
  struct Task {
    uint64_t admitted;
    std::shared_ptr<DialogSession> session;
  };
  // Running tasks, by cid (a view of the session's own `cid`).
  absl::flat_hash_map<absl::string_view, Task> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Dialogs handed to the pool and unary calls running: at most
  // `max_tasks_`.
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  // Who cancelled this actor (CancelActor, or itself at shutdown); empty
  // while it runs. Tasks that arrive afterwards are refused with a
  // ContextCancelled naming this requester.
  v1::Aid actor_canceller_ ABSL_GUARDED_BY(mu_);
  // `CancelAllTasksThen`'s callbacks, until the tasks drained.
  std::vector<std::function<void()>> drain_waiters_ ABSL_GUARDED_BY(mu_);
  // Callbacks being run by a task's last `Leave`: a `CancelAllTasks` waits
  // for them, so that they ran when it returns.
  int notifying_ ABSL_GUARDED_BY(mu_) = 0;
  // The shutdown's `CancelAllTasks` returned: later callbacks run at once.
  bool drain_over_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_TASK_SERVER_H_
