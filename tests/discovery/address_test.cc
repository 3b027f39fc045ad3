// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tractor::discovery {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kAcceptedForms[] =
    "accepted forms: host:port, [ipv6]:port, unix:/absolute/path, "
    "/ip4/<addr>/tcp/<port>, /ip6/<addr>/tcp/<port>, "
    "/dns4/<name>/tcp/<port>, /unix/<absolute path>";

// Parses `text`; on error fails the test and returns a placeholder address
// that no expectation below matches.
Address MustParse(absl::string_view text) {
  absl::StatusOr<Address> address = Address::Parse(text);
  if (!address.ok()) {
    ADD_FAILURE() << "Parse(\"" << text << "\") failed: " << address.status();
    return Address::Unix("/parse-failed");
  }
  return *address;
}

// Returns the message of the error that parsing `text` must give; fails the
// test if it parses or gives another code.
std::string ParseError(absl::string_view text) {
  absl::StatusOr<Address> address = Address::Parse(text);
  if (address.ok()) {
    ADD_FAILURE() << "Parse(\"" << text << "\") unexpectedly gave "
                  << *address;
    return "";
  }
  EXPECT_EQ(address.status().code(), absl::StatusCode::kInvalidArgument)
      << address.status();
  return std::string(address.status().message());
}

// A path of exactly `length` bytes under /tmp.
std::string PathOfLength(size_t length) {
  std::string path = "/tmp/";
  path.append(length - path.size(), 'x');
  return path;
}

// --- Parsing each form ---------------------------------------------------

TEST(AddressParseTest, ParsesIpv4HostPort) {
  const Address a = MustParse("127.0.0.1:1616");
  EXPECT_EQ(a.kind(), Address::Kind::kTcp4);
  EXPECT_EQ(a.host(), "127.0.0.1");
  EXPECT_EQ(a.port(), 1616);
  EXPECT_EQ(a.path(), "");
  EXPECT_EQ(a.ToString(), "127.0.0.1:1616");
}

TEST(AddressParseTest, AcceptsPortZeroAndMaximum) {
  EXPECT_EQ(MustParse("10.1.2.3:0").port(), 0);
  EXPECT_EQ(MustParse("10.1.2.3:65535").port(), 65535);
}

TEST(AddressParseTest, ParsesBracketedIpv6AndCanonicalizesIt) {
  const Address a = MustParse("[0:0:0:0:0:0:0:1]:5678");
  EXPECT_EQ(a.kind(), Address::Kind::kTcp6);
  EXPECT_EQ(a.host(), "::1");
  EXPECT_EQ(a.port(), 5678);
  EXPECT_EQ(a.ToString(), "[::1]:5678");
  EXPECT_EQ(MustParse("[2001:DB8:0::1]:80").ToString(), "[2001:db8::1]:80");
}

TEST(AddressParseTest, ParsesLocalhostAsLowerCaseDnsNameOfKindTcp4) {
  const Address a = MustParse("LocalHost:1616");
  EXPECT_EQ(a.kind(), Address::Kind::kTcp4);
  EXPECT_EQ(a.host(), "localhost");
  EXPECT_EQ(a.port(), 1616);
  EXPECT_EQ(a.ToString(), "localhost:1616");
  EXPECT_EQ(MustParse("registrar-1.example.com:80").host(),
            "registrar-1.example.com");
}

TEST(AddressParseTest, ParsesAbsoluteUnixPath) {
  const Address a = MustParse("unix:/tmp/x.sock");
  EXPECT_EQ(a.kind(), Address::Kind::kUnix);
  EXPECT_EQ(a.path(), "/tmp/x.sock");
  EXPECT_EQ(a.host(), "");
  EXPECT_EQ(a.port(), 0);
  EXPECT_EQ(a.ToString(), "unix:/tmp/x.sock");
}

TEST(AddressParseTest, CollapsesLeadingSlashesOfUnixPath) {
  EXPECT_EQ(MustParse("unix:///tmp/x.sock").path(), "/tmp/x.sock");
  EXPECT_EQ(MustParse("unix://tmp/x.sock").path(), "/tmp/x.sock");
}

