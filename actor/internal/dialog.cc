// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/thread_pool.h"
#include "actor/internal/wire.h"
#include "discovery/log_level.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// Writes queued beyond either bound make `Send` block (one message is
// always accepted into an empty queue).
constexpr size_t kMaxPendingWrites = 64;
constexpr size_t kMaxPendingBytes = 1 << 20;
// Bounds of one Batch message.
constexpr int kMaxBatchItems = 64;
constexpr size_t kMaxBatchBytes = 256 * 1024;

std::atomic<size_t> g_live_dialogs{0};
std::atomic<uint64_t> g_overruns{0};

}  // namespace

size_t Dialog::LiveCount() { return g_live_dialogs.load(); }
uint64_t Dialog::OverrunCount() { return g_overruns.load(); }

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
    const std::shared_ptr<grpc::Channel>& channel,
    std::optional<v1::Msg> first) {
  auto dialog = std::make_shared<Dialog>();
  dialog->owned_ = std::make_unique<CqClientTransport>(
      dialog.get(), channel, /*cork=*/first.has_value());
  {
    MutexLock lk(&dialog->mu_);
    dialog->client_ = true;
    dialog->undriven_since_ = absl::Now();
    dialog->transport_ = dialog->owned_.get();
    if (first) {
      dialog->Push(*std::move(first), Flush::kNow);
    } else {
      // The initial metadata is a write in flight (its completion comes as
      // OnWriteDone).
      dialog->write_busy_ = true;
    }
  }
  TRACTOR_LOG(transport) << "dialog stream " << dialog.get()
                         << " opened (caller side)";
  DialogWatcher::Get().Add(dialog);
  dialog->Pump();
  return dialog;
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
  DialogWatcher::Get().Add(shared_from_this());
  return raw;
}

Dialog::Dialog() { g_live_dialogs.fetch_add(1); }

Dialog::~Dialog() {
  g_live_dialogs.fetch_sub(1);
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

void Dialog::DriveBlocker::Block(Mutex& mu, absl::Time deadline) {
  Dialog& d = *d_;
  d.mu_.AssertHeld();
  CqTransport* t = d.owned_.get();
  if (t != nullptr && !t->finished()) {
    if (d.driver_ == Driver::kNone) {
      d.DriveOnceLocked(deadline);
      return;
    }
    if (d.driver_ == Driver::kBackground && !d.task_wants_queue_ &&
        !d.close_requested_) {
      d.task_wants_queue_ = true;
      t->Kick();
    }
  }
  if (deadline == absl::InfiniteFuture()) {
    cv_->Wait(&d.mu_);
  } else {
    cv_->WaitWithDeadline(&d.mu_, deadline);
  }
}

void Dialog::DriveOnceLocked(absl::Time deadline) {
  driver_ = Driver::kTask;
  mu_.Unlock();
  owned_->DriveOnce(deadline);
  mu_.Lock();
  driver_ = Driver::kNone;
  undriven_since_ = absl::Now();
  // Another waiter (a sender while this one receives) may drive now.
  SignalWaitersLocked();
}

void Dialog::DriveBlocker::Wake() {
  // Called with mu_ held (by the cancel's waker).
  Dialog& d = *d_;
  d.mu_.AssertHeld();
  if (d.driver_ != Driver::kNone && d.owned_ && !d.owned_->finished()) {
    d.owned_->Kick();
  }
}

void Dialog::AfterWaitLocked() {
  if (close_requested_) StartBackgroundLocked();
}

void Dialog::StartBackgroundLocked(bool writes_only) {
  CqTransport* t = owned_.get();
  // A closed dialog is driven until its RPC is over (the thread holds it
  // alive); an open one only while something is in flight.
  if (t == nullptr || t->finished() || driver_ != Driver::kNone ||
      (!close_requested_ && !t->busy())) {
    return;
  }
  driver_ = Driver::kBackground;
  writes_only_ = writes_only;
  RunPooled([self = shared_from_this()] { self->DriveInBackground(); });
}

void Dialog::DriveInBackground() {
  CqTransport* t = owned_.get();
  for (;;) {
    {
      MutexLock lk(&mu_);
      // A waiting task takes the queue over; with nothing in flight there
      // is nothing to drive (the watcher comes back when there is).
      // A closed dialog is driven to its end here, even when a task asked
      // for the queue (it may have stopped waiting meanwhile).
      if ((task_wants_queue_ && !close_requested_) || t->finished() ||
          (!close_requested_ && !t->busy()) ||
          (writes_only_ && !close_requested_ && !write_busy_ &&
           outbox_.empty())) {
        writes_only_ = false;
        driver_ = Driver::kNone;
        task_wants_queue_ = false;
        undriven_since_ = absl::Now();
        SignalWaitersLocked();
        return;
      }
    }
    // Bounded: a closed dialog may have nothing in flight for a moment
    // (its last operation being posted), and then this looks again.
    t->DriveOnce(absl::Now() + absl::Milliseconds(100));
  }
}

void Dialog::CheckAway(absl::Time now) {
  MutexLock lk(&mu_);
  CqTransport* t = owned_.get();
  if (t == nullptr || driver_ != Driver::kNone || t->finished() || !t->busy()) {
    return;
  }
  if (close_requested_ || now - undriven_since_ >= kAwayAfter) {
    StartBackgroundLocked();
  }
}

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

void Dialog::Push(v1::Msg msg, Flush flush) {
  const size_t bytes = msg.ByteSizeLong();
  outbox_bytes_ += bytes;
  outbox_.push_back({std::move(msg), flush, bytes});
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
  Push(std::move(credit), Flush::kNow);
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
  }
  Pump();
}

