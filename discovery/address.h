// SPDX-License-Identifier: AGPL-3.0-or-later
// Addresses an actor accepts on or is reached at
// (docs/design.md#discovery-and-addresses, docs/behaviour.md#addresses).
//
// An address is written in one of these forms:
//
//   127.0.0.1:1616             IPv4 literal and port
//   [::1]:1616                 IPv6 literal (bracketed) and port
//   localhost:1616             DNS name and port
//   unix:/run/tractor/r.sock   unix-domain socket (absolute path)
//   /ip4/127.0.0.1/tcp/1616    multiaddr forms of the above
//   /ip6/::1/tcp/1616
//   /dns4/localhost/tcp/1616   (also /dns/...)
//   /unix/run/tractor/r.sock   (the path without its leading '/')
//
// `Address::Parse` is the only entry point for text from users, config files
// or the wire: it returns an error for anything else. The factories `Tcp` and
// `Unix` are for values the program built itself; they CHECK-fail on invalid
// arguments, like any other broken invariant.
#ifndef TRACTOR_DISCOVERY_ADDRESS_H_
#define TRACTOR_DISCOVERY_ADDRESS_H_

#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tractor::discovery {

// One address an actor can accept connections on or be dialled at: a TCP
// host and port, or the path of a unix-domain socket.
//
// An `Address` is an immutable value in canonical form, so two addresses
// that denote the same endpoint compare equal and `Parse(a.ToString()) == a`.
// IPv6 literals are compressed and lower-case ("::1"), DNS names lower-case,
// unix paths absolute with a single leading '/'. It is ordered and hashable,
// so it can key a `std::map`, `std::set` or `absl::flat_hash_map`.
//
// Thread-compatible: const methods may be called concurrently; copies are
// independent.
class Address {
 public:
  enum class Kind {
    // TCP over IPv4, or TCP to a DNS name (the resolver picks the family
    // when the address is dialled).
    kTcp4,
    // TCP over IPv6, to an IPv6 literal.
    kTcp6,
    // A unix-domain socket; reachable only from the same host.
    kUnix,
  };

  // Longest unix socket path that fits `sockaddr_un::sun_path` with its
  // terminating NUL.
  static constexpr int kMaxUnixPathLength = 107;

  // Parses one address in any of the forms listed at the top of this file.
  // Returns `absl::InvalidArgumentError` naming the input, the reason and
  // the accepted forms for anything else: a missing or out-of-range port, an
  // unbracketed IPv6 literal, a relative or over-long (> 107 bytes) unix
  // path, an unsupported multiaddr protocol such as `/udp/...`, empty text.
  // Does no DNS resolution.
  static absl::StatusOr<Address> Parse(absl::string_view text);

  // Returns the TCP address `host:port`. `host` is an IPv4 literal, an IPv6
  // literal (with or without brackets; the kind is then `kTcp6`) or a DNS
  // name. CHECK-fails on an invalid host or a port outside [0, 65535].
  static Address Tcp(absl::string_view host, int port);

  // Returns the unix-domain socket address at `path`. CHECK-fails unless the
  // path is absolute and at most `kMaxUnixPathLength` bytes.
  static Address Unix(absl::string_view path);

  Kind kind() const { return kind_; }
  // The IP literal or DNS name, without brackets; empty for `kUnix`.
  const std::string& host() const { return host_; }
  // The TCP port (0 means "any", for listening); 0 for `kUnix`.
  int port() const { return port_; }
  // The absolute socket path; empty unless `kUnix`.
  const std::string& path() const { return path_; }

  // Returns the canonical text: "127.0.0.1:1616", "[::1]:1616",
  // "localhost:1616", "unix:/tmp/x.sock".
  std::string ToString() const;

  // Returns the multiaddr form: "/ip4/127.0.0.1/tcp/1616",
  // "/ip6/::1/tcp/1616", "/dns4/localhost/tcp/1616", "/unix/tmp/x.sock".
  std::string ToMultiaddr() const;