TEST(AddressParseTest, ParsesMultiaddrForms) {
  EXPECT_EQ(MustParse("/ip4/127.0.0.1/tcp/1234").ToString(), "127.0.0.1:1234");
  EXPECT_EQ(MustParse("/ip6/::1/tcp/80").ToString(), "[::1]:80");
  EXPECT_EQ(MustParse("/ip6/::1/tcp/80").kind(), Address::Kind::kTcp6);
  EXPECT_EQ(MustParse("/unix/tmp/x.sock").ToString(), "unix:/tmp/x.sock");
  EXPECT_EQ(MustParse("/unix//tmp/x.sock").ToString(), "unix:/tmp/x.sock");
  EXPECT_EQ(MustParse("/ip4/10.0.0.1/tcp/80/").ToString(), "10.0.0.1:80");
}

TEST(AddressParseTest, ParsesDnsMultiaddrAsTcp4KeepingTheName) {
  const Address a = MustParse("/dns4/Example.com/tcp/443");
  EXPECT_EQ(a.kind(), Address::Kind::kTcp4);
  EXPECT_EQ(a.host(), "example.com");
  EXPECT_EQ(a.port(), 443);
  EXPECT_EQ(MustParse("/dns/example.com/tcp/443"), a);
}

// --- Rejections ------------------------------------------------------------

TEST(AddressParseTest, RejectsPortOutOfRangeWithFullMessage) {
  EXPECT_EQ(ParseError("host:99999"),
            absl::StrCat("invalid address \"host:99999\": port 99999 is out "
                         "of range 0-65535; ",
                         kAcceptedForms));
  EXPECT_THAT(ParseError("host:65536"),
              HasSubstr("port 65536 is out of range 0-65535"));
  EXPECT_THAT(ParseError("host:0000001"),
              HasSubstr("port 0000001 is out of range"));
}

TEST(AddressParseTest, RejectsEmptyText) {
  EXPECT_EQ(ParseError(""),
            absl::StrCat("invalid address \"\": empty address; ",
                         kAcceptedForms));
}

TEST(AddressParseTest, RejectsMissingPort) {
  EXPECT_THAT(ParseError("1.2.3.4"),
              AllOf(HasSubstr("invalid address \"1.2.3.4\""),
                    HasSubstr("missing port (expected host:port)"),
                    HasSubstr(kAcceptedForms)));
  EXPECT_THAT(ParseError("host:"), HasSubstr("missing port"));
  EXPECT_THAT(ParseError("[::1]"), HasSubstr("missing port"));
  EXPECT_THAT(ParseError("/ip4/1.2.3.4"),
              HasSubstr("missing port (expected /tcp/<port>)"));
  EXPECT_THAT(ParseError("/ip4/1.2.3.4/tcp"),
              HasSubstr("missing port after /tcp"));
}

TEST(AddressParseTest, RejectsUdpMultiaddrs) {
  EXPECT_THAT(ParseError("/udp/1.2.3.4/53"),
              AllOf(HasSubstr("invalid address \"/udp/1.2.3.4/53\""),
                    HasSubstr("unsupported multiaddr protocol \"/udp\""),
                    HasSubstr(kAcceptedForms)));
  EXPECT_THAT(ParseError("/ip4/1.2.3.4/udp/53"),
              HasSubstr("unsupported transport \"/udp\" (only /tcp and /unix "
                        "are supported)"));
}

TEST(AddressParseTest, RejectsMalformedMultiaddrs) {
  EXPECT_THAT(ParseError("/ip4/::1/tcp/80"),
              HasSubstr("\"::1\" is not an IPv4 address"));
  EXPECT_THAT(ParseError("/ip6/127.0.0.1/tcp/80"),
              HasSubstr("\"127.0.0.1\" is not an IPv6 address"));
  EXPECT_THAT(ParseError("/dns4/bad name/tcp/80"),
              HasSubstr("\"bad name\" is not a DNS name"));
  EXPECT_THAT(ParseError("/ip4/1.2.3.4/tcp/80/p2p/QmPeer"),
              HasSubstr("unexpected components after the port: "
                        "\"/p2p/QmPeer\""));
  EXPECT_THAT(ParseError("/ip4//tcp/80"), HasSubstr("missing host after /ip4"));
  EXPECT_THAT(ParseError("/unix"), HasSubstr("missing unix socket path"));
  EXPECT_THAT(ParseError("/"), HasSubstr("unsupported multiaddr protocol"));
}

