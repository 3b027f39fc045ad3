// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests the registrar daemon binary (registrar/registrar_main.cc) as a child
// process: readiness line, serving on TCP and unix sockets, clean exit on
// signals, and bind failures.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::registrar {
namespace {

namespace v1 = ::tractor::v1;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::UnorderedElementsAre;

std::string DaemonPath() {
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const char* dir = std::getenv(var);
    if (dir == nullptr) continue;
    std::string path = absl::StrCat(dir, "/tractor_cpp/registrar/registrar");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// One daemon child process. Its stdout is a pipe; stderr goes to a file.
struct Daemon {
  pid_t pid = -1;
  int stdout_fd = -1;
  std::string stderr_path;
  std::string pending;  // stdout bytes read past the last line
  std::optional<int> wait_status;
};

// The ready line, parsed.
struct Ready {
  std::string uuid;
  std::vector<std::string> addrs;
};

class RegistrarDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = DaemonPath();
    ASSERT_FALSE(binary_.empty())
        << "registrar binary not found under $TEST_SRCDIR or $RUNFILES_DIR";
    char dir[] = "/tmp/tr.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr) << std::strerror(errno);
    dir_ = dir;
  }

  // Kills and reaps every daemon still running, then removes the directory.
  void TearDown() override {
    for (auto& daemon : daemons_) {
      if (!daemon->wait_status.has_value()) {
        kill(daemon->pid, SIGKILL);
        int status = 0;
        waitpid(daemon->pid, &status, 0);
      }
      if (daemon->stdout_fd >= 0) close(daemon->stdout_fd);
    }
    if (!dir_.empty()) {
      std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
      (void)std::system(cmd.c_str());
    }
  }

