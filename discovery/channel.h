// SPDX-License-Identifier: AGPL-3.0-or-later
// Client channels: the one place that sets tractor's gRPC channel
// arguments (message size, keepalive, reconnect backoff).
//
// Two purposes need different liveness settings, so channels are made for a
// `ChannelPurpose`. The message size limit is the same for both and matches
// the servers' (`kMaxMessageBytes` in discovery/listen.h).
#ifndef TRACTOR_DISCOVERY_CHANNEL_H_
#define TRACTOR_DISCOVERY_CHANNEL_H_

#include <memory>

#include "discovery/address.h"
#include "grpcpp/grpcpp.h"

namespace tractor::discovery {

// What a channel is for; selects its keepalive and reconnect settings.
// Both purposes send keepalive pings only while calls are active (servers
// built with `ApplyServerArgs` accept pings every second) and reconnect with
// a backoff from 100 ms up to 1 s, so a restarted peer is reached again
// within about a second.
enum class ChannelPurpose {
  // Dialogs and calls between actors. Keepalive ping every 1 s, 1 s to
  // answer: a peer whose host vanished is noticed within about 2 s and its
  // dialogs end (the runtime reports TransportClosed).
  kActor,
  // Calls to a registrar (registration upkeep, lookups, probes). Keepalive
  // ping every 2 s, 2 s to answer: a registrar that vanished is noticed
  // within seconds, while the long `WaitFor` calls that idle on one
  // connection cost fewer pings. Each connection attempt gives up after at
  // most 100 ms of backoff-sized timeout (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS),
  // instead of gRPC's 20 s, so an unreachable registrar is retried promptly.
  kRegistrar,
};

// Returns the channel arguments for `purpose`: keepalive and backoff as
// described at `ChannelPurpose`, send and receive limits of
// `kMaxMessageBytes`. Callers may add arguments to the copy (e.g.
// GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL). Thread-safe.
grpc::ChannelArguments ClientChannelArgs(
    ChannelPurpose purpose = ChannelPurpose::kActor);

// Returns a new channel to `addr` (its `GrpcTarget()`) with
// `ClientChannelArgs(purpose)` and `credentials` (null means insecure). The
// channel is not cached: callers that dial the same address repeatedly keep
// their own map. The caller owns the returned reference; gRPC channels are
// thread-safe.
std::shared_ptr<grpc::Channel> NewChannel(
    const Address& addr, ChannelPurpose purpose = ChannelPurpose::kActor,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_CHANNEL_H_
