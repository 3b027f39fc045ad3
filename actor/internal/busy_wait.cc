// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/busy_wait.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>


namespace tractor::internal {
namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Waiting for a CPU longer than this means other threads want it.
constexpr int64_t kContendedNs = 1'000'000;
// How long the spinner leaves a busy machine alone.
constexpr int64_t kBackOffNs = 20'000'000;

void Futex(std::atomic<uint32_t>* word, int op, uint32_t val,
           const timespec* timeout = nullptr) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, timeout,
          nullptr, 0);
}

// Nanoseconds this thread has waited runnable for a CPU
// (/proc/thread-self/schedstat's second field), or -1.
int64_t RunDelayNs(int stat_fd) {
  if (stat_fd < 0) return -1;
  char buf[96];
  const ssize_t n = pread(stat_fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char* end = nullptr;
  std::strtoll(buf, &end, 10);
  if (end == buf) return -1;
  const long long delay = std::strtoll(end, &end, 10);
  return delay;
}

}  // namespace

BusyWait& BusyWait::Process() {
  static BusyWait* const process = new BusyWait;
  return *process;
}

void BusyWait::Start(absl::Duration window) {
  Stop();
  if (window <= absl::ZeroDuration()) return;
  MutexLock lock(&mu_);
  stop_.store(0);
  sleeping_.store(true);
  const int64_t window_ns = absl::ToInt64Nanoseconds(window);
  on_.store(true);
  thread_ = std::thread([this, window_ns] { Run(window_ns); });
}

void BusyWait::RequestStop() {
  on_.store(false);
  stop_.store(1);
  Futex(&stop_, FUTEX_WAKE_PRIVATE, 1);
  // Changes the futex word first, so that a spinner about to sleep on its
  // old value does not.
  seq_.fetch_add(1);
  Futex(&seq_, FUTEX_WAKE_PRIVATE, 1);
}

void BusyWait::Stop() {
  MutexLock lock(&mu_);
  if (!thread_.joinable()) return;
  RequestStop();
  thread_.join();
  tid_.store(0);
}

void BusyWait::Wake() {
  wakes_.fetch_add(1, std::memory_order_relaxed);
  Futex(&seq_, FUTEX_WAKE_PRIVATE, 1);
}

void BusyWait::Run(int64_t window_ns) {
  pthread_setname_np(pthread_self(), "tr-busy-wait");
  tid_.store(static_cast<pid_t>(syscall(SYS_gettid)));
  const int stat_fd =
      open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  uint32_t seen = seq_.load();
  int64_t last = 0;  // asleep until the first Note
  int64_t prev = NowNs();
  while (!stop_.load(std::memory_order_relaxed)) {
    int64_t now = NowNs();
    if (now - prev > kContendedNs) {
      // Preempted for that long while spinning: the CPU is wanted.
      BackOff(stat_fd);
      now = NowNs();
      last = 0;
    }
    prev = now;
    const uint32_t s = seq_.load(std::memory_order_relaxed);
    if (s != seen) {
      seen = s;
      last = now;
      continue;
    }
    if (last != 0 && now - last < window_ns) {
      // Any other runnable thread of this CPU runs now: the spin costs it
      // one system call.
      sched_yield();
      continue;
    }
    sleeping_.store(true, std::memory_order_seq_cst);
    const int64_t delay = RunDelayNs(stat_fd);
    // A Note after this load finds `sleeping_` set and wakes the futex; one
    // before it changed `seq_`, and the wait returns at once.
    if (seq_.load(std::memory_order_seq_cst) == seen &&
        !stop_.load(std::memory_order_seq_cst)) {
      Futex(&seq_, FUTEX_WAIT_PRIVATE, seen);
    }
    sleeping_.store(false, std::memory_order_relaxed);
    // Woken, but only now running: the CPU was wanted meanwhile.
    if (delay >= 0 && RunDelayNs(stat_fd) - delay > kContendedNs) {
      BackOff(stat_fd);
    }
    seen = seq_.load();
    last = NowNs();
    prev = last;
  }
  if (stat_fd >= 0) close(stat_fd);
  tid_.store(0);
}

void BusyWait::BackOff(int stat_fd) {
  backoffs_.fetch_add(1, std::memory_order_relaxed);
  // Notes made meanwhile do not wake this thread (`sleeping_` is false);
  // Stop does.
  const timespec pause{0, kBackOffNs};
  for (;;) {
    const int64_t delay = RunDelayNs(stat_fd);
    Futex(&stop_, FUTEX_WAIT_PRIVATE, 0, &pause);
    if (stop_.load()) return;
    // Still waiting that long to run once the pause is over: still busy.
    if (delay < 0 || RunDelayNs(stat_fd) - delay <= kContendedNs) return;
  }
}

}  // namespace tractor::internal
