// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog_transport.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/internal/busy_wait.h"
#include "actor/internal/dialog.h"
#include "actor/internal/thread_pool.h"
#include "actor/internal/wire.h"
#include "glog/logging.h"
#include "grpcpp/alarm.h"

namespace tractor::internal {
CqTransport::CqTransport(Dialog* dialog) : dialog_(dialog) {}

CqTransport::~CqTransport() {
  CHECK_EQ(pending_.load(), 0) << "a dialog transport destroyed with "
                                  "operations in flight";
}

// A kick: an alarm that fires at once on the queue it is set on.
struct CqTransport::KickTag : Tag {
  explicit KickTag(CqTransport* owner) : Tag{Op::kKick, owner} {}
  grpc::Alarm alarm;
};

void CqTransport::DriveOnce(absl::Time deadline) {
  void* raw = nullptr;
  bool ok = false;
  grpc::CompletionQueue::NextStatus st;
  if (deadline == absl::InfiniteFuture()) {
    st = cq_.AsyncNext(&raw, &ok, gpr_inf_future(GPR_CLOCK_REALTIME));
  } else if (deadline == absl::InfinitePast()) {
    st = cq_.AsyncNext(&raw, &ok, gpr_inf_past(GPR_CLOCK_REALTIME));
  } else {
    st = cq_.AsyncNext(&raw, &ok, absl::ToChronoTime(deadline));
  }
  if (st != grpc::CompletionQueue::GOT_EVENT) return;
  BusyWait::NoteIo();
  auto* tag = static_cast<Tag*>(raw);
  TakeOver(tag->owner);
  if (tag->op == Op::kKick) {
    delete static_cast<KickTag*>(tag);
  } else {
    Complete(tag->op, ok);
  }
  pending_.fetch_sub(1, std::memory_order_acq_rel);
}

void CqTransport::Kick() {
  auto* kick = new KickTag(this);
  Posted();
  kick->alarm.Set(&cq_, gpr_now(GPR_CLOCK_MONOTONIC), static_cast<Tag*>(kick));
}

void CqTransport::Finished(const grpc::Status& status, bool tell) {
  finished_.store(true, std::memory_order_release);
  if (tell) dialog_->OnDone(status);
}

void CqTransport::DrainAndShutdown() {
  while (pending_.load(std::memory_order_acquire) > 0) {
    DriveOnce(absl::InfiniteFuture());
  }
  cq_.Shutdown();
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
  }
}

void CqTransport::DeliverRead(grpc::ByteBuffer* bytes, v1::Msg* target) {
  std::string why;
  const bool decoded = ParseFromByteBuffer(*bytes, target, &why);
  bytes->Clear();
  if (!decoded) {
    dialog_->OnReadUndecodable(std::move(why));
  } else {
    dialog_->OnReadDone(true);
  }
}

// --- caller ----------------------------------------------------------------

OpenMethod::OpenMethod(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      name_(absl::StrCat("/", v1::Actor::service_full_name(), "/Open")),
      method_(name_.c_str(), /*suffix_for_stats=*/nullptr,
              grpc::internal::RpcMethod::BIDI_STREAMING, channel_) {}

std::unique_ptr<
    grpc::ClientAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>
OpenMethod::PrepareCall(grpc::ClientContext* context,
                        grpc::CompletionQueue* cq) const {
  return std::unique_ptr<
      grpc::ClientAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>(
      grpc::internal::ClientAsyncReaderWriterFactory<
          grpc::ByteBuffer, grpc::ByteBuffer>::Create(channel_.get(), cq,
                                                      method_, context,
                                                      /*start=*/false,
                                                      /*tag=*/nullptr));
}

CqClientTransport::CqClientTransport(Dialog* dialog,
                                     std::shared_ptr<const OpenMethod> method,
                                     bool cork)
    : CqTransport(dialog), method_(std::move(method)) {
  context_.set_initial_metadata_corked(cork);
  stream_ = method_->PrepareCall(&context_, &cq_);
  if (cork) {
    stream_->StartCall(nullptr);  // no operation, no tag
    return;
  }
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  Posted();
  stream_->StartCall(&write_tag_);
}

CqClientTransport::~CqClientTransport() {
  Abandon();
  DrainAndShutdown();
}

void CqClientTransport::Read(v1::Msg* msg) {
  {
    MutexLock lk(&mu_);
    reading_ = true;
    read_target_ = msg;
  }
  Posted();
  stream_->Read(&read_bytes_, &read_tag_);
}

void CqClientTransport::Write(const grpc::ByteBuffer* bytes,
                              grpc::WriteOptions options) {
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  Posted();
  stream_->Write(*bytes, options, &write_tag_);
}

void CqClientTransport::Release(const grpc::Status&, bool abort) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  if (abort) context_.TryCancel();
  Posted();
  stream_->Finish(&status_, &finish_tag_);
}

