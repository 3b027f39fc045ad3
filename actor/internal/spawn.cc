// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "discovery/mutex.h"
#include "discovery/thread_name.h"

extern char** environ;

// Under the sanitizers the child is forked: their instrumented code would
// run in a child that shares the parent's memory and shadow state.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TRACTOR_SPAWN_WITH_FORK 1
#endif
#endif
#if !defined(TRACTOR_SPAWN_WITH_FORK) && defined(__SANITIZE_ADDRESS__)
#define TRACTOR_SPAWN_WITH_FORK 1
#endif
#ifndef TRACTOR_SPAWN_WITH_FORK
#define TRACTOR_SPAWN_WITH_FORK 0
#endif

namespace tractor::internal {
namespace {

// Children are created (then exec) on one long-lived thread:
// PR_SET_PDEATHSIG fires when the creating *thread* exits, so it must not
// be a short-lived task thread.
//
// The spawner is process-wide and never destroyed (`GetSpawner`); it owns
// its thread, which runs for the whole process and is never joined.
class Spawner {
 public:
  Spawner() : thread_([this] {
    discovery::NameThisThread("spawner");
    Loop();
  }) {}

  pid_t Spawn(std::vector<std::string> env, int inherit_fd)
      ABSL_LOCKS_EXCLUDED(mu_) {
    auto req = std::make_shared<Request>();
    req->env = std::move(env);
    req->inherit_fd = inherit_fd;
    MutexLock lock(&mu_);
    queue_.push_back(req);
    cv_.SignalAll();
    while (!req->done) cv_.Wait(&mu_);
    if (req->pid < 0) {
      throw RuntimeFailure(absl::StrCat("fork failed: ", strerror(req->err)));
    }
    return req->pid;
  }

 private:
  // `env` is the requester's until it is queued. The spawner's thread
  // writes `pid` and `err`, then sets `done` under mu_; the requester reads
  // them once it saw `done` under mu_.
  struct Request {
    std::vector<std::string> env;
    int inherit_fd = -1;  // cleared of close-on-exec in the child
    pid_t pid = -1;
    int err = 0;
    bool done = false;
  };

  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    for (;;) {
      while (queue_.empty()) cv_.Wait(&mu_);
      std::shared_ptr<Request> req = queue_.front();
      queue_.pop_front();
      mu_.Unlock();
      DoSpawn(*req);
      mu_.Lock();
      req->done = true;
      cv_.SignalAll();
    }
  }

  // What the child needs between its creation and its exec.
  struct ChildArgs {
    const char* path;
    char* const* argv;
    char* const* envp;
    int inherit_fd;
    pid_t parent;
  };

  // The child, until exec: async-signal-safe calls only. Where it shares
  // the spawner's memory (see DoSpawn) it writes nothing but its own stack.
  static int ChildEntry(void* p) {
    const ChildArgs& args = *static_cast<const ChildArgs*>(p);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != args.parent) _exit(1);
    if (args.inherit_fd >= 0) fcntl(args.inherit_fd, F_SETFD, 0);
    // The parent's signal handlers are the parent's code: a signal that
    // arrives before the exec gets the default action instead.
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa;
      if (sigaction(sig, nullptr, &sa) != 0 || sa.sa_handler == SIG_DFL ||
          sa.sa_handler == SIG_IGN) {
        continue;
      }
      sa = {};
      sa.sa_handler = SIG_DFL;
      sigaction(sig, &sa, nullptr);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(args.path, args.argv, args.envp);
    _exit(127);
  }

