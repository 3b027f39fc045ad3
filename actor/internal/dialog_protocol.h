// SPDX-License-Identifier: AGPL-3.0-or-later
// The dialog protocol, both sides, in one place: which message may come
// when, what each one does to the dialog's state, who a cancel is
// attributed to, and how a dialog's payloads are checked.
//
// A dialog is one `tractor.v1.Actor/Open` stream (or one unary
// `Actor/Call`). The caller sends `Start`; the callee answers `Started`
// (contexts only), both sides may then stream `Yield`s and end their
// direction with `Stop`, and the callee ends the dialog with exactly one
// `Return` or `Error`. The transport under it (queues, flow control, the
// gRPC reactor) is `dialog.h`; the public wrappers over it are `Context`
// and `MsgStream` (`actor/context.h`); the callee's task lifecycle is
// `task_server.h`. docs/architecture.md walks a call and a stream item
// through these units.
//
// ## State
//
// Each side of a dialog is in one `Phase`:
//
//   kOpening    caller: `Start` sent, no `Started` yet.
//               callee: the task runs, `Started` not sent yet.
//   kStarted    `Started` exchanged; no stream opened on this side.
//   kStreaming  this side opened its stream (`OpenStream`).
//   kFinished   caller: the terminal `Return`/`Error` arrived.
//               callee: the terminal message was sent.
//
// Orthogonal to the phase: `local_stopped` (this side sent `Stop`),
// `remote_stopped` (nothing more will arrive: `Stop`, or the terminal
// message), and `cancel` (none / requested by this side / its answer seen).
//
// ## Transitions (`Advance`)
//
// Rows are phases, columns events; each cell is the action. "→ X" moves to
// phase X; "ignore" keeps the phase and drops the message; "usage" is a
// local API misuse (UsageError); "protocol" is a peer that broke the
// protocol (MessagingError to the peer or to the caller's user code).
//
// Caller side:
//
// | phase      | recv Started | open stream | send/recv Yield    | send/recv Stop | recv Return | recv Error   |
// |------------|--------------|-------------|--------------------|----------------|-------------|--------------|
// | kOpening   | → kStarted   | usage       | usage / protocol   | usage / protocol | → kFinished | → kFinished* |
// | kStarted   | protocol     | → kStreaming| usage / ignore     | usage / ignore | → kFinished | → kFinished* |
// | kStreaming | protocol     | usage       | ok¹ / ok           | ok / ok        | → kFinished | → kFinished* |
// | kFinished  | ignore       | usage       | usage / ignore     | ignore         | ignore      | ignore       |
//
// Callee side:
//
// | phase      | send Started | open stream | send/recv Yield    | send/recv Stop | send Return | send Error |
// |------------|--------------|-------------|--------------------|----------------|-------------|------------|
// | kOpening   | → kStarted   | usage       | usage / protocol²  | usage / ok     | → kFinished | → kFinished |
// | kStarted   | usage        | → kStreaming| usage / ok²        | usage / ok     | → kFinished | → kFinished |
// | kStreaming | usage        | usage       | ok¹ / ok           | ok / ok        | → kFinished | → kFinished |
// | kFinished  | usage        | usage       | usage / ignore     | ignore         | usage       | usage      |
//
// * A `StreamOverrun` notice is an `Error` the peer's runtime sends while
//   its task still runs: it is recorded but does not finish the dialog.
// ¹ `usage` once this side sent `Stop`.
// ² A caller's `Yield` queues until the callee opens its stream.
// A caller also tolerates a `StartAck` in kOpening (ignored): it opts out
// of acks with `Start.no_ack`, but an older callee may send one.
// Events of the other side's columns: a caller sending Started, Return or
// Error is `usage`; a callee receiving Started or Return is `protocol`
// (`ignore` once finished), and a callee records a received Error (a
// caller's StreamOverrun notice) and goes on.
#ifndef TRACTOR_ACTOR_INTERNAL_DIALOG_PROTOCOL_H_
#define TRACTOR_ACTOR_INTERNAL_DIALOG_PROTOCOL_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "actor/cancel.h"
#include "actor/stream_options.h"
#include "actor/internal/dialog.h"
#include "actor/payload.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

enum class Side { kCaller, kCallee };

// Where one side of a dialog is; see the table above.
enum class Phase { kOpening, kStarted, kStreaming, kFinished };

// What happens to a dialog, from one side's point of view.
enum class Event {
  kSendStarted,
  kRecvStarted,
  kOpenStream,
  kSendYield,
  kRecvYield,
  kSendStop,
  kRecvStop,
  kSendReturn,
  kRecvReturn,
  kSendError,
  kRecvError,
};

// What `Advance` decided.
enum class Action {
  kAccept,    // legal; the phase is now `Transition::next`
  kIgnore,    // legal but dropped (a late or unread message)
  kUsage,     // this side's code misused the API
  kProtocol,  // the peer broke the protocol
};

struct Transition {
  Action action;
  Phase next;
};

// The transition table above, as a pure function. `local_stopped` is this
// side's `Stop` flag (sending on a stopped stream is a usage error).
Transition NextPhase(Side side, Phase phase, Event event, bool local_stopped);

// Returns a readable name, for messages and tests.
const char* PhaseName(Phase phase);
const char* EventName(Event event);

// Whether this side asked to cancel the remote task, and whether the
// answer to that request arrived.
enum class CancelState { kNone, kRequested, kAcked };

