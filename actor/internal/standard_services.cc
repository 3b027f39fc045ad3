// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/standard_services.h"

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "glog/logging.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {
namespace {

void* AsTag(ServiceTag* tag) { return static_cast<CqTransport::Tag*>(tag); }

std::optional<std::string> Flatten(const grpc::ByteBuffer& bytes) {
  std::vector<grpc::Slice> slices;
  if (!bytes.Dump(&slices).ok()) return std::nullopt;
  std::string flat;
  for (const auto& s : slices) {
    flat.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return flat;
}

grpc::ByteBuffer ToByteBuffer(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

// One relayed call. Exactly one operation is outstanding at any time (the
// relay is strictly one request, then one response), so whoever's post is
// refused (the queue shuts down) owns the call and deletes it.
class StandardCall final : public ServiceCall {
 public:
  StandardCall(std::shared_ptr<discovery::LazyStandardServices> standard,
               std::unique_ptr<GenericCall> call, ServiceQueue* queue)
      : standard_(std::move(standard)),
        call_(std::move(call)),
        queue_(queue),
        method_(call_->ctx.method()),
        reflection_(discovery::LazyStandardServices::IsReflection(method_)) {}

  ~StandardCall() override {
    // A relay cut short by the shutdown: the backend call ends with it.
    if (started_) cctx_.TryCancel();
  }

  void Start() {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> backend =
        discovery::LazyStandardServices::Backend();
    if (!backend.ok()) {
      static std::atomic<bool> logged{false};
      if (!logged.exchange(true)) LOG(ERROR) << backend.status().message();
      status_ = grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                             std::string(backend.status().message()));
      FinishServer();
      return;
    }
    stub_ = std::make_unique<grpc::GenericStub>(*std::move(backend));
    cctx_.set_deadline(call_->ctx.raw_deadline());
    if (reflection_) {
      Post([this] {
        bidi_ = stub_->PrepareCall(&cctx_, method_, queue_->cq());
        started_ = true;
        bidi_->StartCall(AsTag(&backend_start_tag_));
      });
    } else {
      ReadRequest();
    }
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    if (tag == &backend_start_tag_) {
      if (ok) {
        ReadRequest();
      } else {
        FinishBackend();
      }
    } else if (tag == &read_tag_) {
      OnRequest(ok);
    } else if (tag == &backend_write_tag_) {
      if (ok) {
        Post([this] { bidi_->Read(&out_, AsTag(&backend_read_tag_)); });
      } else {
        FinishBackend();
      }
    } else if (tag == &backend_read_tag_) {
      if (ok) {
        WriteResponse();
      } else {
        FinishBackend();
      }
    } else if (tag == &write_tag_) {
      if (ok) {
        ReadRequest();
      } else {
        // The client is gone.
        cctx_.TryCancel();
        FinishBackend();
      }
    } else if (tag == &backend_writes_done_tag_) {
      FinishBackend();
    } else if (tag == &backend_finish_tag_) {
      FinishServer();
    } else if (tag == &finish_tag_) {
      delete this;
    }
  }

 private:
  // Runs `post` (one operation) unless the queue shuts down; then the call
  // is over.
  template <typename F>
  void Post(F post) {
    if (!queue_->Post(post)) delete this;
  }

  void ReadRequest() {
    Post([this] { call_->stream.Read(&in_, AsTag(&read_tag_)); });
  }

  void WriteResponse() {
    Post([this] { call_->stream.Write(out_, AsTag(&write_tag_)); });
  }

  void OnRequest(bool ok) {
    if (!reflection_) {
      if (!ok) {
        status_ = grpc::Status(grpc::StatusCode::INTERNAL,
                               "no request message for unary method " + method_);
        FinishServer();
        return;
      }
      Post([this] {
        unary_ = stub_->PrepareUnaryCall(&cctx_, method_, in_, queue_->cq());
        started_ = true;
        unary_->StartCall();
        unary_->Finish(&out_, &status_, AsTag(&backend_finish_tag_));
      });
      return;
    }
    if (!ok) {
      // The client half-closed (or went): so does the relay.
      Post([this] { bidi_->WritesDone(AsTag(&backend_writes_done_tag_)); });
      return;
    }
    std::optional<std::string> answer;
    if (std::optional<std::string> request = Flatten(in_)) {
      answer = standard_->AnswerListServices(*request);
    }
    if (answer) {
      out_ = ToByteBuffer(*answer);
      WriteResponse();
      return;
    }
    Post([this] { bidi_->Write(in_, AsTag(&backend_write_tag_)); });
  }

  void FinishBackend() {
    Post([this] { bidi_->Finish(&status_, AsTag(&backend_finish_tag_)); });
  }

  void FinishServer() {
    if (!reflection_ && status_.ok()) {
      Post([this] {
        call_->stream.WriteAndFinish(out_, grpc::WriteOptions(), status_,
                                     AsTag(&finish_tag_));
      });
      return;
    }
    Post([this] { call_->stream.Finish(status_, AsTag(&finish_tag_)); });
  }

  const std::shared_ptr<discovery::LazyStandardServices> standard_;
  const std::unique_ptr<GenericCall> call_;
  ServiceQueue* const queue_;
  const std::string method_;
  const bool reflection_;
  std::unique_ptr<grpc::GenericStub> stub_;
  // Declared before the streams, which live in its call's arena.
  grpc::ClientContext cctx_;
  bool started_ = false;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> bidi_;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> unary_;
  grpc::ByteBuffer in_, out_;
  grpc::Status status_;
  ServiceTag read_tag_{this}, write_tag_{this}, finish_tag_{this},
      backend_start_tag_{this}, backend_write_tag_{this},
      backend_read_tag_{this}, backend_writes_done_tag_{this},
      backend_finish_tag_{this};
};

}  // namespace

void ForwardStandardCall(
    std::shared_ptr<discovery::LazyStandardServices> standard,
    std::unique_ptr<GenericCall> call, ServiceQueue* queue) {
  (new StandardCall(std::move(standard), std::move(call), queue))->Start();
}

}  // namespace tractor::internal
