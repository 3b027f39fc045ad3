// SPDX-License-Identifier: AGPL-3.0-or-later
// Cancel scopes, deadlines and task groups inside one actor (no processes).
#include "actor/cancel.h"

#include <atomic>
#include <stdexcept>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tractor {
namespace {

TEST(CancelScopeTest, MoveOnAfterCancelsASleepAndReturnsFalse) {
  absl::Time t0 = absl::Now();
  bool finished = MoveOnAfter(absl::Milliseconds(50),
                              [] { Sleep(absl::Seconds(10)); });
  EXPECT_FALSE(finished);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
  EXPECT_TRUE(MoveOnAfter(absl::Seconds(10), [] {}));
}

TEST(CancelScopeTest, FailAfterRaisesTooSlowError) {
  EXPECT_THROW(FailAfter(absl::Milliseconds(20), [] { Sleep(absl::Seconds(5)); }),
               TooSlowError);
}

TEST(CancelScopeTest, CancelledScopeIsCaughtByItselfNotByItsParent) {
  CancelScope outer;
  bool after_inner = false;
  outer.Run([&] {
    CancelScope inner;
    inner.Run([&] {
      inner.Cancel();
      Checkpoint();
      ADD_FAILURE() << "checkpoint did not raise";
    });
    EXPECT_TRUE(inner.cancelled_caught());
    after_inner = true;
  });
  EXPECT_TRUE(after_inner);
  EXPECT_FALSE(outer.cancelled_caught());
}

TEST(CancelScopeTest, CancellingTheOuterScopeUnwindsTheInnerOne) {
  CancelScope outer;
  bool inner_caught = true;
  outer.Run([&] {
    CancelScope inner;
    inner.Run([&] {
      outer.Cancel();
      Sleep(absl::Seconds(10));
    });
    inner_caught = inner.cancelled_caught();
  });
  EXPECT_TRUE(outer.cancelled_caught());
  EXPECT_TRUE(inner_caught);  // never reached: stays at its initial value
}

TEST(CancelScopeTest, ShieldedScopeIgnoresItsParentsCancel) {
  CancelScope outer;
  bool slept = false;
  outer.Run([&] {
    outer.Cancel();
    CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
    shield.Run([&] {
      Sleep(absl::Milliseconds(20));
      slept = true;
    });
    Checkpoint();
  });
  EXPECT_TRUE(slept);
  EXPECT_TRUE(outer.cancelled_caught());
}

TEST(CancelScopeTest, CheckpointInACpuLoopObservesTheDeadline) {
  int64_t spins = 0;
  EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(30), [&] {
    for (;;) {
      ++spins;
      Checkpoint();
    }
  }));
  EXPECT_GT(spins, 0);
}

TEST(TaskGroupTest, JoinsAllTasks) {
  std::atomic<int> done{0};
  TaskGroup::Open([&](TaskGroup& tg) {
    for (int i = 0; i < 8; ++i) {
      tg.Spawn([&] {
        Sleep(absl::Milliseconds(5));
        ++done;
      });
    }
  });
  EXPECT_EQ(done.load(), 8);
}

TEST(TaskGroupTest, FirstErrorCancelsTheRestAndIsRethrown) {
  std::atomic<bool> sibling_cancelled{false};
  absl::Time t0 = absl::Now();
  try {
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        try {
          Sleep(absl::Seconds(10));
        } catch (const Cancelled&) {
          sibling_cancelled = true;
          throw;
        }
      });
      tg.Spawn([] { throw std::invalid_argument("first"); });
    });
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "first");
  }
  EXPECT_TRUE(sibling_cancelled.load());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
}

TEST(TaskGroupTest, SeveralErrorsBecomeAnErrorGroup) {
  // Each task fails before reaching a checkpoint, so the first failure's
  // cancel cannot stop the others: all three errors are kept.
  try {
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int i = 0; i < 3; ++i) {
        tg.Spawn([i] { throw std::runtime_error("task " + std::to_string(i)); });
      }
    });
    ADD_FAILURE() << "no error";
  } catch (const ActorErrorGroup& g) {
    ASSERT_EQ(g.errors().size(), 3u);
    for (const auto& e : g.errors()) {
      EXPECT_THROW(std::rethrow_exception(e), std::runtime_error);
    }
  }
}

TEST(TaskGroupTest, OuterCancelReachesTasksAndIsNotSwallowed) {
  std::atomic<int> cancelled{0};
  EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(30), [&] {
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int i = 0; i < 4; ++i) {
        tg.Spawn([&] {
          try {
            Sleep(absl::Seconds(10));
          } catch (const Cancelled&) {
            ++cancelled;
            throw;
          }
        });
      }
    });
    ADD_FAILURE() << "the task group swallowed its owner's cancel";
  }));
  EXPECT_EQ(cancelled.load(), 4);
}

TEST(TaskGroupTest, SingleTaskModeRunsOneTaskAtATime) {
  internal::SetSingleTaskMode(true);
  internal::UserTask me;
  int shared = 0;  // no lock: tasks only switch at checkpoints
  int max_inside = 0;
  std::atomic<int> inside{0};
  TaskGroup::Open([&](TaskGroup& tg) {
    for (int t = 0; t < 4; ++t) {
      tg.Spawn([&] {
        for (int i = 0; i < 1000; ++i) {
          int now = ++inside;
          max_inside = std::max(max_inside, now);
          int v = shared;
          shared = v + 1;
          --inside;
          if (i % 100 == 0) Checkpoint();
        }
      });
    }
  });
  EXPECT_EQ(shared, 4000);
  EXPECT_EQ(max_inside, 1);
}

}  // namespace
}  // namespace tractor
