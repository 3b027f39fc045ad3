// SPDX-License-Identifier: AGPL-3.0-or-later
// A dialog as its task sees it: opening, sending, receiving, flow control
// and closing. Who drives the completion queue is in dialog_driver.cc; the
// stream's operations and their completions in dialog_io.cc.
#include "actor/internal/dialog.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/wire.h"
#include "discovery/log_level.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// Writes queued beyond either bound make `Send` block (one message is
// always accepted into an empty queue). A fast sender's items queue behind
// the write in flight and leave as one `Batch` (up to 256 items, 256 KiB,
// dialog_io.cc), so the message bound is also the largest batch: one write
// for 256 small items, where a bound of 64 needed four
// (docs/architecture.md, walk 2).
constexpr size_t kMaxPendingWrites = 256;
constexpr size_t kMaxPendingBytes = 1 << 20;

std::atomic<size_t> g_live_dialogs{0};
std::atomic<size_t> g_open_dialogs{0};

}  // namespace

size_t Dialog::LiveCount() { return g_live_dialogs.load(); }
size_t Dialog::OpenCount() { return g_open_dialogs.load(); }

void Dialog::CountOpenLocked() {
  if (counted_open_) return;
  counted_open_ = true;
  g_open_dialogs.fetch_add(1);
}

void Dialog::UncountOpenLocked() {
  if (!counted_open_) return;
  counted_open_ = false;
  g_open_dialogs.fetch_sub(1);
}

void Dialog::Arrived() {
  MutexLock lk(&mu_);
  CountOpenLocked();
}

size_t Dialog::RecvQueueDepth() const {
  MutexLock lk(&mu_);
  return inbox_.size();
}

size_t Dialog::RecvCapacity() const {
  MutexLock lk(&mu_);
  return capacity_;
}

size_t Dialog::SendQueueDepth() const {
  MutexLock lk(&mu_);
  return outbox_.size();
}

std::shared_ptr<Dialog> Dialog::Connect(
    const std::shared_ptr<grpc::Channel>& channel) {
  auto dialog = std::make_shared<Dialog>();
  dialog->owned_ = std::make_unique<CqClientTransport>(
      dialog.get(), std::make_shared<const OpenMethod>(channel),
      /*cork=*/false);
  {
    MutexLock lk(&dialog->mu_);
    dialog->client_ = true;
    dialog->undriven_since_ = absl::Now();
    dialog->transport_ = dialog->owned_.get();
    // The initial metadata is a write in flight (its completion comes as
    // OnWriteDone).
    dialog->write_busy_ = true;
    dialog->CountOpenLocked();
  }
  TRACTOR_LOG(transport) << "dialog stream " << dialog.get()
                         << " opened (caller side)";
  DialogWatcher::Get().Add(dialog);
  dialog->Pump();
  return dialog;
}

std::shared_ptr<Dialog> Dialog::Prepare(
    std::shared_ptr<const OpenMethod> method) {
  auto dialog = std::make_shared<Dialog>();
  // Corked: the initial metadata waits for the first message, so building
  // the call sends nothing.
  dialog->owned_ = std::make_unique<CqClientTransport>(
      dialog.get(), std::move(method), /*cork=*/true);
  MutexLock lk(&dialog->mu_);
  dialog->client_ = true;
  dialog->prepared_ = true;
  return dialog;
}

std::shared_ptr<Dialog> Dialog::Open(std::shared_ptr<Dialog> prepared,
                                     const v1::Msg& first) {
  Dialog* const d = prepared.get();
  if (d == nullptr) throw UsageError("Dialog::Open without a dialog");
  grpc::Slice bytes = EncodeMessage(first);
  const bool item = IsEncodedItem(bytes);
  {
    MutexLock lk(&d->mu_);
    if (!d->prepared_) {
      throw UsageError(
          "Dialog::Open of a dialog not built by Dialog::Prepare, or opened "
          "already");
    }
    d->prepared_ = false;
    d->CountOpenLocked();
    d->undriven_since_ = absl::Now();
    d->transport_ = d->owned_.get();
    d->Push(std::move(bytes), item, Flush::kNow);
  }
  TRACTOR_LOG(transport) << "dialog stream " << d << " opened (caller side)";
  DialogWatcher::Get().Add(prepared);
  d->Pump();
  return prepared;
}

