// SPDX-License-Identifier: AGPL-3.0-or-later
// The process's reaper (actor/internal/reaper.h): it reaps watched
// children, and runs the end of the teardown ladder (SIGTERM, then
// SIGKILL) for a child whose exit is overdue.
#include "actor/internal/reaper.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tractor::internal {
namespace {

// One watched child's wait status, once it is reaped.
struct Outcome {
  absl::Mutex mu;
  std::optional<int> status ABSL_GUARDED_BY(mu);
  absl::Time reaped_at ABSL_GUARDED_BY(mu);

  // The status, or nullopt when the child is not reaped within `timeout`.
  std::optional<int> Await(absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](std::optional<int>* s) { return s->has_value(); },
                            &status),
                        timeout);
    return status;
  }
};

// Forks a child that sleeps until killed; with `ignore_term` it ignores
// SIGTERM.
pid_t ForkSleeper(bool ignore_term) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (ignore_term) signal(SIGTERM, SIG_IGN);
    for (;;) pause();
  }
  return pid;
}

void Watch(pid_t pid, Outcome* out) {
  ASSERT_TRUE(WatchChildExit(pid, [out](int status) {
    absl::MutexLock lock(&out->mu);
    out->status = status;
    out->reaped_at = absl::Now();
  }));
}

TEST(ReaperTest, ReapsAWatchedChild) {
  Outcome out;
  const pid_t pid = ForkSleeper(false);
  ASSERT_GT(pid, 0);
  Watch(pid, &out);
  kill(pid, SIGKILL);
  std::optional<int> status = out.Await(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGKILL);
}

TEST(ReaperTest, AnOverdueChildGetsSigtermAtItsDeadline) {
  Outcome out;
  const pid_t pid = ForkSleeper(false);
  ASSERT_GT(pid, 0);
  Watch(pid, &out);
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(EscalateChildExit(pid, t0 + absl::Milliseconds(200),
                                absl::Seconds(30)));
  std::optional<int> status = out.Await(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGTERM);
  absl::MutexLock lock(&out.mu);
  EXPECT_GE(out.reaped_at - t0, absl::Milliseconds(200));
}

TEST(ReaperTest, AChildThatIgnoresSigtermGetsSigkillAfterTheGrace) {
  Outcome out;
  const pid_t pid = ForkSleeper(true);
  ASSERT_GT(pid, 0);
  Watch(pid, &out);
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(EscalateChildExit(pid, t0 + absl::Milliseconds(50),
                                absl::Milliseconds(200)));
  std::optional<int> status = out.Await(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status));
  EXPECT_EQ(WTERMSIG(*status), SIGKILL);
  absl::MutexLock lock(&out.mu);
  EXPECT_GE(out.reaped_at - t0, absl::Milliseconds(250));
}

TEST(ReaperTest, AChildThatExitsInTimeIsNotSignalled) {
  Outcome out;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    usleep(50 * 1000);
    _exit(7);
  }
  Watch(pid, &out);
  ASSERT_TRUE(EscalateChildExit(pid, absl::Now() + absl::Seconds(30),
                                absl::Seconds(30)));
  std::optional<int> status = out.Await(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
}

TEST(ReaperTest, EscalatingAnUnwatchedPidIsRefused) {
  EXPECT_FALSE(EscalateChildExit(getpid(), absl::Now(), absl::Seconds(1)));
}

}  // namespace
}  // namespace tractor::internal
