// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/listen.h: making unix socket paths bindable without taking
// over a live socket, binding a server on several addresses with port 0
// resolved, clear errors for addresses that cannot be bound, and gRPC's
// reflection and channelz loaded by LoadStandardServices (both unless
// TRACTOR_STANDARD_SERVICES opts out), not before.
#include "discovery/listen.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using tractor::testing::SilentListener;
using tractor::testing::TempDir;

Address Parse(const std::string& text) {
  absl::StatusOr<Address> a = Address::Parse(text);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *a : Address::Unix("/parse-failed");
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// A unix socket bound at `path`; listening unless `listen` is false. The
// file stays when the socket is closed (a stale socket file).
int UnixSocket(const std::string& path, bool listen) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0)
      << std::strerror(errno);
  if (listen) {
    EXPECT_EQ(::listen(fd, 4), 0);
  }
  return fd;
}

// Returns true when something accepts a TCP connection at 127.0.0.1:port.
bool TcpAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
  close(fd);
  return ok;
}

// A gRPC service to register (a server needs one); implements nothing.
class NoService final : public v1::Registrar::CallbackService {};

TEST(PrepareUnixListenPathTest, RefusesALiveSocket) {
  TempDir dir;
  const std::string path = dir.path() + "/live.sock";
  int fd = UnixSocket(path, /*listen=*/true);
  absl::Status s = PrepareUnixListenPath(Parse("unix:" + path));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("cannot listen on unix:" + path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("already in use"));
  EXPECT_TRUE(Exists(path)) << "the live socket file was removed";
  close(fd);
}

TEST(PrepareUnixListenPathTest, RemovesAStaleSocketFile) {
  TempDir dir;
  const std::string path = dir.path() + "/stale.sock";
  close(UnixSocket(path, /*listen=*/false));
  ASSERT_TRUE(Exists(path));
  EXPECT_TRUE(PrepareUnixListenPath(Parse("unix:" + path)).ok());
  EXPECT_FALSE(Exists(path));
}

TEST(PrepareUnixListenPathTest, RefusesAFileThatIsNotASocket) {
  TempDir dir;
  const std::string path = dir.path() + "/plain";
  std::ofstream(path) << "data";
  absl::Status s = PrepareUnixListenPath(Parse("unix:" + path));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("is not a socket"));
  EXPECT_TRUE(Exists(path));
}

TEST(PrepareUnixListenPathTest, CreatesTheParentDirectoryOnlyWhenAsked) {
  TempDir dir;
  const std::string path = dir.path() + "/run/r.sock";
  EXPECT_TRUE(PrepareUnixListenPath(Parse("unix:" + path)).ok());
  EXPECT_FALSE(Exists(dir.path() + "/run"));
  EXPECT_TRUE(
      PrepareUnixListenPath(Parse("unix:" + path), /*create_parent_dir=*/true)
          .ok());
  EXPECT_TRUE(Exists(dir.path() + "/run"));
}

TEST(PrepareUnixListenPathTest, IsANoOpForTcp) {
  SilentListener busy;
  EXPECT_TRUE(PrepareUnixListenPath(Parse(busy.addr())).ok());
}

TEST(BindAllTest, PortZeroResolvesToTheBoundPortAndUnixAsGiven) {
  TempDir dir;
  const std::string sock = dir.path() + "/s.sock";
  grpc::ServerBuilder builder;
  ApplyServerArgs(builder);
  absl::StatusOr<ListeningPorts> ports =
      BindAll(builder, {Parse("127.0.0.1:0"), Parse("unix:" + sock)});
  ASSERT_TRUE(ports.ok()) << ports.status();
  NoService service;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::vector<Address>> bound = ports->Resolve(server.get());
  ASSERT_TRUE(bound.ok()) << bound.status();
  ASSERT_EQ(bound->size(), 2u);
  EXPECT_THAT((*bound)[0].ToString(),
              MatchesRegex("127\\.0\\.0\\.1:[1-9][0-9]*"));
  EXPECT_TRUE(TcpAccepts((*bound)[0].port()));
  EXPECT_EQ((*bound)[1].ToString(), "unix:" + sock);
  EXPECT_TRUE(Exists(sock));

  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  ports->RemoveSocketFiles();
  EXPECT_FALSE(Exists(sock));
}

