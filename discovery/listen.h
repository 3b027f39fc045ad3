// SPDX-License-Identifier: AGPL-3.0-or-later
// Server side of a tractor endpoint: binding a gRPC server on a list of
// addresses, safely for unix sockets, and the server arguments every tractor
// server uses.
//
// Typical use (the registrar daemon, the actor runtime):
//
//   grpc::ServerBuilder builder;
//   ApplyServerArgs(builder);
//   absl::StatusOr<ListeningPorts> ports = BindAll(builder, addrs);
//   if (!ports.ok()) ...;                        // a unix path is unusable
//   builder.RegisterService(&service);
//   std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
//   absl::StatusOr<std::vector<Address>> bound = ports->Resolve(server.get());
//   if (!bound.ok()) ...;                        // names the address
//   ...                                          // serve at *bound
//   server->Shutdown(); server->Wait();
//   ports->RemoveSocketFiles();
#ifndef TRACTOR_DISCOVERY_LISTEN_H_
#define TRACTOR_DISCOVERY_LISTEN_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"

namespace tractor::discovery {

// The largest message a tractor server or client channel sends or accepts,
// in bytes (64 MiB; gRPC's default receive limit is 4 MiB).
inline constexpr int kMaxMessageBytes = 64 << 20;

// The HTTP/2 receive window of every tractor connection, both ends (servers
// through `ApplyServerArgs`, channels through discovery/channel.h), in
// bytes: a fixed 256 KiB per stream (GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES),
// with gRPC's bandwidth-delay probing off (GRPC_ARG_HTTP2_BDP_PROBE = 0).
// A keepalive ping, and its answer, travel behind whatever data the sender
// already wrote on the connection, and the receiver reads that data first.
// With probing on, gRPC grows the window of a busy stream to several MB,
// and on a loaded machine (or under TLS, which decrypts every byte) reading
// that much took longer than an actor channel's 0.4 s ping timeout: live
// connections were cut as silent (docs/reliability.md, "Silent link
// loss"). A fixed window bounds the data ahead of a ping; a single message
// larger than the window still goes ahead whole.
inline constexpr int kFlowControlWindowBytes = 256 << 10;

// Sets the server arguments every tractor server needs:
// - send and receive limits of `kMaxMessageBytes`;
// - GRPC_ARG_ALLOW_REUSEPORT = 0: gRPC binds TCP ports with SO_REUSEPORT by
//   default, so a second server on a port in use would start silently and
//   split the traffic; without it, binding fails;
// - keepalive permits matching the clients of discovery/channel.h: pings are
//   accepted every 0.2 s, also without calls, and never count as strikes
//   (GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS = 1,
//   GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS = 200,
//   GRPC_ARG_HTTP2_MAX_PING_STRIKES = 0). Without them a server answers a
//   client's keepalive pings during a long call with GOAWAY;
// - the fixed receive window `kFlowControlWindowBytes`, without
//   bandwidth-delay probing.
// Every server linking this library also serves grpc.health.v1.Health (the
// default health service: "" is SERVING until the server shuts down or its
// owner sets it NOT_SERVING), enabled process-wide when the program starts;
// reflection and channelz only when `LoadStandardServices` loaded them, or
// through `LazyStandardServices`.
// Call before `BuildAndStart`. Thread-compatible, like the builder.
void ApplyServerArgs(grpc::ServerBuilder& builder);

// The environment variable that chooses which of gRPC's server reflection
// (grpc.reflection.v1alpha) and channelz (grpc.channelz.v1) a process
// serves: unset, "all" or "1" for both (the default: every actor and the
// registrar daemon serve them), "reflection", "channelz" or both
// comma-separated, "none" or "0" for neither (health only). Children
// inherit it with the environment.
inline constexpr const char* kStandardServicesEnv = "TRACTOR_STANDARD_SERVICES";

struct StandardServices {
  bool reflection = false;
  bool channelz = false;
};

// Parses a value of `kStandardServicesEnv`; InvalidArgument naming the
// variable and the unknown word for anything else.
absl::StatusOr<StandardServices> ParseStandardServices(absl::string_view text);

// Loads what `kStandardServicesEnv` asks for (both unless it says
// otherwise): their libraries (libgrpc++_reflection, libgrpcpp_channelz, of
// the running gRPC's version) are not linked, so a process that does not
// load them does not map them, run their static initialisers or register
// their descriptors (about 1.5 MiB of an idle actor's RSS; an actor loads
// them when first called, `LazyStandardServices`). Every ServerBuilder
// constructed after the first call serves them. The first call does the work; later calls return
// its result: an error for a bad value or a library that cannot be loaded.
// Thread-safe.
absl::Status LoadStandardServices();

// What `kStandardServicesEnv` asks for, parsed once, without loading
// anything: the same error as `LoadStandardServices` for a bad value.
// Thread-safe.
absl::StatusOr<StandardServices> RequestedStandardServices();

// Reflection and channelz served by a server without loading them until a
// client calls one of their methods. The server's catch-all service for
// methods nobody registered (its async generic service) hands those calls
// here: the first one loads the libraries (`LoadStandardServices`) and
// builds an in-process gRPC server with the real services, and each call is
// forwarded to it. What clients see is what a server with the services
// registered would answer: reflection reads the process's descriptor pool
// and channelz gRPC's process-wide registry either way, and reflection's
// `list_services` is answered here, with this server's services (recorded
// when it is built), reflection and channelz among them where they would
// be. The in-process
// server and its channel are left out of channelz. Thread-safe.
class LazyStandardServices {
 public:
  // For a server about to be built from `builder`: what records its list of
  // services when it is built (an option of the builder). Null when the
  // process serves neither service (`kStandardServicesEnv`), or when their
  // libraries are loaded already: then the server registers the real
  // services itself. Call before `BuildAndStart`.
  static std::shared_ptr<LazyStandardServices> AttachTo(
      grpc::ServerBuilder& builder);

