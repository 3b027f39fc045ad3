// SPDX-License-Identifier: AGPL-3.0-or-later
// internal::Wait on the project's Mutex and CondVar: a checkpoint that a
// cancel wakes (in process, no actors).
#include "actor/internal/scope.h"

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "discovery/mutex.h"
#include "gtest/gtest.h"

namespace tractor::internal {
namespace {

TEST(WaitTest, ReturnsOnceTheConditionHolds) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(20));
    MutexLock lock(&mu);
    ready = true;
    cv.SignalAll();
  });
  {
    MutexLock lock(&mu);
    EXPECT_TRUE(Wait(cv, mu, [&] { return ready; }));
    EXPECT_TRUE(ready);
  }
  setter.join();
}

TEST(WaitTest, ReturnsFalseAtUntil) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  const absl::Time until = absl::Now() + absl::Milliseconds(30);
  EXPECT_FALSE(Wait(cv, mu, [] { return false; }, until));
  EXPECT_GE(absl::Now(), until);
}

TEST(WaitTest, ACancelFromAnotherThreadWakesTheWaiter) {
  Mutex mu;
  CondVar cv;
  CancelScope scope;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(30));
    scope.Cancel();
  });
  const absl::Time t0 = absl::Now();
  scope.Run([&] {
    MutexLock lock(&mu);
    Wait(cv, mu, [] { return false; });
    ADD_FAILURE() << "the wait was not cancelled";
  });
  EXPECT_TRUE(scope.cancelled_caught());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  canceller.join();
}

TEST(WaitTest, TheScopesDeadlineCancelsTheWait) {
  Mutex mu;
  CondVar cv;
  EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(30), [&] {
    MutexLock lock(&mu);
    Wait(cv, mu, [] { return false; });
  }));
}

TEST(WaitTest, ACancelTogetherWithTheConditionIsRaised) {
  Mutex mu;
  CondVar cv;
  CancelScope scope;
  bool returned = false;
  scope.Run([&] {
    MutexLock lock(&mu);
    scope.Cancel();
    returned = Wait(cv, mu, [] { return true; });
  });
  EXPECT_FALSE(returned);
  EXPECT_TRUE(scope.cancelled_caught());
}

TEST(WaitTest, ACancelThatArrivesWithTheConditionWins) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  CancelScope scope;
  std::thread both([&] {
    absl::SleepFor(absl::Milliseconds(20));
    {
      MutexLock lock(&mu);
      ready = true;  // no signal: the cancel's wake-up finds both
    }
    scope.Cancel();
  });
  scope.Run([&] {
    MutexLock lock(&mu);
    Wait(cv, mu, [&] { return ready; });
    ADD_FAILURE() << "the cancel was not raised";
  });
  EXPECT_TRUE(scope.cancelled_caught());
  both.join();
}

TEST(WaitTest, ShieldedWaitIgnoresTheOuterCancel) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  CancelScope outer;
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(20));
    outer.Cancel();
    absl::SleepFor(absl::Milliseconds(20));
    MutexLock lock(&mu);
    ready = true;
    cv.SignalAll();
  });
  bool waited = false;
  outer.Run([&] {
    CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
    shield.Run([&] {
      MutexLock lock(&mu);
      waited = Wait(cv, mu, [&] { return ready; });
    });
  });
  EXPECT_TRUE(waited);
  t.join();
}

// Tasks nested in a scope whose deadline passes all wait with the same
// mutex: the waiter that finds the deadline passed cancels the scope, and
// the stop callbacks of the others take that mutex. That must not deadlock.
TEST(WaitTest, ADeadlineSeenByOneOfSeveralWaitersOnOneMutexWakesAll) {
  Mutex mu;
  CondVar cv;
  const absl::Time t0 = absl::Now();
  EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(50), [&] {
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int i = 0; i < 3; ++i) {
        tg.Spawn([&] {
          MutexLock lock(&mu);
          Wait(cv, mu, [] { return false; });
        });
      }
      MutexLock lock(&mu);
      Wait(cv, mu, [] { return false; });
    });
  }));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST(WaitTest, HandsTheTaskLockOverWhileBlocked) {
  SetSingleTaskMode(true);
  UserTask me;
  Mutex mu;
  CondVar cv;
  bool ready = false;
  std::thread other([&] {
    UserTask task;  // runs only once the waiter hands over
    MutexLock lock(&mu);
    ready = true;
    cv.SignalAll();
  });
  {
    MutexLock lock(&mu);
    EXPECT_TRUE(Wait(cv, mu, [&] { return ready; }));
  }
  EXPECT_TRUE(HoldsTaskLock());
  ReleaseTaskLock();
  other.join();
  AcquireTaskLock();
}

}  // namespace
}  // namespace tractor::internal
