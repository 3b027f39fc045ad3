// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/thread_pool.h"

#include <cstdlib>
#include <deque>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "discovery/thread_name.h"

namespace tractor::internal {
namespace {

// Short, so a burst of tasks (say 500 dialogs) leaves no crowd of idle
// threads behind; starting a thread again costs tens of microseconds.
constexpr absl::Duration kIdleExit = absl::Seconds(1);

// Owns its workers: a worker that exits (idle) hands its thread to
// `exited_` and wakes the reaper, which joins it. A thread cannot join
// itself, and joining only on a later `Run` would leave the last worker of
// a burst unjoined for as long as no work comes (ThreadSanitizer reports it
// as a leaked thread when the process ends). The reaper is started by a
// worker that exits while none runs, and ends (detached) once it has joined
// every worker that exited meanwhile, so an idle pool holds no thread. The
// pool itself is never destroyed (see thread_pool.h), so the workers parked
// when the process ends are never joined.
class ThreadPool {
 public:
  void Run(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_) {
    bool spawned = false;
    {
      MutexLock lock(&mu_);
      work_.push_back(std::move(fn));
      if (work_.size() > idle_) {
        // Started with mu_ held, so the worker is registered before it can
        // look itself up.
        std::thread worker([this] { Worker(); });
        const std::thread::id id = worker.get_id();
        workers_.emplace(id, std::move(worker));
        spawned = true;
      }
    }
    // Signalled after unlocking, so the woken worker does not block on mu_.
    if (!spawned) cv_.Signal();
  }

  // See QuiescePoolForExit (thread_pool.h).
  void QuiesceForExit(absl::Duration bound) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::thread> exited;
    {
      MutexLock lock(&mu_);
      quiescing_ = true;
      exited.swap(exited_);
    }
    // Each has left Worker() or is about to: the joins are immediate.
    for (std::thread& t : exited) t.join();
    MutexLock lock(&mu_);
    unjoined_ -= exited.size();
    // The rest are being joined by the reaper.
    const absl::Time deadline = absl::Now() + bound;
    while (unjoined_ > 0 && !joined_cv_.WaitWithDeadline(&mu_, deadline)) {
    }
  }

  PoolThreadCounts Counts() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return {workers_.size(), unjoined_};
  }

 private:
  void Worker() ABSL_LOCKS_EXCLUDED(mu_) {
    discovery::NameThisThread("task");
    MutexLock lock(&mu_);
    for (;;) {
      if (work_.empty()) {
        ++idle_;
        const absl::Time deadline = absl::Now() + kIdleExit;
        bool timed_out = false;
        while (work_.empty() && !timed_out) {
          timed_out = cv_.WaitWithDeadline(&mu_, deadline);
        }
        --idle_;
        // The process is ending: stay parked (a thread still running then
        // is no leak; one that left and was not joined would be).
        if (work_.empty() && quiescing_) continue;
        if (work_.empty()) {
          // Idle for too long: leave, handing this thread to the reaper
          // (which joins it once it has left this function), started if
          // none runs.
          auto self = workers_.find(std::this_thread::get_id());
          exited_.push_back(std::move(self->second));
          workers_.erase(self);
          ++unjoined_;
          if (!reaper_running_) {
            reaper_running_ = true;
            std::thread([this] { Reaper(); }).detach();
          }
          return;
        }
      }
      std::function<void()> fn = std::move(work_.front());
      work_.pop_front();
      mu_.Unlock();
      fn();
      fn = nullptr;  // destroyed outside the lock
      mu_.Lock();
    }
  }

  // Joins the workers that exit, until none is left to join (a pooled task
  // may run for the life of the process, so it does not wait for every
  // worker to exit).
  void Reaper() ABSL_LOCKS_EXCLUDED(mu_) {
    discovery::NameThisThread("pool-reaper");
    MutexLock lock(&mu_);
    for (;;) {
      if (exited_.empty()) {
        // Every exited worker is joined; the next worker to exit starts a
        // reaper again.
        reaper_running_ = false;
        return;
      }
      std::vector<std::thread> exited;
      exited.swap(exited_);
      mu_.Unlock();
      for (std::thread& t : exited) t.join();  // has left Worker() or will
      mu_.Lock();
      unjoined_ -= exited.size();
      joined_cv_.SignalAll();
    }
  }

  Mutex mu_;
  CondVar cv_;         // signalled when work is queued
  CondVar joined_cv_;  // signalled when the reaper has joined workers
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(mu_);
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::thread::id, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> exited_ ABSL_GUARDED_BY(mu_);  // to be joined
  size_t unjoined_ ABSL_GUARDED_BY(mu_) = 0;  // exited, not yet joined
  bool reaper_running_ ABSL_GUARDED_BY(mu_) = false;
  bool quiescing_ ABSL_GUARDED_BY(mu_) = false;  // no worker leaves
};

ThreadPool& Pool() {
  static auto* pool = [] {
    auto* p = new ThreadPool;
    // exit() quiesces the pool by itself; the paths that leave by _exit()
    // call QuiescePoolForExit first.
    std::atexit([] { QuiescePoolForExit(); });
    return p;
  }();
  return *pool;
}

}  // namespace

void RunPooled(std::function<void()> fn) { Pool().Run(std::move(fn)); }

PoolThreadCounts PooledThreadCounts() { return Pool().Counts(); }

void QuiescePoolForExit(absl::Duration bound) { Pool().QuiesceForExit(bound); }

}  // namespace tractor::internal
