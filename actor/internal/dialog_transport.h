// SPDX-License-Identifier: AGPL-3.0-or-later
// A dialog's gRPC stream on gRPC's async API, with a completion queue of its
// own that the threads waiting on the dialog drive themselves
// (docs/architecture.md#threads): the task blocked in `Receive` takes the
// completion of its own read, so an arriving message wakes no other thread
// first. When no task waits on the dialog, a pooled thread drives it (see
// `Dialog`).
//
// Operations are only posted here (they never block); each completes as one
// tag on the queue, which `DriveOnce` hands to the dialog
// (`Dialog::OnReadDone`, `OnWriteDone`, `OnCancel`, `OnDone`). The dialog
// hears `OnDone` last, once the RPC is over and no read or write is
// outstanding.
#ifndef TRACTOR_ACTOR_INTERNAL_DIALOG_TRANSPORT_H_
#define TRACTOR_ACTOR_INTERNAL_DIALOG_TRANSPORT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

class Dialog;

// The gRPC half of a dialog, as the dialog's pump sees it: each call posts
// one operation and returns at once.
class DialogTransport {
 public:
  virtual ~DialogTransport() = default;
  // Reads the next message into `msg`, decoding it (an undecodable one
  // goes to `Dialog::OnReadUndecodable`).
  virtual void Read(v1::Msg* msg) = 0;
  // Writes an encoded message (actor/internal/outgoing.h).
  virtual void Write(const grpc::ByteBuffer* bytes,
                     grpc::WriteOptions options) = 0;
  // Server only (see CanWriteAndFinish): writes `bytes` and finishes the
  // RPC with `status` in one operation, which is what a unary reply costs.
  virtual bool CanWriteAndFinish() const { return false; }
  virtual void WriteAndFinish(const grpc::ByteBuffer* bytes,
                              grpc::WriteOptions options,
                              const grpc::Status& status) {}
  // Ends the RPC: server Finish(status); client Finish (after TryCancel
  // when `abort`).
  virtual void Release(const grpc::Status& status, bool abort) = 0;
};

// The completion queue and its tags, shared by both sides. Thread-safe:
// several threads may drive it at once (each completion goes to one).
class CqTransport : public DialogTransport {
 public:
  ~CqTransport() override;
  CqTransport(const CqTransport&) = delete;
  CqTransport& operator=(const CqTransport&) = delete;

  // Waits until `deadline` for one completion and delivers it. Returns
  // early when kicked.
  void DriveOnce(absl::Time deadline);
  // Makes one `DriveOnce` in progress (or the next) return soon.
  void Kick();
  // True while an operation (or a kick) has not completed: driving the
  // queue has something to deliver.
  bool busy() const { return pending_.load(std::memory_order_acquire) > 0; }
  // True once the RPC is over and every operation completed.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // What every tag on a dialog's queue or the accept queue points to.
  // kService: another service's operation (a `ServiceTag`, no owner).
  // kCall: the arrival of a call served on the thread that takes it (a
  // `CallTag`, no owner).
  enum class Op {
    kAccept,
    kRead,
    kWrite,
    kFinish,
    kDone,
    kKick,
    kReadEnd,
    kService,
    kCall
  };
  struct Tag {
    Op op;
    CqTransport* owner;
  };

 protected:
  friend class DialogAcceptor;
  struct KickTag;
  explicit CqTransport(Dialog* dialog);

  // Every posted operation is counted until its tag comes back.
  // (What the posting thread wrote is handed to whichever thread takes the
  // completion: see `HandOff`.)
  void Posted() {
    HandOff(this);
    pending_.fetch_add(1, std::memory_order_acq_rel);
  }
  // Handles a completed operation of this side (not kKick).
  // (kReadEnd: the server's timer for a failed read, see
  // CqServerTransport.)
  virtual void Complete(Op op, bool ok) = 0;
  // Ends the RPC if it is not over (the transport is being destroyed with
  // its dialog), so that every operation completes.
  virtual void Abandon() = 0;
  // Called by Complete once the RPC is over and nothing is outstanding:
  // tells the dialog (OnDone) and marks the transport finished.
  // `tell` is false for an abandoned transport.
  void Finished(const grpc::Status& status, bool tell);
  // Blocks until every operation completed, then shuts the queue down.
  void DrainAndShutdown();
  // A read completed with `bytes`: decodes them into `target` and tells
  // the dialog (`OnReadDone`, or `OnReadUndecodable`).
  void DeliverRead(grpc::ByteBuffer* bytes, v1::Msg* target);