// One side (caller or callee) of one dialog: its protocol state and what it
// learned. Thread-safe: fields below `mu` are guarded by it; the fields
// above are set before the session is shared and then only read. Owned
// jointly (shared_ptr) by the side's `Context`/`MsgStream` objects, the
// callee's task table and the transport hooks (weakly).
struct DialogSession {
  std::shared_ptr<Dialog> dialog;
  Side side = Side::kCaller;
  bool is_context = true;  // false: a plain function call
  std::string cid;
  std::string func;
  // This actor, shared with its runtime (a session copies no Aid).
  std::shared_ptr<const v1::Aid> self_aid;
  v1::Aid peer;
  std::shared_ptr<grpc::Channel> channel;  // caller: for CancelTask
  std::shared_ptr<ScopeState> scope;  // the dialog's scope (callee: the task's)
  // Callee: the receive queue capacity the caller asked for in Start.
  size_t start_buffer_size = kDefaultQueueCapacity;
  // Caller: its queue as set before the call (`ContextOptions::caller_stream`).
  std::optional<StreamOptions> caller_stream;
  // Callee: the caller offered `Batch` messages (`Start.accept_batches`);
  // only then does `Started` say this side accepts them too.
  bool peer_accepts_batches = false;

  bool caller() const { return side == Side::kCaller; }
  const v1::Aid& self() const { return *self_aid; }

  mutable Mutex mu;
  Phase phase ABSL_GUARDED_BY(mu) = Phase::kOpening;
  bool local_stopped ABSL_GUARDED_BY(mu) = false;
  bool remote_stopped ABSL_GUARDED_BY(mu) = false;
  CancelState cancel ABSL_GUARDED_BY(mu) = CancelState::kNone;
  std::optional<v1::Error> remote_error ABSL_GUARDED_BY(mu);
  std::optional<v1::Payload> result ABSL_GUARDED_BY(mu);
  v1::Aid canceller ABSL_GUARDED_BY(mu);  // who cancelled the dialog
  // Callee: who asked to cancel.
  v1::Aid cancel_requester ABSL_GUARDED_BY(mu);
  // Callee: the task was cancelled because its caller vanished (the RPC
  // broke); a stream call the cancel interrupts raises TransportClosed.
  bool transport_lost ABSL_GUARDED_BY(mu) = false;
  PayloadSpec pld_spec ABSL_GUARDED_BY(mu);

  // Applies `event` under `mu` (held by the caller). Returns the action;
  // on kAccept the phase has moved.
  Action AdvanceLocked(Event event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Same, taking `mu`; throws UsageError (kUsage) or MessagingError
  // (kProtocol) with `what` in the message. Returns false for kIgnore.
  bool Advance(Event event, const char* what) ABSL_LOCKS_EXCLUDED(mu);

  bool finished() const ABSL_LOCKS_EXCLUDED(mu);
  bool started() const ABSL_LOCKS_EXCLUDED(mu);  // phase past kOpening
};

// Caller side: the fields of `Start` other than cid, func, args and caller.
void SetStartOptions(v1::Start* s, v1::FuncType expect,
                     const StreamOptions& callee_stream);

// Caller side: the Start message for `func`.
v1::Msg MakeStart(const std::string& cid, const std::string& func,
                  const Payload& args, const v1::Aid& caller,
                  v1::FuncType expect, const StreamOptions& callee_stream);

v1::OverrunPolicy ToProtoPolicy(OverrunPolicy p);

// True when `error` answers this side's own cancel request.
bool IsSelfCancel(const DialogSession& s, const v1::Error& error)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

// Applies an Error that arrived (on a gRPC thread): records it and the
// canceller, and interrupts the owner unless it answers this side's own
// cancel.
void OnErrorArrived(DialogSession& s, const v1::Error& error)
    ABSL_LOCKS_EXCLUDED(s.mu);

// Installs the transport hooks of `s`, on either side: an arriving Error
// goes to OnErrorArrived; an item dropped under OVERRUN_POLICY_ERROR is
// answered with a StreamOverrun Error naming the peer as the sender.
void InstallDialogHooks(const std::shared_ptr<DialogSession>& s);

// Receives the next message; throws TransportClosed when the stream ended
// without one. On the callee, the caller's half-close reads as a `Stop`. A
// checkpoint.
v1::Msg NextMsg(DialogSession& s);
// Callee: when `c` is the cancel of the dialog's own scope because its
// caller vanished (`transport_lost`), throws TransportClosed instead.
void RaiseIfTransportLost(DialogSession& s, const Cancelled& c);

// Records an Error that arrived in-band and throws it as an exception.
[[noreturn]] void RaiseArrived(DialogSession& s, const v1::Error& error)
    ABSL_LOCKS_EXCLUDED(s.mu);

// Checks a received payload against the session's spec; on a mismatch
// records a MsgTypeError as the dialog's error and throws it.
void CheckPayload(DialogSession& s, const char* kind, const v1::Payload& p)
    ABSL_LOCKS_EXCLUDED(s.mu);

// Caller: records the terminal Return (after checking its payload).
void AcceptReturn(DialogSession& s, const v1::Payload& p)
    ABSL_LOCKS_EXCLUDED(s.mu);

// Caller: waits for the terminal message, skipping unread stream items.
// Returns the result or throws the error.
Payload AwaitReturn(DialogSession& s);

// Caller: sends CancelTask for the session's cid (shielded, bounded wait).
void SendCancelTask(DialogSession& s);

// Caller: aborts the dialog's RPC at scope exit unless it ended cleanly.
struct DialogGuard {
  DialogSession& s;
  ~DialogGuard();
};

// Callee: the ContextCancelled a cancelled task ends its dialog with,
// naming who asked.
v1::Error CancelledTaskError(const DialogSession& s)
    ABSL_LOCKS_EXCLUDED(s.mu);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_DIALOG_PROTOCOL_H_
