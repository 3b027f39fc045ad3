// SPDX-License-Identifier: AGPL-3.0-or-later
// Dialogs between actors: `Context` (tractor's context) and `MsgStream`.
//
// A context is one remote task: the caller opens it with
// `Portal::OpenContext`, the callee is an exported function taking a
// `Context&`. The callee reports a first value with `Started`, either side
// may then open its end of a bidirectional stream, and the dialog ends with
// exactly one result or error. See docs/design.md#wire-contract and
// docs/behaviour.md#contexts.
#ifndef TRACTOR_ACTOR_CONTEXT_H_
#define TRACTOR_ACTOR_CONTEXT_H_

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "actor/broadcast.h"
#include "actor/payload.h"
#include "actor/stream_options.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

namespace internal {
struct DialogSession;
}  // namespace internal

class MsgStream;

// One side of a dialog. Bound to the task that opened it (caller) or runs
// it (callee); `Cancel` may be called from any task of the actor. The
// runtime owns the state; the reference handed to user code is valid for
// the dialog's scope.
class Context {
 public:
  explicit Context(std::shared_ptr<internal::DialogSession> state);

  // Callee: reports the first value to the caller. Exactly once, before
  // opening a stream; a second call throws UsageError.
  void Started(const Payload& value = Payload());
  template <class M>
    requires std::is_base_of_v<google::protobuf::Message, M>
  void Started(const M& message) {
    Started(Payload::Message(message));
  }

  // Opens this side's end of the stream. Callee: only after `Started`.
  // `options` set this side's receive queue; without them the callee keeps
  // the queue its caller asked for (`ContextOptions::callee_stream`) and the
  // caller gets the defaults. Throws UsageError when misused, or the
  // recorded ContextCancelled when the context was cancelled.
  MsgStream OpenStream();
  MsgStream OpenStream(StreamOptions options);

  // Caller: waits for the callee's result, discarding stream items not
  // read (tractor's `result()`). Throws the remote error, including the
  // `ContextCancelled` of a cancel someone else asked for (the peer itself,
  // a third actor's `CancelActor`, or this actor's `Portal::CancelActor`).
  // After a cancel this side asked for (`Cancel()`, then `cancel_acked()`)
  // returns null, and `maybe_error()` holds that `ContextCancelled`, whose
  // `canceller()` is this actor: what tractor's `result()` returns.
  Payload Result();

  // The error the dialog ended with, or null while it has none (tractor's
  // `maybe_error`): the remote error raised by `Result`, or the
  // `ContextCancelled` a cancel this side asked for ended it with.
  std::exception_ptr maybe_error() const;

  // Restricts the payloads this side sends in Started (checked before
  // sending: MsgTypeError here) and accepts in Started, Yield and Return
  // (checked on receipt: MsgTypeError here, recorded as the dialog's error).
  void SetPayloadSpec(PayloadSpec spec);

  // Cancels the dialog's remote task (caller: out of band through
  // `CancelTask`; callee: its own task). Does not throw.
  void Cancel();

  const std::string& cid() const;
  bool is_caller() const;
  bool cancel_called() const;
  // True when this side asked for the cancel and the peer confirmed it.
  bool cancel_acked() const;
  // The actor recorded as having caused the cancel/error
  // (docs/behaviour.md#cancellation-attribution).
  v1::Aid canceller() const;
  const v1::Aid& peer() const;

 private:
  MsgStream OpenStreamImpl(std::optional<StreamOptions> requested);

  std::shared_ptr<internal::DialogSession> state_;
};

// This side's end of a context's stream. Bound to the context's task;
// after `Subscribe`, its subscriptions may be used from other tasks of the
// actor. Copies share the stream (and its broadcast).
class MsgStream {
 public:
  class Subscription;

  // `msg_buffer_size` is the window of the broadcast made by `Subscribe`.
  explicit MsgStream(std::shared_ptr<internal::DialogSession> state,
                     size_t msg_buffer_size = StreamOptions().msg_buffer_size);

