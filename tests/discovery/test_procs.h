// SPDX-License-Identifier: AGPL-3.0-or-later
// Helpers for discovery tests that run other programs (the registrar
// daemon, the discovery_actor helper): spawn with a stdout pipe, read lines
// with a deadline, signal, reap. Header-only, test-only.
#ifndef TRACTOR_TESTS_DISCOVERY_TEST_PROCS_H_
#define TRACTOR_TESTS_DISCOVERY_TEST_PROCS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tractor::testing {

// Returns the path of a data dependency, e.g. "registrar/registrar", or ""
// when it is not there.
inline std::string RunfilePath(const std::string& rel) {
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const char* dir = std::getenv(var);
    if (dir == nullptr) continue;
    std::string path = absl::StrCat(dir, "/tractor_cpp/", rel);
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// A short temporary directory (unix socket paths must fit 107 bytes),
// removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    char dir[] = "/tmp/tr.XXXXXX";
    if (mkdtemp(dir) != nullptr) path_ = dir;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::string cmd = absl::StrCat("rm -rf '", path_, "'");
      (void)std::system(cmd.c_str());
    }
  }
  const std::string& path() const { return path_; }
  std::string Sock(const std::string& name) const {
    return absl::StrCat("unix:", path_, "/", name);
  }

 private:
  std::string path_;
};

// One child program; its stdout is a pipe, its stderr is this process's.
// The destructor SIGKILLs and reaps it if it still runs.
class Proc {
 public:
  static std::unique_ptr<Proc> Spawn(const std::vector<std::string>& args) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return nullptr;
    std::vector<char*> argv;
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      dup2(out[1], 1);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      // Not a spawned actor: drop an inherited spawn spec, if any.
      unsetenv("TRACTOR_SPAWN_SPEC");
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
      close(out[0]);
      return nullptr;
    }
    auto p = std::unique_ptr<Proc>(new Proc);
    p->pid_ = pid;
    p->fd_ = out[0];
    return p;
  }

  ~Proc() {
    if (!status_.has_value()) {
      kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
    if (fd_ >= 0) close(fd_);
  }

  pid_t pid() const { return pid_; }

  // Returns the next stdout line (without '\n'), or nullopt at EOF or when
  // `timeout` passed.
  std::optional<std::string> ReadLine(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) continue;
      char chunk[4096];
      ssize_t r = read(fd_, chunk, sizeof(chunk));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      buf_.append(chunk, r);
    }
  }

  // Reads lines until one starts with `prefix`; returns it.
  std::optional<std::string> ReadLineStartingWith(const std::string& prefix,
                                                  absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      auto line = ReadLine(deadline - absl::Now());
      if (!line.has_value()) return std::nullopt;
      if (line->rfind(prefix, 0) == 0) return line;
    }
  }

  void Signal(int sig) {
    if (!status_.has_value()) kill(pid_, sig);
  }

  // Waits up to `timeout` for the exit; returns the wait status.
  std::optional<int> Wait(absl::Duration timeout) {
    if (status_.has_value()) return status_;
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = st;
        return status_;
      }
      if (absl::Now() >= deadline) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

 private:
  Proc() = default;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_;
  std::optional<int> status_;
};

// A loopback TCP listener that accepts connections (in the kernel backlog)
// and never says a word: a registrar host that went silent, or a foreign
// service that does not speak gRPC.
struct SilentListener {
  int fd = -1;
  int port = 0;
  SilentListener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    (void)listen(fd, 64);
    socklen_t len = sizeof(sin);
    getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
    port = ntohs(sin.sin_port);
  }
  ~SilentListener() { close(fd); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::string addr() const { return absl::StrCat("127.0.0.1:", port); }
};

// The registrar daemon, started and ready.
struct Daemon {
  std::unique_ptr<Proc> proc;
  std::string uuid;
  std::vector<std::string> addrs;  // as bound (real ports)
};

// Starts `registrar --listen <listen> [extra...]` and waits for its ready
// line. Returns nullopt (and the reason in `*error`) on failure.
inline std::optional<Daemon> StartRegistrar(const std::string& listen,
                                            std::vector<std::string> extra,
                                            std::string* error) {
  std::string bin = RunfilePath("registrar/registrar");
  if (bin.empty()) {
    *error = "registrar binary not found in runfiles";
    return std::nullopt;
  }
  std::vector<std::string> args = {bin, "--listen", listen, "--loglevel",
                                   "warning"};
  args.insert(args.end(), extra.begin(), extra.end());
  Daemon d;
  d.proc = Proc::Spawn(args);
  if (!d.proc) {
    *error = "spawn failed";
    return std::nullopt;
  }
  auto line = d.proc->ReadLine(absl::Seconds(10));
  // "registrar <uuid> listening on <a>,<b>"
  std::vector<std::string> parts =
      line ? absl::StrSplit(*line, ' ') : std::vector<std::string>{};
  if (parts.size() != 5 || parts[0] != "registrar") {
    *error = absl::StrCat("no ready line from the registrar (got '",
                          line.value_or("<nothing>"), "')");
    return std::nullopt;
  }
  d.uuid = parts[1];
  d.addrs = absl::StrSplit(parts[4], ',');
  return d;
}

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_DISCOVERY_TEST_PROCS_H_
