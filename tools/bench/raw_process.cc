// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tools/bench/raw_process.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tractor::bench {
namespace {

bool IsExecutable(const std::string& path) {
  return !path.empty() && access(path.c_str(), X_OK) == 0;
}

std::string SelfPath() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

}  // namespace

std::unique_ptr<RawServerProcess> RawServerProcess::Start(
    const std::string& path, const std::vector<std::string>& args) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    throw std::runtime_error("pipe failed");
  }
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls until exec.
  std::vector<std::string> strings = {path};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(in[0], 0);
    dup2(out[1], 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    throw std::runtime_error(absl::StrCat("fork failed: ", strerror(errno)));
  }
  std::unique_ptr<RawServerProcess> p(new RawServerProcess);
  p->pid_ = pid;
  p->stdin_fd_ = in[1];
  // Read "PORT <n>\n".
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (line.find('\n') == std::string::npos) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) break;
    pollfd pfd{out[0], POLLIN, 0};
    int r = poll(&pfd, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[64];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, n);
  }
  close(out[0]);
  if (sscanf(line.c_str(), "PORT %d", &p->port_) != 1 || p->port_ <= 0) {
    throw std::runtime_error(absl::StrCat(path, " did not report a port (got '",
                                          line, "')"));
  }
  return p;
}

RawServerProcess::~RawServerProcess() { Stop(); }

std::string RawServerProcess::addr() const {
  return absl::StrCat("127.0.0.1:", port_);
}

bool RawServerProcess::Reap(int ms) {
  if (reaped_) return true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    int status;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      reaped_ = true;
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void RawServerProcess::Stop(int grace_ms) {
  if (stdin_fd_ >= 0) {
    close(stdin_fd_);
    stdin_fd_ = -1;
  }
  if (pid_ <= 0 || reaped_) return;
  if (!Reap(grace_ms)) {
    kill(pid_, SIGKILL);
    Reap(INT_MAX);
  }
}

bool RawServerProcess::WaitExit(int ms) {
  bool exited = Reap(ms);
  Stop();
  return exited;
}

std::string FindRawServer(const std::string& flag) {
  if (!flag.empty()) {
    if (IsExecutable(flag)) return flag;
    throw std::runtime_error(absl::StrCat("--raw_server ", flag,
                                          " is not an executable"));
  }
  std::vector<std::string> candidates;
  if (const char* rf = getenv("RUNFILES_DIR")) {
    candidates.push_back(absl::StrCat(rf, "/tractor_cpp/tools/bench/raw_server"));
  }
  std::string self = SelfPath();
  if (!self.empty()) {
    candidates.push_back(self + ".runfiles/tractor_cpp/tools/bench/raw_server");
    candidates.push_back(self.substr(0, self.rfind('/') + 1) + "raw_server");
  }
  candidates.push_back("tools/bench/raw_server");  // cwd: runfiles root
  for (const auto& c : candidates) {
    if (IsExecutable(c)) {
      char real[PATH_MAX];
      if (realpath(c.c_str(), real) != nullptr) return real;
      return c;
    }
  }
  throw std::runtime_error(
      "raw_server not found next to the bench or in its runfiles; pass "
      "--raw_server=PATH");
}

long VmRssKiB(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace tractor::bench
