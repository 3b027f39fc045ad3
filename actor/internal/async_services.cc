// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/async_services.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/internal/runtime.h"
#include "actor/internal/standard_services.h"
#include "actor/internal/wire.h"
#include "discovery/log_level.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"
#include "google/protobuf/unknown_field_set.h"

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

// grpc.health.v1 HealthCheckResponse{status}, encoded by hand (field 1,
// varint): the status values are below 128.
std::string EncodeHealth(int status) {
  return std::string{'\x08', static_cast<char>(status)};
}

// The `service` field of a HealthCheckRequest; false if the bytes do not
// parse.
bool DecodeHealthRequest(const grpc::ByteBuffer& bytes, std::string* service) {
  std::vector<grpc::Slice> slices;
  if (!bytes.Dump(&slices).ok()) return false;
  std::string flat;
  for (const auto& s : slices) {
    flat.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(flat)) return false;
  service->clear();
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto& f = fields.field(i);
    if (f.number() != 1) continue;
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      return false;
    }
    *service = f.length_delimited();
  }
  return true;
}

grpc::ByteBuffer ToByteBuffer(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

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

// --- HealthService ------------------------------------------------------------

class HealthService::Impl final : public grpc::Service {
 public:
  explicit Impl(HealthService* health) {
    AddMethod(new grpc::internal::RpcServiceMethod(
        "/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC,
        nullptr));
    AddMethod(new grpc::internal::RpcServiceMethod(
        "/grpc.health.v1.Health/Watch",
        grpc::internal::RpcMethod::SERVER_STREAMING, nullptr));
    MarkMethodRaw(0);
    MarkMethodRaw(1);
  }

  void RequestCheck(grpc::ServerContext* ctx, grpc::ByteBuffer* request,
                    grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>* writer,
                    grpc::ServerCompletionQueue* cq, void* tag) {
    RequestAsyncUnary(0, ctx, request, writer, cq, cq, tag);
  }

  void RequestWatch(grpc::ServerContext* ctx, grpc::ByteBuffer* request,
                    grpc::ServerAsyncWriter<grpc::ByteBuffer>* writer,
                    grpc::ServerCompletionQueue* cq, void* tag) {
    RequestAsyncServerStreaming(1, ctx, request, writer, cq, cq, tag);
  }
};

// One Check, answered on the thread that takes its arrival off the queue
// (which requests the next Check first).
class HealthService::CheckCall final : public ServiceCall {
 public:
  CheckCall(HealthService* health, ServiceQueue* queue)
      : health_(health), queue_(queue) {}

  // Requests one Check on the queue, unless it is shutting down.
  static void Request(HealthService* health, ServiceQueue* queue) {
    auto* call = new CheckCall(health, queue);
    if (!queue->Post([call] {
          call->health_->service_->RequestCheck(
              &call->ctx_, &call->request_, &call->responder_,
              call->queue_->cq(), AsTag(&call->accept_tag_));
        })) {
      delete call;
    }
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    if (tag == &finish_tag_ || !ok) {
      // The answer went (or the caller was gone), or the request was
      // cancelled by the shutdown.
      delete this;
      return;
    }
    Request(health_, queue_);
    std::string service;
    grpc::Status status;
    if (!DecodeHealthRequest(request_, &service)) {
      status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "Health.Check request: not a HealthCheckRequest");
    } else if (!service.empty()) {
      status =
          grpc::Status(grpc::StatusCode::NOT_FOUND, "service name unknown");
    } else {
      reply_ = ToByteBuffer(health_->Response());
    }
    request_.Clear();
    if (!queue_->Post([&] {
          if (status.ok()) {
            responder_.Finish(reply_, status, AsTag(&finish_tag_));
          } else {
            responder_.FinishWithError(status, AsTag(&finish_tag_));
          }
        })) {
      delete this;
    }
  }

 private:
  HealthService* const health_;
  ServiceQueue* const queue_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_, reply_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&ctx_};
  ServiceTag accept_tag_{this}, finish_tag_{this};
};

// One Watch: the status now, then each change, until the client goes.
class HealthService::WatchCall final : public ServiceCall {
 public:
  WatchCall(HealthService* health, ServiceQueue* queue)
      : health_(health), queue_(queue) {}

