// SPDX-License-Identifier: AGPL-3.0-or-later
// The thread pool on the way out of the process (QuiescePoolForExit): no
// worker leaves any more, none is left exited and unjoined, and work still
// runs. A binary of its own: quiescing is for the rest of the process.
#include <atomic>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/internal/thread_pool.h"
#include "gtest/gtest.h"
#include "tests/thread_census.h"

namespace tractor::internal {
namespace {

using ::tractor::testing::WaitUntil;

TEST(ThreadPoolExitTest, QuiescedWorkersStayParkedAndWorkStillRuns) {
  // The worker is busy while the pool is quiesced, so it cannot have left
  // before, however slow the machine.
  std::atomic<int> done{0};
  std::atomic<bool> release{false};
  RunPooled([&] {
    WaitUntil([&] { return release.load(); }, absl::Seconds(30));
    ++done;
  });
  ASSERT_TRUE(WaitUntil([] { return PooledThreadCounts().workers == 1; },
                        absl::Seconds(10)));

  QuiescePoolForExit();
  EXPECT_EQ(PooledThreadCounts().unjoined, 0u);
  release = true;
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 1; }, absl::Seconds(10)));

  // A worker idle for 1 s leaves, unless the pool is quiesced: watch for
  // three times that long that it stays (a plain wait would be the same;
  // this one fails as soon as it leaves).
  EXPECT_FALSE(WaitUntil([] { return PooledThreadCounts().workers != 1; },
                         absl::Seconds(3)))
      << "a worker left after QuiescePoolForExit";
  EXPECT_EQ(PooledThreadCounts().unjoined, 0u);

  RunPooled([&] { ++done; });
  EXPECT_TRUE(WaitUntil([&] { return done.load() == 2; }, absl::Seconds(10)));
  EXPECT_EQ(PooledThreadCounts().workers, 1u);
}

}  // namespace
}  // namespace tractor::internal
