// SPDX-License-Identifier: AGPL-3.0-or-later
// The process's reaper of child processes (see reaper.h).
#include "actor/internal/reaper.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "discovery/mutex.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// The process's reaper: one thread waits for the exit of every child
// watched here, through each child's pidfd in one epoll set, reaps it and
// runs its `done`; it also signals the children whose escalation
// (`Escalate`) falls due. Process-wide and never destroyed, like the
// spawner; its thread starts with the first child and is never joined.
class Reaper {
 public:
  // Watches `pid`, which this process must reap. False when it cannot
  // (no pidfd): the caller reaps it itself.
  bool Watch(pid_t pid, std::function<void(int status)> done)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return false;
    MutexLock lock(&mu_);
    if (epoll_fd_ < 0) {
      epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
      if (epoll_fd_ < 0) {
        close(fd);
        return false;
      }
      // Wakes the thread when an escalation comes due earlier than the
      // one it sleeps towards.
      wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      epoll_event wake{};
      wake.events = EPOLLIN;
      wake.data.fd = wake_fd_;
      if (wake_fd_ < 0 ||
          epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake) != 0) {
        LOG(FATAL) << "the reaper cannot set up its wake-up: "
                   << strerror(errno);
      }
      std::thread([this] {
        discovery::NameThisThread("reaper");
        Loop();
      }).detach();
    }
    watched_[fd] = Watched{pid, std::move(done)};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      watched_.erase(fd);
      close(fd);
      return false;
    }
    return true;
  }

  bool Escalate(pid_t pid, absl::Time term_at, absl::Duration term_grace)
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    auto it = std::find_if(watched_.begin(), watched_.end(),
                           [pid](const auto& w) { return w.second.pid == pid; });
    if (it == watched_.end()) return false;
    it->second.step = Step::kTerm;
    it->second.due = term_at;
    it->second.term_grace = term_grace;
    const uint64_t one = 1;
    // The thread recomputes its timeout; a full counter wakes it as well.
    (void)!write(wake_fd_, &one, sizeof(one));
    return true;
  }

 private:
  // What the reaper does to a watched child when `due` comes.
  enum class Step { kNone, kTerm, kKill };
  struct Watched {
    pid_t pid;
    std::function<void(int status)> done;
    Step step = Step::kNone;
    absl::Time due = absl::InfiniteFuture();
    absl::Duration term_grace;
  };

  // Signals the children whose escalation is due (they are not reaped yet:
  // the pid is still theirs) and returns how long to sleep until the next.
  int RunDueEscalations() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    absl::Time next = absl::InfiniteFuture();
    for (auto& [fd, w] : watched_) {
      if (w.step == Step::kNone) continue;
      if (w.due <= now) {
        if (w.step == Step::kTerm) {
          LOG(WARNING) << "child pid " << w.pid
                       << " said bye but did not exit in time; SIGTERM";
          kill(w.pid, SIGTERM);
          // A stopped child handles SIGTERM only once continued.
          kill(w.pid, SIGCONT);
          w.step = Step::kKill;
          w.due = now + w.term_grace;
        } else {
          LOG(WARNING) << "child pid " << w.pid
                       << " ignored SIGTERM; SIGKILL";
          kill(w.pid, SIGKILL);
          w.step = Step::kNone;
          w.due = absl::InfiniteFuture();
          continue;
        }
      }
      next = std::min(next, w.due);
    }
    if (next == absl::InfiniteFuture()) return -1;
    return static_cast<int>(
        absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1))));
  }

  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    int epoll_fd;
    {
      MutexLock lock(&mu_);
      epoll_fd = epoll_fd_;
    }
    epoll_event events[64];
    int timeout_ms = -1;
    for (;;) {
      const int n = epoll_wait(epoll_fd, events, 64, timeout_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        LOG(FATAL) << "the reaper's epoll_wait failed: " << strerror(errno);
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_fd_) {
          uint64_t count;
          (void)!read(wake_fd_, &count, sizeof(count));
          continue;
        }
        Watched w;
        {
          MutexLock lock(&mu_);
          auto it = watched_.find(fd);
          if (it == watched_.end()) continue;
          w = std::move(it->second);
          watched_.erase(it);
          epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
        }
        // Readable: the child has exited, so this does not block.
        int status = 0;
        while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
        }
        close(fd);
        w.done(status);
      }
      timeout_ms = RunDueEscalations();
    }
  }

  Mutex mu_;
  int epoll_fd_ ABSL_GUARDED_BY(mu_) = -1;
  // Set with `epoll_fd_`, before the thread starts; never closed.
  int wake_fd_ = -1;
  std::map<int, Watched> watched_ ABSL_GUARDED_BY(mu_);
};

Reaper& TheReaper() {
  static auto* reaper = new Reaper;
  return *reaper;
}

}  // namespace

bool WatchChildExit(pid_t pid, std::function<void(int status)> done) {
  return TheReaper().Watch(pid, std::move(done));
}

bool EscalateChildExit(pid_t pid, absl::Time term_at,
                       absl::Duration term_grace) {
  return TheReaper().Escalate(pid, term_at, term_grace);
}

}  // namespace tractor::internal