TEST(BindAllTest, TakenTcpPortFailsNamingItAndLeavesNoSocketFile) {
  TempDir dir;
  const std::string sock = dir.path() + "/s.sock";
  SilentListener busy;
  grpc::ServerBuilder builder;
  ApplyServerArgs(builder);
  absl::StatusOr<ListeningPorts> ports =
      BindAll(builder, {Parse("unix:" + sock), Parse(busy.addr())});
  ASSERT_TRUE(ports.ok()) << ports.status();
  NoService service;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_EQ(server, nullptr);
  absl::StatusOr<std::vector<Address>> bound = ports->Resolve(server.get());
  ASSERT_FALSE(bound.ok());
  EXPECT_EQ(bound.status().code(), absl::StatusCode::kAlreadyExists)
      << bound.status();
  EXPECT_EQ(bound.status().message(),
            absl::StrCat("cannot listen on ", busy.addr(),
                         ": address already in use"));
  EXPECT_FALSE(Exists(sock)) << "the unix socket bound first was left behind";
}

// Without GRPC_ARG_ALLOW_REUSEPORT = 0 the second server would start on the
// same port and split the traffic.
TEST(PrivateSocketAddressTest, MakesAPrivateDirectoryAndNamesTheSocketInIt) {
  TempDir parent;
  const std::string dir = parent.path() + "/private";
  auto addr = PrivateSocketAddress("abc", dir);
  ASSERT_TRUE(addr.has_value());
  EXPECT_EQ(addr->ToString(), "unix:" + dir + "/abc.sock");
  struct stat st;
  ASSERT_EQ(lstat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Made once, used again.
  EXPECT_TRUE(PrivateSocketAddress("def", dir).has_value());
}

TEST(PrivateSocketAddressTest, RefusesADirectoryOthersMayEnter) {
  TempDir parent;
  const std::string dir = parent.path() + "/open";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);  // whatever the umask
  EXPECT_FALSE(PrivateSocketAddress("abc", dir).has_value());
  // A file, or a symbolic link to a private directory, is not one either.
  const std::string file = parent.path() + "/file";
  std::ofstream(file) << "x";
  EXPECT_FALSE(PrivateSocketAddress("abc", file).has_value());
  const std::string target = parent.path() + "/target";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  const std::string link = parent.path() + "/link";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  EXPECT_FALSE(PrivateSocketAddress("abc", link).has_value());
}

TEST(BindAllTest, SecondServerOnTheSamePortFails) {
  grpc::ServerBuilder first_builder;
  ApplyServerArgs(first_builder);
  absl::StatusOr<ListeningPorts> first_ports =
      BindAll(first_builder, {Parse("127.0.0.1:0")});
  ASSERT_TRUE(first_ports.ok());
  NoService first_service;
  first_builder.RegisterService(&first_service);
  std::unique_ptr<grpc::Server> first = first_builder.BuildAndStart();
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::vector<Address>> first_bound =
      first_ports->Resolve(first.get());
  ASSERT_TRUE(first_bound.ok());

  grpc::ServerBuilder second_builder;
  ApplyServerArgs(second_builder);
  absl::StatusOr<ListeningPorts> second_ports =
      BindAll(second_builder, *first_bound);
  ASSERT_TRUE(second_ports.ok());
  NoService second_service;
  second_builder.RegisterService(&second_service);
  std::unique_ptr<grpc::Server> second = second_builder.BuildAndStart();
  EXPECT_EQ(second, nullptr);
  absl::StatusOr<std::vector<Address>> second_bound =
      second_ports->Resolve(second.get());
  EXPECT_EQ(second_bound.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(second_bound.status().message()),
              HasSubstr((*first_bound)[0].ToString()));
  first->Shutdown(std::chrono::system_clock::now());
  first->Wait();
}

TEST(BindAllTest, LiveUnixSocketFailsBeforeAnythingIsBound) {
  TempDir dir;
  const std::string sock = dir.path() + "/live.sock";
  int fd = UnixSocket(sock, /*listen=*/true);
  grpc::ServerBuilder builder;
  absl::StatusOr<ListeningPorts> ports =
      BindAll(builder, {Parse("127.0.0.1:0"), Parse("unix:" + sock)});
  ASSERT_FALSE(ports.ok());
  EXPECT_EQ(ports.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(ports.status().message()),
              HasSubstr("cannot listen on unix:" + sock));
  EXPECT_TRUE(Exists(sock));
  close(fd);
}

