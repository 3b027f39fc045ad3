// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"

namespace tractor::discovery {
namespace {

static_assert(Address::kMaxUnixPathLength + 1 ==
                  sizeof(sockaddr_un{}.sun_path),
              "kMaxUnixPathLength must match sockaddr_un::sun_path");

constexpr absl::string_view kUnixPrefix = "unix:";
constexpr absl::string_view kAcceptedForms =
    "host:port, [ipv6]:port, unix:/absolute/path, /ip4/<addr>/tcp/<port>, "
    "/ip6/<addr>/tcp/<port>, /dns4/<name>/tcp/<port>, /unix/<absolute path>";
constexpr int kMaxPort = 65535;

// Quotes `text` for an error message, escaping unprintable bytes.
std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

// Returns the port in `text`: decimal digits only, in [0, 65535].
absl::StatusOr<int> ParsePort(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("missing port");
  if (!std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", Quote(text), " is not a decimal number"));
  }
  int port = 0;
  if (text.size() > 5 || !absl::SimpleAtoi(text, &port) || port > kMaxPort) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", text, " is out of range 0-", kMaxPort));
  }
  return port;
}

// An IP address in binary form. IPv4-mapped IPv6 addresses are stored as
// IPv4, so "::ffff:127.0.0.1" and "127.0.0.1" compare equal.
struct Ip {
  int family = AF_UNSPEC;
  std::array<uint8_t, 16> bytes{};  // 4 used for AF_INET.

  friend bool operator==(const Ip& a, const Ip& b) {
    return a.family == b.family && a.bytes == b.bytes;
  }
};

Ip FromIn6(const in6_addr& addr) {
  Ip ip;
  if (IN6_IS_ADDR_V4MAPPED(&addr)) {
    ip.family = AF_INET;
    std::copy(addr.s6_addr + 12, addr.s6_addr + 16, ip.bytes.begin());
  } else {
    ip.family = AF_INET6;
    std::copy(addr.s6_addr, addr.s6_addr + 16, ip.bytes.begin());
  }
  return ip;
}

Ip FromIn4(const in_addr& addr) {
  Ip ip;
  ip.family = AF_INET;
  const auto* b = reinterpret_cast<const uint8_t*>(&addr.s_addr);
  std::copy(b, b + 4, ip.bytes.begin());
  return ip;
}

// Parses an IP literal of `family`; nullopt if `text` is not one.
std::optional<Ip> ParseIp(absl::string_view text, int family) {
  const std::string z(text);  // inet_pton needs a NUL terminator.
  if (family == AF_INET) {
    in_addr addr;
    if (inet_pton(AF_INET, z.c_str(), &addr) != 1) return std::nullopt;
    return FromIn4(addr);
  }
  in6_addr addr;
  if (inet_pton(AF_INET6, z.c_str(), &addr) != 1) return std::nullopt;
  return FromIn6(addr);
}

// Returns the canonical text of an IP literal of `family` (inet_ntop form:
// compressed, lower-case IPv6), or nullopt if `text` is not one.
std::optional<std::string> CanonicalIp(absl::string_view text, int family) {
  const std::string z(text);
  in6_addr addr;  // Large enough for either family.
  if (inet_pton(family, z.c_str(), &addr) != 1) return std::nullopt;
  char out[INET6_ADDRSTRLEN];
  CHECK(inet_ntop(family, &addr, out, sizeof(out)) != nullptr);
  return std::string(out);
}

// Returns true for a DNS host name (RFC 1123 labels; '_' tolerated). A name
// whose last label is numeric ("1.2.3.999") is a malformed IPv4 literal, not
// a name.
bool IsDnsName(absl::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  absl::string_view last;
  for (absl::string_view label : absl::StrSplit(text, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    }
    last = label;
  }
  return !std::all_of(last.begin(), last.end(), absl::ascii_isdigit);
}

// The parts of a TCP address as written, before validation of the host.
struct HostPort {
  std::string host;
  int port = 0;
};

// Parses "host:port" or "[ipv6]:port".
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  absl::string_view host;
  absl::string_view port_text;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("missing ']' after the IPv6 address");
    }
    host = text.substr(1, close - 1);
    absl::string_view rest = text.substr(close + 1);
    if (rest.empty()) return absl::InvalidArgumentError("missing port");
    if (rest.front() != ':') {
      return absl::InvalidArgumentError("expected ':' and a port after ']'");
    }
    port_text = rest.substr(1);
    if (!ParseIp(host, AF_INET6).has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quote(host), " is not an IPv6 address (brackets are for IPv6)"));
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("missing port (expected host:port)");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return absl::InvalidArgumentError(
          "an IPv6 address must be bracketed, as in [::1]:1616");
    }
  }
  absl::StatusOr<int> port = ParsePort(port_text);
  if (!port.ok()) return port.status();
  return HostPort{std::string(host), *port};
}

