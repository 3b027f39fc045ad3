// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog_protocol.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/payload_check.h"
#include "actor/internal/unary_call.h"
#include "discovery/log_level.h"
#include "discovery/credentials.h"
#include "glog/logging.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

Transition NextPhase(Side side, Phase phase, Event event, bool local_stopped) {
  const bool caller = side == Side::kCaller;
  auto move_to = [](Phase p) { return Transition{Action::kAccept, p}; };
  auto stay = [phase](Action a) { return Transition{a, phase}; };
  if (phase == Phase::kFinished) {
    switch (event) {
      case Event::kRecvStarted:
      case Event::kRecvYield:
      case Event::kRecvStop:
      case Event::kRecvReturn:
      case Event::kRecvError:
      case Event::kSendStop:
        return stay(Action::kIgnore);
      default:
        return stay(Action::kUsage);
    }
  }
  switch (event) {
    case Event::kSendStarted:
      if (caller || phase != Phase::kOpening) return stay(Action::kUsage);
      return move_to(Phase::kStarted);
    case Event::kRecvStarted:
      if (!caller || phase != Phase::kOpening) return stay(Action::kProtocol);
      return move_to(Phase::kStarted);
    case Event::kOpenStream:
      if (phase != Phase::kStarted) return stay(Action::kUsage);
      return move_to(Phase::kStreaming);
    case Event::kSendYield:
      if (phase != Phase::kStreaming || local_stopped) return stay(Action::kUsage);
      return stay(Action::kAccept);
    case Event::kRecvYield:
      // A caller streams only after Started, so nothing arrives in kOpening.
      if (phase == Phase::kOpening) return stay(Action::kProtocol);
      if (phase == Phase::kStreaming || !caller) return stay(Action::kAccept);
      return stay(Action::kIgnore);
    case Event::kSendStop:
      if (phase != Phase::kStreaming) return stay(Action::kUsage);
      return stay(Action::kAccept);
    case Event::kRecvStop:
      if (!caller || phase == Phase::kStreaming) return stay(Action::kAccept);
      return stay(phase == Phase::kOpening ? Action::kProtocol : Action::kIgnore);
    case Event::kSendReturn:
    case Event::kSendError:
      if (caller) return stay(Action::kUsage);
      return move_to(Phase::kFinished);
    case Event::kRecvReturn:
      if (!caller) return stay(Action::kProtocol);
      return move_to(Phase::kFinished);
    case Event::kRecvError:
      // A callee records a caller's error (an overrun notice) and goes on.
      if (!caller) return stay(Action::kAccept);
      return move_to(Phase::kFinished);
  }
  return stay(Action::kProtocol);
}

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kOpening: return "opening";
    case Phase::kStarted: return "started";
    case Phase::kStreaming: return "streaming";
    case Phase::kFinished: return "finished";
  }
  return "?";
}

const char* EventName(Event event) {
  switch (event) {
    case Event::kSendStarted: return "send Started";
    case Event::kRecvStarted: return "receive Started";
    case Event::kOpenStream: return "open stream";
    case Event::kSendYield: return "send Yield";
    case Event::kRecvYield: return "receive Yield";
    case Event::kSendStop: return "send Stop";
    case Event::kRecvStop: return "receive Stop";
    case Event::kSendReturn: return "send Return";
    case Event::kRecvReturn: return "receive Return";
    case Event::kSendError: return "send Error";
    case Event::kRecvError: return "receive Error";
  }
  return "?";
}

Action DialogSession::AdvanceLocked(Event event) {
  Transition t = NextPhase(side, phase, event, local_stopped);
  if (t.action != Action::kAccept) return t.action;
  phase = t.next;
  switch (event) {
    case Event::kSendStop: local_stopped = true; break;
    case Event::kRecvStop:
    case Event::kRecvReturn:
      remote_stopped = true;
      break;
    case Event::kRecvError:
      if (caller()) remote_stopped = true;
      break;
    default: break;
  }
  return Action::kAccept;
}

bool DialogSession::Advance(Event event, const char* what) {
  Action a;
  Phase was;
  {
    MutexLock lk(&mu);
    was = phase;
    a = AdvanceLocked(event);
  }
  switch (a) {
    case Action::kAccept: return true;
    case Action::kIgnore: return false;
    case Action::kUsage:
      throw UsageError(absl::StrCat(what, ": cannot ", EventName(event),
                                    " on dialog '", func, "' in phase ",
                                    PhaseName(was)));
    case Action::kProtocol:
      throw MessagingError(absl::StrCat(
          "actor '", peer.name(), "' broke the dialog protocol of '", func,
          "': ", EventName(event), " in phase ", PhaseName(was), " (", what,
          ")"));
  }
  return false;
}