  explicit LazyStandardServices(StandardServices which);

  // Whether calls to `method` ("/package.Service/Method") are to be
  // forwarded here.
  bool Serves(absl::string_view method) const;
  // Whether `method` is reflection's one method, a bidirectional stream of
  // one response per request; channelz's methods are unary.
  static bool IsReflection(absl::string_view method);

  // When `request` (an encoded grpc.reflection.v1alpha
  // ServerReflectionRequest) asks for `list_services`, the encoded
  // ServerReflectionResponse that answers it with this server's services;
  // nullopt for any other request, which the real service answers.
  std::optional<std::string> AnswerListServices(
      const std::string& request) const;

  // The channel to the in-process server with the real services, loaded and
  // built by the first call (it may take some milliseconds: call it off
  // threads that must not block), or the error of loading them.
  static absl::StatusOr<std::shared_ptr<grpc::Channel>> Backend();
  // Whether `Backend` would return at once.
  static bool BackendReady();

  // Called when the server is built, with its services' names (as
  // reflection lists them); reflection and channelz are listed before
  // `services[standard_at]`, where their plugins would have registered
  // them.
  void SetServiceList(const std::vector<std::string>& services,
                      size_t standard_at);

 private:
  const StandardServices which_;
  mutable Mutex mu_;
  std::vector<std::string> services_ ABSL_GUARDED_BY(mu_);
};

// The default of `ApplyServerKeepalive`'s `hang_timeout`.
inline constexpr absl::Duration kDefaultHangTimeout = absl::Seconds(3);
// What `hang_timeout` leaves for telling a crash from a hang once a
// connection was dropped (see `RootOptions::hang_timeout`).
inline constexpr absl::Duration kHangVerdictTime = absl::Milliseconds(200);

// Makes the server ping every client connection and drop one that does not
// answer, within `hang_timeout` (scaled by `ScaleTimeout`): an HTTP/2 PING
// every `hang_timeout / 3` (at most 1 s; gRPC sends about one a second at
// most anyway), to be answered within `hang_timeout / 2`, which leaves
// `kHangVerdictTime` and some slack within `hang_timeout`, without the limit on pings between data frames
// (GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA = 0), so an idle stream (a child's
// `Link`) is watched too. The peer's gRPC threads answer, not its user
// code, so a peer busy in a long computation is not dropped; a stopped or
// wedged process is, and every call on the connection then ends as
// cancelled. With the default 3 s: a ping a second, 1.5 s to answer it.
// Call before `BuildAndStart`. Thread-compatible, like the builder.
void ApplyServerKeepalive(grpc::ServerBuilder& builder,
                          absl::Duration hang_timeout);

// Returns `d` multiplied by TRACTOR_TIMEOUT_SCALE (a positive number, read
// once; unset or invalid: 1). Sanitizer builds run several times slower, so
// their tests set it to stretch the runtime's liveness timeouts alike.
// Thread-safe.
absl::Duration ScaleTimeout(absl::Duration d);

// Makes the unix socket path of `addr` ready to be bound:
// - refuses a path longer than `sockaddr_un::sun_path` allows;
// - removes a stale socket file, one no process listens on (connecting to it
//   is refused), as a crashed server leaves behind;
// - refuses a path where a process listens (ALREADY_EXISTS, "address already
//   in use"): gRPC would unlink the file and take the address over;
// - refuses a path that exists and is not a socket (FAILED_PRECONDITION);
// - with `create_parent_dir`, creates the missing parent directory (one
//   level, mode 0755; deeper missing directories are an error).
// Every error message starts with "cannot listen on <addr>: ". A no-op for
// TCP addresses. Thread-safe (but racing another process for the same path
// is not detected).
absl::Status PrepareUnixListenPath(const Address& addr,
                                   bool create_parent_dir = false);

// Options of `BindAll`.
struct BindOptions {
  // Credentials for every port; null means this process's configuration
  // (`ProcessServerCredentials()` of discovery/credentials.h), and a warning
  // is logged once when that is plaintext on an address off loopback.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Create a missing parent directory of unix socket paths (see
  // `PrepareUnixListenPath`).
  bool create_parent_dirs = false;
};

class ListeningPorts;

// Prepares every unix socket path in `addrs` (`PrepareUnixListenPath`) and
// adds a listening port to `builder` for every address, in order, with
// `options.credentials`. Returns the error of the first unix path that cannot
// be used (then the builder may hold some of the ports; do not start it).
// Returns INVALID_ARGUMENT for an empty list. After `BuildAndStart`, call
// `Resolve` on the result. Thread-compatible, like the builder.
absl::StatusOr<ListeningPorts> BindAll(grpc::ServerBuilder& builder,
                                       std::vector<Address> addrs,
                                       BindOptions options = {});

// The listening ports `BindAll` added to a `grpc::ServerBuilder`, and after
// `BuildAndStart` the addresses they are bound to.
//
// The builder writes the port it selected into this object during
// `BuildAndStart`, so it must stay alive (it may be moved) until then.
// Thread-compatible.
class ListeningPorts {
 public:
  ListeningPorts(ListeningPorts&&) = default;
  ListeningPorts& operator=(ListeningPorts&&) = default;

