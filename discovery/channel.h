// SPDX-License-Identifier: AGPL-3.0-or-later
// Client channels: the one place that sets tractor's gRPC channel
// arguments (message size, keepalive, reconnect backoff).
//
// Two purposes need different liveness settings, so channels are made for a
// `ChannelPurpose`. The message size limit is the same for both and matches
// the servers' (`kMaxMessageBytes` in discovery/listen.h).
#ifndef TRACTOR_DISCOVERY_CHANNEL_H_
#define TRACTOR_DISCOVERY_CHANNEL_H_

#include <cstdint>
#include <memory>

#include "discovery/address.h"
#include "grpcpp/grpcpp.h"

namespace tractor::discovery {

// What a channel is for; selects its keepalive and reconnect settings.
// Both purposes send keepalive pings only while calls are active (servers
// built with `ApplyServerArgs` accept pings every 0.2 s) and reconnect with
// a backoff from 100 ms up to 1 s, so a restarted peer is reached again
// within about a second.
//
// Keepalive: a ping is due `time` after the last one was answered, and the
// connection is closed when a ping is not answered within `timeout`; every
// call on it then ends UNAVAILABLE. That is how a link lost silently (a
// partition, a host that vanished: no FIN or RST arrives) is noticed. gRPC's
// C++ client also sends at most one ping per second on a connection with
// calls (its own rate limit, which counts its bandwidth-probe pings too), so
// the bound for an actor channel is 1 s + `timeout`: measured 0.72-1.35 s
// on network-namespace hosts (docs/reliability.md). The timeout must stay
// above the round trip plus the peer's worst delay in answering a ping
// (gRPC's own threads answer it, not user code): 400 ms on one site; a
// peer too loaded to answer that fast is taken for gone.
inline constexpr int kActorKeepaliveTimeMs = 200;
inline constexpr int kActorKeepaliveTimeoutMs = 400;
inline constexpr int kRegistrarKeepaliveTimeMs = 2000;
inline constexpr int kRegistrarKeepaliveTimeoutMs = 2000;

enum class ChannelPurpose {
  // Dialogs and calls between actors: keepalive every 0.2 s (at most one
  // ping a second in practice, see above), 0.4 s to answer. A waiting
  // caller whose peer's link went silent wakes with TransportClosed within
  // about 1.4 s.
  kActor,
  // Calls to a registrar (registration upkeep, lookups, probes). Keepalive
  // ping every 2 s, 2 s to answer: a registrar that vanished is noticed
  // within about 4 s, while the long `WaitFor` calls that idle on one
  // connection cost fewer pings; nothing waits on a registrar with a
  // user-visible bound tighter than that. Each connection attempt gives up after at
  // most 100 ms of backoff-sized timeout (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS),
  // instead of gRPC's 20 s, so an unreachable registrar is retried promptly.
  kRegistrar,
};

// Debug mode (docs/reliability.md, "Debug mode") turns the keepalive of
// `kActor` channels made from then on off (`on` false): a peer stopped in a
// debugger answers no ping and must not be taken for gone. A peer that
// exits still closes its connection. Thread-safe.
void SetActorKeepalive(bool on);

// Returns the channel arguments for `purpose`: keepalive and backoff as
// described at `ChannelPurpose`, send and receive limits of
// `kMaxMessageBytes`, the fixed receive window `kFlowControlWindowBytes`
// without bandwidth-delay probing (discovery/listen.h: it bounds the data a
// keepalive ping waits behind), and the TLS name override of this process's security
// configuration (discovery/credentials.h). Callers may add arguments to the
// copy (e.g. GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL), but never one it already
// sets: gRPC keeps the first value of an argument given twice, so a second
// GRPC_ARG_KEEPALIVE_TIMEOUT_MS is silently ignored. Thread-safe.
grpc::ChannelArguments ClientChannelArgs(
    ChannelPurpose purpose = ChannelPurpose::kActor);

// The least keepalive timeout of a child's link to its parent.
inline constexpr int kLinkMinKeepaliveTimeoutMs = 4000;

// The arguments of a child's link to its parent's link server (on this
// host, in a subchannel pool of its own). The parent's death closes the
// socket at once, so the keepalive only has to notice a stopped parent, and
// it is as patient with the parent as the parent is with the child: a ping
// every `hang_timeout_ms / 2`, `hang_timeout_ms` to answer, at least
// 2 s + 4 s. A burst of siblings booting at once on a busy machine can
// starve the parent's gRPC threads for seconds; that must not cut links.
// Without `keepalive` (debug mode, where the parent may be stopped in a
// debugger), the link sends no pings. Thread-safe.
grpc::ChannelArguments LinkChannelArgs(int64_t hang_timeout_ms,
                                       bool keepalive = true);

// Returns a new channel to `addr` (its `GrpcTarget()`) with
// `ClientChannelArgs(purpose)` and `credentials` (null means this process's
// configuration, `ProcessChannelCredentials()` of discovery/credentials.h). The
// channel is not cached: callers that dial the same address repeatedly keep
// their own map. The caller owns the returned reference; gRPC channels are
// thread-safe.
std::shared_ptr<grpc::Channel> NewChannel(
    const Address& addr, ChannelPurpose purpose = ChannelPurpose::kActor,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// As `NewChannel`, with a subchannel pool of its own
// (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL): no connection state elsewhere in
// this process (a connection still backing off after a partition) can make
// its calls fail fast. Uses this process's credentials. For evidence checks that must see the address as it
// is now.
std::shared_ptr<grpc::Channel> NewPrivateChannel(const Address& addr,
                                                 ChannelPurpose purpose);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_CHANNEL_H_
