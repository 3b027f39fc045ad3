// SPDX-License-Identifier: AGPL-3.0-or-later
// A bare gRPC server: the raw baseline that //tools/bench compares the actor
// runtime against. Same library and build flags as the runtime, no runtime.
//
//   raw_server [--api=sync|callback] [--unix=PATH] [--once]
//
//   --api=callback  the Bench service on gRPC's callback API (default)
//   --api=sync      the Bench service on gRPC's sync API (a handler thread
//                   per call, blocking reads and writes)
//   --unix=PATH     also serves on the unix-domain socket PATH (absolute)
//   --once          exits after answering one Echo (spawn baseline);
//                   otherwise serves until its stdin reaches EOF
//
// It binds 127.0.0.1:0 and prints "PORT <n>" on stdout once it serves. The
// bench holds the write end of the server's stdin, so the server ends when
// the bench does, whatever way the bench ends.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench.grpc.pb.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, api, "callback", "gRPC server API: sync or callback");
// GNU C++ predefines `unix` as a macro; the flag keeps its name.
#undef unix
ABSL_FLAG(std::string, unix, "",
          "also listen on this unix socket path (absolute)");
ABSL_FLAG(bool, once, false, "exit after serving one Echo");
ABSL_FLAG(std::string, tls, "",
          "mutual TLS with DIR/ca.pem, DIR/node.pem and DIR/node.key, the "
          "same settings as the actor runtime's");

namespace tractor::bench {
namespace {

namespace v1 = ::tractor::bench::v1;

// Set once by the first of: stdin EOF, or (with --once) the first Echo.
class StopSignal {
 public:
  void Notify() {
    // Notified with the lock held: the waiter may destroy this object as
    // soon as it sees `stop_`, so the notification must be over by then.
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
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

class CallbackBenchService final : public v1::Bench::CallbackService {
 public:
  // `on_echo` (may be null) runs after every Echo answer is queued.
  explicit CallbackBenchService(StopSignal* on_echo) : on_echo_(on_echo) {}

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

// The same service on the sync API: every call runs on a thread of the
// server's pool, which blocks in Read and Write.
class SyncBenchService final : public v1::Bench::Service {
 public:
  // `on_echo` (may be null) runs after every Echo answer is computed.
  explicit SyncBenchService(StopSignal* on_echo) : on_echo_(on_echo) {}

  grpc::Status Echo(grpc::ServerContext*, const v1::Blob* req,
                    v1::Blob* reply) override {
    *reply->mutable_data() = req->data();
    if (on_echo_ != nullptr) on_echo_->Notify();
    return grpc::Status::OK;
  }

  grpc::Status PingPong(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::Blob, v1::Blob>* stream) override {
    v1::Blob msg;
    while (stream->Read(&msg)) {
      if (!stream->Write(msg)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Sink(grpc::ServerContext*, grpc::ServerReader<v1::Blob>* reader,
                    v1::Count* reply) override {
    v1::Blob msg;
    while (reader->Read(&msg)) {
      reply->set_messages(reply->messages() + 1);
      reply->set_bytes(reply->bytes() + msg.data().size());
    }
    return grpc::Status::OK;
  }

 private:
  StopSignal* on_echo_;
};

struct Flags {
  bool sync = false;
  bool once = false;
  std::string unix_path;
  // Mutual TLS with DIR/ca.pem, DIR/node.pem and DIR/node.key (as made by
  // tests/make_test_pki.sh): the same settings as the actor runtime's.
  std::string tls_dir;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<grpc::ServerCredentials> Credentials(const Flags& flags) {
  if (flags.tls_dir.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = ReadFile(flags.tls_dir + "/ca.pem");
  options.pem_key_cert_pairs.push_back(
      {ReadFile(flags.tls_dir + "/node.key"),
       ReadFile(flags.tls_dir + "/node.pem")});
  return grpc::SslServerCredentials(options);
}

int Run(const Flags& flags) {
  StopSignal stop;
  StopSignal* on_echo = flags.once ? &stop : nullptr;
  std::unique_ptr<grpc::Service> service;
  if (flags.sync) {
    service = std::make_unique<SyncBenchService>(on_echo);
  } else {
    service = std::make_unique<CallbackBenchService>(on_echo);
  }
  grpc::ServerBuilder builder;
  int port = 0;
  // The actor runtime allows 64 MiB messages; so does the baseline.
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  std::shared_ptr<grpc::ServerCredentials> credentials = Credentials(flags);
  builder.AddListeningPort("127.0.0.1:0", credentials, &port);
  int unix_bound = 0;
  if (!flags.unix_path.empty()) {
    builder.AddListeningPort("unix:" + flags.unix_path, credentials,
                             &unix_bound);
  }
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0 || (!flags.unix_path.empty() && unix_bound == 0)) {
    std::fprintf(stderr, "raw_server: could not bind 127.0.0.1:0%s%s\n",
                 flags.unix_path.empty() ? "" : " and unix:",
                 flags.unix_path.c_str());
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
  if (!flags.unix_path.empty()) unlink(flags.unix_path.c_str());
  return 0;
}

}  // namespace
}  // namespace tractor::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a bare gRPC server for the bench baseline\n"
      "  raw_server [--api=sync|callback] [--unix=PATH] [--once]");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  tractor::bench::Flags flags;
  const std::string api = absl::GetFlag(FLAGS_api);
  flags.sync = api == "sync";
  flags.once = absl::GetFlag(FLAGS_once);
  flags.unix_path = absl::GetFlag(FLAGS_unix);
  flags.tls_dir = absl::GetFlag(FLAGS_tls);
  if (positional.size() > 1 || (api != "sync" && api != "callback") ||
      (!flags.unix_path.empty() && flags.unix_path[0] != '/')) {
    std::fprintf(stderr,
                 "raw_server: bad command line (--api=sync|callback, "
                 "--unix=/absolute/path, --once)\n");
    return 2;
  }
  int rc = tractor::bench::Run(flags);
  std::fflush(stdout);
  _exit(rc);  // the stdin reader thread may still be blocked in read()
}
