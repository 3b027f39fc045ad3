// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/task_server.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/dialog_transport.h"
#include "actor/internal/payload_check.h"
#include "actor/internal/wire.h"
#include "devx/debugger.h"
#include "devx/stack.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

v1::Msg ErrorMsg(v1::Error e) {
  v1::Msg m;
  *m.mutable_error() = std::move(e);
  return m;
}

}  // namespace

TaskServer::TaskServer(std::shared_ptr<const v1::Aid> self,
                       std::set<std::string> enable_modules,
                       size_t max_tasks)
    : self_aid_(std::move(self)),
      self_(*self_aid_),
      enable_modules_(std::move(enable_modules)),
      max_tasks_(max_tasks == 0 ? kDefaultMaxTasks : max_tasks),
      service_scope_(NewScope(nullptr, absl::InfiniteFuture(), true)) {}

const Endpoint* TaskServer::Validate(const v1::Start& start, bool unary,
                                     v1::Error* error) const {
  const std::string& cid = start.cid();
  auto reject = [&](ErrorKind kind, const std::string& message) {
    *error = MakeError(self_, kind, message, cid);
    return nullptr;
  };
  if (cid.empty()) return reject(ErrorKind::kMessagingError, "Start.cid is empty");
  const size_t colon = start.func().find(':');
  if (colon == std::string::npos) {
    return reject(ErrorKind::kFunctionNotFound,
                  absl::StrCat("function name '", start.func(),
                               "' is not of the form \"namespace:function\""));
  }
  const std::string ns = start.func().substr(0, colon);
  if (!IsEnabled(ns)) {
    return reject(ErrorKind::kModuleNotExposed,
                  absl::StrCat("namespace '", ns, "' is not enabled in actor '",
                               self_.name(), "'; enabled: [",
                               absl::StrJoin(enable_modules_, ", "),
                               "] (see enable_modules)"));
  }
  const Endpoint* ep = FindEndpoint(start.func());
  if (ep == nullptr) {
    return reject(ErrorKind::kFunctionNotFound,
                  absl::StrCat("actor '", self_.name(), "' has no function '",
                               start.func(), "'; namespace '", ns,
                               "' exports: [",
                               absl::StrJoin(EndpointNames(ns), ", "), "]"));
  }
  // A unary call is a plain function call, whatever Start.expect says.
  const v1::FuncType expect = unary ? v1::FUNC_TYPE_FUNCTION : start.expect();
  if (expect != v1::FUNC_TYPE_UNSPECIFIED && expect != ep->type) {
    return reject(ErrorKind::kMessagingError,
                  absl::StrCat("'", start.func(), "' is a ",
                               ep->type == v1::FUNC_TYPE_CONTEXT
                                   ? "context endpoint (use OpenContext)"
                                   : "plain function (use Run)"));
  }
  if (ep->params.empty()) {
    if (!ep->arg_matches(start.args())) {
      *error =
          MakeMsgTypeError(self_, cid, "Start", start.args(), ep->arg_spec);
      return nullptr;
    }
  } else {
    std::vector<v1::Payload> split;
    std::string problem = SplitNamedArgs(ep->params, start.args(), &split);
    if (!problem.empty()) {
      *error = MakeArgsTypeError(self_, cid, start.func(), start.args(),
                                 problem);
      return nullptr;
    }
  }
  return ep;
}

std::shared_ptr<DialogSession> TaskServer::NewSession(v1::Start* start,
                                                      const Endpoint& ep) {
  auto s = std::make_shared<DialogSession>();
  s->side = Side::kCallee;
  s->is_context = ep.type == v1::FUNC_TYPE_CONTEXT;
  s->cid = std::move(*start->mutable_cid());
  s->func = std::move(*start->mutable_func());
  s->self_aid = self_aid_;
  s->peer.Swap(start->mutable_caller());
  s->scope = NewScope(service_scope_, absl::InfiniteFuture(), false);
  s->scope->dialog = s;
  if (start->msg_buffer_size() > 0) {
    s->start_buffer_size = start->msg_buffer_size();
  }
  s->peer_accepts_batches = start->accept_batches();
  return s;
}

