// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/thread_pool.h"

#include <deque>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"

namespace tractor::internal {
namespace {

constexpr absl::Duration kIdleExit = absl::Seconds(30);

// Owns its workers: a worker that exits (idle) hands its thread to
// `exited_`, and the next `Run` joins it. The pool itself is never destroyed
// (see thread_pool.h), so the workers parked when the process ends are
// never joined.
class ThreadPool {
 public:
  void Run(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::thread> exited;
    bool spawned = false;
    {
      MutexLock lock(&mu_);
      work_.push_back(std::move(fn));
      exited.swap(exited_);
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
    for (std::thread& t : exited) t.join();  // has left Worker() or will
  }

 private:
  void Worker() ABSL_LOCKS_EXCLUDED(mu_) {
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
        if (work_.empty()) {
          // Idle for too long: leave, handing this thread to the next Run.
          auto self = workers_.find(std::this_thread::get_id());
          exited_.push_back(std::move(self->second));
          workers_.erase(self);
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

  Mutex mu_;
  CondVar cv_;  // signalled when work is queued
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(mu_);
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::thread::id, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> exited_ ABSL_GUARDED_BY(mu_);  // to be joined
};

ThreadPool& Pool() {
  static auto* pool = new ThreadPool;
  return *pool;
}

}  // namespace

void RunPooled(std::function<void()> fn) { Pool().Run(std::move(fn)); }

}  // namespace tractor::internal