TEST(AddressParseTest, RejectsBadHosts) {
  EXPECT_THAT(ParseError("::1:80"),
              HasSubstr("an IPv6 address must be bracketed, as in "
                        "[::1]:1616"));
  EXPECT_THAT(ParseError("[1.2.3.4]:80"),
              HasSubstr("\"1.2.3.4\" is not an IPv6 address"));
  EXPECT_THAT(ParseError("[::1:80"),
              HasSubstr("missing ']' after the IPv6 address"));
  EXPECT_THAT(ParseError("[::1]80"),
              HasSubstr("expected ':' and a port after ']'"));
  EXPECT_THAT(ParseError("1.2.3.999:80"),
              HasSubstr("\"1.2.3.999\" is neither an IP address nor a valid "
                        "DNS name"));
  EXPECT_THAT(ParseError("bad host!:80"),
              HasSubstr("\"bad host!\" is neither an IP address"));
  EXPECT_THAT(ParseError(":80"), HasSubstr("missing host"));
  EXPECT_THAT(ParseError("host:8a"),
              HasSubstr("port \"8a\" is not a decimal number"));
  EXPECT_THAT(ParseError("host:-1"),
              HasSubstr("port \"-1\" is not a decimal number"));
  // A host named "unix" would be written "unix:<port>", which reads back
  // as a unix socket path (found by the address fuzz target).
  for (const char* text : {"/dns/unix/tcp/0", "/dns4/UNIX/tcp/80", "UNIX:80"}) {
    EXPECT_THAT(ParseError(text),
                HasSubstr("the host name \"unix\" cannot be told from the "
                          "unix: prefix"))
        << text;
  }
}

TEST(AddressParseTest, RejectsRelativeUnixPath) {
  EXPECT_THAT(ParseError("unix:relative/path.sock"),
              AllOf(HasSubstr("invalid address \"unix:relative/path.sock\""),
                    HasSubstr("unix socket path \"relative/path.sock\" is not "
                              "absolute (write unix:/absolute/path)")));
  EXPECT_THAT(ParseError("unix:"), HasSubstr("missing unix socket path"));
  EXPECT_THAT(ParseError("unix:/"), HasSubstr("names no file"));
}

TEST(AddressParseTest, AcceptsUnixPathThatExactlyFillsSunPath) {
  const std::string path = PathOfLength(107);
  EXPECT_EQ(MustParse("unix:" + path).path(), path);
}

TEST(AddressParseTest, RejectsUnixPathLongerThanSunPath) {
  const std::string path = PathOfLength(108);
  EXPECT_THAT(ParseError("unix:" + path),
              AllOf(HasSubstr(absl::StrCat("invalid address \"unix:", path)),
                    HasSubstr("unix socket path is too long: 108 bytes, but "
                              "at most 107 fit in sockaddr_un.sun_path")));
  // The multiaddr form hits the same limit.
  EXPECT_THAT(ParseError("/unix" + path), HasSubstr("too long: 108 bytes"));
}

// --- Round trips and output forms ---------------------------------------

TEST(AddressFormatTest, ToMultiaddrWritesEachForm) {
  EXPECT_EQ(MustParse("[::1]:5678").ToMultiaddr(), "/ip6/::1/tcp/5678");
  EXPECT_EQ(MustParse("127.0.0.1:1616").ToMultiaddr(),
            "/ip4/127.0.0.1/tcp/1616");
  EXPECT_EQ(MustParse("localhost:1616").ToMultiaddr(),
            "/dns4/localhost/tcp/1616");
  EXPECT_EQ(MustParse("unix:/tmp/x.sock").ToMultiaddr(), "/unix/tmp/x.sock");
}

