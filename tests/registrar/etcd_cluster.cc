// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tests/registrar/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace tractor::testing {

namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string& LogDirOverride() {
  static auto* dir = new std::string;
  return *dir;
}

// Where child logs go: the test's output directory when Bazel gives one.
std::string LogDir() {
  if (!LogDirOverride().empty()) return LogDirOverride();
  for (const char* var : {"TEST_UNDECLARED_OUTPUTS_DIR", "TEST_TMPDIR"}) {
    if (const char* dir = std::getenv(var); dir != nullptr) return dir;
  }
  return "/tmp";
}

}  // namespace

void SetLogDir(const std::string& dir) { LogDirOverride() = dir; }

int FreeLoopbackPort() {
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    close(fd);
    if (port == 0) return 0;
    if (port != 2379 && port != 2380) return port;
  }
}

std::string RegistrarBinary() {
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const char* dir = std::getenv(var);
    if (dir == nullptr) continue;
    std::string path = absl::StrCat(dir, "/tractor_cpp/registrar/registrar");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string path =
        absl::StrCat(self, ".runfiles/tractor_cpp/registrar/registrar");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

Child::Child(std::vector<std::string> argv, std::string log_prefix)
    : argv_(std::move(argv)), log_prefix_(std::move(log_prefix)) {}

Child::~Child() { Kill(); }

bool Child::Start() {
  if (pid_ > 0) return true;
  ++starts_;
  const std::string out = absl::StrCat(log_prefix_, ".", starts_, ".out");
  const std::string err = absl::StrCat(log_prefix_, ".", starts_, ".err");
  std::vector<std::string> args = argv_;
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    // Dies with the test process, even when a timeout kills that.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, STDOUT_FILENO) < 0 ||
        dup2(e, STDERR_FILENO) < 0) {
      _exit(127);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  return true;
}

void Child::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool Child::Exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
  pid_ = -1;
  return true;
}

void Child::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  Kill();
}

std::string Child::Stdout() const {
  return ReadWholeFile(absl::StrCat(log_prefix_, ".", starts_, ".out"));
}

std::string Child::Stderr() const {
  return ReadWholeFile(absl::StrCat(log_prefix_, ".", starts_, ".err"));
}

EtcdCluster::EtcdCluster(int size) {
  absl::BitGen gen;
  const std::string token = absl::StrCat(
      "tractor-test-", getpid(), "-", absl::Uniform<uint32_t>(gen));
  dir_ = absl::StrCat("/dev/shm/", token);
  std::vector<std::string> peers;
  std::vector<int> client_ports;
  for (int i = 0; i < size; ++i) {
    client_ports.push_back(FreeLoopbackPort());
    peers.push_back(absl::StrCat("m", i, "=http://127.0.0.1:",
                                 FreeLoopbackPort()));
  }
  const std::string cluster = absl::StrJoin(peers, ",");
  const std::string log_dir = LogDir();
  for (int i = 0; i < size; ++i) {
    const std::string client_url =
        absl::StrCat("http://127.0.0.1:", client_ports[i]);
    const std::string peer_url =
        std::string(absl::StripPrefix(peers[i], absl::StrCat("m", i, "=")));
    client_endpoints_.push_back(absl::StrCat("127.0.0.1:", client_ports[i]));
    members_.push_back(std::make_unique<Child>(
        std::vector<std::string>{
            "/usr/bin/etcd", "--name", absl::StrCat("m", i), "--data-dir",
            absl::StrCat(dir_, "/m", i), "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url, "--listen-peer-urls",
            peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token, "--heartbeat-interval",
            absl::StrCat(absl::ToInt64Milliseconds(kHeartbeat)),
            "--election-timeout",
            absl::StrCat(absl::ToInt64Milliseconds(kElectionTimeout)),
            "--logger", "zap", "--log-level",
            "warn"},
        absl::StrCat(log_dir, "/", token, "-m", i)));
  }
  registrar::EtcdOptions options;
  options.endpoints = client_endpoints_;
  client_ = *registrar::EtcdClient::Create(options);
}

EtcdCluster::~EtcdCluster() {
  members_.clear();  // kills them
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status EtcdCluster::Start(absl::Duration timeout) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    return absl::FailedPreconditionError(
        "/usr/bin/etcd is missing: run tools/setup.sh (Debian's etcd-server)");
  }
  std::filesystem::create_directories(dir_);
  for (auto& member : members_) {
    if (!member->Start()) return absl::InternalError("cannot spawn etcd");
  }
  return WaitHealthy(timeout);
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    etcdserverpb::RangeRequest request;
    request.set_key("health");
    etcdserverpb::RangeResponse response;
    last = client_->Range(request, &response);
    if (last.ok()) return last;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd cluster not healthy within ",
                   absl::FormatDuration(timeout), ": ", last.message(), "\n",
                   Logs()));
}

int EtcdCluster::LeaderIndex() {
  std::vector<uint64_t> ids(members_.size(), 0);
  uint64_t leader = 0;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (!members_[i]->running()) continue;
    auto stub = etcdserverpb::Maintenance::NewStub(grpc::CreateChannel(
        client_endpoints_[i], grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    etcdserverpb::StatusResponse status;
    if (!stub->Status(&ctx, etcdserverpb::StatusRequest(), &status).ok()) {
      continue;
    }
    ids[i] = status.header().member_id();
    if (leader != 0 && status.leader() != leader) return -1;
    leader = status.leader();
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (leader != 0 && ids[i] == leader) return static_cast<int>(i);
  }
  return -1;
}

std::string EtcdCluster::Endpoints() const {
  return absl::StrJoin(client_endpoints_, ",");
}

std::string EtcdCluster::Logs() const {
  std::string logs;
  for (size_t i = 0; i < members_.size(); ++i) {
    std::string err = members_[i]->Stderr();
    if (err.size() > 2000) err = err.substr(err.size() - 2000);
    absl::StrAppend(&logs, "--- etcd m", i, " ---\n", err);
  }
  return logs;
}

RegistrarDaemon::RegistrarDaemon(const std::string& etcd_endpoints,
                                 const std::string& prefix) {
  addr_ = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  absl::BitGen gen;
  std::vector<std::string> argv = {RegistrarBinary(), "--listen", addr_};
  if (!etcd_endpoints.empty()) {
    argv.insert(argv.end(), {"--store=etcd",
                             "--etcd_endpoints=" + etcd_endpoints,
                             "--etcd_prefix=" + prefix});
  }
  child_ = std::make_unique<Child>(
      std::move(argv),
      absl::StrCat(LogDir(), "/registrar-", getpid(), "-",
                   absl::Uniform<uint32_t>(gen)));
}

absl::Status RegistrarDaemon::Start(absl::Duration timeout) {
  if (!child_->Start()) return absl::InternalError("cannot spawn registrar");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (absl::StrContains(child_->Stdout(), " listening on ")) {
      return absl::OkStatus();
    }
    if (child_->Exited()) {
      return absl::InternalError(
          absl::StrCat("registrar exited at start: ", child_->Stderr()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("registrar not ready within ",
                   absl::FormatDuration(timeout), ": ", child_->Stderr()));
}

}  // namespace tractor::testing