void TaskServer::FillStats(v1::ActorStats* stats) const {
  std::vector<std::shared_ptr<DialogSession>> sessions;
  {
    MutexLock lk(&mu_);
    stats->set_running_tasks(static_cast<uint32_t>(running_));
    stats->set_max_tasks(static_cast<uint32_t>(max_tasks_));
    std::vector<const Task*> by_age;
    for (const auto& [cid, task] : tasks_) by_age.push_back(&task);
    std::sort(by_age.begin(), by_age.end(), [](const Task* a, const Task* b) {
      return a->admitted < b->admitted;
    });
    for (const Task* task : by_age) sessions.push_back(task->session);
  }
  for (const auto& s : sessions) {
    v1::TaskStats* t = stats->add_tasks();
    t->set_cid(s->cid);
    t->set_func(s->func);
    *t->mutable_caller() = s->peer;
    if (s->dialog != nullptr) {
      t->set_dialog(true);
      t->set_recv_queue(static_cast<uint32_t>(s->dialog->RecvQueueDepth()));
      t->set_recv_capacity(static_cast<uint32_t>(s->dialog->RecvCapacity()));
      t->set_send_queue(static_cast<uint32_t>(s->dialog->SendQueueDepth()));
    }
  }
}

bool TaskServer::TakeSlot() {
  MutexLock lk(&mu_);
  if (running_ >= max_tasks_) return false;
  ++running_;
  return true;
}

void TaskServer::ReleaseSlot() {
  MutexLock lk(&mu_);
  --running_;
}

v1::Error TaskServer::TooBusyError(const std::string& cid) const {
  return MakeError(self_, "ActorTooBusy",
                   absl::StrCat("actor '", self_.name(), "' already runs ",
                                max_tasks_,
                                " tasks, its limit (max_tasks); try again "
                                "later"),
                   cid);
}

bool TaskServer::Admit(const std::shared_ptr<DialogSession>& s,
                       v1::Error* error) {
  bool duplicate = false;
  v1::Aid requester;
  {
    MutexLock lk(&mu_);
    if (tasks_.count(s->cid)) {
      duplicate = true;
    } else if (!actor_canceller_.uuid().empty() || closed_) {
      requester = actor_canceller_;
    } else {
      tasks_[s->cid] = Task{admitted_++, s};
      return true;
    }
  }
  if (duplicate) {
    *error = MakeError(self_, ErrorKind::kMessagingError,
                       absl::StrCat("a dialog with cid ", s->cid,
                                    " is already running"),
                       s->cid);
    return false;
  }
  // The actor was cancelled before this task could start: the caller
  // learns who cancelled it, as if the task had started and been
  // cancelled at once.
  if (requester.uuid().empty()) {
    *error = MakeError(self_, ErrorKind::kTransportClosed,
                       absl::StrCat("actor '", self_.name(),
                                    "' is shutting down"),
                       s->cid);
    return false;
  }
  *error = MakeError(
      self_, ErrorKind::kContextCancelled,
      absl::StrCat("actor '", self_.name(), "' was cancelled by '",
                   requester.name(), "' ", requester.uuid(),
                   " before task '", s->func, "' could start"),
      s->cid);
  *error->mutable_canceller() = requester;
  return false;
}

v1::Msg TaskServer::Invoke(const std::shared_ptr<DialogSession>& s,
                           const Endpoint& ep, v1::Payload* args) {
  v1::Msg terminal;
  // Stack dumps and crash reports name the task this thread runs.
  devx::TaskLabel label({"task '", s->func, "' cid ", s->cid, " for '",
                         s->peer.name(), "' ",
                         absl::string_view(s->peer.uuid()).substr(0, 8)});
  UserTask task;
  ScopeBinding bind(s->scope);
  Context context(s);
  try {
    *terminal.mutable_returned()->mutable_payload() =
        ep.invoke(&context, *args);
  } catch (const Cancelled&) {
    std::optional<v1::Error> remote;
    {
      MutexLock lk(&s->mu);
      remote = s->remote_error;
    }
    *terminal.mutable_error() =
        remote ? PackError(ToException(*remote), self_, s->cid)
               : CancelledTaskError(*s);
  } catch (...) {
    auto err = std::current_exception();
    VLOG(1) << "task " << s->func << " raised " << Describe(err);
    // Debug mode: the post-mortem, before the error is boxed.
    devx::PostMortem(err, absl::StrCat("task '", s->func, "'"));
    *terminal.mutable_error() = PackError(err, self_, s->cid);
  }
  {
    // Returning without Started is Started(null) + the result.
    MutexLock lk(&s->mu);
    s->AdvanceLocked(terminal.has_returned() ? Event::kSendReturn
                                             : Event::kSendError);
  }
  return terminal;
}

