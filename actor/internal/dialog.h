// SPDX-License-Identifier: AGPL-3.0-or-later
// One dialog's transport: a `tractor.v1.Actor/Open` gRPC stream seen as a
// bounded inbox and an outbox (docs/design.md#wire-contract,
// docs/design.md#flow-control; docs/architecture.md walks a stream item).
//
// The stream's operations complete on a completion queue of the dialog's
// own (actor/internal/dialog_transport.h), driven by whoever waits on the
// dialog: a task blocked in `Receive` (or in `Send`, on a full queue) takes
// the completions itself, so the message it waits for wakes no other thread
// first. When no task waits while operations are in flight (the task is
// busy elsewhere, or has finished with the dialog), a pooled thread drives
// the queue: at once after the dialog is closed, and after `kAwayAfter`
// otherwise, so that an arriving `Error` still interrupts a busy task.
//
// Reads run ahead of the task, except after a `Receive` that drove the
// queue for the one message it took: the next read then starts with the
// task's next `Send` or `Receive` (or after `kAwayAfter`), so that gRPC's
// window update for it leaves with the next send's data instead of in a
// packet of its own (see `OnReadDone`).
//
// At most one read and one write are outstanding, and the stream is
// released (server `Finish`, client `Finish`) only when no thread is between
// deciding on an operation and starting it, so `OnDone` is always last.
// Completion handlers never block and never run user code: they move
// messages between the stream and the queues and wake waiters.
#ifndef TRACTOR_ACTOR_INTERNAL_DIALOG_H_
#define TRACTOR_ACTOR_INTERNAL_DIALOG_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "actor/internal/dialog_transport.h"
#include "actor/internal/outgoing.h"
#include "actor/internal/scope.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// Default receive queue capacity, in messages (tractor's msg_buffer_size).
inline constexpr size_t kDefaultQueueCapacity = 64;

// Thread-safe. Shared by the user task that owns the dialog and by the gRPC
// reactor, which holds a reference until its OnDone.
class Dialog : public std::enable_shared_from_this<Dialog> {
 public:
  // How long operations may wait in the queue, with no task waiting on the
  // dialog, before a pooled thread drives it.
  static constexpr absl::Duration kAwayAfter = absl::Milliseconds(5);
  // How long the closing thread drives the queue itself before a pooled
  // thread takes over.
  static constexpr absl::Duration kLinger = absl::Microseconds(500);

  // Opens a new dialog as the caller on `channel`, its initial metadata
  // sent at once. (A dialog whose first message leaves with the metadata,
  // in one flush, is built by `Prepare` and started by `Open`.)
  static std::shared_ptr<Dialog> Connect(
      const std::shared_ptr<grpc::Channel>& channel);
  // Builds a caller's dialog ahead of its open: its completion queue, its
  // `ClientContext` and its call through `method`, with nothing sent and
  // nothing in flight (a portal keeps one, actor/internal/portal_state.h).
  // `Open` starts it; dropped unopened, it is destroyed without a packet.
  static std::shared_ptr<Dialog> Prepare(
      std::shared_ptr<const OpenMethod> method);
  // Opens a dialog built by `Prepare`, sending `first` with the call's
  // initial metadata in one flush. Once per prepared
  // dialog: a second open, or one of a dialog not built by `Prepare`,
  // throws UsageError.
  static std::shared_ptr<Dialog> Open(std::shared_ptr<Dialog> prepared,
                                      const v1::Msg& first);

  Dialog();
  ~Dialog();