TEST(BindAllTest, EmptyListIsAnError) {
  grpc::ServerBuilder builder;
  EXPECT_EQ(BindAll(builder, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseStandardServicesTest, AcceptsAllNoneAndLists) {
  struct Case {
    const char* spec;
    bool reflection, channelz;
  };
  for (const Case& c : {Case{"", true, true}, Case{"0", false, false},
                        Case{"none", false, false}, Case{"1", true, true},
                        Case{"all", true, true},
                        Case{"reflection", true, false},
                        Case{"channelz", false, true},
                        Case{" channelz , reflection ", true, true}}) {
    absl::StatusOr<StandardServices> s = ParseStandardServices(c.spec);
    ASSERT_TRUE(s.ok()) << c.spec << ": " << s.status();
    EXPECT_EQ(s->reflection, c.reflection) << c.spec;
    EXPECT_EQ(s->channelz, c.channelz) << c.spec;
  }
}

TEST(ParseStandardServicesTest, NamesTheVariableAndTheUnknownWord) {
  for (const char* spec : {"yes", "reflection,gdb", "reflection,", "ALL"}) {
    absl::StatusOr<StandardServices> s = ParseStandardServices(spec);
    ASSERT_FALSE(s.ok()) << spec;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr("TRACTOR_STANDARD_SERVICES"));
    EXPECT_THAT(s.status().message(), HasSubstr("unknown service"));
  }
}

// The names in an encoded ServerReflectionResponse's list_services_response,
// and its valid_host and original request's fields 1 and 7.
struct ListAnswer {
  std::string host, original_host, original_list;
  std::vector<std::string> names;
};
ListAnswer DecodeListAnswer(const std::string& bytes) {
  ListAnswer out;
  google::protobuf::UnknownFieldSet response;
  EXPECT_TRUE(response.ParseFromString(bytes));
  for (int i = 0; i < response.field_count(); ++i) {
    const auto& f = response.field(i);
    google::protobuf::UnknownFieldSet inner;
    if (f.number() == 1) out.host = f.length_delimited();
    if (f.number() == 2) {
      EXPECT_TRUE(inner.ParseFromString(f.length_delimited()));
      for (int j = 0; j < inner.field_count(); ++j) {
        if (inner.field(j).number() == 1) {
          out.original_host = inner.field(j).length_delimited();
        }
        if (inner.field(j).number() == 7) {
          out.original_list = inner.field(j).length_delimited();
        }
      }
    }
    if (f.number() == 6) {
      EXPECT_TRUE(inner.ParseFromString(f.length_delimited()));
      for (int j = 0; j < inner.field_count(); ++j) {
        google::protobuf::UnknownFieldSet service;
        EXPECT_TRUE(service.ParseFromString(inner.field(j).length_delimited()));
        EXPECT_EQ(service.field_count(), 1);
        out.names.push_back(service.field(0).length_delimited());
      }
    }
  }
  return out;
}

std::string Encode(const google::protobuf::UnknownFieldSet& fields) {
  std::string out;
  fields.SerializeToString(&out);
  return out;
}

TEST(LazyStandardServicesTest, ServesTheMethodsOfWhatIsAskedFor) {
  LazyStandardServices refl({.reflection = true, .channelz = false});
  const std::string kInfo =
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  EXPECT_TRUE(refl.Serves(kInfo));
  EXPECT_FALSE(refl.Serves("/grpc.channelz.v1.Channelz/GetServers"));
  EXPECT_FALSE(refl.Serves("/grpc.reflection.v1.ServerReflection/"
                           "ServerReflectionInfo"));
  LazyStandardServices channelz({.reflection = false, .channelz = true});
  EXPECT_FALSE(channelz.Serves(kInfo));
  EXPECT_TRUE(channelz.Serves("/grpc.channelz.v1.Channelz/GetServers"));
  EXPECT_TRUE(LazyStandardServices::IsReflection(kInfo));
  EXPECT_FALSE(
      LazyStandardServices::IsReflection("/grpc.channelz.v1.Channelz/GetServers"));
}

TEST(LazyStandardServicesTest, AnswersListServicesWithTheServersServices) {
  LazyStandardServices lazy({.reflection = true, .channelz = true});
  lazy.SetServiceList({"tractor.v1.Actor", "grpc.health.v1.Health"}, 1);
  google::protobuf::UnknownFieldSet request;
  request.AddLengthDelimited(1, "host1");
  request.AddLengthDelimited(3, "a.proto");  // the oneof's last field wins
  request.AddLengthDelimited(7, "*");
  std::optional<std::string> answer = lazy.AnswerListServices(Encode(request));
  ASSERT_TRUE(answer.has_value());
  ListAnswer a = DecodeListAnswer(*answer);
  EXPECT_EQ(a.host, "host1");
  EXPECT_EQ(a.original_host, "host1");
  EXPECT_EQ(a.original_list, "*");
  EXPECT_EQ(a.names, (std::vector<std::string>{
                         "tractor.v1.Actor",
                         "grpc.reflection.v1alpha.ServerReflection",
                         "grpc.channelz.v1.Channelz",
                         "grpc.health.v1.Health"}));

  // Any other request is the real service's to answer.
  google::protobuf::UnknownFieldSet other;
  other.AddLengthDelimited(7, "*");
  other.AddLengthDelimited(4, "tractor.v1.Actor");
  EXPECT_FALSE(lazy.AnswerListServices(Encode(other)).has_value());
  EXPECT_FALSE(lazy.AnswerListServices("").has_value());
  EXPECT_FALSE(lazy.AnswerListServices("\xff\xff").has_value());
}

bool Mapped(const std::string& library) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(library) != std::string::npos) return true;
  }
  return false;
}

