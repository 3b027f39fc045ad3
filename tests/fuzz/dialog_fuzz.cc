// SPDX-License-Identifier: AGPL-3.0-or-later
// Fuzzes one side of a dialog (actor/internal/dialog_protocol.h) with any
// sequence of wire `Msg`s from the peer, interleaved with this side's own
// events, in process: each arriving message is applied the way the
// runtime applies it (the phase transition, the payload check against the
// dialog's spec, an arriving Error recorded and raised). Checks, beyond
// "no crash": only the documented errors are thrown (MessagingError for a
// peer's protocol break, UsageError for a local misuse, MsgTypeError for a
// payload off its spec, the boxed error for an Error); a finished dialog
// stays finished; a caller's finished dialog has nothing more to receive.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>

#include "actor/errors.h"
#include "actor/internal/dialog_protocol.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/scope.h"
#include "actor/payload.h"
#include "discovery/mutex.h"
#include "tests/fuzz/fuzz_input.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {
namespace {

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "dialog fuzz: %s\n", what);
  std::abort();
}

Phase PhaseOf(DialogSession& s) {
  MutexLock lk(&s.mu);
  return s.phase;
}

// Applies one event; a protocol break or a misuse is an exception of its
// documented type, anything else escapes and fails the run.
void Apply(DialogSession& s, Event event, bool local) {
  try {
    s.Advance(event, "fuzz");
  } catch (const UsageError&) {
    // Only this side's own events can be a misuse.
    Require(local, "a received message raised UsageError");
  } catch (const MessagingError&) {
    Require(!local, "a local event raised MessagingError");
  }
}

// A received payload, applied as the runtime does once its event was
// accepted: checked against the dialog's spec.
void ReceivePayload(DialogSession& s, Event event, const char* kind,
                    const v1::Payload& p) {
  try {
    if (!s.Advance(event, "fuzz")) return;
  } catch (const MessagingError&) {
    return;
  }
  try {
    CheckPayload(s, kind, p);
  } catch (const MsgTypeError&) {
    MutexLock lk(&s.mu);
    Require(s.remote_error.has_value(), "a MsgTypeError was not recorded");
  }
}

void Receive(DialogSession& s, const v1::Msg& m) {
  switch (m.kind_case()) {
    case v1::Msg::kStarted:
      ReceivePayload(s, Event::kRecvStarted, "Started", m.started().payload());
      break;
    case v1::Msg::kYielded:
      ReceivePayload(s, Event::kRecvYield, "Yield", m.yielded().payload());
      break;
    case v1::Msg::kBatch:
      for (const v1::Yield& y : m.batch().items()) {
        ReceivePayload(s, Event::kRecvYield, "Yield", y.payload());
      }
      break;
    case v1::Msg::kStop:
      Apply(s, Event::kRecvStop, /*local=*/false);
      break;
    case v1::Msg::kReturned:
      if (s.caller() && !s.finished()) {
        try {
          AcceptReturn(s, m.returned().payload());
          Require(s.finished(), "an accepted Return did not finish the dialog");
        } catch (const MsgTypeError&) {
        }
      } else {
        Apply(s, Event::kRecvReturn, /*local=*/false);
      }
      break;
    case v1::Msg::kError:
      OnErrorArrived(s, m.error());
      try {
        RaiseArrived(s, m.error());
      } catch (const ActorError&) {
      }
      break;
    default:
      // Start, StartAck and Credit are handled before the dialog's
      // protocol state (by the acceptor and the transport).
      break;
  }
}

constexpr Event kLocalEvents[] = {
    Event::kSendStarted, Event::kOpenStream, Event::kSendYield,
    Event::kSendStop,    Event::kSendReturn, Event::kSendError,
};

PayloadSpec SpecFor(uint8_t b) {
  switch (b % 4) {
    case 0: return PayloadSpec();
    case 1: return PayloadSpec::Of<int>();
    case 2: return PayloadSpec::Of<v1::Aid>() | PayloadSpec::Null();
    default: return PayloadSpec::Of<std::string>() | PayloadSpec::Of<bool>();
  }
}

}  // namespace
}  // namespace tractor::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tractor::internal;
  namespace v1 = tractor::v1;
  tractor::fuzz::FuzzInput in(data, size);
  const uint8_t setup = in.Byte();
  auto s = std::make_shared<DialogSession>();
  s->side = (setup & 1) ? Side::kCallee : Side::kCaller;
  s->is_context = (setup & 2) != 0;
  s->cid = "cid-1";
  s->func = "fuzz:f";
  v1::Aid self;
  self.set_name("self");
  self.set_uuid("self-uuid");
  s->self_aid = std::make_shared<const v1::Aid>(std::move(self));
  s->peer.set_name("peer");
  s->peer.set_uuid("peer-uuid");
  s->scope = std::make_shared<ScopeState>();
  {
    tractor::MutexLock lk(&s->mu);
    s->pld_spec = SpecFor(setup >> 2);
    if (setup & 0x40) s->cancel = CancelState::kRequested;
  }
  for (int steps = 0; !in.empty() && steps < 256; ++steps) {
    const bool was_finished = s->finished();
    const uint8_t op = in.Byte();
    if (op % 4 == 0) {
      Apply(*s, kLocalEvents[(op / 4) % std::size(kLocalEvents)],
            /*local=*/true);
    } else {
      v1::Msg m;
      if (!m.ParseFromString(in.Bytes())) continue;  // the transport ends it
      Receive(*s, m);
    }
    Require(!was_finished || s->finished(), "a finished dialog reopened");
    if (s->caller() && s->finished()) {
      tractor::MutexLock lk(&s->mu);
      Require(s->remote_stopped, "a finished caller still expects messages");
    }
  }
  v1::Error e = CancelledTaskError(*s);
  Require(tractor::ErrorKindOf(e) == tractor::ErrorKind::kContextCancelled,
          "a cancelled task's error is not a ContextCancelled");
  (void)PhaseName(PhaseOf(*s));
  return 0;
}