  // Queues `msg`; blocks (a checkpoint) while too many writes are pending,
  // which is how HTTP/2 flow control reaches a fast sender. Throws
  // TransportClosed when the stream is broken.
  void Send(const v1::Msg& msg) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends `Msg{yielded: Yield{payload}}` as `Send` does, encoded from the
  // payload alone (actor/internal/outgoing.h).
  void SendItem(const v1::Payload& payload) ABSL_LOCKS_EXCLUDED(mu_);
  // How a message leaves, for SendNoWait.
  enum class Flush {
    kNow,     // flushed to the socket at once
    kCorked,  // held back until the next message (or the close), so
              // that both leave in one flush
  };
  // Queues `msg` without blocking (control messages). Returns false if the
  // stream is already broken or this side already wrote its last message.
  bool SendNoWait(const v1::Msg& msg, Flush flush = Flush::kNow)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Queues `msg` as this side's last message and closes the dialog: on the
  // server, the message and the RPC's status leave in one operation.
  // Returns false if the stream is already broken.
  bool SendAndClose(const v1::Msg& msg,
                    const grpc::Status& status = grpc::Status::OK)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Returns the next message, blocking until one arrives (a checkpoint).
  // Returns nullopt when the stream ended (the peer finished, vanished or the
  // connection broke) and nothing is left, or when `until` passed (then
  // `*timed_out` is set).
  std::optional<v1::Msg> Receive(absl::Time until = absl::InfiniteFuture(),
                                 bool* timed_out = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns a queued message without blocking.
  std::optional<v1::Msg> TryReceive() ABSL_LOCKS_EXCLUDED(mu_);
  // Takes the dialog-ending `Error` out of the queue when it is the last
  // message there (nothing can follow it).
  std::optional<v1::Error> TakeFinalError() ABSL_LOCKS_EXCLUDED(mu_);

  // Sets the receive queue's capacity and overrun policy.
  void Configure(size_t capacity, v1::OverrunPolicy policy)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Strict backpressure (the `Credit` message): from now on this side
  // grants the peer `capacity` items beyond those its task has taken, and
  // grants more each time the task has taken half a queue. `announce`
  // sends the first grant now; without it the peer already assumes one of
  // `capacity` (the callee's queue, announced in `Start`).
  void GrantCredits(bool announce) ABSL_LOCKS_EXCLUDED(mu_);
  // Bounds this side's stream items by the peer's grants, starting with
  // `initial` allowed (the callee's queue capacity, for the caller that
  // asked for it in `Start`). A `Credit` arriving turns it on as well.
  void LimitByCredits(uint64_t initial) ABSL_LOCKS_EXCLUDED(mu_);

  // Called (on a gRPC thread, must not block) for every arriving message
  // after it was queued; used to interrupt a task when an Error arrives.
  void SetArrivalHook(std::function<void(const v1::Msg&)> hook)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Called (on a gRPC thread, must not block) when a `Yield` was dropped
  // under OVERRUN_POLICY_ERROR.
  void SetOverrunHook(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);
  // Called once when the transport breaks (peer gone, RPC cancelled).
  void SetBrokenHook(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);
  // Server side, when an arriving message does not decode (at once when
  // one already did): `reply(why)` makes the dialog's terminal message,
  // which is queued and the dialog closed in the same step that ends its
  // reads, so a task that sees its reads end finds the dialog already
  // closed with that message queued (it can never close it first, losing
  // the message). `reply` runs with the dialog's lock held: it must not
  // call into the dialog. `then` runs afterwards without the lock (on a
  // gRPC thread, must not block). Called once.
  void SetUndecodableHook(
      std::function<v1::Msg(const std::string& why)> reply,
      std::function<void()> then) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends the dialog once queued writes are flushed. `abort` cancels the RPC
  // (the peer sees it as cancelled). Idempotent.
  void Close(const grpc::Status& status = grpc::Status::OK, bool abort = false)
      ABSL_LOCKS_EXCLUDED(mu_);

  // True once the stream can carry nothing more in at least one direction
  // because it broke.
  bool broken() const ABSL_LOCKS_EXCLUDED(mu_);
  // Why an arriving message did not decode; empty when none failed.
  std::string undecodable() const ABSL_LOCKS_EXCLUDED(mu_);
  // Server side: true when the caller half-closed its side of the stream
  // (nothing more will arrive, and nothing failed to decode) while the RPC
  // goes on.
  bool peer_half_closed() const ABSL_LOCKS_EXCLUDED(mu_);
  // Messages received and not yet taken, and that queue's capacity.
  size_t RecvQueueDepth() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t RecvCapacity() const ABSL_LOCKS_EXCLUDED(mu_);
  // Messages queued to send and not yet written.
  size_t SendQueueDepth() const ABSL_LOCKS_EXCLUDED(mu_);
  // Dialogs of this process not yet destroyed, either side.
  static size_t LiveCount();
  // Dialogs of this process whose stream is open, either side: from the
  // caller's open (`Connect`, `Open`) or the callee's arrival (`Arrived`)
  // until the RPC is over (`OnDone`). Dialogs built ahead of a stream
  // (`Prepare`, `AdoptServerTransport`) are not counted until then.
  static size_t OpenCount();
  // Stream items this process dropped under OVERRUN_POLICY_ERROR.
  static uint64_t OverrunCount();

  // Human-readable reason the stream ended, for TransportClosed.
  std::string EndReason() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits (bounded) for the RPC to complete and returns its status text.
  std::string WaitDoneReason(absl::Duration bound) ABSL_LOCKS_EXCLUDED(mu_);

  // Server side: reads the first message, driving the queue on the calling
  // thread until it is queued or the stream ended without one. Reading then
  // pauses until ResumeReads: a plain function reads nothing after `Start`.
  // Gives up at `until`.
  void AwaitFirst(absl::Time until = absl::InfiniteFuture())
      ABSL_LOCKS_EXCLUDED(mu_);
  // Reads on after the first message (server side), from the task's first
  // operation on the dialog or after `kAwayAfter`, whichever comes first.
  void ResumeReads() ABSL_LOCKS_EXCLUDED(mu_);
  // The peer accepts `Batch` messages: Yields queued behind a busy write
  // then leave as one message.
  void SetPeerAcceptsBatches(bool ok) ABSL_LOCKS_EXCLUDED(mu_);

  // Server side: gives this dialog the transport of a call to be requested
  // (by `DialogAcceptor`); the dialog owns it.
  CqServerTransport* AdoptServerTransport() ABSL_LOCKS_EXCLUDED(mu_);
  // Server side: the requested call arrived (counted as open, OpenCount).
  void Arrived() ABSL_LOCKS_EXCLUDED(mu_);
  CqTransport* cq_transport() { return owned_.get(); }
  // Called periodically by the watcher: drives the queue from a pooled
  // thread when operations waited `kAwayAfter` with nobody driving.
  void CheckAway(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // Gives the dialog a transport it does not own (a test's fake).
  void Attach(DialogTransport* transport) ABSL_LOCKS_EXCLUDED(mu_);

  // Transport-facing (called by whoever drives the queue).
  void OnReadDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_);
  // The message read did not decode. Reading stops; the callee answers
  // with its undecodable hook's message (`SetUndecodableHook`), the caller
  // cancels the RPC.
  void OnReadUndecodable(std::string why) ABSL_LOCKS_EXCLUDED(mu_);
  void OnWriteDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_);
  void OnCancel() ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Counts this dialog's stream as open, once (OpenCount); and no longer.
  void CountOpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UncountOpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Pump() ABSL_LOCKS_EXCLUDED(mu_);
  bool WantReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  class Waiting;
  class Receiving;
  // Who drives the completion queue now.
  enum class Driver { kNone, kTask, kBackground };
  // A wait on `cv` that drives the queue when nobody else does.
  class DriveBlocker final : public Blocker {
   public:
    DriveBlocker(Dialog* d, CondVar* cv) : d_(d), cv_(cv) {}
    void Block(Mutex& mu, absl::Time deadline) override
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
    void Wake() override;

