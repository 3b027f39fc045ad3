// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/mutex.h: Mutex, MutexLock and CondVar.
#include "discovery/mutex.h"

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tractor {
namespace {

TEST(MutexTest, LocksAndUnlocks) {
  Mutex mu;
  mu.Lock();
  mu.AssertHeld();
  mu.Unlock();
  {
    MutexLock lock(&mu);
    mu.AssertHeld();
  }
  // Free again: another thread takes it at once.
  std::thread t([&] {
    MutexLock lock(&mu);
  });
  t.join();
}

TEST(MutexTest, ConstInitMutexWorks) {
  ABSL_CONST_INIT static Mutex mu(absl::kConstInit);
  MutexLock lock(&mu);
  mu.AssertHeld();
}

TEST(MutexTest, TwoThreadsCountUnderTheLock) {
  constexpr int kPerThread = 100000;
  Mutex mu;
  int count = 0;
  auto work = [&] {
    for (int i = 0; i < kPerThread; ++i) {
      MutexLock lock(&mu);
      ++count;
    }
  };
  std::thread a(work);
  std::thread b(work);
  a.join();
  b.join();
  MutexLock lock(&mu);
  EXPECT_EQ(count, 2 * kPerThread);
}

TEST(CondVarTest, WaitWakesOnSignal) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(20));
    MutexLock lock(&mu);
    ready = true;
    cv.Signal();
  });
  {
    MutexLock lock(&mu);
    while (!ready) cv.Wait(&mu);
    EXPECT_TRUE(ready);
  }
  t.join();
}

TEST(CondVarTest, WaitWithDeadlineTimesOutWithoutASignal) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::Milliseconds(50);
  bool timed_out = false;
  while (!timed_out) timed_out = cv.WaitWithDeadline(&mu, deadline);
  EXPECT_GE(absl::Now(), deadline);
  mu.AssertHeld();
}

TEST(CondVarTest, WaitWithDeadlineReturnsEarlyWhenSignalled) {
  Mutex mu;
  CondVar cv;
  int wakeups = 0;
  bool done = false;
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(20));
    MutexLock lock(&mu);
    done = true;
    cv.SignalAll();
  });
  {
    MutexLock lock(&mu);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    bool timed_out = false;
    while (!done && !timed_out) {
      timed_out = cv.WaitWithDeadline(&mu, deadline);
      ++wakeups;
    }
    EXPECT_TRUE(done);
    EXPECT_FALSE(timed_out);
    EXPECT_GE(wakeups, 1);
    EXPECT_LT(absl::Now(), deadline);
  }
  t.join();
}

TEST(CondVarTest, SignalAllWakesEveryWaiter) {
  Mutex mu;
  CondVar cv;
  bool go = false;
  int woken = 0;
  auto waiter = [&] {
    MutexLock lock(&mu);
    while (!go) cv.Wait(&mu);
    ++woken;
  };
  std::thread a(waiter);
  std::thread b(waiter);
  absl::SleepFor(absl::Milliseconds(20));
  {
    MutexLock lock(&mu);
    go = true;
  }
  cv.SignalAll();
  a.join();
  b.join();
  MutexLock lock(&mu);
  EXPECT_EQ(woken, 2);
}

}  // namespace
}  // namespace tractor