bool DialogSession::finished() const {
  MutexLock lk(&mu);
  return phase == Phase::kFinished;
}

bool DialogSession::started() const {
  MutexLock lk(&mu);
  return phase != Phase::kOpening;
}

v1::OverrunPolicy ToProtoPolicy(OverrunPolicy p) {
  switch (p) {
    case OverrunPolicy::kError: return v1::OVERRUN_POLICY_ERROR;
    case OverrunPolicy::kUnbounded: return v1::OVERRUN_POLICY_UNBOUNDED;
    default: return v1::OVERRUN_POLICY_BACKPRESSURE;
  }
}

void SetStartOptions(v1::Start* s, v1::FuncType expect,
                     const StreamOptions& callee_stream) {
  s->set_expect(expect);
  s->set_msg_buffer_size(callee_stream.msg_buffer_size);
  s->set_overrun_policy(ToProtoPolicy(callee_stream.overrun));
  s->set_strict_backpressure(callee_stream.strict &&
                             callee_stream.overrun == OverrunPolicy::kBackpressure);
  s->set_no_ack(true);
  s->set_accept_batches(true);
}

v1::Msg MakeStart(const std::string& cid, const std::string& func,
                  const Payload& args, const v1::Aid& caller,
                  v1::FuncType expect, const StreamOptions& callee_stream) {
  v1::Msg start;
  auto* s = start.mutable_start();
  s->set_cid(cid);
  s->set_func(func);
  *s->mutable_args() = args.proto();
  *s->mutable_caller() = caller;
  SetStartOptions(s, expect, callee_stream);
  return start;
}

bool IsSelfCancel(const DialogSession& s, const v1::Error& error) {
  return s.cancel != CancelState::kNone &&
         ErrorKindOf(error) == ErrorKind::kContextCancelled &&
         error.canceller().uuid() == s.self().uuid() &&
         error.src().uuid() == s.peer.uuid();
}

void OnErrorArrived(DialogSession& s, const v1::Error& error) {
  bool interrupt = false;
  {
    MutexLock lk(&s.mu);
    if (!s.remote_error) s.remote_error = error;
    v1::Aid who = error.canceller().uuid().empty() ? error.src()
                                                   : error.canceller();
    const bool cancelled =
        ErrorKindOf(error) == ErrorKind::kContextCancelled;
    if (cancelled && error.canceller().uuid() == s.self().uuid()) {
      who = s.self();
    } else if (cancelled) {
      who = error.src();
    }
    if (s.canceller.uuid().empty()) s.canceller = who;
    interrupt = !IsSelfCancel(s, error);
  }
  // A remote error interrupts the owner at its next checkpoint; the error
  // itself is raised at scope exit.
  if (interrupt) s.scope->Cancel();
}

void InstallDialogHooks(const std::shared_ptr<DialogSession>& s) {
  std::weak_ptr<DialogSession> weak = s;
  s->dialog->SetArrivalHook([weak](const v1::Msg& m) {
    if (!m.has_error()) return;
    if (auto c = weak.lock()) OnErrorArrived(*c, m.error());
  });
  s->dialog->SetOverrunHook([weak] {
    auto c = weak.lock();
    if (!c) return;
    v1::Error e = MakeError(
        c->self(), ErrorKind::kStreamOverrun,
        absl::StrCat("stream overrun: the receive queue of '", c->func,
                     "' in actor '", c->self().name(), "' is full"),
        c->cid);
    *e.mutable_sender() = c->peer;
    v1::Msg m;
    *m.mutable_error() = std::move(e);
    c->dialog->SendNoWait(m);
  });
}

void RaiseIfTransportLost(DialogSession& s, const Cancelled& c) {
  if (s.caller() || c.scope() != s.scope) return;
  {
    MutexLock lk(&s.mu);
    if (!s.transport_lost) return;
  }
  throw TransportClosed(absl::StrCat(
      "dialog '", s.func, "' with actor '", s.peer.name(),
      "' lost its transport: ", s.dialog->EndReason()));
}

