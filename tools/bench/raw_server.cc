// A bare gRPC server: the raw baseline that //tools/bench compares the actor
// runtime against. Same library and build flags as the runtime, no runtime.
//
//   raw_server          serves Bench until its stdin reaches EOF
//   raw_server --once   exits after answering one Echo (spawn baseline)
//
// It binds 127.0.0.1:0 and prints "PORT <n>" on stdout once it serves. The
// bench holds the write end of the server's stdin, so the server ends when
// the bench does, whatever way the bench ends.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "bench.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace tractor::bench {
namespace {

namespace v1 = ::tractor::bench::v1;

// Set once by the first of: stdin EOF, or (with --once) the first Echo.
class StopSignal {
 public:
  void Notify() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stop_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// Answers every message with the same message, one at a time.
class PingPongReactor final : public grpc::ServerBidiReactor<v1::Blob, v1::Blob> {
 public:
  PingPongReactor() { StartRead(&msg_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&msg_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartRead(&msg_);
  }
  void OnDone() override { delete this; }

 private:
  v1::Blob msg_;
};

// Counts a client stream and answers with the count.
class SinkReactor final : public grpc::ServerReadReactor<v1::Blob> {
 public:
  explicit SinkReactor(v1::Count* count) : count_(count) { StartRead(&msg_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    count_->set_messages(count_->messages() + 1);
    count_->set_bytes(count_->bytes() + msg_.data().size());
    StartRead(&msg_);
  }
  void OnDone() override { delete this; }

 private:
  v1::Count* count_;
  v1::Blob msg_;
};

class BenchService final : public v1::Bench::CallbackService {
 public:
  // `on_echo` (may be null) runs after every Echo answer is queued.
  explicit BenchService(StopSignal* on_echo) : on_echo_(on_echo) {}

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx,
                                 const v1::Blob* req,
                                 v1::Blob* reply) override {
    *reply->mutable_data() = req->data();
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    if (on_echo_ != nullptr) on_echo_->Notify();
    return r;
  }

  grpc::ServerBidiReactor<v1::Blob, v1::Blob>* PingPong(
      grpc::CallbackServerContext*) override {
    return new PingPongReactor();
  }

  grpc::ServerReadReactor<v1::Blob>* Sink(grpc::CallbackServerContext*,
                                          v1::Count* reply) override {
    return new SinkReactor(reply);
  }

 private:
  StopSignal* on_echo_;
};

int Run(bool once) {
  StopSignal stop;
  BenchService service(once ? &stop : nullptr);
  grpc::ServerBuilder builder;
  int port = 0;
  // The actor runtime allows 64 MiB messages; so does the baseline.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "raw_server: could not bind 127.0.0.1:0\n");
    return 1;
  }
  std::printf("PORT %d\n", port);
  std::fflush(stdout);
  // Ends when the parent closes (or loses) our stdin.
  std::thread([&stop] {
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    stop.Notify();
  }).detach();
  stop.Wait();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace tractor::bench

int main(int argc, char** argv) {
  bool once = argc > 1 && std::strcmp(argv[1], "--once") == 0;
  int rc = tractor::bench::Run(once);
  std::fflush(stdout);
  _exit(rc);  // the stdin reader thread may still be blocked in read()
}
