// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/async_services.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/internal/busy_wait.h"
#include "actor/internal/runtime.h"
#include "actor/internal/standard_services.h"
#include "actor/internal/wire.h"
#include "discovery/log_level.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

void* AsTag(ServiceTag* tag) { return static_cast<CqTransport::Tag*>(tag); }

// Parent side of a child's Link stream, on gRPC's async API. Every
// operation is counted until its completion comes back; the call is
// deleted once none is outstanding and the RPC is over (or never arrived).
class LinkCall final : public ServiceCall {
 public:
  LinkCall(Runtime* rt, ServiceQueue* queue, LinkRequestFn request)
      : rt_(rt), queue_(queue), request_(std::move(request)) {}

  // Requests the next call; deletes `call` if the queue refuses.
  static void Request(LinkCall* call) {
    bool posted;
    {
      MutexLock lk(&call->mu_);
      posted = call->queue_->Post([call] {
        call->ctx_.AsyncNotifyWhenDone(AsTag(&call->done_tag_));
        call->request_(&call->ctx_, &call->stream_, call->queue_->cq(),
                       AsTag(&call->accept_tag_));
      });
      if (posted) ++call->pending_;
    }
    if (!posted) delete call;
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    std::function<void()> suspect;
    bool wake = false;  // the child's state changed: wake its waiters
    // Made under the lock: once it is released, another thread waiting on
    // the queue may take this call's last completion and delete it.
    LinkCall* next = nullptr;
    std::shared_ptr<ChildProc> child;
    bool gone;
    {
      MutexLock lk(&mu_);
      --pending_;
      if (tag == &accept_tag_) {
        if (ok) {
          // The done tag comes only for a call that arrived.
          arrived_ = true;
          ++pending_;
          next = new LinkCall(rt_, queue_, request_);
          ReadLocked();
        }
      } else if (tag == &read_tag_) {
        if (ok) {
          HandleLocked(&wake);
        } else {
          suspect = LostLocked();
        }
      } else if (tag == &write_tag_) {
        // The only write is the answer to the hello.
        writing_ = false;
        if (ok && child_) {
          MutexLock child_lock(&child_->mu);
          child_->link_confirmed = true;
          wake = true;
        }
        if (finish_deferred_) FinishLocked(deferred_status_);
      } else if (tag == &done_tag_) {
        done_ = true;
        if (ctx_.IsCancelled()) suspect = LostLocked();
      }
      gone = pending_ == 0 && (!arrived_ || done_);
      if (wake) child = child_;
    }
    if (next != nullptr) Request(next);
    if (child) child->cv.SignalAll();
    if (suspect) suspect();
    if (gone) delete this;
  }

 private:
  void ReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    if (queue_->Post([this] { stream_.Read(&in_, AsTag(&read_tag_)); })) {
      ++pending_;
    }
  }

  // One message from the child; reads the next unless the call ends.
  void HandleLocked(bool* wake) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!child_) {
      if (!in_.has_hello()) {
        FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "the first Link message must be hello"));
        return;
      }
      const uint32_t version = in_.hello().protocol_version();
      if (version != 0 && version != kProtocolVersion) {
        // 0 is a child too old to say: it speaks version 1.
        FinishLocked(grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            absl::StrCat("the child speaks tractor protocol version ", version,
                         "; this actor speaks version ", kProtocolVersion)));
        return;
      }
      grpc::Status refused;
      child_ = rt_->OnChildLinked(in_.hello(), &refused);
      if (!child_) {
        FinishLocked(refused);
        return;
      }
      TRACTOR_LOG(transport) << "link from child '" << in_.hello().aid().name()
                             << "' " << in_.hello().aid().uuid() << " up";
      aid_ = in_.hello().aid();
      out_.mutable_accepted();
      if (queue_->Post([this] { stream_.Write(out_, AsTag(&write_tag_)); })) {
        ++pending_;
        writing_ = true;
      }
    } else if (in_.has_error()) {
      MutexLock lk(&child_->mu);
      child_->boot_error = in_.error().message();
    } else if (in_.has_bye()) {
      {
        MutexLock lk(&child_->mu);
        child_->said_bye = true;
      }
      *wake = true;  // a nursery's teardown may wait for it
    } else if (in_.kind_case() == v1::LinkMsg::kDebugHold) {
      {
        MutexLock lk(&child_->mu);
        child_->in_debugger = in_.debug_hold();
        child_->last_heard = absl::Now();
      }
      *wake = true;
    } else if (in_.has_heartbeat()) {
      MutexLock lk(&child_->mu);
      child_->last_heard = absl::Now();
    }
    ReadLocked();
  }

  // The stream ended: the child is gone. Returns what to call (outside the
  // lock) when it went without saying bye.
  std::function<void()> LostLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::function<void()> suspect;
    if (child_ && !lost_) {
      lost_ = true;
      {
        MutexLock lk(&child_->mu);
        TRACTOR_LOG(transport)
            << "link from child '" << aid_.name() << "' " << aid_.uuid()
            << " down: "
            << (child_->said_bye ? "the child said bye"
                : child_->exited ? "the child exited"
                                 : "dropped (keepalive failure or connection "
                                   "closed) before the child said bye");
        child_->link_lost = true;
        child_->in_debugger = false;
        if (!child_->said_bye && !child_->exited) {
          suspect = std::exchange(child_->on_link_lost, nullptr);
        }
      }
      child_->cv.SignalAll();
    }
    if (!done_) FinishLocked(grpc::Status::OK);
    return suspect;
  }

  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    if (writing_) {
      // One operation at a time on the write side: after the write.
      finish_deferred_ = true;
      deferred_status_ = status;
      return;
    }
    finishing_ = true;
    finish_deferred_ = false;
    if (queue_->Post(
            [this, &status] { stream_.Finish(status, AsTag(&finish_tag_)); })) {
      ++pending_;
    }
  }

  Runtime* const rt_;
  ServiceQueue* const queue_;
  const LinkRequestFn request_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<v1::LinkMsg, v1::LinkMsg> stream_{&ctx_};
  ServiceTag accept_tag_{this}, read_tag_{this}, write_tag_{this},
      finish_tag_{this}, done_tag_{this};

  Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool arrived_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_deferred_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status deferred_status_ ABSL_GUARDED_BY(mu_);
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  // Set once, by the hello (read after under mu_ or by the thread that set
  // it).
  std::shared_ptr<ChildProc> child_;
  v1::Aid aid_;                       // the child's, once linked
  v1::LinkMsg in_, out_;
};

