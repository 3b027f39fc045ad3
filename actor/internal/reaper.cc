// SPDX-License-Identifier: AGPL-3.0-or-later
// The process's reaper of child processes (see reaper.h).
#include "actor/internal/reaper.h"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
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
// runs its `done`. Process-wide and never destroyed, like the spawner; its
// thread starts with the first child and is never joined.
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

 private:
  struct Watched {
    pid_t pid;
    std::function<void(int status)> done;
  };

  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    int epoll_fd;
    {
      MutexLock lock(&mu_);
      epoll_fd = epoll_fd_;
    }
    epoll_event events[64];
    for (;;) {
      const int n = epoll_wait(epoll_fd, events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        LOG(FATAL) << "the reaper's epoll_wait failed: " << strerror(errno);
      }
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
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
    }
  }

  Mutex mu_;
  int epoll_fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::map<int, Watched> watched_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

bool WatchChildExit(pid_t pid, std::function<void(int status)> done) {
  static auto* reaper = new Reaper;
  return reaper->Watch(pid, std::move(done));
}

}  // namespace tractor::internal
