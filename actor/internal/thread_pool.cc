#include "actor/internal/thread_pool.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

namespace tractor::internal {
namespace {

class ThreadPool {
 public:
  void Run(std::function<void()> fn) {
    std::unique_lock<std::mutex> lk(mu_);
    work_.push_back(std::move(fn));
    const bool spawn = work_.size() > idle_;
    lk.unlock();
    if (spawn) {
      // The pool outlives every worker (it is never destroyed), so a
      // worker needs no owner that joins it.
      std::thread([this] { Worker(); }).detach();
    } else {
      // Notified after unlocking, so the woken worker does not block on mu_.
      cv_.notify_one();
    }
  }

 private:
  void Worker() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (work_.empty()) {
        ++idle_;
        bool got = cv_.wait_for(lk, std::chrono::seconds(30),
                                [&] { return !work_.empty(); });
        --idle_;
        if (!got) return;
      }
      auto fn = std::move(work_.front());
      work_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;
  size_t idle_ = 0;
};

ThreadPool& Pool() {
  static auto* pool = new ThreadPool;
  return *pool;
}

}  // namespace

void RunPooled(std::function<void()> fn) { Pool().Run(std::move(fn)); }

}  // namespace tractor::internal