CqServerTransport* Dialog::AdoptServerTransport() {
  auto t = std::make_unique<CqServerTransport>(this);
  CqServerTransport* raw = t.get();
  owned_ = std::move(t);
  Attach(raw);
  {
    MutexLock lk(&mu_);
    undriven_since_ = absl::Now();
  }
  TRACTOR_LOG(transport) << "dialog stream " << this
                         << " accepted (callee side)";
  // Watched once its call arrives (DialogAcceptor::Loop): until then it is
  // a request the acceptor holds, with nothing of its own in flight, and
  // an idle actor's watcher would wake every `kAwayAfter` for it.
  return raw;
}

Dialog::Dialog() { g_live_dialogs.fetch_add(1); }

Dialog::~Dialog() {
  g_live_dialogs.fetch_sub(1);
  {
    MutexLock lk(&mu_);  // nobody else holds the dialog: for the analysis
    UncountOpenLocked();
  }
  // The transport drains its queue first: its operations use the buffers.
  owned_.reset();
}

// Marks a wait on the dialog; on the way out (returned or thrown), hands
// the queue to a pooled thread if the dialog is closed with operations left.
class Dialog::Waiting {
 public:
  explicit Waiting(Dialog* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu_) : d_(d) {}
  ~Waiting() ABSL_NO_THREAD_SAFETY_ANALYSIS { d_->AfterWaitLocked(); }

 private:
  Dialog* d_;
};

// Marks a task waiting in `Receive` (see `OnReadDone`), until the wait
// returns or throws (with `mu_` held either way).
class Dialog::Receiving {
 public:
  explicit Receiving(Dialog* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(d->mu_) : d_(d) {
    d_->task_receiving_ = true;
  }
  ~Receiving() ABSL_NO_THREAD_SAFETY_ANALYSIS { d_->task_receiving_ = false; }

 private:
  Dialog* d_;
};

void Dialog::AwaitFirst(absl::Time until) {
  {
    MutexLock lk(&mu_);
    pause_after_first_ = true;
  }
  Pump();
  MutexLock lk(&mu_);
  Waiting waiting(this);
  // Not a task: nothing cancels this wait but the stream ending.
  Wait(
      recv_cv_, mu_,
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || reads_ended_ || broken_;
      },
      until, &recv_blocker_);
}

void Dialog::Attach(DialogTransport* transport) {
  MutexLock lk(&mu_);
  transport_ = transport;
}

void Dialog::Push(grpc::Slice bytes, bool item, Flush flush) {
  outbox_bytes_ += bytes.size();
  outbox_.push_back({std::move(bytes), flush, item});
}

void Dialog::GrantCredits(bool announce) {
  {
    MutexLock lk(&mu_);
    grants_credits_ = true;
    if (announce) {
      GrantLocked();
    } else {
      granted_ = taken_ + capacity_;
    }
  }
  Pump();
}

void Dialog::LimitByCredits(uint64_t initial) {
  MutexLock lk(&mu_);
  limited_by_credits_ = true;
  allowed_total_ = std::max(allowed_total_, initial);
}

void Dialog::GrantLocked() {
  if (broken_ || write_failed_ || close_requested_ || last_queued_) return;
  granted_ = taken_ + capacity_;
  v1::Msg credit;
  credit.mutable_credit()->set_allowed_total(granted_);
  Push(EncodeMessage(credit), /*item=*/false, Flush::kNow);
}

void Dialog::TookLocked(const v1::Msg& msg) {
  if (!grants_credits_ || !msg.has_yielded()) return;
  ++taken_;
  if (taken_ + capacity_ >= granted_ + std::max<size_t>(1, capacity_ / 2)) {
    GrantLocked();
  }
}

void Dialog::SetPeerAcceptsBatches(bool ok) {
  MutexLock lk(&mu_);
  batch_ok_ = ok;
}

void Dialog::ResumeReads() {
  {
    MutexLock lk(&mu_);
    pause_after_first_ = false;
    reads_paused_ = false;
    // The next read starts with the task's first operation on the dialog
    // (usually `Started`, whose data then carries the read's window
    // update), or after `kAwayAfter` (CheckAway).
    read_deferred_ = true;
  }
  Pump();
}

void Dialog::Send(const v1::Msg& msg) {
  grpc::Slice bytes = EncodeMessage(msg);
  const bool item = IsEncodedItem(bytes);
  SendEncoded(std::move(bytes), item);
}