void CqClientTransport::Abandon() {
  {
    MutexLock lk(&mu_);
    abandoned_ = true;
    if (finishing_) return;
    finishing_ = true;
  }
  context_.TryCancel();
  Posted();
  stream_->Finish(&status_, &finish_tag_);
}

void CqClientTransport::Complete(Op op, bool ok) {
  bool tell;
  v1::Msg* target = nullptr;
  {
    MutexLock lk(&mu_);
    tell = !abandoned_;
    if (op == Op::kRead) {
      reading_ = false;
      target = read_target_;
    }
    if (op == Op::kWrite) writing_ = false;
    if (op == Op::kFinish) finish_done_ = true;
  }
  if (tell && op == Op::kRead) {
    if (ok) {
      DeliverRead(&read_bytes_, target);
    } else {
      dialog_->OnReadDone(false);
    }
  }
  if (tell && op == Op::kWrite) dialog_->OnWriteDone(ok);
  bool over;
  {
    MutexLock lk(&mu_);
    over = finish_done_ && !reading_ && !writing_ && !finished();
    tell = !abandoned_;
  }
  // Abandoned: destroyed with its dialog, nobody to tell.
  if (over) Finished(status_, tell);
}

// --- callee ----------------------------------------------------------------

CqServerTransport::CqServerTransport(Dialog* dialog) : CqTransport(dialog) {
  context_.AsyncNotifyWhenDone(&done_tag_);
}

CqServerTransport::~CqServerTransport() {
  Abandon();
  DrainAndShutdown();
}

void CqServerTransport::Read(v1::Msg* msg) {
  {
    MutexLock lk(&mu_);
    reading_ = true;
    read_target_ = msg;
  }
  Posted();
  stream_.Read(&read_bytes_, &read_tag_);
}

void CqServerTransport::Write(const grpc::ByteBuffer* bytes,
                              grpc::WriteOptions options) {
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  Posted();
  stream_.Write(*bytes, options, &write_tag_);
}

void CqServerTransport::WriteAndFinish(const grpc::ByteBuffer* bytes,
                                       grpc::WriteOptions options,
                                       const grpc::Status& status) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  Posted();
  stream_.WriteAndFinish(*bytes, options, status, &finish_tag_);
}

void CqServerTransport::Release(const grpc::Status& status, bool) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  Posted();
  stream_.Finish(status, &finish_tag_);
}

void CqServerTransport::Abandon() {
  {
    MutexLock lk(&mu_);
    abandoned_ = true;
    if (read_failed_) read_end_alarm_.Cancel();
    // A call that never arrived has nothing in flight.
    if (!matched_ || finishing_) return;
    finishing_ = true;
    VLOG(1) << "a dialog was dropped before its RPC ended (reading="
            << reading_ << ", writing=" << writing_ << "); cancelling it";
  }
  context_.TryCancel();
  Posted();
  stream_.Finish(grpc::Status(grpc::StatusCode::CANCELLED, "dialog dropped"),
                 &finish_tag_);
}