// Parses a TCP multiaddr: /ip4/<addr>/tcp/<port>, /ip6/<addr>/tcp/<port>,
// /dns4/<name>/tcp/<port> or /dns/<name>/tcp/<port>. Trailing '/'s are
// ignored, as go-multiaddr does.
absl::StatusOr<HostPort> ParseTcpMultiaddr(absl::string_view text) {
  while (text.size() > 1 && text.back() == '/') text.remove_suffix(1);
  const std::vector<absl::string_view> parts =
      absl::StrSplit(text.substr(1), '/');
  const absl::string_view protocol = parts[0];
  if (protocol != "ip4" && protocol != "ip6" && protocol != "dns4" &&
      protocol != "dns") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported multiaddr protocol ", Quote(absl::StrCat("/", protocol)),
        " (supported: /ip4, /ip6, /dns4, /dns, /unix)"));
  }
  if (parts.size() < 2 || parts[1].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing host after /", protocol));
  }
  const absl::string_view host = parts[1];
  if (protocol == "ip4" && !ParseIp(host, AF_INET).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(host), " is not an IPv4 address"));
  }
  if (protocol == "ip6" && !ParseIp(host, AF_INET6).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(host), " is not an IPv6 address"));
  }
  if ((protocol == "dns4" || protocol == "dns") && !IsDnsName(host)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(host), " is not a DNS name"));
  }
  if (parts.size() < 3) {
    return absl::InvalidArgumentError("missing port (expected /tcp/<port>)");
  }
  if (parts[2] != "tcp") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported transport ",
                     Quote(absl::StrCat("/", parts[2])),
                     " (only /tcp and /unix are supported)"));
  }
  if (parts.size() < 4) {
    return absl::InvalidArgumentError("missing port after /tcp");
  }
  if (parts.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected components after the port: ",
        Quote(absl::StrCat(
            "/", absl::StrJoin(parts.begin() + 4, parts.end(), "/")))));
  }
  absl::StatusOr<int> port = ParsePort(parts[3]);
  if (!port.ok()) return port.status();
  return HostPort{std::string(host), *port};
}

// What this machine answers to: its interface addresses and host name.
struct LocalMachine {
  std::vector<Ip> interfaces;
  std::string hostname;  // Lower-case; empty if unknown.

  // Queries the kernel (getifaddrs, gethostname). Never fails: on error,
  // logs a warning and leaves the field empty.
  static LocalMachine Get() {
    LocalMachine machine;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
      PLOG(WARNING) << "getifaddrs failed; only loopback, unspecified and "
                       "unix addresses count as local";
    } else {
      for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
        if (it->ifa_addr == nullptr) continue;
        if (it->ifa_addr->sa_family == AF_INET) {
          machine.interfaces.push_back(
              FromIn4(reinterpret_cast<const sockaddr_in*>(it->ifa_addr)
                          ->sin_addr));
        } else if (it->ifa_addr->sa_family == AF_INET6) {
          machine.interfaces.push_back(
              FromIn6(reinterpret_cast<const sockaddr_in6*>(it->ifa_addr)
                          ->sin6_addr));
        }
      }
      freeifaddrs(list);
    }
    char name[HOST_NAME_MAX + 1] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) {
      machine.hostname = absl::AsciiStrToLower(name);
    } else {
      PLOG(WARNING) << "gethostname failed";
    }
    return machine;
  }
};

// Returns the binary IP of a TCP address, or nullopt for a DNS name or unix.
std::optional<Ip> IpOf(const Address& address) {
  switch (address.kind()) {
    case Address::Kind::kTcp4:
      return ParseIp(address.host(), AF_INET);
    case Address::Kind::kTcp6:
      return ParseIp(address.host(), AF_INET6);
    case Address::Kind::kUnix:
      return std::nullopt;
  }
  return std::nullopt;
}

bool IsLoopbackIp(const Ip& ip) {
  if (ip.family == AF_INET) return ip.bytes[0] == 127;
  for (int i = 0; i < 15; ++i) {
    if (ip.bytes[i] != 0) return false;
  }
  return ip.bytes[15] == 1;
}

bool IsUnspecifiedIp(const Ip& ip) {
  const int size = ip.family == AF_INET ? 4 : 16;
  return std::all_of(ip.bytes.begin(), ip.bytes.begin() + size,
                     [](uint8_t b) { return b == 0; });
}