void TaskServer::Leave(const std::shared_ptr<DialogSession>& s) {
  std::vector<std::function<void()>> drained;
  {
    MutexLock lk(&mu_);
    auto it = tasks_.find(s->cid);
    if (it != tasks_.end() && it->second.session == s) tasks_.erase(it);
    if (!tasks_.empty()) return;
    drained.swap(drain_waiters_);
    if (drained.empty()) {
      // Signalled under the lock: nobody waits in the common case, and a
      // waiter that wakes finds the table empty.
      drained_cv_.SignalAll();
      return;
    }
    ++notifying_;
  }
  for (auto& fn : drained) fn();
  {
    MutexLock lk(&mu_);
    --notifying_;
  }
  drained_cv_.SignalAll();
}

void TaskServer::ServeDialog(std::shared_ptr<Dialog> dialog) {
  // This thread accepted the stream; it reads Start and runs the task.
  // A caller sends Start with the call, so the wait is short; one that
  // sends nothing is given `kStartWait`.
  const bool slot = TakeSlot();
  dialog->AwaitFirst(absl::Now() + kStartWait);
  if (!slot) {
    // Refused at once: the thread goes back to the pool.
    std::optional<v1::Msg> first = dialog->TryReceive();
    const std::string cid =
        first && first->has_start() ? first->start().cid() : std::string();
    dialog->SendAndClose(ErrorMsg(TooBusyError(cid)));
    return;
  }
  absl::Cleanup release = [this] { ReleaseSlot(); };
  std::optional<v1::Msg> first = dialog->TryReceive();
  if (!first) {
    const std::string why = dialog->undecodable();
    if (!why.empty()) {
      dialog->SendAndClose(ErrorMsg(MakeError(
          self_, ErrorKind::kMessagingError,
          absl::StrCat("actor '", self_.name(),
                       "' could not decode the first message of a dialog: ",
                       why))));
      return;
    }
    dialog->Close(grpc::Status(grpc::StatusCode::CANCELLED,
                               "no Start came (the stream ended, or none "
                               "came in time)"),
                  true);
    return;
  }
  if (!first->has_start()) {
    dialog->SendAndClose(ErrorMsg(MakeError(
        self_, ErrorKind::kMessagingError,
        absl::StrCat("a dialog must begin with Start, got ",
                     first->ShortDebugString()))));
    return;
  }
  // Its cid, func and caller move into the session; the rest is read here.
  v1::Start& start = *first->mutable_start();
  v1::Error error;
  const Endpoint* ep = Validate(start, /*unary=*/false, &error);
  if (ep == nullptr) {
    dialog->SendAndClose(ErrorMsg(std::move(error)));
    return;
  }
  auto s = NewSession(&start, *ep);
  s->dialog = dialog;
  dialog->Configure(start.msg_buffer_size(), start.overrun_policy());
  if (start.strict_backpressure() &&
      start.overrun_policy() == v1::OVERRUN_POLICY_BACKPRESSURE) {
    dialog->GrantCredits(/*announce=*/false);
  }
  if (start.caller_credit() > 0) dialog->LimitByCredits(start.caller_credit());
  dialog->SetPeerAcceptsBatches(start.accept_batches());
  if (!Admit(s, &error)) {
    dialog->SendAndClose(ErrorMsg(std::move(error)));
    return;
  }
  InstallDialogHooks(s);
  std::weak_ptr<DialogSession> weak = s;
  dialog->SetBrokenHook([weak] {
    auto c = weak.lock();
    if (!c) return;
    {
      MutexLock lk(&c->mu);
      if (c->cancel_requester.uuid().empty()) {
        c->cancel_requester = c->peer;
        c->transport_lost = true;
      }
    }
    c->scope->Cancel();
  });
  // A message that does not decode ends the dialog at once with a
  // MessagingError saying why, queued in the step that ends the dialog's
  // reads; the task is cancelled (its own terminal message then finds the
  // dialog closed).
  dialog->SetUndecodableHook(
      [self = s->self_aid, cid = s->cid,
       func = s->func](const std::string& why) {
        return ErrorMsg(MakeError(
            *self, ErrorKind::kMessagingError,
            absl::StrCat("actor '", self->name(), "' could not decode a "
                         "message of its dialog '", func, "': ", why),
            cid));
      },
      [weak] {
        auto c = weak.lock();
        if (!c) return;
        {
          MutexLock lk(&c->mu);
          if (c->cancel_requester.uuid().empty()) c->cancel_requester = c->peer;
        }
        c->scope->Cancel();
      });
  if (!start.no_ack()) {
    // The task was validated and admitted: say so before invoking it (it
    // carries the function's kind), so the ack is the callee's first
    // message whatever the function does.
    v1::Msg ack;
    ack.mutable_start_ack()->set_cid(s->cid);
    ack.mutable_start_ack()->set_functype(ep->type);
    dialog->SendNoWait(ack, Dialog::Flush::kNow);
  }
  // Reads are resumed only now, every hook in place and the ack (if any)
  // queued first, so whatever the caller sends next is answered after it.
  // The next read itself starts with the task's first operation on the
  // dialog (or after `kAwayAfter`, see `Dialog::ResumeReads`).
  if (s->is_context) dialog->ResumeReads();
  v1::Msg terminal = Invoke(s, *ep, start.mutable_args());
  dialog->SendAndClose(terminal);
  Leave(s);
}

