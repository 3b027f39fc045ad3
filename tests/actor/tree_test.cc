// SPDX-License-Identifier: AGPL-3.0-or-later
// Whole-tree teardown when the root process is killed or interrupted.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

class TreeTest : public testing::ProcessTest {
 protected:
  // Starts tree_actor with stderr captured; fills the three pids.
  void StartTree() {
    int out[2], err[2];
    ASSERT_EQ(pipe(out), 0);
    ASSERT_EQ(pipe(err), 0);
    std::string bin = std::string(getenv("TEST_SRCDIR")) +
                      "/tractor_cpp/tests/actor/tree_actor";
    root_ = fork();
    if (root_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      execl(bin.c_str(), bin.c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    err_fd_ = err[0];
    FILE* f = fdopen(out[0], "r");
    long long a = 0, b = 0, c = 0;
    ASSERT_EQ(fscanf(f, "pids %lld %lld %lld", &a, &b, &c), 3);
    fclose(f);
    pids_ = {static_cast<pid_t>(a), static_cast<pid_t>(b),
             static_cast<pid_t>(c)};
    for (pid_t p : pids_) ASSERT_TRUE(testing::Alive(p));
  }

  std::string ReadStderr() {
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = read(err_fd_, buf, sizeof buf)) > 0) s.append(buf, n);
    close(err_fd_);
    return s;
  }

  pid_t root_ = -1;
  int err_fd_ = -1;
  std::vector<pid_t> pids_;
};

TEST_F(TreeTest, KillNineOfTheRootTakesEveryDescendantWithinOneSecond) {
  StartTree();
  ASSERT_EQ(kill(root_, SIGKILL), 0);
  absl::Time t0 = absl::Now();
  int status = 0;
  ASSERT_EQ(waitpid(root_, &status, 0), root_);
  bool gone = testing::WaitFor(
      [&] { return !testing::Alive(pids_[1]) && !testing::Alive(pids_[2]); },
      absl::Seconds(1));
  EXPECT_TRUE(gone) << "descendants still alive 1 s after kill -9 of the root";
  printf("root kill -9 to last descendant gone: %.1f ms\n",
         absl::ToDoubleMilliseconds(absl::Now() - t0));
  ReadStderr();
}

TEST_F(TreeTest, SigintToTheRootTearsDownTheTreeAndExitsBySigint) {
  StartTree();
  absl::Time t0 = absl::Now();
  ASSERT_EQ(kill(root_, SIGINT), 0);
  int status = 0;
  bool exited = testing::WaitFor(
      [&] { return waitpid(root_, &status, WNOHANG) == root_; },
      discovery::ScaleTimeout(absl::Seconds(2)));
  ASSERT_TRUE(exited) << "root did not exit within 2 s (scaled) of SIGINT";
  absl::Duration took = absl::Now() - t0;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT)
      << "exit status " << status;
  EXPECT_NE(ReadStderr().find("KeyboardInterrupt"), std::string::npos);
  EXPECT_FALSE(testing::Alive(pids_[1]));
  EXPECT_FALSE(testing::Alive(pids_[2]));
  printf("SIGINT to full teardown: %.1f ms\n", absl::ToDoubleMilliseconds(took));
}

}  // namespace
}  // namespace tractor