  Dialog* const dialog_;  // owns this transport
  grpc::CompletionQueue cq_;
  Tag read_tag_{Op::kRead, this};
  Tag write_tag_{Op::kWrite, this};
  Tag finish_tag_{Op::kFinish, this};
  Tag done_tag_{Op::kDone, this};

 private:
  std::atomic<int> pending_{0};
  std::atomic<bool> finished_{false};
};

// The `tractor.v1.Actor/Open` method on one channel, registered with it
// once (as a generated stub registers its methods), for calls whose
// messages travel as raw bytes: each side of a dialog encodes and decodes
// its messages itself. Immutable; shared by the dialogs opened through it.
class OpenMethod {
 public:
  explicit OpenMethod(std::shared_ptr<grpc::Channel> channel);
  OpenMethod(const OpenMethod&) = delete;
  OpenMethod& operator=(const OpenMethod&) = delete;

  // A new call on the channel, not started.
  std::unique_ptr<grpc::ClientAsyncReaderWriter<grpc::ByteBuffer,
                                                grpc::ByteBuffer>>
  PrepareCall(grpc::ClientContext* context, grpc::CompletionQueue* cq) const;

 private:
  const std::shared_ptr<grpc::Channel> channel_;
  const std::string name_;  // "/tractor.v1.Actor/Open"
  const grpc::internal::RpcMethod method_;
};

// The caller's half: a new `Actor/Open` call through `method`. The stream
// carries raw bytes: each message is decoded here (an undecodable one goes
// to `Dialog::OnReadUndecodable`).
class CqClientTransport final : public CqTransport {
 public:
  // With `cork`, the initial metadata waits for the first Write; without,
  // it leaves at once, as an operation that completes as a write.
  CqClientTransport(Dialog* dialog, std::shared_ptr<const OpenMethod> method,
                    bool cork);
  ~CqClientTransport() override;

  void Read(v1::Msg* msg) override;
  void Write(const grpc::ByteBuffer* bytes,
             grpc::WriteOptions options) override;
  void Release(const grpc::Status& status, bool abort) override;

 private:
  void Complete(Op op, bool ok) override;
  void Abandon() override;
  // The read, write and finish in flight (at most one of each), and
  // whether the dialog heard OnDone.
  Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_done_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext context_;
  std::shared_ptr<const OpenMethod> method_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>
      stream_;
  grpc::Status status_;  // filled by the Finish operation
  // The read in flight: its bytes and where they decode to.
  grpc::ByteBuffer read_bytes_;
  v1::Msg* read_target_ = nullptr;
};

// The callee's half: one requested `Actor/Open` call. The stream carries
// raw bytes: each message is decoded here (an undecodable one goes to
// `Dialog::OnReadUndecodable`) and each reply encoded.
class CqServerTransport final : public CqTransport {
 public:
  static constexpr absl::Duration kReadEndWait = absl::Milliseconds(50);

  explicit CqServerTransport(Dialog* dialog);
  ~CqServerTransport() override;

  void Read(v1::Msg* msg) override;
  void Write(const grpc::ByteBuffer* bytes,
             grpc::WriteOptions options) override;
  bool CanWriteAndFinish() const override { return true; }
  void WriteAndFinish(const grpc::ByteBuffer* bytes, grpc::WriteOptions options,
                      const grpc::Status& status) override;
  void Release(const grpc::Status& status, bool abort) override;

 private:
  friend class DialogAcceptor;
  void Complete(Op op, bool ok) override;
  void Abandon() override;

  // Delivers the failed read held back (see `read_failed_`).
  void DeliverReadEnd() ABSL_LOCKS_EXCLUDED(mu_);

  Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_done_ ABSL_GUARDED_BY(mu_) = false;
  bool call_done_ ABSL_GUARDED_BY(mu_) = false;
  // A read failed: the caller half-closed, or the RPC was cancelled, which
  // gRPC tells only with the done tag. The failure is held back until that
  // tag comes (a cancel: `OnCancel` first) or `kReadEndWait` passed (a
  // half-close).
  bool read_failed_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm read_end_alarm_;
  Tag read_end_tag_{Op::kReadEnd, this};
  bool matched_ ABSL_GUARDED_BY(mu_) = false;  // the call arrived
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_{
      &context_};
  Tag accept_tag_{Op::kAccept, this};
  // The read in flight: its bytes and where they decode to.
  grpc::ByteBuffer read_bytes_;
  v1::Msg* read_target_ = nullptr;
};