bool Dialog::WantReadLocked() const {
  if (reads_paused_) return false;
  if (policy_ != v1::OVERRUN_POLICY_BACKPRESSURE) return true;
  return inbox_.size() < capacity_;
}

void Dialog::Pump() {
  for (;;) {
    bool do_read = false, do_write = false, do_release = false;
    bool do_write_finish = false;
    bool abort = false;
    grpc::WriteOptions options;
    grpc::Status status;
    DialogTransport* t;
    {
      MutexLock lk(&mu_);
      t = transport_;
      if (released_ || t == nullptr) return;
      // A corked message alone in the queue waits for the next one (or the
      // close) so that both leave in one flush.
      bool held = outbox_.size() == 1 && !close_requested_ &&
                  outbox_.front().flush == Flush::kCorked;
      if (!write_busy_ && !outbox_.empty() && !held && !broken_ &&
          !write_failed_ && !abort_) {
        Outgoing out = std::move(outbox_.front());
        outbox_.pop_front();
        outbox_bytes_ -= out.bytes;
        write_buf_ = std::move(out.msg);
        if (batch_ok_ && write_buf_.has_yielded() && !outbox_.empty() &&
            outbox_.front().msg.has_yielded()) {
          // Items queued behind a busy write leave together.
          v1::Batch batch;
          size_t bytes = out.bytes;
          *batch.add_items() = std::move(*write_buf_.mutable_yielded());
          while (!outbox_.empty() && outbox_.front().msg.has_yielded() &&
                 batch.items_size() < kMaxBatchItems &&
                 bytes < kMaxBatchBytes) {
            bytes += outbox_.front().bytes;
            outbox_bytes_ -= outbox_.front().bytes;
            *batch.add_items() =
                std::move(*outbox_.front().msg.mutable_yielded());
            outbox_.pop_front();
          }
          *write_buf_.mutable_batch() = std::move(batch);
        }
        // gRPC completes a corked write only once something flushes it; the
        // first write also carries the initial metadata, which must leave.
        if (!outbox_.empty() && wrote_once_) options.set_buffer_hint();
        write_busy_ = true;
        if (outbox_.empty() && close_requested_ && in_call_ == 0 &&
            t->CanWriteAndFinish()) {
          // The dialog's last message and the RPC's status leave together.
          released_ = true;
          do_write_finish = true;
          status = close_status_;
        } else {
          do_write = true;
        }
      }
      if (!do_write_finish && !read_busy_ && !reads_ended_ && !broken_ &&
          !close_requested_ && WantReadLocked()) {
        read_busy_ = true;
        do_read = true;
      }
      if (!do_read && !do_write && !do_write_finish && close_requested_ &&
          in_call_ == 0 &&
          (abort_ || broken_ || write_failed_ ||
           (!write_busy_ && outbox_.empty()))) {
        released_ = true;
        do_release = true;
        status = close_status_;
        abort = abort_;
      }
      if (!do_read && !do_write && !do_release && !do_write_finish) return;
      ++in_call_;
    }
    if (do_write_finish) t->WriteAndFinish(&write_buf_, options, status);
    if (do_write) t->Write(&write_buf_, options);
    if (do_read) t->Read(&read_buf_);
    if (do_release) t->Release(status, abort);
    {
      MutexLock lk(&mu_);
      --in_call_;
      // The dialog's last operations complete without its task: a pooled
      // thread drives them (unless someone drives already).
      if (do_release || do_write_finish) StartBackgroundLocked();
    }
    if (do_release || do_write_finish) return;
  }
}