  // Sends one item; blocks while the peer's queue is full (backpressure).
  // Throws the peer's error if one arrived, TransportClosed if the
  // connection broke, UsageError after `Close`.
  void Send(const Payload& value);
  template <class M>
    requires std::is_base_of_v<google::protobuf::Message, M>
  void Send(const M& message) {
    Send(Payload::Message(message));
  }

  // Returns the next item, or nullopt at the end of the stream (the peer
  // closed its side). Throws the peer's error. After `Subscribe`, this is a
  // broadcast consumer too and may also throw `Lagged`.
  std::optional<Payload> Receive();

  // Returns a new local consumer of this stream (tractor's
  // `stream.subscribe()`): it sees every item received from now on, in
  // order; each item is received once from the peer and fanned out to this
  // stream's own `Receive` and every subscription, with a window of the
  // stream's `msg_buffer_size` items. A consumer more than the window
  // behind gets `Lagged` (or, with `raise_on_lag` false, a logged warning)
  // and resumes at the oldest retained item. The first call permanently
  // makes `Receive` a consumer of the broadcast; a `Receive` already
  // blocked when it happens is not part of it. End of stream and the peer's
  // errors reach every consumer.
  Subscription Subscribe(bool raise_on_lag = true);

  // Closes this side: sends `Stop`. Idempotent.
  void Close();
  bool closed() const;

  // Range-for over received items.
  class iterator {
   public:
    iterator() = default;
    explicit iterator(MsgStream* s) : stream_(s) { ++*this; }
    const Payload& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = stream_->Receive();
      if (!value_) stream_ = nullptr;
      return *this;
    }
    bool operator!=(const iterator& o) const { return stream_ != o.stream_; }

   private:
    MsgStream* stream_ = nullptr;
    std::optional<Payload> value_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  struct Fanout;
  // Receives from the dialog itself, bypassing the broadcast.
  std::optional<Payload> ReceiveRaw();

  std::shared_ptr<internal::DialogSession> state_;
  std::shared_ptr<Fanout> fanout_;  // shared by copies; null for the source
};

// One local consumer of a stream's broadcast, made by
// `MsgStream::Subscribe`. Move-only; destroying it unsubscribes it (the
// stream and the other consumers go on). Bound to one task at a time; keeps
// the stream's state alive.
class MsgStream::Subscription {
 public:
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&&) noexcept = default;

  // Returns the next item received after this subscription was made, or
  // nullopt at the end of the stream. A checkpoint. Throws `Lagged` (then
  // resumes at the oldest retained item), the peer's error, UsageError
  // after `Close`.
  std::optional<Payload> Receive() { return receiver_.Receive(); }

  // Sends one item on the stream (as `MsgStream::Send`).
  void Send(const Payload& value) { stream_.Send(value); }
  template <class M>
    requires std::is_base_of_v<google::protobuf::Message, M>
  void Send(const M& message) {
    stream_.Send(Payload::Message(message));
  }

  // Unsubscribes this consumer only. Idempotent.
  void Close() { receiver_.Close(); }
  bool closed() const { return receiver_.closed(); }

  // Range-for over received items.
  BroadcastReceiver::iterator begin() { return receiver_.begin(); }
  BroadcastReceiver::iterator end() { return receiver_.end(); }

 private:
  friend class MsgStream;
  Subscription(MsgStream stream, BroadcastReceiver receiver)
      : stream_(std::move(stream)), receiver_(std::move(receiver)) {}

  MsgStream stream_;
  BroadcastReceiver receiver_;
};

// Returns the context of the dialog the calling task runs in, or nullopt
// (tractor's `current_ipc_ctx()`): inside an exported function, the dialog
// that called it (a plain call too); inside an `OpenContext` body, the
// context it opened; in tasks a `TaskGroup` started there, the same. The
// innermost dialog wins when they nest.
std::optional<Context> CurrentContext();

}  // namespace tractor

#endif  // TRACTOR_ACTOR_CONTEXT_H_
