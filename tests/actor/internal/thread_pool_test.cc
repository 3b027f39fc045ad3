// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime's thread pool: one worker per queued task, idle workers
// released promptly, every worker named after its role (no processes).
#include "actor/internal/thread_pool.h"

#include <dirent.h>
#include <pthread.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "gtest/gtest.h"
#include "tests/thread_census.h"

namespace tractor::internal {
namespace {

// The names of this process's threads (/proc/self/task/*/comm), counted.
std::map<std::string, int> ThreadNames() {
  std::map<std::string, int> names;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return names;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat("/proc/self/task/", e->d_name, "/comm"));
    std::string name;
    if (std::getline(comm, name)) ++names[name];
  }
  closedir(dir);
  return names;
}

int ThreadCount() {
  int n = 0;
  for (const auto& [name, count] : ThreadNames()) n += count;
  return n;
}

using ::tractor::testing::WaitUntil;

TEST(ThreadPoolTest, WorkersAreNamedAfterTheirRoleAndReleasedPromptlyWhenIdle) {
  constexpr int kTasks = 50;
  const int before = ThreadCount();
  Mutex mu;
  CondVar cv;
  int started = 0;
  bool release = false;
  std::map<std::string, int> names_seen;
  for (int i = 0; i < kTasks; ++i) {
    RunPooled([&] {
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      MutexLock lock(&mu);
      ++names_seen[name];
      ++started;
      cv.SignalAll();
      while (!release) cv.Wait(&mu);
    });
  }
  {
    MutexLock lock(&mu);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (started < kTasks && !cv.WaitWithDeadline(&mu, deadline)) {
    }
    ASSERT_EQ(started, kTasks) << "the pool did not run every task at once";
  }
  const std::map<std::string, int> during = ThreadNames();
  EXPECT_EQ(names_seen, (std::map<std::string, int>{{"tr-task", kTasks}}));
  auto it = during.find("tr-task");
  EXPECT_TRUE(it != during.end() && it->second >= kTasks)
      << "/proc/self/task/*/comm shows no " << kTasks << " 'tr-task' threads";
  {
    MutexLock lock(&mu);
    release = true;
  }
  cv.SignalAll();
  const absl::Time released = absl::Now();
  // Idle workers exit after 1 s and every one of them is joined without
  // waiting for more work (by the pool's reaper, which then ends too): the
  // pool holds no thread.
  EXPECT_TRUE(WaitUntil(
      [&] {
        const PoolThreadCounts c = PooledThreadCounts();
        std::map<std::string, int> names = ThreadNames();
        return c.workers == 0 && c.unjoined == 0 && names["tr-task"] == 0 &&
               names["tr-pool-reaper"] == 0;
      },
      absl::Seconds(4)))
      << ThreadCount() << " threads 4 s after the tasks ended, " << before
      << " before them; pool workers " << PooledThreadCounts().workers
      << ", exited but not joined " << PooledThreadCounts().unjoined;
  printf("%d pool threads released %.0f ms after their tasks ended\n", kTasks,
         absl::ToDoubleMilliseconds(absl::Now() - released));
  // The pool still works afterwards.
  bool ran = false;
  RunPooled([&] {
    MutexLock lock(&mu);
    ran = true;
    cv.SignalAll();
  });
  MutexLock lock(&mu);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!ran && !cv.WaitWithDeadline(&mu, deadline)) {
  }
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace tractor::internal