  void Proceed(ServiceTag* tag, bool ok) override {
    bool next = false;
    bool gone;
    // Copied first: once mu_ is released, another thread waiting on the
    // queue may take this call's last completion and delete it.
    HealthService* const health = health_;
    ServiceQueue* const queue = queue_;
    // Before mu_: the service's lock is taken before a call's, never after.
    const std::string now = health_->Response();
    {
      MutexLock lk(&mu_);
      --pending_;
      if (tag == &accept_tag_) {
        if (ok) {
          arrived_ = true;
          ++pending_;  // the done tag
          next = true;
          std::string service;
          if (!DecodeHealthRequest(request_, &service)) {
            FinishLocked(grpc::Status(
                grpc::StatusCode::INVALID_ARGUMENT,
                "Health.Watch request: not a HealthCheckRequest"));
          } else {
            unknown_service_ = !service.empty();
            WriteLocked(unknown_service_ ? EncodeHealth(3) : now);
          }
        }
      } else if (tag == &write_tag_) {
        writing_ = false;
        if (!ok) {
          FinishLocked(grpc::Status::OK);
        } else if (!unknown_service_ && !queued_.empty()) {
          std::string bytes = std::move(queued_);
          queued_.clear();
          WriteLocked(bytes);
        } else if (end_) {
          FinishLocked(grpc::Status::OK);
        }
      } else if (tag == &done_tag_) {
        done_ = true;
      }
      gone = pending_ == 0 && (!arrived_ || done_);
    }
    if (next) health->Request(queue);
    if (gone) {
      health_->Forget(this);
      delete this;
    }
  }

  // A new status: written after the one in flight (only the latest).
  void Update(const std::string& bytes) {
    MutexLock lk(&mu_);
    if (!arrived_ || done_ || finishing_ || unknown_service_) return;
    if (writing_) {
      queued_ = bytes;
    } else {
      WriteLocked(bytes);
    }
  }

  // The service shuts down: ends the stream after what is in flight.
  void End() {
    MutexLock lk(&mu_);
    end_ = true;
    if (arrived_ && !done_ && !writing_) FinishLocked(grpc::Status::OK);
  }

  bool Request(Impl* service) {
    MutexLock lk(&mu_);
    const bool posted = queue_->Post([&] {
      ctx_.AsyncNotifyWhenDone(AsTag(&done_tag_));
      service->RequestWatch(&ctx_, &request_, &writer_, queue_->cq(),
                            AsTag(&accept_tag_));
    });
    if (posted) ++pending_;
    return posted;
  }

 private:
  void WriteLocked(const std::string& bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_ = ToByteBuffer(bytes);
    // The buffer belongs to the write in flight until its tag returns
    // (`writing_`), so the queue's thread reads it without the lock.
    const grpc::ByteBuffer* out = &out_;
    if (queue_->Post(
            [this, out] { writer_.Write(*out, AsTag(&write_tag_)); })) {
      ++pending_;
      writing_ = true;
    }
  }
  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_ || done_) return;
    finishing_ = true;
    if (queue_->Post(
            [&] { writer_.Finish(status, AsTag(&finish_tag_)); })) {
      ++pending_;
    }
  }

  HealthService* const health_;
  ServiceQueue* const queue_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncWriter<grpc::ByteBuffer> writer_{&ctx_};
  ServiceTag accept_tag_{this}, write_tag_{this}, finish_tag_{this},
      done_tag_{this};
  Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool arrived_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool end_ ABSL_GUARDED_BY(mu_) = false;
  bool unknown_service_ ABSL_GUARDED_BY(mu_) = false;
  std::string queued_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer out_ ABSL_GUARDED_BY(mu_);
};

HealthService::HealthService() : service_(std::make_unique<Impl>(this)) {}

HealthService::~HealthService() = default;

grpc::Service* HealthService::service() { return service_.get(); }

void HealthService::Serve(ServiceQueue* queue) {
  CheckCall::Request(this, queue);
  Request(queue);
}

void HealthService::Request(ServiceQueue* queue) {
  auto* call = new WatchCall(this, queue);
  {
    MutexLock lk(&mu_);
    if (shut_down_) {
      delete call;
      return;
    }
    watchers_.push_back(call);
  }
  if (!call->Request(service_.get())) {
    Forget(call);
    delete call;
  }
}

void HealthService::Forget(WatchCall* call) {
  MutexLock lk(&mu_);
  watchers_.erase(std::remove(watchers_.begin(), watchers_.end(), call),
                  watchers_.end());
}

std::string HealthService::Response() {
  MutexLock lk(&mu_);
  return EncodeHealth(status_);
}

void HealthService::SetServingStatus(const std::string& service_name,
                                     bool serving) {
  // One status for the whole server: only the overall one ("") counts.
  if (service_name.empty()) SetServingStatus(serving);
}

void HealthService::SetServingStatus(bool serving) {
  MutexLock lk(&mu_);
  if (shut_down_) return;
  const int status = serving ? 1 : 2;
  if (status == status_) return;
  status_ = status;
  for (WatchCall* w : watchers_) w->Update(EncodeHealth(status));
}

void HealthService::Shutdown() {
  MutexLock lk(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  status_ = 2;
  for (WatchCall* w : watchers_) {
    w->Update(EncodeHealth(2));
    w->End();
  }
}

}  // namespace tractor::internal