// The status of an empty unary call to `method` on a server at `target`.
grpc::Status UnaryStatus(const std::string& target, const std::string& method) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");  // an empty message (every field default)
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  return status;
}

// One test, in this order: the process-wide load happens once. (Nothing in
// this program calls LoadStandardServices before this test, so the
// libraries are not mapped until it does.)
TEST(StandardServicesTest, LoadedOnlyWhenAskedThenServedByLaterServers) {
  const std::string kChannelz = "/grpc.channelz.v1.Channelz/GetServers";
  EXPECT_FALSE(Mapped("libgrpc++_reflection"));
  EXPECT_FALSE(Mapped("libgrpcpp_channelz"));
  NoService service;
  auto serve = [&service] {
    grpc::ServerBuilder builder;
    ApplyServerArgs(builder);
    auto ports = BindAll(builder, {Parse("127.0.0.1:0")});
    EXPECT_TRUE(ports.ok()) << ports.status();
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    EXPECT_NE(server, nullptr);
    auto addrs = ports->Resolve(server.get());
    EXPECT_TRUE(addrs.ok()) << addrs.status();
    return std::make_pair(std::move(server), (*addrs)[0].ToString());
  };
  {
    auto [server, addr] = serve();
    EXPECT_EQ(UnaryStatus(addr, kChannelz).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
  }
  {
    // Served lazily, a server's list of services is recorded when it is
    // built, without loading anything.
    grpc::ServerBuilder builder;
    std::shared_ptr<LazyStandardServices> lazy =
        LazyStandardServices::AttachTo(builder);
    ASSERT_NE(lazy, nullptr);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    google::protobuf::UnknownFieldSet request;
    request.AddLengthDelimited(7, "");
    std::optional<std::string> answer =
        lazy->AnswerListServices(Encode(request));
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(DecodeListAnswer(*answer).names,
              (std::vector<std::string>{
                  "tractor.v1.Registrar",
                  "grpc.reflection.v1alpha.ServerReflection",
                  "grpc.channelz.v1.Channelz", "grpc.health.v1.Health"}));
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    EXPECT_FALSE(Mapped("libgrpc++_reflection"));
    EXPECT_FALSE(Mapped("libgrpcpp_channelz"));
  }
  ASSERT_EQ(setenv(kStandardServicesEnv, "all", 1), 0);
  absl::Status st = LoadStandardServices();
  unsetenv(kStandardServicesEnv);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(Mapped("libgrpc++_reflection"));
  EXPECT_TRUE(Mapped("libgrpcpp_channelz"));
  EXPECT_TRUE(LoadStandardServices().ok());  // later calls: the same result
  {
    // Once loaded, a server registers the real services itself.
    grpc::ServerBuilder builder;
    EXPECT_EQ(LazyStandardServices::AttachTo(builder), nullptr);
  }
  auto [server, addr] = serve();
  EXPECT_TRUE(UnaryStatus(addr, kChannelz).ok());
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
}

}  // namespace
}  // namespace tractor::discovery
