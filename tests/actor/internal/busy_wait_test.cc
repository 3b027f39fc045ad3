// SPDX-License-Identifier: AGPL-3.0-or-later
// The busy wait (actor/internal/busy_wait.h): its spinner spins after I/O,
// sleeps when the process is idle, gives way to any thread that wants its
// CPU, and costs the hot path no system call while it is awake.
#include "actor/internal/busy_wait.h"

#include <sched.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/thread_census.h"

namespace tractor::internal {
namespace {

using ::tractor::testing::WaitUntil;

// The scheduler state letter of thread `tid` ('R' running, 'S' asleep...).
char StateOf(pid_t tid) {
  std::ifstream stat(absl::StrCat("/proc/self/task/", tid, "/stat"));
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size()
             ? '?'
             : line[paren + 2];
}

// Nanoseconds thread `tid` has run on a CPU (/proc/.../schedstat).
int64_t CpuNsOf(pid_t tid) {
  std::ifstream stat(absl::StrCat("/proc/self/task/", tid, "/schedstat"));
  int64_t ns = -1;
  stat >> ns;
  return ns;
}

int64_t ThisThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

TEST(BusyWaitTest, AZeroWindowStartsNoSpinner) {
  BusyWait b;
  b.Start(absl::ZeroDuration());
  for (int i = 0; i < 1000; ++i) b.Note();
  EXPECT_EQ(b.spinner_tid(), 0);
  EXPECT_EQ(b.wakes(), 0u);
  EXPECT_EQ(::tractor::testing::ThreadsNamed("tr-busy-wait"), 0);
}

TEST(BusyWaitTest, OneNamedThreadThatStopJoins) {
  BusyWait b;
  b.Start(absl::Milliseconds(1));
  ASSERT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                        absl::Seconds(10)));
  EXPECT_EQ(::tractor::testing::ThreadsNamed("tr-busy-wait"), 1);
  b.Stop();
  EXPECT_EQ(b.spinner_tid(), 0);
  EXPECT_EQ(::tractor::testing::ThreadsNamed("tr-busy-wait"), 0);
}

// Asleep (blocked in the kernel) until I/O, awake for the window after it,
// then asleep again.
TEST(BusyWaitTest, SpinsAfterIoThenSleepsWhenIdle) {
  BusyWait b;
  b.Start(absl::Milliseconds(50));
  ASSERT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                        absl::Seconds(10)));
  const pid_t tid = b.spinner_tid();
  EXPECT_TRUE(WaitUntil([&] { return b.sleeping() && StateOf(tid) == 'S'; },
                        absl::Seconds(10)))
      << "state " << StateOf(tid);
  const int64_t cpu_asleep = CpuNsOf(tid);
  b.Note();
  EXPECT_EQ(b.wakes(), 1u);
  EXPECT_TRUE(WaitUntil([&] { return CpuNsOf(tid) > cpu_asleep; },
                        absl::Seconds(10)))
      << "the spinner never ran after the I/O";
  EXPECT_TRUE(WaitUntil([&] { return b.sleeping() && StateOf(tid) == 'S'; },
                        absl::Seconds(10)))
      << "still spinning long after its 50 ms window; state "
      << StateOf(tid);
}

// While the spinner is awake, noting I/O wakes nobody: one atomic add.
TEST(BusyWaitTest, NotingIoWhileAwakeMakesNoSystemCall) {
  BusyWait b;
  b.Start(absl::Seconds(60));
  ASSERT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                        absl::Seconds(10)));
  b.Note();
  ASSERT_TRUE(WaitUntil([&] { return !b.sleeping(); }, absl::Seconds(10)));
  const uint64_t wakes = b.wakes();
  for (int i = 0; i < 100000; ++i) b.Note();
  EXPECT_EQ(b.wakes(), wakes);
  EXPECT_LE(wakes, 2u);
}

// On one CPU with a thread that wants it all, the spinner gets next to
// nothing: it never takes time a runnable thread of the program wants. It
// backs off rather than take the slivers the scheduler would give it, and
// so still stops at once when asked.
TEST(BusyWaitTest, ASpinnerOnTheSameCpuTakesNextToNothing) {
  cpu_set_t old_mask;
  ASSERT_EQ(sched_getaffinity(0, sizeof(old_mask), &old_mask), 0);
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old_mask)) ++cpu;
  ASSERT_LT(cpu, CPU_SETSIZE);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  // This thread, and the spinner it starts, on one CPU.
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  {
    BusyWait b;
    b.Start(absl::Seconds(60));
    ASSERT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                          absl::Seconds(10)));
    const pid_t tid = b.spinner_tid();
    b.Note();
    ASSERT_TRUE(WaitUntil([&] { return !b.sleeping(); }, absl::Seconds(10)));
    const int64_t spinner_before = CpuNsOf(tid);
    const int64_t mine_before = ThisThreadCpuNs();
    // 300 ms of this thread's CPU time, or 20 s of the clock on a machine
    // too busy to give it that.
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    volatile uint64_t sink = 0;
    while (ThisThreadCpuNs() - mine_before < 300'000'000 &&
           absl::Now() < deadline) {
      for (int i = 0; i < 10000; ++i) sink = sink + i;
    }
    const int64_t mine = ThisThreadCpuNs() - mine_before;
    const int64_t spinner = CpuNsOf(tid) - spinner_before;
    printf("on CPU %d: this thread ran %.1f ms, the spinner %.3f ms, "
           "backing off %d times\n",
           cpu, mine / 1e6, spinner / 1e6, static_cast<int>(b.backoffs()));
    ASSERT_GT(mine, 100'000'000);
    EXPECT_GE(b.backoffs(), 1u);
    // It yields to the thread at once and then leaves the busy CPU alone:
    // under 0.1% here (a spinner of the idle class that did not back off
    // got 1.5%).
    EXPECT_LT(spinner, mine / 200);
    // Stopped while a thread still wants the CPU.
    std::atomic<bool> done{false};
    std::atomic<bool> hogging{false};
    std::thread hog([&] {
      hogging = true;
      volatile uint64_t x = 0;
      while (!done.load(std::memory_order_relaxed)) x = x + 1;
    });
    EXPECT_TRUE(WaitUntil([&] { return hogging.load(); }, absl::Seconds(10)));
    const absl::Time stop_start = absl::Now();
    b.Stop();
    const absl::Duration stop_took = absl::Now() - stop_start;
    done = true;
    hog.join();
    printf("stopped in %s with a thread spinning on the same CPU\n",
           absl::FormatDuration(stop_took).c_str());
    EXPECT_LT(stop_took, absl::Seconds(5));
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(old_mask), &old_mask), 0);
}

TEST(BusyWaitTest, StartsAgainAfterStopAndIgnoresIoWhileStopped) {
  BusyWait b;
  b.Start(absl::Milliseconds(1));
  ASSERT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                        absl::Seconds(10)));
  b.Stop();
  b.Stop();
  const uint64_t wakes = b.wakes();
  for (int i = 0; i < 100; ++i) b.Note();
  EXPECT_EQ(b.wakes(), wakes);
  b.Start(absl::Milliseconds(1));
  EXPECT_TRUE(WaitUntil([&] { return b.spinner_tid() != 0; },
                        absl::Seconds(10)));
  EXPECT_EQ(::tractor::testing::ThreadsNamed("tr-busy-wait"), 1);
}

}  // namespace
}  // namespace tractor::internal
