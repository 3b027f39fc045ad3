// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/health_service.h"

#include <string>
#include <utility>
#include <vector>

#include "glog/logging.h"
#include "google/protobuf/unknown_field_set.h"

namespace tractor::internal {
namespace {

void* AsTag(ServiceTag* tag) { return static_cast<CqTransport::Tag*>(tag); }

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