bool TaskServer::OpenCall(const grpc::ByteBuffer& request, v1::Msg* msg,
                          grpc::Status* refusal) {
  std::string why;
  if (!ParseFromByteBuffer(request, msg, &why)) {
    *refusal = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("Actor.Call request: ", why));
    return false;
  }
  if (!TakeSlot()) {
    // The details carry the Error, for callers that want the boxed type.
    const v1::Error busy = TooBusyError(msg->start().cid());
    *refusal = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            busy.message(), busy.SerializeAsString());
    return false;
  }
  return true;
}

TaskServer::CallOutcome TaskServer::ServeCall(v1::Msg* msg,
                                              CallClient* client) {
  absl::Cleanup release = [this] { ReleaseSlot(); };
  if (!msg->has_start()) {
    return {ErrorMsg(MakeError(
        self_, ErrorKind::kMessagingError,
        absl::StrCat("Actor.Call takes a Msg holding Start, got ",
                     msg->ShortDebugString())))};
  }
  v1::Start* start = msg->mutable_start();
  v1::Error error;
  const Endpoint* ep = Validate(*start, /*unary=*/true, &error);
  std::shared_ptr<DialogSession> s;
  if (ep != nullptr) {
    s = NewSession(start, *ep);
    if (!Admit(s, &error)) s = nullptr;
  }
  if (s == nullptr) return {ErrorMsg(std::move(error))};
  // This thread is the task's: the function runs here.
  client->Watch(s);
  CallOutcome out{Invoke(s, *ep, start->mutable_args())};
  client->Unwatch();
  Leave(s);
  out.session = std::move(s);
  return out;
}

void CancelForCaller(const std::shared_ptr<DialogSession>& s) {
  {
    MutexLock lk(&s->mu);
    if (s->cancel_requester.uuid().empty()) s->cancel_requester = s->peer;
  }
  s->scope->Cancel();
}

bool TaskServer::CancelTask(const std::string& cid, const v1::Aid& requester) {
  std::shared_ptr<DialogSession> s;
  {
    MutexLock lk(&mu_);
    auto it = tasks_.find(cid);
    if (it == tasks_.end()) return false;
    s = it->second.session;
  }
  {
    MutexLock lk(&s->mu);
    if (s->cancel_requester.uuid().empty()) s->cancel_requester = requester;
  }
  s->scope->Cancel();
  return true;
}

void TaskServer::CancelAll(const v1::Aid& requester) {
  std::vector<std::shared_ptr<DialogSession>> tasks;
  {
    MutexLock lk(&mu_);
    if (actor_canceller_.uuid().empty()) actor_canceller_ = requester;
    for (auto& [cid, task] : tasks_) tasks.push_back(task.session);
  }
  for (auto& s : tasks) {
    MutexLock lk(&s->mu);
    if (s->cancel_requester.uuid().empty()) s->cancel_requester = requester;
  }
  service_scope_->Cancel();
}

void TaskServer::CancelAllTasks(const v1::Aid& requester,
                                absl::Duration bound) {
  CancelAll(requester);
  std::vector<std::function<void()>> drained;
  {
    MutexLock lk(&mu_);
    const absl::Time deadline = absl::Now() + bound;
    while ((!tasks_.empty() || notifying_ > 0) &&
           !drained_cv_.WaitWithDeadline(&mu_, deadline)) {
    }
    // Over (or the bound passed): whoever waits for the drain hears now.
    drained.swap(drain_waiters_);
    if (closed_) drain_over_ = true;
  }
  for (auto& fn : drained) fn();
}

void TaskServer::CancelAllTasksThen(const v1::Aid& requester,
                                    std::function<void()> drained) {
  CancelAll(requester);
  {
    MutexLock lk(&mu_);
    if (!tasks_.empty() && !drain_over_) {
      drain_waiters_.push_back(std::move(drained));
      return;
    }
  }
  drained();
}

void TaskServer::Close() {
  MutexLock lk(&mu_);
  closed_ = true;
}

}  // namespace tractor::internal
