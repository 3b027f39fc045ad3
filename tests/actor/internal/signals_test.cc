// SPDX-License-Identifier: AGPL-3.0-or-later
// The SIGTERM watcher (actor/internal/signals.h): a SIGTERM calls its
// `on_term`; once let go for an exit (`LeaveForExit`, what a child actor
// does just before its `_exit`) it calls it no more, and the process still
// ends by `_exit` with the status it chose. Each case runs in a forked
// process, since SIGTERM is process-wide.
#include "actor/internal/signals.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tractor::internal {
namespace {

// Exit statuses of the forked process.
constexpr int kOk = 0;
constexpr int kOnTermCalled = 3;
constexpr int kOnTermNotCalled = 4;
constexpr int kSignalNotTaken = 5;

// Waits (up to a deadline, checking every millisecond: there is nothing to
// block on) until `done` holds.
bool WaitUntil(const std::function<bool()>& done, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    const timespec ms{0, 1000 * 1000};
    nanosleep(&ms, nullptr);
  }
  return true;
}

bool TermPending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGTERM) == 1;
}

// Runs `body` in a forked process, which ends by `_exit` with what `body`
// returns, and returns its wait status; fails the test when the process
// does not end within 30 s (it is then killed).
int RunForked(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  EXPECT_GT(pid, 0);
  if (pid <= 0) return -1;
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  EXPECT_GE(fd, 0);
  pollfd p{fd, POLLIN, 0};
  const int ready = fd >= 0 ? poll(&p, 1, 30 * 1000) : 0;
  EXPECT_EQ(ready, 1) << "the forked process did not end within 30 s";
  if (ready != 1) kill(pid, SIGKILL);
  if (fd >= 0) close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

TEST(SigtermWatchTest, ASigtermCallsOnTerm) {
  const int status = RunForked([] {
    BlockSignals({SIGTERM});
    std::atomic<int> calls{0};
    SigtermWatch watch([&calls] { ++calls; });
    kill(getpid(), SIGTERM);
    if (!WaitUntil([&calls] { return calls.load() > 0; }, absl::Seconds(10))) {
      return kOnTermNotCalled;
    }
    watch.Stop();
    return calls.load() == 1 ? kOk : kOnTermCalled;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kOk);
}

TEST(SigtermWatchTest, LeftForExitTheProcessEndsByItsExit) {
  // The watcher is still waiting when the process ends: `_exit` ends it.
  const int status = RunForked([] {
    BlockSignals({SIGTERM});
    std::atomic<int> calls{0};
    SigtermWatch watch([&calls] { ++calls; });
    watch.LeaveForExit();
    watch.LeaveForExit();  // idempotent
    watch.Stop();          // does nothing now
    return calls.load() == 0 ? 7 : kOnTermCalled;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(SigtermWatchTest, LeftForExitASigtermNoLongerCallsOnTerm) {
  const int status = RunForked([] {
    BlockSignals({SIGTERM});
    std::atomic<int> calls{0};
    SigtermWatch watch([&calls] { ++calls; });
    watch.LeaveForExit();
    // The process-directed signal stays pending until the detached watcher
    // takes it.
    kill(getpid(), SIGTERM);
    if (!WaitUntil([] { return !TermPending(); }, absl::Seconds(10))) {
      return kSignalNotTaken;
    }
    return calls.load() == 0 ? kOk : kOnTermCalled;
  });
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), kOk);
}

}  // namespace
}  // namespace tractor::internal
