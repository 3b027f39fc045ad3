// SPDX-License-Identifier: AGPL-3.0-or-later
// An actor's services use no gRPC callback API outside debug mode: `Info`
// and the other unary control methods, `Link`, the answer to unknown
// methods and the health service run on the completion queue the runtime's
// own threads wait on (tests/actor/internal/control_methods_test.cc: nor
// any sync API). So serving them never starts
// gRPC's callback threads (`nexting_thread`), which would wait in the same
// poller as every other thread of the process and hand events over
// (docs/architecture.md#threads). Each call below is one the callback
// services answered before; the answers are the same.
//
// The runtime here has no registry: the registry client and the embedded
// registrar are still on the callback API.

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/internal/runtime.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/thread_census.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {
namespace {

using ::testing::HasSubstr;

// How many threads of this process are gRPC's callback threads.
int CallbackThreads() { return testing::ThreadsNamed("nexting_thread"); }

std::chrono::system_clock::time_point In(int seconds) {
  return absl::ToChronoTime(absl::Now() + absl::Seconds(seconds));
}

std::string Flat(const grpc::ByteBuffer& bytes) {
  grpc::Slice slice;
  EXPECT_TRUE(bytes.TrySingleSlice(&slice).ok() ||
              bytes.DumpToSingleSlice(&slice).ok());
  return slice.size() == 0
             ? std::string()
             : std::string(reinterpret_cast<const char*>(slice.begin()),
                           slice.size());
}

grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel,
                      const char* method, const std::string& request,
                      std::string* reply) {
  grpc::internal::RpcMethod rpc(method, grpc::internal::RpcMethod::NORMAL_RPC,
                                channel);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1), rep;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10));
  grpc::Status s =
      grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
          channel.get(), rpc, &ctx, req, &rep);
  if (s.ok() && reply != nullptr) *reply = Flat(rep);
  return s;
}

// A Link from a stranger: refused, as a child this actor did not spawn.
grpc::Status ForgedLink(const std::string& addr) {
  auto stub = v1::Actor::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10));
  auto link = stub->Link(&ctx);
  v1::LinkMsg hello;
  hello.mutable_hello()->mutable_aid()->set_name("stranger");
  hello.mutable_hello()->mutable_aid()->set_uuid("not-a-child");
  EXPECT_TRUE(link->Write(hello));
  v1::LinkMsg reply;
  EXPECT_FALSE(link->Read(&reply));
  return link->Finish();
}

TEST(NoCallbackThreadsTest, ServingEveryServiceStartsNoCallbackThread) {
  ASSERT_EQ(CallbackThreads(), 0);
  Runtime::Config config;
  config.self.set_name("lone");
  Runtime rt(config);
  rt.Start();
  const std::string addr = rt.accept_addrs().at(0);
  auto channel = grpc::CreateChannel(addr, grpc::InsecureChannelCredentials());
  auto stub = v1::Actor::NewStub(channel);

  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    v1::ActorInfo info;
    ASSERT_TRUE(stub->Info(&ctx, v1::InfoRequest(), &info).ok());
    EXPECT_EQ(info.aid().name(), "lone");
    EXPECT_EQ(info.protocol_version(), 1u);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    v1::ActorStats stats;
    ASSERT_TRUE(stub->Stats(&ctx, v1::StatsRequest(), &stats).ok());
    EXPECT_GT(stats.threads(), 0u);
    // The dialogs built ahead for streams to come are not open streams.
    EXPECT_EQ(stats.open_dialogs(), 0u);
  }
  {
    // Garbage is answered with what could not be decoded.
    grpc::Status s =
        RawUnary(channel, "/tractor.v1.Actor/Info", "\xff\xff\xff", nullptr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("Actor.Info request"));
  }
  {
    grpc::Status s = RawUnary(channel, "/tractor.v1.Actor/NoSuchMethod", "",
                              nullptr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_EQ(s.error_message(),
              "unknown method /tractor.v1.Actor/NoSuchMethod");
  }
  {
    // Not in debug mode: no debug lock.
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    auto lock = stub->DebugLock(&ctx);
    v1::DebugLockMsg m;
    EXPECT_FALSE(lock->Read(&m));
    grpc::Status s = lock->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("not in debug mode"));
  }
  {
    grpc::Status s = ForgedLink(addr);
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.error_message(), HasSubstr("did not spawn"));
  }
  {
    // The link server children use, started on demand.
    grpc::Status s = ForgedLink(rt.link_addr());
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.error_message(), HasSubstr("did not spawn"));
  }
  {
    // grpc.health.v1: SERVING (field 1 = 1), then NOT_SERVING (2) on the
    // watch once the exit starts.
    std::string reply;
    ASSERT_TRUE(
        RawUnary(channel, "/grpc.health.v1.Health/Check", "", &reply).ok());
    EXPECT_EQ(reply, std::string("\x08\x01", 2));
    EXPECT_EQ(RawUnary(channel, "/grpc.health.v1.Health/Check",
                       std::string("\x0a\x03xyz", 5), nullptr)
                  .error_code(),
              grpc::StatusCode::NOT_FOUND);
    grpc::internal::RpcMethod watch(
        "/grpc.health.v1.Health/Watch",
        grpc::internal::RpcMethod::SERVER_STREAMING, channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    grpc::Slice empty("");
    grpc::ByteBuffer req(&empty, 1);
    std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
            channel.get(), watch, &ctx, req));
    grpc::ByteBuffer status;
    ASSERT_TRUE(reader->Read(&status));
    EXPECT_EQ(Flat(status), std::string("\x08\x01", 2));
    rt.RequestExit("the test is done");
    ASSERT_TRUE(reader->Read(&status));
    EXPECT_EQ(Flat(status), std::string("\x08\x02", 2));
    ctx.TryCancel();
    reader->Finish();
  }

  EXPECT_EQ(CallbackThreads(), 0);
  const absl::Time start = absl::Now();
  rt.Shutdown();
  // Nothing left for the shutdown to wait out (500 ms per server).
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

}  // namespace
}  // namespace tractor::internal
