// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/parent_link.h"

#include <utility>

#include "glog/logging.h"

namespace tractor::internal {
namespace {

void* AsTag(ServiceTag* tag) { return static_cast<CqTransport::Tag*>(tag); }

// How long the destructor waits for a call it cancelled to end.
constexpr absl::Duration kEndWait = absl::Seconds(5);

}  // namespace

ParentLink::ParentLink(const std::shared_ptr<grpc::Channel>& channel,
                       ServiceQueue* queue)
    : queue_(queue), stub_(v1::Actor::NewStub(channel)) {
  // The initial metadata leaves with the hello (StartCall posts nothing).
  context_.set_initial_metadata_corked(true);
  stream_ = stub_->PrepareAsyncLink(&context_, queue_->cq());
  stream_->StartCall(nullptr);
}

ParentLink::~ParentLink() {
  {
    MutexLock lk(&mu_);
    if (finished_) return;
  }
  Cancel();
  if (Finish(absl::Now() + kEndWait).error_code() ==
      grpc::StatusCode::DEADLINE_EXCEEDED) {
    LOG(ERROR) << "the link to the parent did not end in "
               << absl::FormatDuration(kEndWait);
  }
}

void ParentLink::PostNextWriteLocked() {
  write_msg_ = std::move(queued_.front());
  queued_.pop_front();
  writing_ = true;
  // The message belongs to the write in flight until its tag returns
  // (`writing_`), so the queue's thread reads it without the lock.
  const v1::LinkMsg* msg = &write_msg_;
  if (!queue_->Post(
          [this, msg] { stream_->Write(*msg, AsTag(&write_tag_)); })) {
    writing_ = false;
    write_failed_ = true;
    over_ = true;
    queued_.clear();
  }
}

void ParentLink::PostReadLocked() {
  reading_ = true;
  read_done_ = false;
  if (!queue_->Post([this] { stream_->Read(&read_msg_, AsTag(&read_tag_)); })) {
    // Nothing more can be posted: the link is as good as down.
    reading_ = false;
    read_done_ = true;
    read_ok_ = false;
    over_ = true;
    finish_wanted_ = true;
    queued_.clear();
  }
}

void ParentLink::MaybeFinishLocked() {
  if (!finish_wanted_ || finished_ || finishing_ || reading_ || writing_) {
    return;
  }
  finishing_ = true;
  if (!queue_->Post(
          [this] { stream_->Finish(&status_, AsTag(&finish_tag_)); })) {
    // Every other operation completed; the call is abandoned.
    finishing_ = false;
    finished_ = true;
    status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the actor is shutting down");
  }
}

void ParentLink::Proceed(ServiceTag* tag, bool ok) {
  std::function<void()> end;
  {
    MutexLock lk(&mu_);
    if (tag == &read_tag_) {
      reading_ = false;
      read_done_ = true;
      read_ok_ = ok;
      if (keep_reading_ && ok && !over_) PostReadLocked();
    } else if (tag == &write_tag_) {
      writing_ = false;
      if (!ok) {
        // The stream is broken: what is queued cannot leave.
        write_failed_ = true;
        over_ = true;
        finish_wanted_ = true;
        queued_.clear();
      } else if (!over_ && !queued_.empty()) {
        PostNextWriteLocked();
      }
    } else if (tag == &finish_tag_) {
      finishing_ = false;
      finished_ = true;
    }
    if (read_done_ && !read_ok_ && keep_reading_) {
      // The stream ended (or this side cancelled it).
      over_ = true;
      finish_wanted_ = true;
      queued_.clear();
      end = std::exchange(on_end_, nullptr);
    }
    MaybeFinishLocked();
  }
  cv_.SignalAll();
  if (end) end();
}

bool ParentLink::Exchange(const v1::LinkMsg& hello, v1::LinkMsg* reply,
                          bool* wrote) {
  Write(hello);
  MutexLock lk(&mu_);
  while (writing_) cv_.Wait(&mu_);
  *wrote = !write_failed_;
  if (write_failed_) return false;
  PostReadLocked();
  while (reading_) cv_.Wait(&mu_);
  if (!read_ok_) {
    finish_wanted_ = true;
    return false;
  }
  *reply = read_msg_;
  return true;
}

void ParentLink::StartReading(std::function<void()> on_end) {
  std::function<void()> end;
  {
    MutexLock lk(&mu_);
    keep_reading_ = true;
    if (over_) {
      end = std::move(on_end);
    } else {
      on_end_ = std::move(on_end);
      PostReadLocked();
      if (over_) end = std::exchange(on_end_, nullptr);
    }
    MaybeFinishLocked();
  }
  if (end) end();
}

void ParentLink::Write(const v1::LinkMsg& m) {
  MutexLock lk(&mu_);
  if (over_) return;
  queued_.push_back(m);
  if (!writing_) PostNextWriteLocked();
}

bool ParentLink::Flush(absl::Time deadline) {
  MutexLock lk(&mu_);
  while ((writing_ || !queued_.empty()) && !over_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return !writing_ && queued_.empty();
}

void ParentLink::Cancel() { context_.TryCancel(); }

grpc::Status ParentLink::Finish(absl::Time deadline) {
  MutexLock lk(&mu_);
  over_ = true;
  finish_wanted_ = true;
  queued_.clear();
  MaybeFinishLocked();
  while (!finished_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "the link did not end in time");
    }
  }
  return status_;
}

}  // namespace tractor::internal
