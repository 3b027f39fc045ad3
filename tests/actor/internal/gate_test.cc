// SPDX-License-Identifier: AGPL-3.0-or-later
// The shutdown gate (actor/internal/gate.h), in process.
#include "actor/internal/gate.h"

#include <atomic>
#include <optional>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/internal/scope.h"
#include "gtest/gtest.h"

namespace tractor::internal {
namespace {

TEST(GateTest, EntersWhileOpenAndRefusesOnceClosed) {
  Gate gate;
  EXPECT_FALSE(gate.close_reason().has_value());
  std::optional<Gate::Holder> a = gate.TryEnter();
  std::optional<Gate::Holder> b = gate.TryEnter();
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(gate.holders(), 2u);
  gate.Close(CloseReason::kCancel);
  gate.Close(CloseReason::kExit);  // the first reason is kept
  EXPECT_EQ(gate.close_reason(), CloseReason::kCancel);
  EXPECT_FALSE(gate.TryEnter().has_value());
  a.reset();
  b->Leave();
  b->Leave();  // idempotent
  EXPECT_EQ(gate.holders(), 0u);
}

TEST(GateTest, AHolderMovesAndLeavesOnce) {
  Gate gate;
  std::optional<Gate::Holder> first = gate.TryEnter();
  ASSERT_TRUE(first.has_value());
  Gate::Holder moved = *std::move(first);
  first.reset();  // the moved-from holder leaves nothing
  EXPECT_EQ(gate.holders(), 1u);
  std::optional<Gate::Holder> second = gate.TryEnter();
  ASSERT_TRUE(second.has_value());
  moved = *std::move(second);  // leaves the first entry, keeps the second
  EXPECT_EQ(gate.holders(), 1u);
  moved.Leave();
  EXPECT_EQ(gate.holders(), 0u);
}

TEST(GateTest, WaitDrainedReturnsTheReasonOnceTheLastHolderLeft) {
  Gate gate;
  std::optional<Gate::Holder> hold = gate.TryEnter();
  ASSERT_TRUE(hold.has_value());
  std::atomic<bool> left{false};
  std::thread worker([hold = *std::move(hold), &left]() mutable {
    absl::SleepFor(absl::Milliseconds(50));
    left.store(true);
    hold.Leave();
  });
  gate.Close(CloseReason::kExit);
  EXPECT_EQ(gate.WaitDrained(), CloseReason::kExit);
  EXPECT_TRUE(left.load());
  worker.join();
}

TEST(GateTest, WaitDrainedAlsoWaitsForTheGateToClose) {
  Gate gate;
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(30));
    gate.Close(CloseReason::kCancel);
  });
  EXPECT_EQ(gate.WaitDrained(absl::Now() + absl::Seconds(30)),
            CloseReason::kCancel);
  closer.join();
}

TEST(GateTest, WaitDrainedGivesUpAtItsDeadline) {
  Gate gate;
  std::optional<Gate::Holder> hold = gate.TryEnter();
  gate.Close(CloseReason::kExit);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  EXPECT_FALSE(gate.WaitDrained(deadline).has_value());
  EXPECT_GE(absl::Now(), deadline);
  hold.reset();
  EXPECT_EQ(gate.WaitDrained(absl::Now()), CloseReason::kExit);
}

TEST(GateTest, WaitDrainedIsACheckpoint) {
  Gate gate;
  std::optional<Gate::Holder> hold = gate.TryEnter();
  gate.Close(CloseReason::kExit);
  CancelScope scope(absl::Milliseconds(50));
  scope.Run([&] {
    gate.WaitDrained();
    ADD_FAILURE() << "not cancelled";
  });
  EXPECT_TRUE(scope.cancelled_caught());
  hold.reset();
}

// A holder that is a task needs the task lock to finish: the waiter hands
// it over while it waits.
TEST(GateTest, WaitDrainedHandsTheTaskLockOver) {
  SetSingleTaskMode(true);
  UserTask me;
  Gate gate;
  std::optional<Gate::Holder> hold = gate.TryEnter();
  std::atomic<bool> ran{false};
  std::thread task([hold = *std::move(hold), &ran]() mutable {
    UserTask task;  // blocks until the waiter hands the lock over
    ran.store(true);
    hold.Leave();
  });
  gate.Close(CloseReason::kExit);
  EXPECT_EQ(gate.WaitDrained(absl::Now() + absl::Seconds(30)),
            CloseReason::kExit);
  EXPECT_TRUE(ran.load());
  EXPECT_TRUE(HoldsTaskLock());
  // The task releases the lock when it ends; let it.
  ReleaseTaskLock();
  task.join();
  AcquireTaskLock();
}

TEST(GateDeathTest, DestroyingAGateWithAHolderInsideDies) {
  EXPECT_DEATH(
      {
        std::optional<Gate::Holder> hold;
        {
          Gate gate;
          hold = gate.TryEnter();
        }
      },
      "holders inside");
}

}  // namespace
}  // namespace tractor::internal