void Dialog::Send(v1::Msg msg) {
  const bool item = msg.has_yielded();
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
    Push(std::move(msg), Flush::kNow);
  }
  Pump();
  DriveQueuedWrites();
}

bool Dialog::SendNoWait(v1::Msg msg, Flush flush) {
  {
    MutexLock lk(&mu_);
    if (broken_ || write_failed_ || released_ || last_queued_) return false;
    Push(std::move(msg), flush);
  }
  Pump();
  DriveQueuedWrites();
  return true;
}

void Dialog::DriveQueuedWrites() {
  // A message queued behind a write in flight leaves when that write's
  // completion is taken. Nobody may wait on this dialog soon (a sender
  // streams on), so a pooled thread drives the queue until the outbox is
  // empty; the messages that queue meanwhile leave together (a Batch).
  MutexLock lk(&mu_);
  if (!write_busy_ || outbox_.empty() || driver_ != Driver::kNone) return;
  StartBackgroundLocked(/*writes_only=*/true);
}

bool Dialog::SendAndClose(v1::Msg msg, const grpc::Status& status) {
  bool queued = false;
  {
    MutexLock lk(&mu_);
    if (!(broken_ || write_failed_ || released_ || last_queued_ ||
          close_requested_)) {
      // Never marked "last" for gRPC: a server write marked so is held
      // until Finish. The message leaves with WriteAndFinish, or plainly
      // before the release.
      last_queued_ = true;
      Push(std::move(msg), Flush::kNow);
      queued = true;
    }
    if (!close_requested_) {
      close_requested_ = true;
      close_status_ = status;
    }
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  Pump();
  DriveToTheEnd();
  return queued;
}

std::optional<v1::Msg> Dialog::Receive(absl::Time until, bool* timed_out) {
  std::optional<v1::Msg> out;
  {
    MutexLock lk(&mu_);
    Waiting waiting(this);
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
  }
  Pump();
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
  {
    MutexLock lk(&mu_);
    if (inbox_.empty()) return std::nullopt;
    out = std::move(inbox_.front());
    inbox_.pop_front();
    TookLocked(*out);
  }
  Pump();
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
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  Pump();
  DriveToTheEnd();
}

void Dialog::DriveToTheEnd() {
  // Closed: what is still in flight usually completes within microseconds
  // (the peer's status is on its way), so this thread drives the queue a
  // little while before it hands it to a pooled thread.
  MutexLock lk(&mu_);
  CqTransport* t = owned_.get();
  const absl::Time until = absl::Now() + kLinger;
  while (t != nullptr && driver_ == Driver::kNone && !t->finished() &&
         t->busy() && absl::Now() < until) {
    DriveOnceLocked(until);
  }
  StartBackgroundLocked();
}

void Dialog::SetUndecodableHook(
    std::function<void(const std::string&)> hook) {
  std::string why;
  {
    MutexLock lk(&mu_);
    undecodable_hook_ = hook;
    why = undecodable_;
  }
  if (!why.empty() && hook) hook(why);
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

void Dialog::OnReadDone(bool ok) {
  bool overrun = false;
  bool credited = false;
  uint64_t dropped = 0;  // items dropped under OVERRUN_POLICY_ERROR
  std::function<void(const v1::Msg&)> hook;
  v1::Msg arrived;
  {
    MutexLock lk(&mu_);
    read_busy_ = false;
    if (!ok) {
      reads_ended_ = true;
      // The server's read fails when the caller half-closes (or when the
      // RPC ends, which OnCancel or OnDone then tells apart).
      if (!client_) half_closed_ = true;
    } else if (read_buf_.has_credit()) {
      // A grant for this side's sends: never queued for the task.
      limited_by_credits_ = true;
      allowed_total_ =
          std::max<uint64_t>(allowed_total_, read_buf_.credit().allowed_total());
      read_buf_.Clear();
      credited = true;
    } else if (read_buf_.has_batch()) {
      // A batch is its items, queued one by one under the same policy.
      for (auto& item : *read_buf_.mutable_batch()->mutable_items()) {
        if (policy_ == v1::OVERRUN_POLICY_ERROR && inbox_.size() >= capacity_) {
          overrun = true;
          ++dropped;
          continue;
        }
        v1::Msg m;
        *m.mutable_yielded() = std::move(item);
        inbox_.push_back(std::move(m));
      }
      read_buf_.Clear();
    } else if (read_buf_.has_yielded() &&
               policy_ == v1::OVERRUN_POLICY_ERROR &&
               inbox_.size() >= capacity_) {
      overrun = true;
      ++dropped;
    } else {
      if (pause_after_first_) {
        pause_after_first_ = false;
        reads_paused_ = true;
      }
      // The caller reads nothing after the callee's Return or Error (a
      // StreamOverrun notice is not final); the RPC's status still arrives.
      if (client_ && (read_buf_.has_returned() ||
                      (read_buf_.has_error() &&
                       ErrorKindOf(read_buf_.error()) != ErrorKind::kStreamOverrun))) {
        reads_ended_ = true;
      }
      inbox_.push_back(std::move(read_buf_));
      read_buf_.Clear();
      if (arrival_hook_ && !inbox_.back().has_yielded()) {
        hook = arrival_hook_;
        arrived = inbox_.back();
      }
    }
  }
  if (hook) hook(arrived);
  if (credited) send_cv_.SignalAll();
  if (overrun) {
    g_overruns.fetch_add(dropped);
    std::function<void()> h;
    {
      MutexLock lk(&mu_);
      h = overrun_hook_;
    }
    if (h) h();
  }
  recv_cv_.SignalAll();
  Pump();
}

void Dialog::OnReadUndecodable(std::string why) {
  std::function<void(const std::string&)> hook;
  {
    MutexLock lk(&mu_);
    read_busy_ = false;
    reads_ended_ = true;
    read_buf_.Clear();
    if (undecodable_.empty()) {
      undecodable_ = why;
      hook = undecodable_hook_;
    }
    if (end_reason_.empty()) {
      end_reason_ = absl::StrCat(
          "the peer sent a message that does not decode (", why, ")");
    }
  }
  if (hook) hook(why);
  recv_cv_.SignalAll();
  Pump();
}

void Dialog::OnWriteDone(bool ok) {
  {
    MutexLock lk(&mu_);
    write_busy_ = false;
    if (ok) wrote_once_ = true;
    if (!ok && !write_failed_) {
      // The RPC is ending (the peer finished, left or the connection
      // broke). Stop writing but keep reading: what the peer sent before
      // it finished is still to be delivered.
      write_failed_ = true;
      outbox_.clear();
      outbox_bytes_ = 0;
      if (end_reason_.empty()) end_reason_ = "the peer is gone (write failed)";
    }
  }
  send_cv_.SignalAll();
  Pump();
}

void Dialog::OnCancel() {
  std::function<void()> hook;
  {
    MutexLock lk(&mu_);
    if (!broken_) {
      broken_ = true;
      end_reason_ = "the caller cancelled the dialog or vanished";
      hook = broken_hook_;
    }
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  if (hook) hook();
  Pump();
}

void Dialog::OnDone(const grpc::Status& status) {
  std::function<void()> hook;
  {
    MutexLock lk(&mu_);
    TRACTOR_LOG(transport) << "dialog stream " << this << " closed ("
                           << (client_ ? "caller" : "callee") << " side): "
                           << (status.ok() ? "OK"
                                           : absl::StrCat(status.error_code(),
                                                          " ",
                                                          status.error_message()));
    done_ = true;
    done_status_ = status;
    transport_ = nullptr;
    reads_ended_ = true;
    if (!status.ok() && !broken_) {
      broken_ = true;
      end_reason_ = absl::StrCat("RPC ended with status ", status.error_code(),
                                 ": ", status.error_message());
      hook = broken_hook_;
    }
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  if (hook) hook();
}

}  // namespace tractor::internal
