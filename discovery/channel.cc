// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/channel.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/time/time.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"

namespace tractor::discovery {
namespace {

std::atomic<bool> g_actor_keepalive{true};

}  // namespace

void SetActorKeepalive(bool on) { g_actor_keepalive.store(on); }

namespace {

// gRPC's default time for one connection attempt (its
// GRPC_ARG_MIN_RECONNECT_BACKOFF_MS).
constexpr int kLinkConnectTimeoutMs = 20000;

// What every channel has: message limits, the fixed receive window of
// discovery/listen.h, and reconnect backoff; no keepalive (each purpose
// sets its own, once: see ClientChannelArgs).
grpc::ChannelArguments BaseArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kFlowControlWindowBytes);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return args;
}

}  // namespace

grpc::ChannelArguments LinkChannelArgs(int64_t hang_timeout_ms,
                                       bool keepalive) {
  // Scaled by TRACTOR_TIMEOUT_SCALE, as the parent's side of the link is
  // (its hang timeout): under the sanitizer configurations both sides run
  // several times slower.
  const int patience_ms = static_cast<int>(absl::ToInt64Milliseconds(
      ScaleTimeout(absl::Milliseconds(
          std::max<int64_t>(hang_timeout_ms, kLinkMinKeepaliveTimeoutMs)))));
  grpc::ChannelArguments args = BaseArgs();
  if (keepalive) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, patience_ms / 2);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, patience_ms);
  }
  // How long one connection attempt to the parent may take (gRPC's default,
  // 20 s, scaled): a parent starting many children at once on a slow build
  // may take longer than that to complete the handshakes.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(
                  ScaleTimeout(absl::Milliseconds(kLinkConnectTimeoutMs)))));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  AddSecurityChannelArgs(args);
  return args;
}

grpc::ChannelArguments ClientChannelArgs(ChannelPurpose purpose) {
  grpc::ChannelArguments args = BaseArgs();
  switch (purpose) {
    case ChannelPurpose::kActor:
      if (!g_actor_keepalive.load()) break;
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kActorKeepaliveTimeMs);
      // The answer window is scaled under the sanitizer configurations,
      // where a loaded peer answers several times slower.
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                  static_cast<int>(absl::ToInt64Milliseconds(ScaleTimeout(
                      absl::Milliseconds(kActorKeepaliveTimeoutMs)))));
      break;
    case ChannelPurpose::kRegistrar:
      // Also how long one connection attempt may take, the handshake
      // included: scaled, since a TLS handshake under ThreadSanitizer
      // takes longer than 100 ms.
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                  static_cast<int>(absl::ToInt64Milliseconds(
                      ScaleTimeout(absl::Milliseconds(100)))));
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kRegistrarKeepaliveTimeMs);
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kRegistrarKeepaliveTimeoutMs);
      break;
  }
  AddSecurityChannelArgs(args);
  return args;
}

std::shared_ptr<grpc::Channel> NewChannel(
    const Address& addr, ChannelPurpose purpose,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) credentials = ProcessChannelCredentials();
  return grpc::CreateCustomChannel(addr.GrpcTarget(), std::move(credentials),
                                   ClientChannelArgs(purpose));
}

std::shared_ptr<grpc::Channel> NewPrivateChannel(const Address& addr,
                                                 ChannelPurpose purpose) {
  grpc::ChannelArguments args = ClientChannelArgs(purpose);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(
      addr.GrpcTarget(), ProcessChannelCredentials(), args);
}

}  // namespace tractor::discovery