void Dialog::SendItem(const v1::Payload& payload) {
  SendEncoded(EncodeItem(payload), /*item=*/true);
}

void Dialog::SendEncoded(grpc::Slice bytes, bool item) {
  {
    MutexLock lk(&mu_);
    Waiting waiting(this);
    Wait(
        send_cv_, mu_,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          if (broken_ || write_failed_ || close_requested_ || last_queued_ ||
              done_ || (client_ && reads_ended_)) {
            return true;
          }
          if (item && limited_by_credits_ && items_sent_ >= allowed_total_) {
            return false;
          }
          return outbox_.empty() || (outbox_.size() < kMaxPendingWrites &&
                                     outbox_bytes_ < kMaxPendingBytes);
        },
        absl::InfiniteFuture(), &send_blocker_);
    if (broken_ || write_failed_ || close_requested_ || last_queued_ ||
        done_ || (client_ && reads_ended_)) {
      std::string why = end_reason_;
      if (why.empty() && done_) {
        why = absl::StrCat("the RPC ended (status ", done_status_.error_code(),
                           ": ", done_status_.error_message(), ")");
      } else if (why.empty() && client_ && reads_ended_) {
        why = "the callee's side of the stream ended";
      }
      throw TransportClosed(
          absl::StrCat("cannot send: ", why.empty() ? "dialog closed" : why));
    }
    if (item) ++items_sent_;
    Push(std::move(bytes), item, Flush::kNow);
    UndeferReadLocked();
  }
  Pump();
  DriveQueuedWrites();
}

bool Dialog::SendNoWait(const v1::Msg& msg, Flush flush) {
  grpc::Slice bytes = EncodeMessage(msg);
  const bool item = IsEncodedItem(bytes);
  return SendEncodedNoWait(std::move(bytes), item, flush);
}

bool Dialog::SendEncodedNoWait(grpc::Slice bytes, bool item, Flush flush) {
  {
    MutexLock lk(&mu_);
    if (broken_ || write_failed_ || released_ || last_queued_) return false;
    Push(std::move(bytes), item, flush);
    UndeferReadLocked();
  }
  Pump();
  DriveQueuedWrites();
  return true;
}

bool Dialog::QueueLastLocked(grpc::Slice bytes, bool item,
                             const grpc::Status& status) {
  bool queued = false;
  if (!(broken_ || write_failed_ || released_ || last_queued_ ||
        close_requested_)) {
    // Never marked "last" for gRPC: a server write marked so is held
    // until Finish. The message leaves with WriteAndFinish, or plainly
    // before the release.
    last_queued_ = true;
    Push(std::move(bytes), item, Flush::kNow);
    queued = true;
  }
  if (!close_requested_) {
    close_requested_ = true;
    close_status_ = status;
  }
  // The caller drives the close itself next (`DriveToTheEnd`).
  closer_lingers_ = true;
  return queued;
}

bool Dialog::SendAndClose(const v1::Msg& msg, const grpc::Status& status) {
  grpc::Slice bytes = EncodeMessage(msg);
  const bool item = IsEncodedItem(bytes);
  bool queued;
  {
    MutexLock lk(&mu_);
    queued = QueueLastLocked(std::move(bytes), item, status);
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  Pump();
  DriveToTheEnd();
  return queued;
}

std::optional<v1::Msg> Dialog::Receive(absl::Time until, bool* timed_out) {
  std::optional<v1::Msg> out;
  bool pump;
  bool undeferred;
  {
    MutexLock lk(&mu_);
    undeferred = inbox_.empty() && UndeferReadLocked();
  }
  if (undeferred) Pump();
  {
    MutexLock lk(&mu_);
    Waiting waiting(this);
    Receiving receiving(this);
    bool ok = Wait(
        recv_cv_, mu_,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !inbox_.empty() || reads_ended_ || broken_;
        },
        until, &recv_blocker_);
    if (timed_out) *timed_out = !ok;
    if (!ok || inbox_.empty()) return std::nullopt;
    out = std::move(inbox_.front());
    inbox_.pop_front();
    TookLocked(*out);
    // With a read in flight, nothing to write and no close, `Pump` has
    // nothing to start: skip its lock round.
    pump = !read_busy_ || !outbox_.empty() || close_requested_;
  }
  if (pump) Pump();
  return out;
}