   private:
    Dialog* d_;
    CondVar* cv_;
  };
  // Drives the queue once, on this thread, as its driver (nobody else
  // drives it now); `mu_` is released meanwhile.
  void DriveOnceLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a wait that may have driven the queue: hands it to a pooled
  // thread when the dialog is closed and operations remain.
  void AfterWaitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartBackgroundLocked(bool writes_only = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After the close: drives the queue from a pooled thread until the RPC is
  // over (unless someone drives it already).
  void DriveToTheEnd() ABSL_LOCKS_EXCLUDED(mu_);
  // `SendAndClose`'s step under the lock: queues `bytes` (an encoded
  // message, `item` as in `Outgoing`) as the last message
  // (unless the dialog can send nothing more) and requests the close, which
  // the caller then drives (`DriveToTheEnd`). True when queued.
  bool QueueLastLocked(grpc::Slice bytes, bool item,
                       const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a send: drives the queue from a pooled thread while messages wait
  // behind a write in flight.
  void DriveQueuedWrites() ABSL_LOCKS_EXCLUDED(mu_);
  void DriveInBackground() ABSL_LOCKS_EXCLUDED(mu_);
  void SignalWaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    recv_cv_.SignalAll();
    send_cv_.SignalAll();
  }

  mutable Mutex mu_;
  // Receivers wait on `recv_cv_` (inbox, end of reads), senders on
  // `send_cv_` (queue space): a write completing wakes no receiver.
  CondVar recv_cv_;
  CondVar send_cv_;
  DriveBlocker recv_blocker_{this, &recv_cv_};
  DriveBlocker send_blocker_{this, &send_cv_};
  // The transport this dialog owns (reset first thing in the destructor: it
  // drains its queue, whose operations use the buffers below).
  std::unique_ptr<CqTransport> owned_;
  Driver driver_ ABSL_GUARDED_BY(mu_) = Driver::kNone;
  // The background driver was started for queued writes only: it leaves
  // once they are written.
  bool writes_only_ ABSL_GUARDED_BY(mu_) = false;
  // The background driver is asked to hand the queue to a waiting task.
  bool task_wants_queue_ ABSL_GUARDED_BY(mu_) = false;
  // A closing thread is about to drive the queue itself for up to `kLinger`
  // (`DriveToTheEnd`): the release it posts starts no pooled driver.
  bool closer_lingers_ ABSL_GUARDED_BY(mu_) = false;
  // When the queue was last left without a driver.
  absl::Time undriven_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  DialogTransport* transport_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<v1::Msg> inbox_ ABSL_GUARDED_BY(mu_);
  struct Outgoing {
    grpc::Slice bytes;  // the message, encoded (actor/internal/outgoing.h)
    Flush flush;
    bool item;  // a `Yield` and nothing else: it may leave in a `Batch`
  };
  // Queues an encoded message for writing.
  void Push(grpc::Slice bytes, bool item, Flush flush)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `Send`'s wait for queue space, then the push.
  void SendEncoded(grpc::Slice bytes, bool item) ABSL_LOCKS_EXCLUDED(mu_);
  // `SendNoWait`'s push.
  bool SendEncodedNoWait(grpc::Slice bytes, bool item, Flush flush)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Counts a stream item the task took and grants the peer more when half
  // a queue was taken since the last grant (strict backpressure only).
  void TookLocked(const v1::Msg& msg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a `Credit` of `taken_ + capacity_`.
  void GrantLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::deque<Outgoing> outbox_ ABSL_GUARDED_BY(mu_);
  size_t outbox_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t capacity_ ABSL_GUARDED_BY(mu_) = kDefaultQueueCapacity;
  // Strict backpressure, receiving side: items the task took, and the
  // total granted so far.
  bool grants_credits_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t granted_ ABSL_GUARDED_BY(mu_) = 0;
  // Strict backpressure, sending side: items sent, and the peer's grant.
  bool limited_by_credits_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t items_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t allowed_total_ ABSL_GUARDED_BY(mu_) = 0;
  v1::OverrunPolicy policy_ ABSL_GUARDED_BY(mu_) =
      v1::OVERRUN_POLICY_BACKPRESSURE;
  bool read_busy_ ABSL_GUARDED_BY(mu_) = false;
  // The next read waits for the task's next operation on the dialog (or
  // for the watcher, after `kAwayAfter`): see `OnReadDone`.
  bool read_deferred_ ABSL_GUARDED_BY(mu_) = false;
  // A task waits in `Receive` (and may drive the queue there).
  bool task_receiving_ ABSL_GUARDED_BY(mu_) = false;
  // Ends a deferral of the next read; true when `Pump` has a read to start.
  bool UndeferReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!read_deferred_) return false;
    read_deferred_ = false;
    return true;
  }
  bool write_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool last_queued_ ABSL_GUARDED_BY(mu_) = false;
  bool client_ ABSL_GUARDED_BY(mu_) = false;
  // Built by `Prepare` and not opened yet.
  bool prepared_ ABSL_GUARDED_BY(mu_) = false;
  bool batch_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool pause_after_first_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool wrote_once_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  // Counted in OpenCount (its stream opened and is not over).
  bool counted_open_ ABSL_GUARDED_BY(mu_) = false;
  int in_call_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status close_status_ ABSL_GUARDED_BY(mu_);
  grpc::Status done_status_ ABSL_GUARDED_BY(mu_);
  std::string end_reason_ ABSL_GUARDED_BY(mu_);
  std::string undecodable_ ABSL_GUARDED_BY(mu_);
  std::function<void(const v1::Msg&)> arrival_hook_ ABSL_GUARDED_BY(mu_);
  std::function<void()> overrun_hook_ ABSL_GUARDED_BY(mu_);
  std::function<void()> broken_hook_ ABSL_GUARDED_BY(mu_);
  std::function<v1::Msg(const std::string&)> undecodable_reply_
      ABSL_GUARDED_BY(mu_);
  std::function<void()> undecodable_then_
      ABSL_GUARDED_BY(mu_);
  // The messages of the read and of the write in flight (at most one of
  // each): gRPC fills `read_buf_` and reads `write_buf_` without `mu_`, so
  // they belong to whoever the read (`read_busy_`) or the write
  // (`write_busy_`) state says owns them, not to `mu_`.
  v1::Msg read_buf_;
  grpc::ByteBuffer write_buf_;
  // The items of the batch being written, gathered from the outbox and
  // encoded into `write_buf_` by `Pump`; owned, like `write_buf_`, by the
  // write state (the vector keeps its storage between batches).
  std::vector<grpc::Slice> batch_items_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_DIALOG_H_
