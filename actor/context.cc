// SPDX-License-Identifier: AGPL-3.0-or-later
// `Context` and `MsgStream`: the public face of one side of a dialog. The
// protocol rules they apply live in actor/internal/dialog_protocol.h.
#include "actor/context.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/dialog_protocol.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/payload_check.h"
#include "discovery/mutex.h"

namespace tractor {

using internal::Action;
using internal::Event;
using internal::Phase;

// ---------------------------------------------------------------------------
// Context.

Context::Context(std::shared_ptr<internal::DialogSession> state)
    : state_(std::move(state)) {}

const std::string& Context::cid() const { return state_->cid; }
bool Context::is_caller() const { return state_->caller(); }
const v1::Aid& Context::peer() const { return state_->peer; }

bool Context::cancel_called() const {
  MutexLock lk(&state_->mu);
  return state_->cancel != internal::CancelState::kNone;
}

bool Context::cancel_acked() const {
  MutexLock lk(&state_->mu);
  return state_->cancel == internal::CancelState::kAcked;
}

v1::Aid Context::canceller() const {
  MutexLock lk(&state_->mu);
  return state_->canceller;
}

void Context::Started(const Payload& value) {
  auto& s = *state_;
  if (s.caller()) throw UsageError("Started() is for the callee side only");
  {
    MutexLock lk(&s.mu);
    if (s.phase != Phase::kOpening) {
      throw UsageError(absl::StrCat("Started() called twice in '", s.func,
                                    "'"));
    }
    if (!s.pld_spec.Matches(value.proto())) {
      throw MsgTypeError(internal::MakeMsgTypeError(
          s.self(), s.cid, "Started", value.proto(), s.pld_spec.name()));
    }
    s.AdvanceLocked(Event::kSendStarted);
  }
  v1::Msg m;
  *m.mutable_started()->mutable_payload() = value.proto();
  // This side reads batches either way; it says so only to a caller that
  // offered them (a caller that did not may not know the message).
  m.mutable_started()->set_accept_batches(s.peer_accepts_batches);
  s.dialog->Send(m);
}

MsgStream Context::OpenStream() { return OpenStreamImpl(std::nullopt); }

MsgStream Context::OpenStream(StreamOptions options) {
  return OpenStreamImpl(options);
}

MsgStream Context::OpenStreamImpl(std::optional<StreamOptions> requested) {
  auto& s = *state_;
  {
    MutexLock lk(&s.mu);
    if (s.cancel != internal::CancelState::kNone || s.remote_error) {
      if (s.remote_error) internal::ThrowError(*s.remote_error);
      throw UsageError("cannot open a stream on a cancelled context");
    }
    switch (s.phase) {
      case Phase::kOpening:
        throw UsageError(absl::StrCat(
            "'", s.func, "' must call Started() before OpenStream()"));
      case Phase::kStreaming:
        throw UsageError("a context's stream can be opened only once");
      case Phase::kFinished:
        throw UsageError("the context already ended");
      case Phase::kStarted:
        break;
    }
    s.AdvanceLocked(Event::kOpenStream);
  }
  // The callee's queue was configured from Start; only explicit options
  // change it.
  if (!s.caller() && !requested) return MsgStream(state_, s.start_buffer_size);
  // The caller's queue set before the call (ContextOptions::caller_stream).
  if (s.caller() && !requested && s.caller_stream) {
    return MsgStream(state_, s.caller_stream->msg_buffer_size);
  }
  StreamOptions options = requested.value_or(StreamOptions{});
  s.dialog->Configure(options.msg_buffer_size,
                      internal::ToProtoPolicy(options.overrun));
  if (options.strict && options.overrun == OverrunPolicy::kBackpressure) {
    s.dialog->GrantCredits(/*announce=*/true);
  }
  return MsgStream(state_, options.msg_buffer_size);
}

Payload Context::Result() {
  auto& s = *state_;
  if (!s.caller()) throw UsageError("Result() is for the caller side only");
  {
    MutexLock lk(&s.mu);
    if (s.result) return Payload(*s.result);
    if (s.remote_error) {
      if (internal::IsSelfCancel(s, *s.remote_error)) {
        s.cancel = internal::CancelState::kAcked;
        return Payload();
      }
      internal::ThrowError(*s.remote_error);
    }
  }
  try {
    return internal::AwaitReturn(s);
  } catch (const ContextCancelled& c) {
    MutexLock lk(&s.mu);
    if (internal::IsSelfCancel(s, c.msgdata())) return Payload();
    throw;
  }
}

std::exception_ptr Context::maybe_error() const {
  auto& s = *state_;
  MutexLock lk(&s.mu);
  if (!s.remote_error) return nullptr;
  try {
    internal::ThrowError(*s.remote_error);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

std::optional<Context> CurrentContext() {
  for (auto scope = internal::CurrentScope(); scope; scope = scope->parent) {
    if (auto dialog = scope->dialog.lock()) {
      return Context(std::static_pointer_cast<internal::DialogSession>(dialog));
    }
  }
  return std::nullopt;
}

void Context::SetPayloadSpec(PayloadSpec spec) {
  MutexLock lk(&state_->mu);
  state_->pld_spec = std::move(spec);
}

void Context::Cancel() {
  auto& s = *state_;
  {
    MutexLock lk(&s.mu);
    if (s.cancel != internal::CancelState::kNone) return;
    s.cancel = internal::CancelState::kRequested;
    if (!s.caller()) {
      s.cancel_requester = s.self();
      if (s.canceller.uuid().empty()) s.canceller = s.self();
    }
  }
  if (s.caller()) {
    internal::SendCancelTask(s);
  } else {
    s.scope->Cancel();
  }
}

// ---------------------------------------------------------------------------
// MsgStream.

// The broadcast made by the first `Subscribe`, shared by the stream's
// copies.
struct MsgStream::Fanout {
  size_t window;
  Mutex mu;
  std::optional<BroadcastReceiver> own ABSL_GUARDED_BY(mu);  // set once
};

MsgStream::MsgStream(std::shared_ptr<internal::DialogSession> state,
                     size_t msg_buffer_size)
    : state_(std::move(state)), fanout_(std::make_shared<Fanout>()) {
  fanout_->window = msg_buffer_size;
}

void MsgStream::Send(const Payload& value) {
  auto& s = *state_;
  {
    MutexLock lk(&s.mu);
    if (s.remote_error) internal::ThrowError(*s.remote_error);
    if (s.local_stopped) throw UsageError("send on a closed stream");
  }
  try {
    s.dialog->SendItem(value.proto());
  } catch (const Cancelled& c) {
    internal::RaiseIfTransportLost(s, c);
    throw;
  } catch (const TransportClosed&) {
    // The dialog ended while this side was sending: what ended it (the
    // peer's Error, a ContextCancelled this side asked for among them) is
    // the outcome, not the closed stream.
    if (std::optional<v1::Error> e = s.dialog->TakeFinalError()) {
      internal::RaiseArrived(s, *e);
    }
    throw;
  }
}

std::optional<Payload> MsgStream::Receive() {
  if (fanout_) {
    BroadcastReceiver* own = nullptr;
    {
      MutexLock lk(&fanout_->mu);
      if (fanout_->own) own = &*fanout_->own;
    }
    if (own) return own->Receive();
  }
  return ReceiveRaw();
}

MsgStream::Subscription MsgStream::Subscribe(bool raise_on_lag) {
  MutexLock lk(&fanout_->mu);
  if (!fanout_->own) {
    // The broadcast's source is a copy without the fan-out, so the
    // broadcast does not keep itself alive.
    MsgStream raw = *this;
    raw.fanout_ = nullptr;
    fanout_->own.emplace([raw]() mutable { return raw.ReceiveRaw(); },
                         BroadcastOptions{.capacity = fanout_->window});
  }
  return Subscription(*this, fanout_->own->Subscribe(raise_on_lag));
}

std::optional<Payload> MsgStream::ReceiveRaw() {
  auto& s = *state_;
  {
    MutexLock lk(&s.mu);
    if (s.remote_stopped) {
      if (s.remote_error) internal::ThrowError(*s.remote_error);
      return std::nullopt;
    }
  }
  v1::Msg m = internal::NextMsg(s);
  switch (m.kind_case()) {
    case v1::Msg::kYielded:
      internal::CheckPayload(s, "Yield", m.yielded().payload());
      return Payload(std::move(*m.mutable_yielded()->mutable_payload()));
    case v1::Msg::kStop:
      s.Advance(Event::kRecvStop, "Stop");
      Close();
      return std::nullopt;
    case v1::Msg::kReturned:
      if (s.caller()) {
        internal::AcceptReturn(s, m.returned().payload());
      } else {
        // A caller never sends Return: the protocol check says so.
        s.Advance(Event::kRecvReturn, "Return");
      }
      return std::nullopt;
    case v1::Msg::kError:
      internal::RaiseArrived(s, m.error());
    default:
      throw MessagingError(absl::StrCat("unexpected message in stream of '",
                                        s.func, "': ", m.ShortDebugString()));
  }
}

void MsgStream::Close() {
  auto& s = *state_;
  {
    MutexLock lk(&s.mu);
    if (s.local_stopped) return;
    if (!s.caller() && s.phase == Phase::kFinished) {
      s.local_stopped = true;
      return;
    }
    if (s.AdvanceLocked(Event::kSendStop) != Action::kAccept) {
      s.local_stopped = true;
      return;
    }
  }
  v1::Msg m;
  m.mutable_stop();
  s.dialog->SendNoWait(m);
}

bool MsgStream::closed() const {
  MutexLock lk(&state_->mu);
  return state_->local_stopped || state_->remote_stopped;
}

}  // namespace tractor
