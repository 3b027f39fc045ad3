// SPDX-License-Identifier: AGPL-3.0-or-later
// An actor's unary control methods (`Info`, `CancelTask`, `Stats`,
// `Stacks`) and the health service's `Check` are async methods on the
// accept queue, like `CancelActor`: an actor outside debug mode and without
// an embedded registrar has no gRPC sync server, so no sync-server thread
// (docs/architecture.md#threads). A malformed request to each is refused
// with what could not be decoded, and the actor serves on; a `Stacks` still
// gathering when the actor shuts down holds the exit for a bounded time.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/internal/runtime.h"
#include "discovery/credentials.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/raw_unary.h"
#include "tests/thread_census.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {
namespace {

using ::testing::HasSubstr;
using ::tractor::testing::RawUnary;

constexpr absl::Duration kCallDeadline = absl::Seconds(10);

// gRPC names its sync server's threads so (truncated to 15 characters).
constexpr char kSyncServerThread[] = "grpcpp_sync_ser";

TEST(ControlMethodsTest, AnIdleActorHasNoSyncServerThread) {
  Runtime::Config config;
  config.self.set_name("lone");
  Runtime rt(config);
  rt.Start();
  auto channel = grpc::CreateChannel(rt.accept_addrs().at(0),
                                     grpc::InsecureChannelCredentials());
  // Every method that used to be on the sync API, answered.
  std::string bytes;
  ASSERT_TRUE(
      RawUnary(channel, "/tractor.v1.Actor/Info", "", kCallDeadline, &bytes)
          .ok());
  v1::ActorInfo info;
  ASSERT_TRUE(info.ParseFromString(bytes));
  EXPECT_EQ(info.aid().name(), "lone");
  ASSERT_TRUE(
      RawUnary(channel, "/tractor.v1.Actor/Stats", "", kCallDeadline, &bytes)
          .ok());
  v1::ActorStats stats;
  ASSERT_TRUE(stats.ParseFromString(bytes));
  EXPECT_GT(stats.threads(), 0u);
  v1::CancelTaskRequest cancel;
  cancel.set_cid("no-such-task");
  ASSERT_TRUE(RawUnary(channel, "/tractor.v1.Actor/CancelTask",
                       cancel.SerializeAsString(), kCallDeadline, &bytes)
                  .ok());
  v1::CancelTaskReply cancelled;
  ASSERT_TRUE(cancelled.ParseFromString(bytes));
  EXPECT_FALSE(cancelled.found());
  ASSERT_TRUE(
      RawUnary(channel, "/tractor.v1.Actor/Stacks", "", kCallDeadline, &bytes)
          .ok());
  v1::StacksReply stacks;
  ASSERT_TRUE(stacks.ParseFromString(bytes));
  ASSERT_EQ(stacks.actors_size(), 1);
  EXPECT_THAT(stacks.actors(0).text(), HasSubstr("stacks of every thread"));
  ASSERT_TRUE(
      RawUnary(channel, "/grpc.health.v1.Health/Check", "", kCallDeadline,
               &bytes)
          .ok());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));

  EXPECT_EQ(testing::ThreadsNamed(kSyncServerThread), 0);
  // The gathering leaves its gate just after its answer is posted.
  EXPECT_TRUE(testing::WaitUntil([&] { return rt.stacks_in_progress() == 0; },
                                 absl::Seconds(5)));
  rt.Shutdown();
}