// `Address::IsLocalHost` against an already queried `machine`.
bool IsLocalOn(const Address& address, const LocalMachine& machine) {
  if (address.kind() == Address::Kind::kUnix || address.IsLoopback()) {
    return true;
  }
  const std::optional<Ip> ip = IpOf(address);
  if (!ip.has_value()) {  // A DNS name: not resolved.
    return !machine.hostname.empty() && address.host() == machine.hostname;
  }
  if (IsUnspecifiedIp(*ip)) return true;
  return std::find(machine.interfaces.begin(), machine.interfaces.end(),
                   *ip) != machine.interfaces.end();
}

}  // namespace

absl::StatusOr<Address> Address::MakeTcp(absl::string_view host, int port) {
  if (port < 0 || port > kMaxPort) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", port, " is out of range 0-", kMaxPort));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!absl::StrContains(host, ':')) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quote(host), " is not an IPv6 address (brackets are for IPv6)"));
    }
  }
  if (host.empty()) return absl::InvalidArgumentError("missing host");
  if (absl::StrContains(host, ':')) {
    std::optional<std::string> v6 = CanonicalIp(host, AF_INET6);
    if (!v6.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quote(host), " is not an IPv6 address"));
    }
    return Address(Kind::kTcp6, *std::move(v6), port, "");
  }
  if (std::optional<std::string> v4 = CanonicalIp(host, AF_INET)) {
    return Address(Kind::kTcp4, *std::move(v4), port, "");
  }
  if (IsDnsName(host)) {
    std::string name = absl::AsciiStrToLower(host);
    // "unix:<port>" would read back as a unix socket path.
    if (name == kUnixPrefix.substr(0, kUnixPrefix.size() - 1)) {
      return absl::InvalidArgumentError(
          "the host name \"unix\" cannot be told from the unix: prefix "
          "(use its IP address, or a fully qualified name)");
    }
    return Address(Kind::kTcp4, std::move(name), port, "");
  }
  return absl::InvalidArgumentError(absl::StrCat(
      Quote(host), " is neither an IP address nor a valid DNS name"));
}

absl::StatusOr<Address> Address::MakeUnix(absl::string_view path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("missing unix socket path");
  }
  if (path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix socket path ", Quote(path),
        " is not absolute (write unix:/absolute/path)"));
  }
  // "//tmp/x" names the same file as "/tmp/x"; keep one form.
  while (path.size() > 1 && path[1] == '/') path.remove_prefix(1);
  if (path == "/") {
    return absl::InvalidArgumentError("unix socket path \"/\" names no file");
  }
  if (absl::StrContains(path, '\0')) {
    return absl::InvalidArgumentError("unix socket path contains a NUL byte");
  }
  if (path.size() > static_cast<size_t>(kMaxUnixPathLength)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix socket path is too long: ", path.size(), " bytes, but at most ",
        kMaxUnixPathLength,
        " fit in sockaddr_un.sun_path; use a shorter directory"));
  }
  return Address(Kind::kUnix, "", 0, std::string(path));
}

absl::StatusOr<Address> Address::Parse(absl::string_view text) {
  absl::StatusOr<Address> address = [text]() -> absl::StatusOr<Address> {
    if (text.empty()) return absl::InvalidArgumentError("empty address");
    if (absl::StartsWith(text, kUnixPrefix)) {
      return MakeUnix(text.substr(kUnixPrefix.size()));
    }
    if (text == "/unix" || absl::StartsWith(text, "/unix/")) {
      // The multiaddr path omits its leading '/'; what follows "/unix" is
      // the absolute path.
      return MakeUnix(text.substr(5));
    }
    absl::StatusOr<HostPort> parts =
        text.front() == '/' ? ParseTcpMultiaddr(text) : ParseHostPort(text);
    if (!parts.ok()) return parts.status();
    return MakeTcp(parts->host, parts->port);
  }();
  if (address.ok()) return address;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid address ", Quote(text), ": ",
                   address.status().message(),
                   "; accepted forms: ", kAcceptedForms));
}

Address Address::Tcp(absl::string_view host, int port) {
  absl::StatusOr<Address> address = MakeTcp(host, port);
  CHECK(address.ok()) << "Address::Tcp(" << Quote(host) << ", " << port
                      << "): " << address.status().message();
  return *std::move(address);
}

Address Address::Unix(absl::string_view path) {
  absl::StatusOr<Address> address = MakeUnix(path);
  CHECK(address.ok()) << "Address::Unix(" << Quote(path)
                      << "): " << address.status().message();
  return *std::move(address);
}

