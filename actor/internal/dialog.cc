// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/wire.h"
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

class ClientDialogReactor : public grpc::ClientBidiReactor<v1::Msg, v1::Msg>,
                            public DialogTransport {
 public:
  ClientDialogReactor(std::shared_ptr<Dialog> dialog, v1::Actor::Stub* stub)
      : dialog_(std::move(dialog)) {
    stub->async()->Open(&context_, this);
    AddHold();
  }
  void Read(v1::Msg* msg) override { StartRead(msg); }
  void Write(const v1::Msg* msg, grpc::WriteOptions options) override {
    StartWrite(msg, options);
  }
  void Release(const grpc::Status& status, bool abort) override {
    if (abort) context_.TryCancel();
    RemoveHold();
  }
  void OnReadDone(bool ok) override { dialog_->OnReadDone(ok); }
  void OnWriteDone(bool ok) override { dialog_->OnWriteDone(ok); }
  void OnDone(const grpc::Status& status) override {
    auto d = std::move(dialog_);
    d->OnDone(status);
    delete this;
  }
  void Cancel() { context_.TryCancel(); }

 private:
  grpc::ClientContext context_;
  std::shared_ptr<Dialog> dialog_;
};

}  // namespace

std::shared_ptr<Dialog> Dialog::Connect(
    const std::shared_ptr<grpc::Channel>& channel) {
  auto dialog = std::make_shared<Dialog>();
  // A stub is a thin wrapper over the channel; the reactor keeps the RPC.
  auto stub = v1::Actor::NewStub(channel);
  auto* reactor = new ClientDialogReactor(dialog, stub.get());
  {
    MutexLock lk(&dialog->mu_);
    dialog->client_ = true;
  }
  dialog->Attach(reactor);
  // Operations requested before StartCall leave in one batch with it.
  dialog->Pump();
  reactor->StartCall();
  return dialog;
}

Dialog::Dialog() = default;
Dialog::~Dialog() = default;

void Dialog::Attach(DialogTransport* transport) {
  MutexLock lk(&mu_);
  transport_ = transport;
}

void Dialog::Push(v1::Msg msg, Flush flush) {
  const size_t bytes = msg.ByteSizeLong();
  outbox_bytes_ += bytes;
  outbox_.push_back({std::move(msg), flush, bytes});
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
    if (do_write_finish) {
      t->WriteAndFinish(&write_buf_, options, status);
      MutexLock lk(&mu_);
      --in_call_;
      return;
    }
    if (do_write) t->Write(&write_buf_, options);
    if (do_read) t->Read(&read_buf_);
    if (do_release) t->Release(status, abort);
    {
      MutexLock lk(&mu_);
      --in_call_;
    }
    if (do_release) return;
  }
}

void Dialog::Send(v1::Msg msg) {
  {
    MutexLock lk(&mu_);
    Wait(send_cv_, mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return broken_ || write_failed_ || close_requested_ || last_queued_ ||
             outbox_.empty() || (outbox_.size() < kMaxPendingWrites &&
                                 outbox_bytes_ < kMaxPendingBytes);
    });
    if (broken_ || write_failed_ || close_requested_ || last_queued_) {
      throw TransportClosed(absl::StrCat(
          "cannot send: ", end_reason_.empty() ? "dialog closed" : end_reason_));
    }
    Push(std::move(msg), Flush::kNow);
  }
  Pump();
}

bool Dialog::SendNoWait(v1::Msg msg, Flush flush) {
  {
    MutexLock lk(&mu_);
    if (broken_ || write_failed_ || released_ || last_queued_) return false;
    Push(std::move(msg), flush);
  }
  Pump();
  return true;
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
  return queued;
}

std::optional<v1::Msg> Dialog::Receive(absl::Time until, bool* timed_out) {
  std::optional<v1::Msg> out;
  {
    MutexLock lk(&mu_);
    bool ok = Wait(
        recv_cv_, mu_,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !inbox_.empty() || reads_ended_ || broken_;
        },
        until);
    if (timed_out) *timed_out = !ok;
    if (!ok || inbox_.empty()) return std::nullopt;
    out = std::move(inbox_.front());
    inbox_.pop_front();
  }
  Pump();
  return out;
}

std::optional<v1::Msg> Dialog::TryReceive() {
  std::optional<v1::Msg> out;
  {
    MutexLock lk(&mu_);
    if (inbox_.empty()) return std::nullopt;
    out = std::move(inbox_.front());
    inbox_.pop_front();
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
    Wait(recv_cv_, mu_,
         [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; },
         absl::Now() + bound);
  }
  return EndReason();
}

void Dialog::OnReadDone(bool ok) {
  bool overrun = false;
  std::function<void(const v1::Msg&)> hook;
  std::function<void()> first;
  v1::Msg arrived;
  {
    MutexLock lk(&mu_);
    read_busy_ = false;
    first = std::move(first_hook_);
    first_hook_ = nullptr;
    if (!ok) {
      reads_ended_ = true;
      // The server's read fails when the caller half-closes (or when the
      // RPC ends, which OnCancel or OnDone then tells apart).
      if (!client_) half_closed_ = true;
    } else if (read_buf_.has_batch()) {
      // A batch is its items, queued one by one under the same policy.
      for (auto& item : *read_buf_.mutable_batch()->mutable_items()) {
        if (policy_ == v1::OVERRUN_POLICY_ERROR && inbox_.size() >= capacity_) {
          overrun = true;
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
  if (first) first();
  if (overrun) {
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
  std::function<void()> first;
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
    first = std::move(first_hook_);
    first_hook_ = nullptr;
  }
  if (hook) hook(why);
  if (first) first();
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
  std::function<void()> first;
  {
    MutexLock lk(&mu_);
    first = std::move(first_hook_);
    first_hook_ = nullptr;
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
  if (first) first();
}

ServerDialogReactor::ServerDialogReactor(std::shared_ptr<Dialog> dialog,
                                         grpc::CallbackServerContext* ctx)
    : dialog_(std::move(dialog)), ctx_(ctx) {
  dialog_->Attach(this);
}

void ServerDialogReactor::Read(v1::Msg* msg) {
  read_target_ = msg;
  StartRead(&read_bytes_);
}

void ServerDialogReactor::Write(const v1::Msg* msg,
                                grpc::WriteOptions options) {
  SerializeToByteBuffer(*msg, &write_bytes_);
  StartWrite(&write_bytes_, options);
}

void ServerDialogReactor::WriteAndFinish(const v1::Msg* msg,
                                         grpc::WriteOptions options,
                                         const grpc::Status& status) {
  SerializeToByteBuffer(*msg, &write_bytes_);
  StartWriteAndFinish(&write_bytes_, options, status);
}

void ServerDialogReactor::OnReadDone(bool ok) {
  if (ok) {
    std::string why;
    const bool decoded = ParseFromByteBuffer(read_bytes_, read_target_, &why);
    read_bytes_.Clear();
    if (!decoded) {
      dialog_->OnReadUndecodable(std::move(why));
      return;
    }
  } else if (ctx_ != nullptr && ctx_->IsCancelled()) {
    // The reads ended because the RPC was cancelled (the caller vanished),
    // not because the caller half-closed: the dialog is broken, which must
    // be known before the failed read is taken for a half-close.
    dialog_->OnCancel();
  }
  dialog_->OnReadDone(ok);
}

void ServerDialogReactor::OnDone() {
  auto d = std::move(dialog_);
  d->OnDone(grpc::Status::OK);
  delete this;
}

}  // namespace tractor::internal