void CqServerTransport::Complete(Op op, bool ok) {
  bool tell;
  bool cancelled = false;
  v1::Msg* target = nullptr;
  {
    MutexLock lk(&mu_);
    tell = !abandoned_;
    if (op == Op::kRead) {
      reading_ = false;
      target = read_target_;
    }
    if (op == Op::kWrite) writing_ = false;
    if (op == Op::kFinish) finish_done_ = true;
    if (op == Op::kDone) {
      call_done_ = true;
      cancelled = context_.IsCancelled();
    }
  }
  if (tell && op == Op::kRead && ok) DeliverRead(&read_bytes_, target);
  bool deliver_read_end = false;
  if (op == Op::kRead && !ok) {
    MutexLock lk(&mu_);
    if (call_done_) {
      deliver_read_end = true;  // the cancel (if any) was told already
    } else {
      // Held back until the done tag says whether the RPC was cancelled.
      read_failed_ = true;
      reading_ = true;
      Posted();
      read_end_alarm_.Set(&cq_, absl::ToChronoTime(absl::Now() + kReadEndWait),
                          &read_end_tag_);
    }
  }
  if (tell && op == Op::kWrite) dialog_->OnWriteDone(ok);
  if (tell && cancelled) dialog_->OnCancel();
  if (op == Op::kDone) {
    MutexLock lk(&mu_);
    // The failure held back goes now, after the cancel; its timer, cut
    // short, comes back at once.
    if (read_failed_) read_end_alarm_.Cancel();
  }
  if (op == Op::kReadEnd) {
    MutexLock lk(&mu_);
    if (read_failed_) {
      read_failed_ = false;
      deliver_read_end = true;
    }
  }
  if (deliver_read_end) {
    {
      MutexLock lk(&mu_);
      reading_ = false;
      tell = !abandoned_;
    }
    if (tell) dialog_->OnReadDone(false);
  }
  bool over;
  {
    MutexLock lk(&mu_);
    over = finish_done_ && call_done_ && !reading_ && !writing_ && !finished();
    tell = !abandoned_;
  }
  if (over) Finished(grpc::Status::OK, tell);
}

// --- server gate -----------------------------------------------------------

bool ServerGate::Enter() {
  MutexLock lk(&mu_);
  if (closed_) return false;
  ++inside_;
  return true;
}

void ServerGate::Leave() {
  bool last;
  {
    MutexLock lk(&mu_);
    last = --inside_ == 0 && closed_;
  }
  if (last) cv_.SignalAll();
}

void ServerGate::Close() {
  MutexLock lk(&mu_);
  closed_ = true;
  while (inside_ > 0) cv_.Wait(&mu_);
}

// --- watcher ---------------------------------------------------------------

DialogWatcher& DialogWatcher::Get() {
  static DialogWatcher* const watcher = new DialogWatcher();
  return *watcher;
}

DialogWatcher::DialogWatcher() : thread_([this] { Loop(); }) {}

void DialogWatcher::Add(std::weak_ptr<Dialog> dialog) {
  bool wake;
  {
    MutexLock lk(&mu_);
    dialogs_.push_back(std::move(dialog));
    wake = sleeping_;
    sleeping_ = false;
  }
  if (wake) cv_.SignalAll();
}

void DialogWatcher::Loop() {
  pthread_setname_np(pthread_self(), "tractor-dwatch");
  // No dialog seen yet: it sleeps until the first one is added.
  absl::Time last_seen = absl::InfinitePast();
  std::vector<std::shared_ptr<Dialog>> live;
  for (;;) {
    {
      MutexLock lk(&mu_);
      const absl::Time now = absl::Now();
      if (dialogs_.empty() && now - last_seen > absl::Seconds(1)) {
        sleeping_ = true;
        while (sleeping_) cv_.Wait(&mu_);
      } else {
        cv_.WaitWithDeadline(&mu_, now + Dialog::kAwayAfter);
      }
      size_t kept = 0;
      for (size_t i = 0; i < dialogs_.size(); ++i) {
        if (auto d = dialogs_[i].lock()) {
          live.push_back(std::move(d));
          // (A weak_ptr moved onto itself is left empty.)
          if (kept != i) dialogs_[kept] = std::move(dialogs_[i]);
          ++kept;
        }
      }
      dialogs_.resize(kept);
      if (kept > 0) last_seen = absl::Now();
    }
    const absl::Time now = absl::Now();
    for (auto& d : live) d->CheckAway(now);
    live.clear();  // outside the lock: the last reference may go here
  }
}

}  // namespace tractor::internal