std::string Address::ToString() const {
  switch (kind_) {
    case Kind::kTcp4:
      return absl::StrCat(host_, ":", port_);
    case Kind::kTcp6:
      return absl::StrCat("[", host_, "]:", port_);
    case Kind::kUnix:
      return absl::StrCat(kUnixPrefix, path_);
  }
  LOG(FATAL) << "unknown Address::Kind " << static_cast<int>(kind_);
  return "";
}

std::string Address::ToMultiaddr() const {
  switch (kind_) {
    case Kind::kTcp4:
      return absl::StrCat(IpOf(*this).has_value() ? "/ip4/" : "/dns4/", host_,
                          "/tcp/", port_);
    case Kind::kTcp6:
      return absl::StrCat("/ip6/", host_, "/tcp/", port_);
    case Kind::kUnix:
      return absl::StrCat("/unix", path_);  // path_ starts with '/'.
  }
  LOG(FATAL) << "unknown Address::Kind " << static_cast<int>(kind_);
  return "";
}

std::string Address::GrpcTarget() const {
  switch (kind_) {
    case Kind::kTcp4:
      if (!IpOf(*this).has_value()) {
        return absl::StrCat("dns:///", host_, ":", port_);
      }
      return absl::StrCat("ipv4:", host_, ":", port_);
    case Kind::kTcp6:
      return absl::StrCat("ipv6:[", host_, "]:", port_);
    case Kind::kUnix:
      return absl::StrCat(kUnixPrefix, path_);
  }
  LOG(FATAL) << "unknown Address::Kind " << static_cast<int>(kind_);
  return "";
}

std::string Address::ListenString() const {
  // gRPC's server takes the same "host:port" / "[v6]:port" / "unix:path"
  // forms as our canonical text.
  return ToString();
}

Address Address::WithPort(int port) const {
  CHECK(kind_ != Kind::kUnix)
      << "Address::WithPort(" << port << ") on unix address " << ToString();
  CHECK(port >= 0 && port <= kMaxPort)
      << "Address::WithPort: port " << port << " is out of range 0-"
      << kMaxPort;
  return Address(kind_, host_, port, "");
}

bool Address::IsLoopback() const {
  if (kind_ == Kind::kUnix) return false;
  const std::optional<Ip> ip = IpOf(*this);
  if (!ip.has_value()) return host_ == "localhost";
  return IsLoopbackIp(*ip);
}

bool Address::IsLocalHost() const {
  if (kind_ == Kind::kUnix || IsLoopback()) return true;
  return IsLocalOn(*this, LocalMachine::Get());
}

absl::StatusOr<std::vector<Address>> ParseAddressList(absl::string_view text) {
  std::vector<Address> addresses;
  if (absl::StripAsciiWhitespace(text).empty()) return addresses;
  int position = 0;
  for (absl::string_view element : absl::StrSplit(text, ',')) {
    ++position;
    absl::StatusOr<Address> address =
        Address::Parse(absl::StripAsciiWhitespace(element));
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("address list ", Quote(text), ", element ", position,
                       ": ", address.status().message()));
    }
    addresses.push_back(*std::move(address));
  }
  return addresses;
}

std::optional<Address> PreferAddress(const std::vector<Address>& addrs) {
  if (addrs.empty()) return std::nullopt;
  // Tier 1: the last unix socket. Needs no kernel query.
  for (auto it = addrs.rbegin(); it != addrs.rend(); ++it) {
    if (it->kind() == Address::Kind::kUnix) return *it;
  }
  // Tier 2: the last TCP address on this machine; tier 3: the last one.
  // The kernel is asked only when an address is not plainly loopback.
  std::optional<LocalMachine> machine;
  for (auto it = addrs.rbegin(); it != addrs.rend(); ++it) {
    if (it->IsLoopback()) return *it;
    if (!machine.has_value()) machine = LocalMachine::Get();
    if (IsLocalOn(*it, *machine)) return *it;
  }
  return addrs.back();
}

const std::string& HostId() {
  static const std::string* id = [] {
    std::string boot = "unknown-boot";
    if (FILE* f = fopen("/proc/sys/kernel/random/boot_id", "r")) {
      char buf[64] = {0};
      if (fgets(buf, sizeof buf, f) != nullptr) {
        boot = buf;
        while (!boot.empty() && (boot.back() == '\n' || boot.back() == ' ')) {
          boot.pop_back();
        }
      }
      fclose(f);
    }
    struct stat st;
    const unsigned long long net =
        stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
    return new std::string(absl::StrCat(boot, "/net:", net));
  }();
  return *id;
}

}  // namespace tractor::discovery
