// SPDX-License-Identifier: AGPL-3.0-or-later
// The child's side of its link (actor/internal/parent_link.h): the
// handshake, queued writes in order, the end of the stream either way, and
// that it starts no thread (its completions come on a queue that a thread
// of the runtime already waits on).
#include "actor/internal/parent_link.h"

#include <pthread.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tests/thread_census.h"

namespace tractor::internal {
namespace {

using ::tractor::testing::ThreadsNamed;

// A parent's link server: answers the hello with `accepted`, records every
// message, and ends the stream with `end_status` once told to (or when the
// child ends it).
class FakeParent final : public v1::Actor::Service {
 public:
  grpc::Status Link(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::LinkMsg, v1::LinkMsg>* stream) override {
    v1::LinkMsg m;
    if (!stream->Read(&m)) return grpc::Status::CANCELLED;
    Record(m);
    v1::LinkMsg reply;
    reply.mutable_accepted();
    stream->Write(reply);
    for (;;) {
      {
        MutexLock lk(&mu_);
        if (end_) return end_status_;
      }
      // Reads until the child ends the stream or the test ends it.
      if (!stream->Read(&m)) return grpc::Status::OK;
      Record(m);
    }
  }
  void Record(const v1::LinkMsg& m) {
    MutexLock lk(&mu_);
    got_.push_back(m);
    cv_.SignalAll();
  }
  // Waits until `n` messages arrived (or 10 s passed).
  std::vector<v1::LinkMsg> WaitFor(size_t n) {
    MutexLock lk(&mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (got_.size() < n && !cv_.WaitWithDeadline(&mu_, deadline)) {
    }
    return got_;
  }
  void EndWith(grpc::Status s) {
    MutexLock lk(&mu_);
    end_ = true;
    end_status_ = std::move(s);
  }
  grpc::Status Call(grpc::ServerContext*, const v1::Msg* req,
                    v1::Msg* reply) override {
    *reply = *req;
    return grpc::Status::OK;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<v1::LinkMsg> got_;
  bool end_ = false;
  grpc::Status end_status_;
};

// A server's completion queue with one thread delivering its service
// tags, as the runtime's accept queue does.
class TestQueue final : public ServiceQueue {
 public:
  explicit TestQueue(std::unique_ptr<grpc::ServerCompletionQueue> cq)
      : cq_(std::move(cq)), thread_([this] {
          pthread_setname_np(pthread_self(), "test-queue");
          void* raw = nullptr;
          bool ok = false;
          while (cq_->Next(&raw, &ok)) {
            auto* tag =
                static_cast<ServiceTag*>(static_cast<CqTransport::Tag*>(raw));
            tag->call->Proceed(tag, ok);
          }
        }) {}
  // After the server's shutdown.
  void Stop() {
    {
      MutexLock lk(&mu_);
      if (shut_) return;
      shut_ = true;
    }
    cq_->Shutdown();
    thread_.join();
  }
  grpc::ServerCompletionQueue* cq() override { return cq_.get(); }
  bool Post(absl::FunctionRef<void()> post) override {
    MutexLock lk(&mu_);
    if (shut_) return false;
    post();
    return true;
  }

 private:
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  Mutex mu_;
  bool shut_ = false;
  std::thread thread_;
};

struct Fixture {
  FakeParent parent;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<TestQueue> queue;
  std::shared_ptr<grpc::Channel> channel;
  Fixture() {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(&parent);
    auto cq = b.AddCompletionQueue();
    server = b.BuildAndStart();
    queue = std::make_unique<TestQueue>(std::move(cq));
    channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials());
  }
  ~Fixture() {
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(1));
    queue->Stop();
  }
};

// Waits (10 s at most) until `done` is set.
bool AwaitFlag(Mutex& mu, CondVar& cv, bool& done) {
  MutexLock lk(&mu);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!done && !cv.WaitWithDeadline(&mu, deadline)) {
  }
  return done;
}

v1::LinkMsg Beat() {
  v1::LinkMsg m;
  m.mutable_heartbeat();
  return m;
}

TEST(ParentLinkTest, HelloThenWritesInOrderThenBye) {
  Fixture f;
  const int threads_before = ThreadsNamed("parent_link_tes");
  ParentLink link(f.channel, f.queue.get());
  v1::LinkMsg hello;
  hello.mutable_hello()->mutable_aid()->set_name("child");
  v1::LinkMsg reply;
  bool wrote = false;
  ASSERT_TRUE(link.Exchange(hello, &reply, &wrote));
  EXPECT_TRUE(wrote);
  EXPECT_TRUE(reply.has_accepted());
  Mutex mu;
  CondVar cv;
  bool ended = false;
  link.StartReading([&] {
    MutexLock lk(&mu);
    ended = true;
    cv.SignalAll();
  });
  // The link waits on the test's queue: no thread of its own (a thread it
  // started would carry the name of this one; an earlier test's threads
  // may still be leaving, so the count may drop).
  EXPECT_LE(ThreadsNamed("parent_link_tes"), threads_before);
  // Writes from several threads at once are queued, none lost.
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < 25; ++i) link.Write(Beat());
    });
  }
  for (auto& w : writers) w.join();
  v1::LinkMsg bye;
  bye.mutable_bye()->set_reason("done");
  link.Write(bye);
  EXPECT_TRUE(link.Flush(absl::Now() + absl::Seconds(10)));
  std::vector<v1::LinkMsg> got = f.parent.WaitFor(102);
  ASSERT_EQ(got.size(), 102u);
  EXPECT_EQ(got.front().hello().aid().name(), "child");
  EXPECT_EQ(got.back().bye().reason(), "done");
  EXPECT_FALSE(ended);
  link.Cancel();
  EXPECT_TRUE(AwaitFlag(mu, cv, ended));
  EXPECT_EQ(link.Finish(absl::Now() + absl::Seconds(10)).error_code(),
            grpc::StatusCode::CANCELLED);
}