TEST(ControlMethodsTest, MalformedRequestsAreRefusedAndTheActorServesOn) {
  Runtime::Config config;
  config.self.set_name("lone");
  Runtime rt(config);
  rt.Start();
  auto channel = grpc::CreateChannel(rt.accept_addrs().at(0),
                                     grpc::InsecureChannelCredentials());
  // A length-delimited field 1 that claims 5 bytes and has 2.
  const std::string garbage("\x0a\x05" "ab", 4);
  for (const auto& [method, why] :
       {std::pair<std::string, std::string>{"/tractor.v1.Actor/Info",
                                            "Actor.Info request"},
        {"/tractor.v1.Actor/CancelTask", "Actor.CancelTask request"},
        {"/tractor.v1.Actor/Stats", "Actor.Stats request"},
        {"/tractor.v1.Actor/Stacks", "Actor.Stacks request"},
        {"/grpc.health.v1.Health/Check", "Health.Check request"}}) {
    grpc::Status s = RawUnary(channel, method, garbage, kCallDeadline);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(s.error_message(), HasSubstr(why)) << method;
    // Still served: the same method, well formed, is answered.
    std::string bytes;
    EXPECT_TRUE(RawUnary(channel, method, "", kCallDeadline, &bytes).ok())
        << method;
  }
  rt.Shutdown();
}

// A TCP port that accepts connections (the kernel does) and never answers
// on them: a child whose `Stacks` never comes.
class SilentPort {
 public:
  SilentPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 ||
        listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      ADD_FAILURE() << "no silent port";
      return;
    }
    addr_ = absl::StrCat("127.0.0.1:", ntohs(sa.sin_port));
  }
  ~SilentPort() {
    if (fd_ >= 0) close(fd_);
  }
  const std::string& addr() const { return addr_; }

 private:
  int fd_ = -1;
  std::string addr_;
};

TEST(ControlMethodsTest, StacksDuringShutdownDoesNotHoldTheExitPastItsBound) {
  SilentPort silent;
  ASSERT_FALSE(silent.addr().empty());
  Runtime::Config config;
  config.self.set_name("gatherer");
  Runtime rt(config);
  rt.Start();
  // A linked child at the silent port.
  rt.ExpectChild("silent-uuid", "silent-secret");
  v1::LinkHello hello;
  hello.mutable_aid()->set_name("silent");
  hello.mutable_aid()->set_uuid("silent-uuid");
  hello.set_link_secret("silent-secret");
  hello.add_accept_addrs(silent.addr());
  grpc::Status refused;
  ASSERT_NE(rt.OnChildLinked(hello, &refused), nullptr)
      << refused.error_message();

  // The tree's stacks, each child given 30 s (so 60 s for its call).
  auto channel = grpc::CreateChannel(rt.accept_addrs().at(0),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Actor::NewStub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(90)));
  v1::StacksRequest req;
  req.set_tree(true);
  req.set_timeout_ms(30000);
  v1::StacksReply reply;
  grpc::Status status;
  auto call = stub->AsyncStacks(&ctx, req, &cq);
  call->Finish(&reply, &status, &status);
  ASSERT_TRUE(testing::WaitUntil([&] { return rt.stacks_in_progress() == 1; },
                                 absl::Seconds(10)));

  const absl::Time start = absl::Now();
  rt.Shutdown();
  const absl::Duration took = absl::Now() - start;
  // The bound twice (the wait, then the wait once the child's call is cut
  // short), and room for a loaded machine: far below the child's 60 s.
  EXPECT_LT(took, Runtime::kStacksBound * 2 + absl::Seconds(3));
  printf("shutdown with a Stacks gathering: %s\n",
         absl::FormatDuration(took).c_str());
  // The gathering ended (its child's call cut short).
  EXPECT_TRUE(testing::WaitUntil([&] { return rt.stacks_in_progress() == 0; },
                                 absl::Seconds(5)));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  if (status.ok()) {
    // Answered before the server went: this actor's stacks, and the child
    // reported as not answering.
    ASSERT_EQ(reply.actors_size(), 2);
    EXPECT_EQ(reply.actors(1).aid().name(), "silent");
    EXPECT_THAT(reply.actors(1).error(), HasSubstr("no answer from"));
  } else {
    // Only when the gathering outlived both waits (a very loaded machine):
    // the server went without its answer.
    printf("Stacks not answered: %s\n", status.error_message().c_str());
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                status.error_code() == grpc::StatusCode::CANCELLED)
        << status.error_code() << " " << status.error_message();
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace tractor::internal
