// SPDX-License-Identifier: AGPL-3.0-or-later
// A dialog's stream operations: `Pump` starts the reads and writes its
// queues call for, and the transport's completions (`OnReadDone`,
// `OnWriteDone`, `OnCancel`, `OnDone`) move messages between the stream
// and the queues and wake waiters (see dialog.h).
#include "actor/internal/dialog.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/busy_wait.h"
#include "discovery/log_level.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// Bounds of one Batch message.
constexpr int kMaxBatchItems = 256;
constexpr size_t kMaxBatchBytes = 256 * 1024;

std::atomic<uint64_t> g_overruns{0};

}  // namespace

uint64_t Dialog::OverrunCount() { return g_overruns.load(); }

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
    std::optional<grpc::Slice> single;  // the message to write, or a batch
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
        outbox_bytes_ -= out.bytes.size();
        if (batch_ok_ && out.item && !outbox_.empty() &&
            outbox_.front().item) {
          // Items queued behind a busy write leave together, as one
          // `Batch` put together from their encodings (below, without
          // the lock: the write state owns `batch_items_`).
          size_t bytes = out.bytes.size();
          batch_items_.push_back(std::move(out.bytes));
          while (!outbox_.empty() && outbox_.front().item &&
                 batch_items_.size() < kMaxBatchItems &&
                 bytes < kMaxBatchBytes) {
            bytes += outbox_.front().bytes.size();
            outbox_bytes_ -= outbox_.front().bytes.size();
            batch_items_.push_back(std::move(outbox_.front().bytes));
            outbox_.pop_front();
          }
        } else {
          single.emplace(std::move(out.bytes));
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
      if (!do_write_finish && !read_busy_ && !read_deferred_ &&
          !reads_ended_ && !broken_ && !close_requested_ && WantReadLocked()) {
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
    if (do_write || do_write_finish) {
      BusyWait::NoteIo();
      // The write state owns `write_buf_` and `batch_items_` now.
      if (single) {
        grpc::ByteBuffer one(&*single, 1);
        write_buf_.Swap(&one);
        single.reset();
      } else {
        EncodeBatch(batch_items_, &write_buf_);
        batch_items_.clear();
      }
    }
    if (do_write_finish) t->WriteAndFinish(&write_buf_, options, status);
    if (do_write) t->Write(&write_buf_, options);
    if (do_read) t->Read(&read_buf_);
    if (do_release) t->Release(status, abort);
    {
      MutexLock lk(&mu_);
      --in_call_;
      // The dialog's last operations complete without its task: a pooled
      // thread drives them (unless someone drives already, or the closing
      // thread drives them a while first: it starts that thread if they
      // are not done by then).
      if ((do_release || do_write_finish) && !closer_lingers_) {
        StartBackgroundLocked();
      }
    }
    if (do_release || do_write_finish) return;
  }
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
      // Each item moves out of the batch as it is (no copy).
      auto* items = read_buf_.mutable_batch()->mutable_items();
      std::vector<v1::Yield*> taken(items->size());
      items->ExtractSubrange(0, items->size(), taken.data());
      for (v1::Yield* item : taken) {
        if (policy_ == v1::OVERRUN_POLICY_ERROR && inbox_.size() >= capacity_) {
          overrun = true;
          ++dropped;
          delete item;
          continue;
        }
        v1::Msg m;
        m.set_allocated_yielded(item);
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
      // The task waiting in Receive took this read's completion itself and
      // takes the message next: the next read starts with its next
      // operation on the dialog (or after `kAwayAfter`, CheckAway). A read
      // posted now would make gRPC send a window update of its own at once
      // (a packet, and a wake-up of the peer); posted with the next send,
      // the update leaves with that send's data. (One message at a time, a
      // ping-pong: a stream that queues keeps reading ahead.)
      if (driver_ == Driver::kTask && task_receiving_ && inbox_.size() == 1) {
        read_deferred_ = true;
      }
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
  std::function<void()> then;
  bool closing = false;
  {
    MutexLock lk(&mu_);
    read_busy_ = false;
    reads_ended_ = true;
    read_buf_.Clear();
    if (undecodable_.empty()) {
      undecodable_ = why;
      if (undecodable_reply_) {
        // The reply is queued in the step that ends the reads (see
        // SetUndecodableHook).
        QueueLastLocked(EncodeMessage(undecodable_reply_(why)),
                        /*item=*/false, grpc::Status::OK);
        then = std::move(undecodable_then_);
        undecodable_reply_ = nullptr;
        closing = true;
      } else if (client_ && !close_requested_) {
        // A caller cannot go on with a callee whose messages do not
        // decode: the RPC is cancelled, which ends the callee's task.
        close_requested_ = true;
        abort_ = true;
        outbox_.clear();
        outbox_bytes_ = 0;
        closer_lingers_ = true;
        closing = true;
      }
    }
    if (end_reason_.empty()) {
      end_reason_ = absl::StrCat(
          "the peer sent a message that does not decode (", why, ")");
    }
  }
  if (then) then();
  recv_cv_.SignalAll();
  if (closing) send_cv_.SignalAll();
  Pump();
  if (closing) DriveToTheEnd();
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
    UncountOpenLocked();
    reads_ended_ = true;
    if (!status.ok() && !broken_) {
      broken_ = true;
      // A message that did not decode ended the dialog first (a caller then
      // cancels the RPC): that stays the reason.
      if (undecodable_.empty()) {
        end_reason_ = absl::StrCat("RPC ended with status ",
                                   status.error_code(), ": ",
                                   status.error_message());
      }
      hook = broken_hook_;
    }
  }
  recv_cv_.SignalAll();
  send_cv_.SignalAll();
  if (hook) hook();
}

}  // namespace tractor::internal