TEST(AddressFormatTest, RoundTripsThroughToStringAndToMultiaddr) {
  for (const char* text :
       {"127.0.0.1:1616", "0.0.0.0:0", "[::1]:5678", "[fe80::1:2]:65535",
        "[::ffff:10.0.0.1]:80", "localhost:1616", "example.com:443",
        "unix:/tmp/x.sock", "/ip4/127.0.0.1/tcp/1234", "/ip6/::1/tcp/80",
        "/dns4/example.com/tcp/443", "/unix/run/tractor/registry@1616.sock"}) {
    SCOPED_TRACE(text);
    const Address a = MustParse(text);
    EXPECT_EQ(MustParse(a.ToString()), a);
    EXPECT_EQ(MustParse(a.ToMultiaddr()), a);
    EXPECT_EQ(MustParse(a.ToMultiaddr()).ToString(), a.ToString());
  }
}

TEST(AddressFormatTest, GrpcTargetNamesTheResolver) {
  EXPECT_EQ(MustParse("127.0.0.1:1616").GrpcTarget(), "ipv4:127.0.0.1:1616");
  EXPECT_EQ(MustParse("[::1]:1616").GrpcTarget(), "ipv6:[::1]:1616");
  EXPECT_EQ(MustParse("localhost:1616").GrpcTarget(),
            "dns:///localhost:1616");
  EXPECT_EQ(MustParse("unix:/tmp/x.sock").GrpcTarget(), "unix:/tmp/x.sock");
}

TEST(AddressFormatTest, ListenStringIsServerBuilderForm) {
  EXPECT_EQ(MustParse("127.0.0.1:0").ListenString(), "127.0.0.1:0");
  EXPECT_EQ(MustParse("[::1]:0").ListenString(), "[::1]:0");
  EXPECT_EQ(MustParse("localhost:0").ListenString(), "localhost:0");
  EXPECT_EQ(MustParse("unix:/tmp/x.sock").ListenString(), "unix:/tmp/x.sock");
}

// --- Factories and WithPort ----------------------------------------------

TEST(AddressFactoryTest, TcpPicksKindFromHost) {
  EXPECT_EQ(Address::Tcp("127.0.0.1", 1616), MustParse("127.0.0.1:1616"));
  EXPECT_EQ(Address::Tcp("::1", 1616).kind(), Address::Kind::kTcp6);
  EXPECT_EQ(Address::Tcp("::1", 1616), MustParse("[::1]:1616"));
  EXPECT_EQ(Address::Tcp("[::1]", 1616), MustParse("[::1]:1616"));
  EXPECT_EQ(Address::Tcp("LOCALHOST", 1), MustParse("localhost:1"));
}

TEST(AddressFactoryTest, UnixKeepsAbsolutePath) {
  const Address a = Address::Unix("/tmp/tr.abc/a.sock");
  EXPECT_EQ(a.kind(), Address::Kind::kUnix);
  EXPECT_EQ(a, MustParse("unix:/tmp/tr.abc/a.sock"));
}

TEST(AddressFactoryTest, WithPortReplacesOnlyThePort) {
  const Address bound = MustParse("127.0.0.1:0");
  EXPECT_EQ(bound.WithPort(4321).ToString(), "127.0.0.1:4321");
  EXPECT_EQ(bound.port(), 0);  // The original is unchanged.
  EXPECT_EQ(MustParse("[::1]:0").WithPort(80).ToString(), "[::1]:80");
  EXPECT_EQ(MustParse("localhost:0").WithPort(80).ToString(),
            "localhost:80");
}

TEST(AddressDeathTest, FactoriesCrashOnInvalidArguments) {
  EXPECT_DEATH(Address::Tcp("127.0.0.1", 70000),
               "port 70000 is out of range 0-65535");
  EXPECT_DEATH(Address::Tcp("", 1), "missing host");
  EXPECT_DEATH(Address::Unix("relative.sock"), "is not absolute");
  EXPECT_DEATH(Address::Unix(PathOfLength(108)), "too long: 108 bytes");
  EXPECT_DEATH(MustParse("unix:/tmp/x.sock").WithPort(1),
               "WithPort\\(1\\) on unix address unix:/tmp/x.sock");
  EXPECT_DEATH(MustParse("127.0.0.1:1").WithPort(-1),
               "port -1 is out of range");
}

// --- Locality --------------------------------------------------------------

