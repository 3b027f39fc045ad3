// SPDX-License-Identifier: AGPL-3.0-or-later
// A test fixture for multi-process tests: bounds each test in time and
// fails a test that leaves any descendant process running.
#ifndef TRACTOR_TESTS_PROCESS_FIXTURE_H_
#define TRACTOR_TESTS_PROCESS_FIXTURE_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tractor::testing {

// Returns every live descendant of `root` (children, grandchildren, ...),
// except the sanitizer runtime's llvm-symbolizer.
std::set<pid_t> Descendants(pid_t root);

// True while `pid` exists and is neither a zombie nor dead (read from
// /proc/PID/stat).
bool Alive(pid_t pid);

// Waits until `pred()` holds or `timeout` passes; returns pred().
bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout);

// How contended the machine's CPUs are now, for this process: the wall
// time a thread takes to get 50 ms of CPU, over 50 ms (at least 1; about
// 1.5 with two CPU hogs on 2 cores). Takes that long to answer.
double CpuContention();

// A wall-clock budget for work whose cost is mostly CPU (starting actor
// processes: exec, dynamic linking, gRPC setup, a TLS handshake):
// `ScaleTimeout(budget)` (the sanitizer builds' slowdown) times
// `CpuContention()`. Read it as the work starts and again once it is done,
// and hold the work to the larger (contention comes and goes). On an idle machine it is `budget` (tractor's
// figures); with other builds and tests running on a 2-core machine the
// work gets a fraction of a CPU and its wall time stretches by about the
// same factor, which says nothing about the runtime.
absl::Duration CpuBoundBudget(absl::Duration budget);

// Fixture: a watchdog aborts the process (with the test's name) if one test
// runs longer than `TestTimeout()`; TearDown fails the test if descendants
// are still alive 3 s (scaled by TRACTOR_TIMEOUT_SCALE) after it ended,
// and kills them.
class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  virtual absl::Duration TestTimeout() const { return absl::Seconds(60); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread watchdog_;
};

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_PROCESS_FIXTURE_H_