  static void DoSpawn(Request& req) {
    std::vector<char*> envp;
    for (auto& e : req.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self_path = "tractor-actor";
    char* argv[] = {self_path.data(), nullptr};
    ChildArgs args{"/proc/self/exe", argv, envp.data(), req.inherit_fd,
                   getpid()};
    // kChildWrapperEnv (spawn.h): `<wrapper> <this program>`.
    const char* w = getenv(kChildWrapperEnv);
    const std::string wrapper = w == nullptr ? "" : w;
    static const std::string exe = [] {
      char buf[PATH_MAX];
      ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
      return std::string(buf, n > 0 ? n : 0);
    }();
    std::string wrapper_arg = wrapper, exe_arg = exe;
    char* wrapped_argv[] = {wrapper_arg.data(), exe_arg.data(), nullptr};
    if (!wrapper.empty() && !exe.empty()) {
      args.path = wrapper.c_str();
      args.argv = wrapped_argv;
    }
    // Every signal stays blocked in this thread until the child has
    // exec'd, so that no handler of this process runs in the child; the
    // child resets the handlers, then unblocks.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
#if TRACTOR_SPAWN_WITH_FORK
    pid_t pid = fork();
    if (pid == 0) ChildEntry(const_cast<ChildArgs*>(&args));
#else
    // The child shares this process's memory until its exec, and this
    // thread waits until then (CLONE_VM | CLONE_VFORK, as posix_spawn
    // does): a fork would first copy the page tables of the whole process,
    // which for a parent with many threads and a large heap costs
    // milliseconds per spawn, and the exec would then tear the copy down.
    // The child's stack is reserved for this thread, which spawns one
    // child at a time.
    alignas(64) static char child_stack[64 * 1024];
    pid_t pid = clone(ChildEntry, child_stack + sizeof child_stack,
                      CLONE_VM | CLONE_VFORK | SIGCHLD,
                      const_cast<ChildArgs*>(&args));
#endif
    const int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    req.pid = pid;
    req.err = pid < 0 ? err : 0;
  }

  Mutex mu_;
  CondVar cv_;  // signalled when a request is queued and when one is done
  std::deque<std::shared_ptr<Request>> queue_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts once the rest is constructed
};

Spawner& GetSpawner() {
  static auto* s = new Spawner;
  return *s;
}

}  // namespace

SpawnedProcess SpawnProcess(v1::SpawnSpec spec) {
  // The crash pipe: both ends close-on-exec here, so no other child
  // inherits the write end; the spawner clears the flag in this child.
  int fds[2] = {-1, -1};
  if (pipe2(fds, O_CLOEXEC) == 0) {
    fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);  // room for a whole report
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    spec.set_crash_fd(fds[1]);
  }
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, kSpawnSpecEnv, strlen(kSpawnSpecEnv)) == 0) continue;
    env.emplace_back(*e);
  }
  env.push_back(absl::StrCat(kSpawnSpecEnv, "=",
                             absl::WebSafeBase64Escape(spec.SerializeAsString())));
  SpawnedProcess out;
  try {
    out.pid = GetSpawner().Spawn(std::move(env), fds[1]);
  } catch (...) {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
    throw;
  }
  if (fds[1] >= 0) close(fds[1]);
  out.crash_fd = fds[0];
  return out;
}

std::string ReadCrashReport(int fd) {
  std::string text;
  if (fd < 0) return text;
  char buf[16384];
  while (text.size() < (1u << 20)) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF, or EAGAIN: nothing more was written
    text.append(buf, n);
  }
  close(fd);
  return text;
}

void SetInheritedSecurity(const discovery::TlsConfig& tls,
                          const std::string& secret, v1::SpawnSpec* spec) {
  spec->set_mesh_secret(secret);
  v1::TlsFiles* files = spec->mutable_tls();
  files->set_ca_file(tls.ca_file);
  files->set_cert_file(tls.cert_file);
  files->set_key_file(tls.key_file);
  files->set_require_client_cert(tls.require_client_cert);
  files->set_server_name(tls.server_name);
}

discovery::TlsConfig TlsConfigOf(const v1::TlsFiles& files) {
  discovery::TlsConfig tls;
  tls.ca_file = files.ca_file();
  tls.cert_file = files.cert_file();
  tls.key_file = files.key_file();
  tls.require_client_cert = files.require_client_cert();
  tls.server_name = files.server_name();
  return tls;
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