  // The addresses asked for, in order.
  const std::vector<Address>& requested() const { return requested_; }

  // Call with the result of the builder's `BuildAndStart` (null when it
  // failed). Returns the accept addresses, one per requested address and in
  // the same order: TCP addresses with the port the server bound (the real
  // port where port 0 was asked for), unix addresses as given.
  //
  // When the server did not start, returns an error naming the address that
  // could not be bound ("cannot listen on 127.0.0.1:1616: address already in
  // use": ALREADY_EXISTS; other causes: FAILED_PRECONDITION with the reason
  // where it can be found out), after removing the socket files of the unix
  // addresses bound before it.
  absl::StatusOr<std::vector<Address>> Resolve(
      const grpc::Server* server) const;

  // Removes the socket files of the unix addresses that were bound. Call
  // after the server has shut down. Idempotent; logs failures.
  void RemoveSocketFiles() const;

 private:
  friend absl::StatusOr<ListeningPorts> BindAll(grpc::ServerBuilder&,
                                                std::vector<Address>,
                                                BindOptions);
  explicit ListeningPorts(std::vector<Address> requested);

  std::vector<Address> requested_;
  // One per requested address, written by the builder during BuildAndStart
  // (0: not bound). Heap-allocated so that moving keeps the addresses the
  // builder holds valid.
  std::unique_ptr<int[]> selected_;
};

// The address of a unix socket named `<name>.sock` in a directory only this
// user may enter: `<dir>/<name>.sock`, with `dir` "/tmp/tractor-<euid>" by
// default, made with mode 0700 when missing. Nullopt when that directory
// cannot be made or is not private to this user (not a directory, another
// owner, or open to group or others: a socket there could be reached or
// replaced by others), or `name` does not make a valid address; the reason
// is logged at verbosity 1. An actor's same-host socket lives there.
//
// Before returning an address, sweeps the directory of the socket files
// that processes killed beyond cleaning up after themselves (kill -9, a
// crash) left behind (`SweepStaleSocketFiles`).
std::optional<Address> PrivateSocketAddress(const std::string& name,
                                            const std::string& dir = "");

// The directory of this user's same-host sockets, "/tmp/tractor-<euid>"
// (not created here).
std::string PrivateSocketDir();

// How old a socket file must be before `SweepStaleSocketFiles` may remove
// it: a server binds its socket (creating the file) a moment before it
// listens, and a connection is refused in between.
inline constexpr absl::Duration kStaleSocketMinAge = absl::Seconds(5);

// Removes from `dir` every socket file named `*.sock` that is provably
// stale: a socket (never a symbolic link or any other file, which are left
// alone) owned by this user, last modified at least `min_age` ago, bound by
// no socket of this network namespace (/proc/net/unix), and on which a
// connection is refused (ECONNREFUSED: nobody listens, in any namespace).
// A file where a process listens is never removed. Call only on a
// directory private to this user (`PrivateSocketAddress` checks it).
// Returns how many files it removed; errors are logged at verbosity 1.
// Thread-safe.
size_t SweepStaleSocketFiles(const std::string& dir,
                             absl::Duration min_age = kStaleSocketMinAge);

// Removes the same-host socket file of the actor `uuid`, whose process is
// known to have ended (its parent reaped it), when it is still there:
// only `PrivateSocketDir()/<uuid>.sock`, only a socket of this user, and
// only when a connection to it is refused. `local_addr` is the address the
// actor reported ("unix:/tmp/tractor-<uid>/<uuid>.sock"); anything else,
// or an empty one, is ignored. Returns whether it removed the file.
// Thread-safe.
bool RemoveSocketFileOfEndedActor(const std::string& local_addr,
                                  const std::string& uuid);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_LISTEN_H_