// One call to a method nobody serves: answered at once, unless it is one
// of the standard services loaded on first use (handed on).
class UnknownCall final : public ServiceCall {
 public:
  UnknownCall(std::string actor_name, grpc::AsyncGenericService* service,
              ServiceQueue* queue,
              std::shared_ptr<discovery::LazyStandardServices> standard)
      : actor_name_(std::move(actor_name)),
        service_(service),
        queue_(queue),
        standard_(std::move(standard)) {}

  static void Request(UnknownCall* call) {
    if (!call->queue_->Post([call] {
          call->service_->RequestCall(&call->call_->ctx, &call->call_->stream,
                                      call->queue_->cq(), call->queue_->cq(),
                                      AsTag(&call->accept_tag_));
        })) {
      delete call;
    }
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    if (tag == &accept_tag_ && ok) {
      Request(new UnknownCall(actor_name_, service_, queue_, standard_));
      const std::string& method = call_->ctx.method();
      if (standard_ != nullptr && standard_->Serves(method)) {
        ForwardStandardCall(standard_, std::move(call_), queue_);
        delete this;
        return;
      }
      grpc::Status status =
          method == "/tractor.v1.Actor/DebugLock"
              ? grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                             absl::StrCat("actor '", actor_name_,
                                          "' is not in debug mode: it serves "
                                          "no debug lock"))
              : grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                             "unknown method " + method);
      if (queue_->Post(
              [&] { call_->stream.Finish(status, AsTag(&finish_tag_)); })) {
        return;
      }
    }
    // A request cancelled by the shutdown, or the answer sent.
    delete this;
  }

 private:
  const std::string actor_name_;
  grpc::AsyncGenericService* const service_;
  ServiceQueue* const queue_;
  const std::shared_ptr<discovery::LazyStandardServices> standard_;
  std::unique_ptr<GenericCall> call_ = std::make_unique<GenericCall>();
  ServiceTag accept_tag_{this}, finish_tag_{this};
};

}  // namespace

// --- ServiceThread ----------------------------------------------------------

ServiceThread::ServiceThread(std::unique_ptr<grpc::ServerCompletionQueue> cq)
    : cq_(std::move(cq)) {}

ServiceThread::~ServiceThread() { Stop(); }

void ServiceThread::Start(const std::string& thread_name) {
  thread_ = std::thread([this, thread_name] {
    discovery::NameThisThread(thread_name.c_str());
    void* raw = nullptr;
    bool ok = false;
    while (cq_->Next(&raw, &ok)) {
      BusyWait::NoteIo();
      auto* tag = static_cast<ServiceTag*>(static_cast<CqTransport::Tag*>(raw));
      tag->call->Proceed(tag, ok);
    }
  });
}

void ServiceThread::Stop() {
  {
    MutexLock lk(&mu_);
    if (shut_) return;
    shut_ = true;
  }
  cq_->Shutdown();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    // Never started: drain here.
    void* raw = nullptr;
    bool ok = false;
    while (cq_->Next(&raw, &ok)) {
      auto* tag = static_cast<ServiceTag*>(static_cast<CqTransport::Tag*>(raw));
      tag->call->Proceed(tag, ok);
    }
  }
}

bool ServiceThread::Post(absl::FunctionRef<void()> post) {
  MutexLock lk(&mu_);
  if (shut_) return false;
  post();
  return true;
}

void ServeLinks(Runtime* rt, ServiceQueue* queue, LinkRequestFn request) {
  // Two requests outstanding, so that a child linking while the next is
  // being requested is matched at once.
  LinkCall::Request(new LinkCall(rt, queue, request));
  LinkCall::Request(new LinkCall(rt, queue, std::move(request)));
}

void ServeUnknownMethods(
    const std::string& actor_name, grpc::AsyncGenericService* service,
    ServiceQueue* queue,
    std::shared_ptr<discovery::LazyStandardServices> standard) {
  UnknownCall::Request(
      new UnknownCall(actor_name, service, queue, std::move(standard)));
}

}  // namespace tractor::internal