std::optional<v1::Error> Dialog::TakeFinalError() {
  MutexLock lk(&mu_);
  if (inbox_.empty()) return std::nullopt;
  v1::Msg& last = inbox_.back();
  if (!last.has_error() ||
      ErrorKindOf(last.error()) == ErrorKind::kStreamOverrun) {
    return std::nullopt;
  }
  v1::Error error = std::move(*last.mutable_error());
  inbox_.pop_back();
  return error;
}

std::optional<v1::Msg> Dialog::TryReceive() {
  std::optional<v1::Msg> out;
  bool pump;
  {
    MutexLock lk(&mu_);
    if (inbox_.empty()) {
      // Nothing taken: a deferred read starts now.
      pump = UndeferReadLocked();
    } else {
      out = std::move(inbox_.front());
      inbox_.pop_front();
      TookLocked(*out);
      // With a read in flight, nothing to write and no close, `Pump` has
      // nothing to start: skip its lock round.
      pump = !read_busy_ || !outbox_.empty() || close_requested_;
    }
  }
  if (pump) Pump();
  return out;
}

void Dialog::Configure(size_t capacity, v1::OverrunPolicy policy) {
  {
    MutexLock lk(&mu_);
    capacity_ = capacity == 0 ? kDefaultQueueCapacity : capacity;
    policy_ = policy;
  }
  Pump();
}

void Dialog::SetArrivalHook(std::function<void(const v1::Msg&)> hook) {
  MutexLock lk(&mu_);
  arrival_hook_ = std::move(hook);
}

void Dialog::SetOverrunHook(std::function<void()> hook) {
  MutexLock lk(&mu_);
  overrun_hook_ = std::move(hook);
}

void Dialog::SetBrokenHook(std::function<void()> hook) {
  std::function<void()> fire;
  {
    MutexLock lk(&mu_);
    broken_hook_ = std::move(hook);
    if (broken_) fire = broken_hook_;
  }
  if (fire) fire();
}

void Dialog::Close(const grpc::Status& status, bool abort) {
  {
    MutexLock lk(&mu_);
    if (close_requested_) {
      if (!abort || abort_) return;
    }
    close_requested_ = true;
    close_status_ = status;
    if (abort) {
      abort_ = true;
      outbox_.clear();
      outbox_bytes_ = 0;
    }
    closer_lingers_ = true;
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  Pump();
  DriveToTheEnd();
}

void Dialog::SetUndecodableHook(
    std::function<v1::Msg(const std::string& why)> reply,
    std::function<void()> then) {
  {
    MutexLock lk(&mu_);
    if (undecodable_.empty()) {
      undecodable_reply_ = std::move(reply);
      undecodable_then_ = std::move(then);
      return;
    }
    // A message did not decode before the hook was set.
    QueueLastLocked(EncodeMessage(reply(undecodable_)), /*item=*/false,
                    grpc::Status::OK);
  }
  if (then) then();
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  Pump();
  DriveToTheEnd();
}

bool Dialog::broken() const {
  MutexLock lk(&mu_);
  return broken_;
}

std::string Dialog::undecodable() const {
  MutexLock lk(&mu_);
  return undecodable_;
}

bool Dialog::peer_half_closed() const {
  MutexLock lk(&mu_);
  return half_closed_ && !broken_ && !done_;
}

std::string Dialog::EndReason() const {
  MutexLock lk(&mu_);
  if (!end_reason_.empty()) return end_reason_;
  if (done_ && !done_status_.ok()) {
    return absl::StrCat("RPC ended with ", done_status_.error_code(), ": ",
                        done_status_.error_message());
  }
  return "the stream ended before the dialog's result arrived (the peer "
         "finished without a Return or Error, or sent a message that does "
         "not parse)";
}

std::string Dialog::WaitDoneReason(absl::Duration bound) {
  Close(grpc::Status::OK, /*abort=*/false);
  {
    MutexLock lk(&mu_);
    auto shielded = NewScope(nullptr, absl::InfiniteFuture(), true);
    ScopeBinding bind(shielded);
    Waiting waiting(this);
    Wait(
        recv_cv_, mu_,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; },
        absl::Now() + bound, &recv_blocker_);
  }
  return EndReason();
}

}  // namespace tractor::internal