  // Returns the gRPC target URI to dial: "ipv4:127.0.0.1:1616",
  // "ipv6:[::1]:1616", "dns:///localhost:1616", "unix:/tmp/x.sock".
  std::string GrpcTarget() const;

  // Returns the string for `grpc::ServerBuilder::AddListeningPort`:
  // "127.0.0.1:0", "[::1]:0", "localhost:0", "unix:/tmp/x.sock".
  std::string ListenString() const;

  // Returns this address with `port` instead of its port, e.g. the concrete
  // port after binding port 0. CHECK-fails for `kUnix` or a port outside
  // [0, 65535].
  Address WithPort(int port) const;

  // Returns true for 127.0.0.0/8, ::1 (also IPv4-mapped 127/8) and the name
  // "localhost". False for unix sockets: they are local but not loopback.
  bool IsLoopback() const;

  // Returns true if the address certainly leads to this machine: a unix
  // socket, a loopback address, an unspecified address (0.0.0.0, ::), one of
  // this machine's interface addresses (getifaddrs), or this machine's own
  // host name. Other DNS names return false: nothing is resolved. Makes one
  // getifaddrs call; does not block on the network.
  bool IsLocalHost() const;

  friend bool operator==(const Address& a, const Address& b) {
    return a.Tie() == b.Tie();
  }
  friend bool operator!=(const Address& a, const Address& b) {
    return !(a == b);
  }
  // Orders by kind, then host, port and path: an arbitrary but stable total
  // order for ordered containers.
  friend bool operator<(const Address& a, const Address& b) {
    return a.Tie() < b.Tie();
  }
  template <typename H>
  friend H AbslHashValue(H h, const Address& a) {
    return H::combine(std::move(h), a.kind_, a.host_, a.port_, a.path_);
  }
  // Prints `ToString()`; lets gtest and glog show addresses.
  friend std::ostream& operator<<(std::ostream& os, const Address& a) {
    return os << a.ToString();
  }

 private:
  Address(Kind kind, std::string host, int port, std::string path)
      : kind_(kind),
        host_(std::move(host)),
        port_(port),
        path_(std::move(path)) {}

  std::tuple<const Kind&, const std::string&, const int&, const std::string&>
  Tie() const {
    return std::tie(kind_, host_, port_, path_);
  }

  // Validate and canonicalize; on error the status message holds only the
  // reason (callers add the input text).
  static absl::StatusOr<Address> MakeTcp(absl::string_view host, int port);
  static absl::StatusOr<Address> MakeUnix(absl::string_view path);

  Kind kind_;
  std::string host_;
  int port_;
  std::string path_;
};

// Parses a comma-separated list of addresses, e.g.
// "127.0.0.1:1616,unix:/run/r.sock". Whitespace around each element is
// ignored; empty (or all-blank) text is an empty list. Returns
// `absl::InvalidArgumentError` naming the first bad element and its position,
// including an empty element ("a,,b", a trailing comma). Unix paths that
// contain ',' cannot be written in a list.
absl::StatusOr<std::vector<Address>> ParseAddressList(absl::string_view text);

// Returns the address to dial among several addresses of one actor, or
// `std::nullopt` for an empty list. Tiers, best first:
//   1. a unix socket,
//   2. a TCP address on this machine (`IsLocalHost`),
//   3. any other (remote) TCP address.
// Within a tier the last one listed wins: registrars list an actor's
// addresses oldest first, so that is the most recent registration.
//
// A unix address is preferred without checking that it is on this host. That
// is sound only because the registry keeps unix entries host-local: an actor
// registers its unix addresses only with registrars on its own host, so a
// unix entry one sees belongs to a local actor. Callers that merge address
// lists from registrars on other hosts must drop unix entries from those.
std::optional<Address> PreferAddress(const std::vector<Address>& addrs);

// This process's host identity: the kernel's boot id and the inode of its
// network namespace ("<boot_id>/net:<inode>"). Equal ids mean the same
// machine, boot and network namespace. Computed once; thread-safe.
const std::string& HostId();

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_ADDRESS_H_