TEST(ParentLinkTest, ParentEndingTheStreamEndsTheRead) {
  Fixture f;
  ParentLink link(f.channel, f.queue.get());
  v1::LinkMsg hello, reply;
  hello.mutable_hello();
  bool wrote = false;
  ASSERT_TRUE(link.Exchange(hello, &reply, &wrote));
  Mutex mu;
  CondVar cv;
  bool ended = false;
  link.StartReading([&] {
    MutexLock lk(&mu);
    ended = true;
    cv.SignalAll();
  });
  f.parent.EndWith(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no"));
  // The parent's handler returns once it reads the next message.
  link.Write(Beat());
  EXPECT_TRUE(AwaitFlag(mu, cv, ended));
  const grpc::Status st = link.Finish(absl::Now() + absl::Seconds(10));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message(), "no");
  // Writes after the end are dropped, and a flush does not wait for them.
  link.Write(Beat());
  EXPECT_TRUE(link.Flush(absl::Now() + absl::Seconds(10)));
}

TEST(ParentLinkTest, UnreachableParentFailsTheExchange) {
  // Nothing listens on port 1; the call fails without a hang.
  Fixture f;
  auto channel = grpc::CreateChannel("127.0.0.1:1",
                                     grpc::InsecureChannelCredentials());
  ParentLink link(channel, f.queue.get());
  v1::LinkMsg hello, reply;
  hello.mutable_hello();
  bool wrote = true;
  EXPECT_FALSE(link.Exchange(hello, &reply, &wrote));
  EXPECT_EQ(link.Finish(absl::Now() + absl::Seconds(10)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST(ParentLinkTest, ShutDownQueueRefusesTheLink) {
  Fixture f;
  f.server->Shutdown(std::chrono::system_clock::now());
  f.queue->Stop();
  ParentLink link(f.channel, f.queue.get());
  v1::LinkMsg hello, reply;
  hello.mutable_hello();
  bool wrote = true;
  EXPECT_FALSE(link.Exchange(hello, &reply, &wrote));
  EXPECT_FALSE(wrote);
  EXPECT_EQ(link.Finish(absl::Now() + absl::Seconds(10)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace tractor::internal