TEST(AddressLocalityTest, IsLoopback) {
  EXPECT_TRUE(MustParse("127.0.0.1:1").IsLoopback());
  EXPECT_TRUE(MustParse("127.8.9.10:1").IsLoopback());
  EXPECT_TRUE(MustParse("[::1]:1").IsLoopback());
  EXPECT_TRUE(MustParse("[::ffff:127.0.0.1]:1").IsLoopback());
  EXPECT_TRUE(MustParse("localhost:1").IsLoopback());
  EXPECT_FALSE(MustParse("128.0.0.1:1").IsLoopback());
  EXPECT_FALSE(MustParse("[::2]:1").IsLoopback());
  EXPECT_FALSE(MustParse("example.com:1").IsLoopback());
  EXPECT_FALSE(MustParse("unix:/tmp/x.sock").IsLoopback());
}

TEST(AddressLocalityTest, IsLocalHostForLoopbackUnixAndUnspecified) {
  EXPECT_TRUE(MustParse("127.0.0.1:1").IsLocalHost());
  EXPECT_TRUE(MustParse("[::1]:1").IsLocalHost());
  EXPECT_TRUE(MustParse("localhost:1").IsLocalHost());
  EXPECT_TRUE(MustParse("unix:/tmp/x.sock").IsLocalHost());
  EXPECT_TRUE(MustParse("0.0.0.0:1").IsLocalHost());
  EXPECT_TRUE(MustParse("[::]:1").IsLocalHost());
}

TEST(AddressLocalityTest, IsLocalHostForEveryInterfaceAddress) {
  ifaddrs* list = nullptr;
  ASSERT_EQ(getifaddrs(&list), 0);
  int checked = 0;
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN];
    std::string host;
    if (it->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
      ASSERT_NE(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)),
                nullptr);
      host = text;
    } else if (it->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(it->ifa_addr);
      ASSERT_NE(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)),
                nullptr);
      host = text;
    } else {
      continue;
    }
    EXPECT_TRUE(Address::Tcp(host, 80).IsLocalHost()) << host;
    ++checked;
  }
  freeifaddrs(list);
  EXPECT_GT(checked, 0) << "getifaddrs listed no IP address, not even lo";
}

TEST(AddressLocalityTest, DocumentationAddressesAndUnresolvedNamesAreRemote) {
  // 192.0.2.0/24 and 2001:db8::/32 are reserved for documentation.
  EXPECT_FALSE(MustParse("192.0.2.1:1").IsLocalHost());
  EXPECT_FALSE(MustParse("[2001:db8::1]:1").IsLocalHost());
  EXPECT_FALSE(MustParse("registrar.invalid:1").IsLocalHost());
}

// --- Comparison --------------------------------------------------------------

TEST(AddressCompareTest, EqualityIsOnCanonicalForm) {
  EXPECT_EQ(MustParse("[0::1]:1"), MustParse("[::1]:1"));
  EXPECT_EQ(MustParse("/ip6/::1/tcp/1"), MustParse("[::1]:1"));
  EXPECT_EQ(MustParse("unix://tmp/a"), MustParse("/unix/tmp/a"));
  EXPECT_NE(MustParse("127.0.0.1:1"), MustParse("127.0.0.1:2"));
  EXPECT_NE(MustParse("127.0.0.1:1"), MustParse("localhost:1"));
  EXPECT_NE(MustParse("unix:/tmp/a"), MustParse("unix:/tmp/b"));
}

TEST(AddressCompareTest, KeysOrderedAndHashedContainers) {
  const std::vector<Address> addrs = {
      MustParse("unix:/tmp/a"), MustParse("[::1]:1"),
      MustParse("127.0.0.1:2"), MustParse("127.0.0.1:1"),
      MustParse("/ip4/127.0.0.1/tcp/1")};  // A duplicate of the 4th.

  const std::set<Address> ordered(addrs.begin(), addrs.end());
  EXPECT_THAT(ordered, ElementsAre(MustParse("127.0.0.1:1"),
                                   MustParse("127.0.0.1:2"),
                                   MustParse("[::1]:1"),
                                   MustParse("unix:/tmp/a")));

  std::map<Address, int> counts;
  for (const Address& a : addrs) ++counts[a];
  EXPECT_EQ(counts.size(), 4u);
  EXPECT_EQ(counts[MustParse("127.0.0.1:1")], 2);

  const absl::flat_hash_set<Address> hashed(addrs.begin(), addrs.end());
  EXPECT_EQ(hashed.size(), 4u);
  EXPECT_TRUE(hashed.contains(MustParse("[0:0::1]:1")));
}