  Daemon* Spawn(const std::vector<std::string>& args) {
    auto daemon = std::make_unique<Daemon>();
    daemon->stderr_path =
        absl::StrCat(dir_, "/stderr.", daemons_.size(), ".txt");
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return nullptr;
    }
    std::vector<std::string> argv_strings = {binary_};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      int err = open(daemon->stderr_path.c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
          dup2(err, STDERR_FILENO) < 0) {
        _exit(127);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      close(out[0]);
      return nullptr;
    }
    daemon->pid = pid;
    daemon->stdout_fd = out[0];
    daemons_.push_back(std::move(daemon));
    return daemons_.back().get();
  }

  // Returns the next stdout line, or nullopt at EOF or after `timeout`.
  static std::optional<std::string> ReadLine(Daemon* daemon,
                                             absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      if (size_t nl = daemon->pending.find('\n'); nl != std::string::npos) {
        std::string line = daemon->pending.substr(0, nl);
        daemon->pending.erase(0, nl + 1);
        return line;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return std::nullopt;
      pollfd pfd = {daemon->stdout_fd, POLLIN, 0};
      int rc = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return std::nullopt;
      char buf[512];
      ssize_t n = read(daemon->stdout_fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      daemon->pending.append(buf, n);
    }
  }

  // Reads and parses the ready line; fails the test without it.
  static std::optional<Ready> AwaitReady(Daemon* daemon) {
    std::optional<std::string> line = ReadLine(daemon, absl::Seconds(10));
    if (!line.has_value()) {
      ADD_FAILURE() << "no ready line within 10 s; stderr:\n"
                    << ReadFile(daemon->stderr_path);
      return std::nullopt;
    }
    std::vector<std::string> words = absl::StrSplit(*line, ' ');
    if (words.size() != 5 || words[0] != "registrar" ||
        words[2] != "listening" || words[3] != "on") {
      ADD_FAILURE() << "malformed ready line: " << *line;
      return std::nullopt;
    }
    return Ready{words[1], absl::StrSplit(words[4], ',')};
  }

  // Waits for the daemon to exit; returns its wait status, or nullopt if it
  // is still running after `timeout`.
  static std::optional<int> WaitExit(Daemon* daemon, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!daemon->wait_status.has_value()) {
      int status = 0;
      pid_t rc = waitpid(daemon->pid, &status, WNOHANG);
      if (rc == daemon->pid) {
        daemon->wait_status = status;
        break;
      }
      if (absl::Now() > deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return daemon->wait_status;
  }

  static grpc::Status Hello(const std::string& addr, v1::HelloReply* reply) {
    auto stub = v1::Registrar::NewStub(
        grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    return stub->Hello(&ctx, v1::HelloRequest(), reply);
  }

  // Asserts a clean exit (status 0) within 5 s.
  static void ExpectCleanExit(Daemon* daemon) {
    std::optional<int> status = WaitExit(daemon, absl::Seconds(5));
    ASSERT_TRUE(status.has_value()) << "daemon still running 5 s after signal";
    ASSERT_TRUE(WIFEXITED(*status)) << "daemon died abnormally, status "
                                    << *status << "; stderr:\n"
                                    << ReadFile(daemon->stderr_path);
    EXPECT_EQ(WEXITSTATUS(*status), 0) << ReadFile(daemon->stderr_path);
  }

  // Asserts exit status 2 (a bad command line) within 5 s, with every one
  // of `needles` in stderr.
  static void ExpectUsageExit(Daemon* daemon,
                              const std::vector<std::string>& needles) {
    std::optional<int> status = WaitExit(daemon, absl::Seconds(5));
    ASSERT_TRUE(status.has_value()) << "daemon did not exit on a bad command line";
    ASSERT_TRUE(WIFEXITED(*status)) << "daemon died abnormally";
    EXPECT_EQ(WEXITSTATUS(*status), 2);
    const std::string err = ReadFile(daemon->stderr_path);
    for (const std::string& needle : needles) EXPECT_THAT(err, HasSubstr(needle));
  }

  // Asserts exit status 1 within 5 s, with `needle` in stderr.
  static void ExpectBindFailure(Daemon* daemon, const std::string& needle) {
    std::optional<int> status = WaitExit(daemon, absl::Seconds(5));
    ASSERT_TRUE(status.has_value()) << "daemon did not exit on a bad address";
    ASSERT_TRUE(WIFEXITED(*status)) << "daemon died abnormally";
    EXPECT_EQ(WEXITSTATUS(*status), 1);
    EXPECT_THAT(ReadFile(daemon->stderr_path), HasSubstr(needle));
    EXPECT_EQ(ReadLine(daemon, absl::Milliseconds(100)), std::nullopt)
        << "a failed daemon printed a ready line";
  }

  std::string binary_;
  std::string dir_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

TEST_F(RegistrarDaemonTest, ServesTcpAndUnixAndExitsCleanlyOnSigterm) {
  const std::string sock = dir_ + "/reg.sock";
  Daemon* daemon =
      Spawn({"--listen", "127.0.0.1:0,unix:" + sock, "--name", "reg-test",
             "--lease_ms", "1234", "--loglevel", "debug"});
  ASSERT_NE(daemon, nullptr);
  std::optional<Ready> ready = AwaitReady(daemon);
  ASSERT_TRUE(ready.has_value());
  EXPECT_THAT(ready->uuid,
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                           "[0-9a-f]{12}"));
  ASSERT_EQ(ready->addrs.size(), 2u);
  EXPECT_THAT(ready->addrs[0], MatchesRegex("127\\.0\\.0\\.1:[1-9][0-9]*"));
  EXPECT_EQ(ready->addrs[1], "unix:" + sock);
  EXPECT_TRUE(PathExists(sock));

  for (const std::string& addr : ready->addrs) {
    v1::HelloReply reply;
    grpc::Status status = Hello(addr, &reply);
    ASSERT_TRUE(status.ok()) << addr << ": " << status.error_message();
    EXPECT_EQ(reply.registrar().uuid(), ready->uuid) << addr;
    EXPECT_EQ(reply.registrar().name(), "reg-test");
    EXPECT_EQ(reply.registrar().pid(), daemon->pid);
    EXPECT_TRUE(reply.registrar().is_registrar());
    EXPECT_EQ(reply.default_lease_ms(), 1234u);
  }

  // The registrar lists itself at its bound addresses.
  auto stub = v1::Registrar::NewStub(grpc::CreateChannel(
      ready->addrs[1], grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListReply list;
  ASSERT_TRUE(stub->List(&ctx, v1::ListRequest(), &list).ok());
  ASSERT_EQ(list.registrations_size(), 1);
  EXPECT_EQ(list.registrations(0).aid().uuid(), ready->uuid);
  EXPECT_THAT(list.registrations(0).addrs(),
              UnorderedElementsAre(ready->addrs[0], ready->addrs[1]));

  ASSERT_EQ(kill(daemon->pid, SIGTERM), 0);
  ExpectCleanExit(daemon);
  EXPECT_FALSE(PathExists(sock)) << "the daemon left its socket file behind";
}

TEST_F(RegistrarDaemonTest, ExitsCleanlyOnSigint) {
  const std::string sock = dir_ + "/reg.sock";
  Daemon* daemon = Spawn({"--listen=unix:" + sock});
  ASSERT_NE(daemon, nullptr);
  ASSERT_TRUE(AwaitReady(daemon).has_value());
  ASSERT_EQ(kill(daemon->pid, SIGINT), 0);
  ExpectCleanExit(daemon);
  EXPECT_FALSE(PathExists(sock));
}

TEST_F(RegistrarDaemonTest, SigtermEndsPendingCallsAndExitsPromptly) {
  Daemon* daemon = Spawn({"--listen", "127.0.0.1:0"});
  ASSERT_NE(daemon, nullptr);
  std::optional<Ready> ready = AwaitReady(daemon);
  ASSERT_TRUE(ready.has_value());

  auto stub = v1::Registrar::NewStub(grpc::CreateChannel(
      ready->addrs[0], grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::FindRequest request;
  request.set_name("never");
  v1::FindReply reply;
  grpc::Status status;
  absl::Notification done;
  stub->async()->WaitFor(&ctx, &request, &reply, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  // Make sure the call reached the daemon before signalling it.
  v1::HelloReply hello;
  ASSERT_TRUE(Hello(ready->addrs[0], &hello).ok());
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(100)));

  ASSERT_EQ(kill(daemon->pid, SIGTERM), 0);
  ExpectCleanExit(daemon);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "the pending WaitFor never completed";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
}

TEST_F(RegistrarDaemonTest, TcpAddressInUseExitsOneNamingIt) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  const std::string busy = absl::StrCat("127.0.0.1:", ntohs(sin.sin_port));
  const std::string sock = dir_ + "/reg.sock";

  Daemon* daemon = Spawn({"--listen", "unix:" + sock + "," + busy});
  ASSERT_NE(daemon, nullptr);
  ExpectBindFailure(daemon, "cannot listen on " + busy);
  EXPECT_FALSE(PathExists(sock)) << "a failed daemon left its socket file";
  close(fd);
}

TEST_F(RegistrarDaemonTest, SecondDaemonOnSameTcpPortExitsOne) {
  Daemon* first = Spawn({"--listen", "127.0.0.1:0"});
  ASSERT_NE(first, nullptr);
  std::optional<Ready> ready = AwaitReady(first);
  ASSERT_TRUE(ready.has_value());

  // gRPC binds with SO_REUSEPORT unless told not to; the daemon must not.
  Daemon* second = Spawn({"--listen", ready->addrs[0]});
  ASSERT_NE(second, nullptr);
  ExpectBindFailure(second, "cannot listen on " + ready->addrs[0]);

  v1::HelloReply reply;
  ASSERT_TRUE(Hello(ready->addrs[0], &reply).ok());
  EXPECT_EQ(reply.registrar().uuid(), ready->uuid);
  ASSERT_EQ(kill(first->pid, SIGTERM), 0);
  ExpectCleanExit(first);
}

TEST_F(RegistrarDaemonTest, LiveUnixSocketIsNotStolen) {
  const std::string sock = dir_ + "/reg.sock";
  Daemon* first = Spawn({"--listen", "unix:" + sock});
  ASSERT_NE(first, nullptr);
  std::optional<Ready> ready = AwaitReady(first);
  ASSERT_TRUE(ready.has_value());

  Daemon* second = Spawn({"--listen", "unix:" + sock});
  ASSERT_NE(second, nullptr);
  ExpectBindFailure(second, "cannot listen on unix:" + sock);

  v1::HelloReply reply;
  ASSERT_TRUE(Hello("unix:" + sock, &reply).ok());
  EXPECT_EQ(reply.registrar().uuid(), ready->uuid)
      << "the second daemon took over the socket";
  ASSERT_EQ(kill(first->pid, SIGTERM), 0);
  ExpectCleanExit(first);
}

TEST_F(RegistrarDaemonTest, StaleUnixSocketFileIsReplaced) {
  const std::string sock = dir_ + "/reg.sock";
  // A socket file nobody listens on, as a crashed daemon leaves behind.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, sock.c_str(), sizeof(sun.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
  close(fd);
  ASSERT_TRUE(PathExists(sock));

  Daemon* daemon = Spawn({"--listen", "unix:" + sock});
  ASSERT_NE(daemon, nullptr);
  std::optional<Ready> ready = AwaitReady(daemon);
  ASSERT_TRUE(ready.has_value());
  v1::HelloReply reply;
  ASSERT_TRUE(Hello("unix:" + sock, &reply).ok());
  EXPECT_EQ(reply.registrar().uuid(), ready->uuid);
  ASSERT_EQ(kill(daemon->pid, SIGTERM), 0);
  ExpectCleanExit(daemon);
}

TEST_F(RegistrarDaemonTest, TooLongUnixPathIsABadCommandLine) {
  // --listen goes through discovery::Address::Parse, which rejects a path
  // that does not fit sockaddr_un before anything is bound.
  const std::string sock = dir_ + "/" + std::string(120, 'x') + ".sock";
  Daemon* daemon = Spawn({"--listen", "unix:" + sock});
  ASSERT_NE(daemon, nullptr);
  ExpectUsageExit(daemon, {"too long", "at most 107", "unix:" + sock});
}

TEST_F(RegistrarDaemonTest, ListenAcceptsMultiaddrsAndPrintsCanonicalForms) {
  const std::string sock = dir_ + "/m.sock";
  Daemon* daemon =
      Spawn({"--listen", "/ip4/127.0.0.1/tcp/0, /unix" + sock});
  ASSERT_NE(daemon, nullptr);
  std::optional<Ready> ready = AwaitReady(daemon);
  ASSERT_TRUE(ready.has_value());
  ASSERT_EQ(ready->addrs.size(), 2u);
  EXPECT_THAT(ready->addrs[0], MatchesRegex("127\\.0\\.0\\.1:[1-9][0-9]*"));
  EXPECT_EQ(ready->addrs[1], "unix:" + sock);
  for (const std::string& addr : ready->addrs) {
    v1::HelloReply reply;
    EXPECT_TRUE(Hello(addr, &reply).ok()) << addr;
  }
  kill(daemon->pid, SIGTERM);
  ExpectCleanExit(daemon);
}

TEST_F(RegistrarDaemonTest, UnsupportedListenAddressIsAClearError) {
  Daemon* daemon = Spawn({"--listen", "/ip4/127.0.0.1/udp/1616"});
  ASSERT_NE(daemon, nullptr);
  ExpectUsageExit(daemon, {"--listen", "unsupported transport", "/udp"});
}

TEST_F(RegistrarDaemonTest, BadCommandLineExitsTwo) {
  Daemon* daemon = Spawn({"--listen", "127.0.0.1:0", "--lease_ms", "soon"});
  ASSERT_NE(daemon, nullptr);
  ExpectUsageExit(daemon, {"--lease_ms"});
}

TEST_F(RegistrarDaemonTest, UnknownLogLevelIsABadCommandLine) {
  Daemon* daemon = Spawn({"--listen", "127.0.0.1:0", "--loglevel", "loud"});
  ASSERT_NE(daemon, nullptr);
  ExpectUsageExit(daemon, {"--loglevel", "'loud'", "critical, error, warning"});
}

}  // namespace
}  // namespace tractor::registrar