v1::Msg NextMsg(DialogSession& s) {
  std::optional<v1::Msg> msg;
  try {
    msg = s.dialog->Receive();
  } catch (const Cancelled& c) {
    RaiseIfTransportLost(s, c);
    throw;
  }
  if (msg) return std::move(*msg);
  if (!s.caller() && s.dialog->peer_half_closed()) {
    // The caller half-closed its side of the stream without a Stop: it
    // sends nothing more, which is what a Stop says.
    v1::Msg stop;
    stop.mutable_stop();
    return stop;
  }
  std::string reason = s.dialog->WaitDoneReason(absl::Seconds(1));
  throw TransportClosed(absl::StrCat("dialog '", s.func, "' with actor '",
                                     s.peer.name(), "' lost its transport: ",
                                     reason));
}

void RaiseArrived(DialogSession& s, const v1::Error& error) {
  {
    MutexLock lk(&s.mu);
    if (!s.remote_error) s.remote_error = error;
    // A StreamOverrun notice comes from the peer's runtime while its task
    // still runs: the dialog is not finished (leaving aborts it).
    if (ErrorKindOf(error) != ErrorKind::kStreamOverrun) {
      s.AdvanceLocked(Event::kRecvError);
    }
    s.remote_stopped = true;
    if (IsSelfCancel(s, error)) s.cancel = CancelState::kAcked;
  }
  ThrowError(error);
}

void CheckPayload(DialogSession& s, const char* kind, const v1::Payload& p) {
  PayloadSpec spec;
  {
    MutexLock lk(&s.mu);
    spec = s.pld_spec;
  }
  if (spec.Matches(p)) return;
  v1::Error e = MakeMsgTypeError(s.self(), s.cid, kind, p, spec.name());
  {
    MutexLock lk(&s.mu);
    if (!s.remote_error) s.remote_error = e;
  }
  throw MsgTypeError(e);
}

void AcceptReturn(DialogSession& s, const v1::Payload& p) {
  CheckPayload(s, "Return", p);
  MutexLock lk(&s.mu);
  s.AdvanceLocked(Event::kRecvReturn);
  s.result = p;
}

Payload AwaitReturn(DialogSession& s) {
  for (;;) {
    v1::Msg m = NextMsg(s);
    switch (m.kind_case()) {
      case v1::Msg::kReturned:
        AcceptReturn(s, m.returned().payload());
        return Payload(m.returned().payload());
      case v1::Msg::kError:
        RaiseArrived(s, m.error());
      case v1::Msg::kStartAck:
        continue;  // a callee that acknowledges although not asked to
      case v1::Msg::kYielded:
      case v1::Msg::kStop:
        continue;  // stream items not read
      default:
        throw MessagingError(absl::StrCat(
            "unexpected message from '", s.peer.name(), "' while waiting for "
            "the result of '", s.func, "': ", m.ShortDebugString()));
    }
  }
}

void SendCancelTask(DialogSession& s) {
  if (!s.channel) return;
  TRACTOR_LOG(cancel) << "actor '" << s.self().name() << "' " << s.self().uuid()
                      << " cancels task '" << s.func << "' cid " << s.cid
                      << " in actor '" << s.peer.name() << "' "
                      << s.peer.uuid();
  v1::CancelTaskRequest req;
  req.set_cid(s.cid);
  *req.mutable_requester() = s.self();
  v1::CancelTaskReply reply;
  auto stub = v1::Actor::NewStub(s.channel);
  grpc::ClientContext context;
  CallUnary(
      context,
      [&](grpc::ClientContext* c) {
        discovery::AttachSecret(c);
        return stub->CancelTask(c, req, &reply);
      },
      absl::Now() + absl::Milliseconds(616), /*shielded=*/true);
}

DialogGuard::~DialogGuard() {
  s.dialog->Close(grpc::Status::OK, /*abort=*/!s.finished());
}

v1::Error CancelledTaskError(const DialogSession& s) {
  v1::Aid requester;
  {
    MutexLock lk(&s.mu);
    requester = s.cancel_requester;
  }
  std::string why;
  if (requester.uuid() == s.self().uuid()) {
    why = "cancelled itself";
  } else if (requester.uuid() == s.peer.uuid()) {
    why = "was cancelled by its 'parent'-side peer";
  } else {
    why = "was cancelled by a remote peer";
  }
  v1::Error e = MakeError(
      s.self(), ErrorKind::kContextCancelled,
      absl::StrCat("actor '", s.self().name(), "' task '", s.func, "' ", why,
                   " '", requester.name(), "' ", requester.uuid()),
      s.cid);
  *e.mutable_canceller() = requester;
  TRACTOR_LOG(cancel) << e.message() << " (cid " << s.cid << ")";
  return e;
}

}  // namespace tractor::internal