// --- Address lists -----------------------------------------------------------

TEST(ParseAddressListTest, ParsesCommaSeparatedList) {
  absl::StatusOr<std::vector<Address>> list =
      ParseAddressList("127.0.0.1:1616,unix:/run/r.sock");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(*list, ElementsAre(Address::Tcp("127.0.0.1", 1616),
                                 Address::Unix("/run/r.sock")));
}

TEST(ParseAddressListTest, IgnoresWhitespaceAroundElements) {
  absl::StatusOr<std::vector<Address>> list =
      ParseAddressList(" [::1]:1 , /ip4/10.0.0.1/tcp/2 ");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(*list, ElementsAre(Address::Tcp("::1", 1),
                                 Address::Tcp("10.0.0.1", 2)));
}

TEST(ParseAddressListTest, EmptyTextIsEmptyList) {
  for (const char* text : {"", "   "}) {
    absl::StatusOr<std::vector<Address>> list = ParseAddressList(text);
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_THAT(*list, IsEmpty());
  }
}

TEST(ParseAddressListTest, NamesTheBadElement) {
  absl::StatusOr<std::vector<Address>> list =
      ParseAddressList("127.0.0.1:1,bogus,unix:/x");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(list.status().message(),
              AllOf(HasSubstr("address list \"127.0.0.1:1,bogus,unix:/x\", "
                              "element 2: invalid address \"bogus\": "
                              "missing port"),
                    HasSubstr(kAcceptedForms)));
}

TEST(ParseAddressListTest, RejectsEmptyElements) {
  absl::StatusOr<std::vector<Address>> list = ParseAddressList("a:1,,b:2");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(),
              HasSubstr("element 2: invalid address \"\": empty address"));

  list = ParseAddressList("a:1,");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(),
              HasSubstr("element 2: invalid address \"\": empty address"));
}

// --- Preference --------------------------------------------------------------

// Two addresses per tier; 192.0.2.0/24 and 198.51.100.0/24 are reserved for
// documentation, so they are never this machine's.
class PreferAddressTest : public ::testing::Test {
 protected:
  const Address remote1_ = Address::Tcp("192.0.2.1", 1);
  const Address remote2_ = Address::Tcp("198.51.100.7", 2);
  const Address local1_ = Address::Tcp("127.0.0.1", 3);
  const Address local2_ = Address::Tcp("::1", 4);
  const Address unix1_ = Address::Unix("/tmp/one.sock");
  const Address unix2_ = Address::Unix("/tmp/two.sock");
};

TEST_F(PreferAddressTest, EmptyListHasNoChoice) {
  EXPECT_EQ(PreferAddress({}), std::nullopt);
}

TEST_F(PreferAddressTest, UnixBeatsLocalTcpBeatsRemote) {
  EXPECT_EQ(PreferAddress({remote1_, local1_, unix1_}), unix1_);
  EXPECT_EQ(PreferAddress({unix1_, local1_, remote1_}), unix1_);
  EXPECT_EQ(PreferAddress({remote1_, local1_}), local1_);
  EXPECT_EQ(PreferAddress({local1_, remote1_}), local1_);
  EXPECT_EQ(PreferAddress({remote1_}), remote1_);
}

TEST_F(PreferAddressTest, LastListedWinsWithinATier) {
  EXPECT_EQ(PreferAddress({unix1_, local1_, unix2_, remote1_}), unix2_);
  EXPECT_EQ(PreferAddress({local1_, remote1_, local2_}), local2_);
  EXPECT_EQ(PreferAddress({remote1_, remote2_}), remote2_);
  EXPECT_EQ(PreferAddress({remote2_, remote1_}), remote1_);
}

}  // namespace
}  // namespace tractor::discovery
