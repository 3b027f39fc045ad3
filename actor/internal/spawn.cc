#include "actor/internal/spawn.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "actor/errors.h"

extern char** environ;

namespace tractor::internal {
namespace {

// fork+exec runs on one long-lived thread: PR_SET_PDEATHSIG fires when the
// forking *thread* exits, so it must not be a short-lived task thread.
class Spawner {
 public:
  // The spawner lives for the whole process; its thread is never joined.
  Spawner() { std::thread([this] { Loop(); }).detach(); }

  pid_t Spawn(std::vector<std::string> env) {
    auto req = std::make_shared<Request>();
    req->env = std::move(env);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(req);
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return req->done; });
    if (req->pid < 0) {
      throw RuntimeFailure(absl::StrCat("fork failed: ", strerror(req->err)));
    }
    return req->pid;
  }

 private:
  struct Request {
    std::vector<std::string> env;
    pid_t pid = -1;
    int err = 0;
    bool done = false;
  };

  void Loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return !queue_.empty(); });
      auto req = queue_.front();
      queue_.pop_front();
      lk.unlock();
      DoSpawn(*req);
      lk.lock();
      req->done = true;
      cv_.notify_all();
    }
  }

  static void DoSpawn(Request& req) {
    std::vector<char*> envp;
    for (auto& e : req.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    char exe[] = "/proc/self/exe";
    std::string self_path = "tractor-actor";
    char* argv[] = {self_path.data(), nullptr};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      // Async-signal-safe calls only until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      sigset_t all;
      sigemptyset(&all);
      sigprocmask(SIG_SETMASK, &all, nullptr);
      execve(exe, argv, envp.data());
      _exit(127);
    }
    req.pid = pid;
    req.err = pid < 0 ? errno : 0;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
};

Spawner& GetSpawner() {
  static auto* s = new Spawner;
  return *s;
}

}  // namespace

pid_t SpawnProcess(const v1::SpawnSpec& spec) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, kSpawnSpecEnv, strlen(kSpawnSpecEnv)) == 0) continue;
    env.emplace_back(*e);
  }
  env.push_back(absl::StrCat(kSpawnSpecEnv, "=",
                             absl::WebSafeBase64Escape(spec.SerializeAsString())));
  return GetSpawner().Spawn(std::move(env));
}

std::optional<v1::SpawnSpec> TakeSpawnSpec() {
  const char* encoded = getenv(kSpawnSpecEnv);
  if (encoded == nullptr) return std::nullopt;
  std::string raw;
  v1::SpawnSpec spec;
  if (!absl::WebSafeBase64Unescape(encoded, &raw) ||
      !spec.ParseFromString(raw)) {
    fprintf(stderr, "tractor: malformed %s\n", kSpawnSpecEnv);
    _exit(2);
  }
  unsetenv(kSpawnSpecEnv);
  return spec;
}

}  // namespace tractor::internal
