// SPDX-License-Identifier: AGPL-3.0-or-later
// A child's side of its `Link` stream to the parent (actor/internal/
// child_main.cc), on gRPC's async API, its completions delivered by a
// thread that already waits on a queue of the runtime (the accept queue,
// `ServiceQueue`): the link has no thread of its own.
//
// A thread blocked in a sync `Read` waits in a completion queue that polls
// the process's sockets: with gRPC's Linux poller (epoll1) it takes its
// turn at gRPC's poller role and then handles the socket events of the
// actor's calls and dialogs, waking the thread each was for
// (docs/architecture.md#threads). The link carries a handful of messages
// in an actor's life; on the accept queue it adds no waiting thread.
#ifndef TRACTOR_ACTOR_INTERNAL_PARENT_LINK_H_
#define TRACTOR_ACTOR_INTERNAL_PARENT_LINK_H_

#include <deque>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "actor/internal/dialog_transport.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// One `Actor/Link` call whose completions arrive on `queue` (which must
// outlive it and be driven by a thread of its own). Thread-safe.
class ParentLink final : public ServiceCall {
 public:
  ParentLink(const std::shared_ptr<grpc::Channel>& channel,
             ServiceQueue* queue);
  // Cancels the call if it is not over, and waits (bounded) for its end.
  ~ParentLink() override;
  ParentLink(const ParentLink&) = delete;
  ParentLink& operator=(const ParentLink&) = delete;

  // Writes `hello` and reads the parent's first message into `reply`,
  // blocking the calling thread. Returns false when the write (`*wrote`
  // false) or the read failed; then call `Finish`.
  bool Exchange(const v1::LinkMsg& hello, v1::LinkMsg* reply, bool* wrote)
      ABSL_LOCKS_EXCLUDED(mu_);
  // After a successful `Exchange`: reads (and drops) what the parent sends
  // until the stream ends, then runs `on_end` (once, on the queue's thread:
  // it must not block) and ends the call.
  void StartReading(std::function<void()> on_end) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `m` for writing, in order; dropped once the link is over.
  void Write(const v1::LinkMsg& m) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until every queued write has completed (or the link is over, or
  // `deadline` passed). Returns whether nothing is left to write.
  bool Flush(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels the call (a pending read then fails).
  void Cancel();
  // Ends the call, dropping queued writes, and waits (until `deadline`)
  // for its status. Returns the status, or DEADLINE_EXCEEDED when it did
  // not come in time.
  grpc::Status Finish(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  void Proceed(ServiceTag* tag, bool ok) override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void PostNextWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PostReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Posts Finish once nothing else is in flight (or marks the call over
  // when the queue refuses it).
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ServiceQueue* const queue_;
  grpc::ClientContext context_;
  std::unique_ptr<v1::Actor::Stub> stub_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::LinkMsg, v1::LinkMsg>>
      stream_;
  ServiceTag read_tag_{this};
  ServiceTag write_tag_{this};
  ServiceTag finish_tag_{this};
  grpc::Status status_;

  Mutex mu_;
  CondVar cv_;  // signalled on every completion
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool keep_reading_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;  // the last read completed
  bool read_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool over_ ABSL_GUARDED_BY(mu_) = false;  // no more writes or reads
  bool finish_wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_end_ ABSL_GUARDED_BY(mu_);
  v1::LinkMsg read_msg_ ABSL_GUARDED_BY(mu_);
  v1::LinkMsg write_msg_ ABSL_GUARDED_BY(mu_);  // the write in flight
  std::deque<v1::LinkMsg> queued_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_PARENT_LINK_H_
