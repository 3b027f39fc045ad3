// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/channel.h: the channel arguments of each purpose, and that
// a channel made by NewChannel reaches a server.
#include "discovery/channel.h"

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

// The integer arguments of `args`, by name.
std::map<std::string, int> IntArgs(const grpc::ChannelArguments& args) {
  std::map<std::string, int> out;
  grpc_channel_args c = args.c_channel_args();
  for (size_t i = 0; i < c.num_args; ++i) {
    if (c.args[i].type == GRPC_ARG_INTEGER) {
      out[c.args[i].key] = c.args[i].value.integer;
    }
  }
  return out;
}

// `ms` multiplied by TRACTOR_TIMEOUT_SCALE (1 outside the sanitizer
// configurations), as the runtime scales its timeouts.
int Scaled(int ms) {
  return static_cast<int>(
      absl::ToInt64Milliseconds(ScaleTimeout(absl::Milliseconds(ms))));
}

// A silent peer is noticed within gRPC's one-ping-a-second limit plus the
// timeout, under 1.5 s (measured in cross_host_test).
TEST(ClientChannelArgsTest, ActorChannelsPingOftenAndWaitLessThanHalfASecond) {
  std::map<std::string, int> a =
      IntArgs(ClientChannelArgs(ChannelPurpose::kActor));
  EXPECT_LE(a[GRPC_ARG_KEEPALIVE_TIME_MS], 1000);
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIME_MS], kActorKeepaliveTimeMs);
  // Scaled by TRACTOR_TIMEOUT_SCALE (1 outside the sanitizer builds).
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], Scaled(kActorKeepaliveTimeoutMs));
  EXPECT_LT(a[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], Scaled(500));
  EXPECT_EQ(a[GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA], 0);
  EXPECT_EQ(a[GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS], 100);
  EXPECT_EQ(a[GRPC_ARG_MAX_RECONNECT_BACKOFF_MS], 1000);
  EXPECT_EQ(a.count(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS), 0u);
  EXPECT_EQ(a[GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH], kMaxMessageBytes);
  EXPECT_EQ(a[GRPC_ARG_MAX_SEND_MESSAGE_LENGTH], kMaxMessageBytes);
}

TEST(ClientChannelArgsTest, RegistrarChannelsPingEveryTwoSeconds) {
  std::map<std::string, int> a =
      IntArgs(ClientChannelArgs(ChannelPurpose::kRegistrar));
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIME_MS], 2000);
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], 2000);
  EXPECT_EQ(a[GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA], 0);
  EXPECT_EQ(a[GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS], 100);
  // Scaled: it also bounds one connection attempt, handshake included.
  EXPECT_EQ(a[GRPC_ARG_MIN_RECONNECT_BACKOFF_MS], Scaled(100));
  EXPECT_EQ(a[GRPC_ARG_MAX_RECONNECT_BACKOFF_MS], 1000);
  EXPECT_EQ(a[GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH], kMaxMessageBytes);
}

// How many times each argument of `args` is given.
std::map<std::string, int> ArgCounts(const grpc::ChannelArguments& args) {
  std::map<std::string, int> out;
  grpc_channel_args c = args.c_channel_args();
  for (size_t i = 0; i < c.num_args; ++i) ++out[c.args[i].key];
  return out;
}

// gRPC keeps the first value of an argument given twice: a purpose that
// overrode a base value would silently keep the base one.
TEST(ClientChannelArgsTest, NoArgumentIsGivenTwice) {
  for (const grpc::ChannelArguments& args :
       {ClientChannelArgs(ChannelPurpose::kActor),
        ClientChannelArgs(ChannelPurpose::kRegistrar),
        LinkChannelArgs(3000)}) {
    for (const auto& [key, n] : ArgCounts(args)) {
      EXPECT_EQ(n, 1) << key;
    }
  }
}

// A keepalive ping waits behind the data already sent on its connection:
// every channel keeps a fixed receive window, never one grown by
// bandwidth-delay probing.
TEST(ClientChannelArgsTest, EveryChannelHasAFixedFlowControlWindow) {
  for (const grpc::ChannelArguments& args :
       {ClientChannelArgs(ChannelPurpose::kActor),
        ClientChannelArgs(ChannelPurpose::kRegistrar),
        LinkChannelArgs(3000)}) {
    std::map<std::string, int> a = IntArgs(args);
    ASSERT_EQ(a.count(GRPC_ARG_HTTP2_BDP_PROBE), 1u);
    EXPECT_EQ(a[GRPC_ARG_HTTP2_BDP_PROBE], 0);
    EXPECT_EQ(a[GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES],
              kFlowControlWindowBytes);
  }
}

TEST(LinkChannelArgsTest, AsPatientWithTheParentAsTheParentIsWithTheChild) {
  std::map<std::string, int> a = IntArgs(LinkChannelArgs(10000));
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIME_MS], Scaled(10000) / 2);
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], Scaled(10000));
  EXPECT_EQ(a[GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL], 1);
  EXPECT_EQ(a[GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH], kMaxMessageBytes);
  // One connection attempt may take gRPC's default 20 s, scaled.
  EXPECT_EQ(a[GRPC_ARG_MIN_RECONNECT_BACKOFF_MS], Scaled(20000));
  // The default hang timeout (3 s) gets the floor: 2 s + 4 s (scaled).
  a = IntArgs(LinkChannelArgs(3000));
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIME_MS], Scaled(kLinkMinKeepaliveTimeoutMs) / 2);
  EXPECT_EQ(a[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], Scaled(kLinkMinKeepaliveTimeoutMs));
}

class NoService final : public v1::Registrar::CallbackService {};

TEST(NewChannelTest, ReachesAServerOverTcpAndUnix) {
  tractor::testing::TempDir dir;
  grpc::ServerBuilder builder;
  ApplyServerArgs(builder);
  auto ports = BindAll(builder, {*Address::Parse("127.0.0.1:0"),
                                 *Address::Parse(dir.Sock("c.sock"))});
  ASSERT_TRUE(ports.ok()) << ports.status();
  NoService service;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  auto bound = ports->Resolve(server.get());
  ASSERT_TRUE(bound.ok()) << bound.status();
  for (const Address& addr : *bound) {
    for (ChannelPurpose purpose :
         {ChannelPurpose::kActor, ChannelPurpose::kRegistrar}) {
      std::shared_ptr<grpc::Channel> channel = NewChannel(addr, purpose);
      EXPECT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                            std::chrono::seconds(5)))
          << addr;
    }
  }
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  ports->RemoveSocketFiles();
}

}  // namespace
}  // namespace tractor::discovery