// One call of another async service whose completions arrive on a queue a
// runtime thread already waits on (the accept queue, `DialogAcceptor` in
// actor/internal/dialog_acceptor.h, or a `ServiceThread`'s): a parent's
// `Link` streams and the unknown-method answers
// (actor/internal/async_services.h). No callback API, and no thread
// of its own per call.
class ServiceCall;
// A completion for a `ServiceCall`; pass it to gRPC as
// `static_cast<CqTransport::Tag*>(&tag)`.
struct ServiceTag : CqTransport::Tag {
  explicit ServiceTag(ServiceCall* c)
      : Tag{CqTransport::Op::kService, nullptr}, call(c) {}
  ServiceCall* const call;
};
class ServiceCall {
 public:
  virtual ~ServiceCall() = default;
  // `tag` completed with `ok` (gRPC's meaning). Runs on the thread waiting
  // on the queue, which serves everything else on it: must not block.
  virtual void Proceed(ServiceTag* tag, bool ok) = 0;
};
// A server completion queue that a runtime thread drives, delivering each
// `ServiceTag` to its call. Thread-safe.
class ServiceQueue {
 public:
  virtual ~ServiceQueue() = default;
  virtual grpc::ServerCompletionQueue* cq() = 0;
  // Runs `post`, which posts operations on `cq()` (never blocks), unless
  // the queue is shutting down; returns whether it ran. Every operation is
  // posted through here: nothing may be posted on a shut-down queue.
  virtual bool Post(absl::FunctionRef<void()> post) = 0;
};

// A call of an async unary method that is served on the thread that takes
// its arrival off the accept queue (a unary `Actor/Call`,
// actor/internal/actor_service.h): that thread decides at once, without
// blocking, whether the call is refused (answered there) or served; to serve
// it, it leaves the queue to the other waiting thread (or wakes one if it
// was the last) and runs `Serve`.
class AcceptedCall;
// The request tag of an `AcceptedCall`; pass it to gRPC as
// `static_cast<CqTransport::Tag*>(&tag)`.
struct CallTag : CqTransport::Tag {
  explicit CallTag(AcceptedCall* c)
      : Tag{CqTransport::Op::kCall, nullptr}, call(c) {}
  AcceptedCall* const call;
};
class AcceptedCall {
 public:
  virtual ~AcceptedCall() = default;
  // The request came back with `ok` (false: cancelled by the shutdown).
  // Must not block. Returns true to be served on this thread; never when
  // `can_serve` is false (the queue is stopping: the call is refused).
  virtual bool Arrived(bool ok, bool can_serve) = 0;
  // After Arrived returned true, once another thread waits on the queue.
  // May block (it runs the task). The thread then waits on the queue again
  // if fewer than two threads do.
  virtual void Serve() = 0;
};

// Lets threads that are not the queue's post operations on the server's
// calls while the server is alive: `Enter` fails once the acceptor stopped
// (after the server's Shutdown and Wait, before the server is destroyed).
// Shared by the acceptor and the calls that may outlive it. Thread-safe.
class ServerGate {
 public:
  // True: post, then Leave. False: the server is going away.
  bool Enter() ABSL_LOCKS_EXCLUDED(mu_);
  void Leave() ABSL_LOCKS_EXCLUDED(mu_);
  // Refuses every later Enter and waits for the threads inside to leave.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  CondVar cv_;  // signalled when the last thread inside leaves a closed gate
  int inside_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Drives the queues of dialogs that nobody waits on (`Dialog::kAwayAfter`):
// one thread per process, which looks at every live dialog (a caller's from
// its start, a callee's from the arrival of its call) every `kAwayAfter`
// while there are any, and sleeps after a second without, or until the
// first. An idle actor's watcher sleeps: the calls its acceptor requested
// are not watched before they arrive.
// Created on first use and never destroyed (dialogs live in any process,
// with or without a runtime); it holds no dialog alive.
class DialogWatcher {
 public:
  static DialogWatcher& Get();
  void Add(std::weak_ptr<Dialog> dialog) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  DialogWatcher();
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  Mutex mu_;
  CondVar cv_;
  std::vector<std::weak_ptr<Dialog>> dialogs_ ABSL_GUARDED_BY(mu_);
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_DIALOG_TRANSPORT_H_
