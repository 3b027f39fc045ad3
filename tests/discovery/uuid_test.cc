// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/uuid.h: format, uniqueness across threads and across
// fork().
#include "discovery/uuid.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tractor::discovery {
namespace {

using ::testing::MatchesRegex;

constexpr char kV4Pattern[] =
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}";

TEST(NewUuidTest, IsLowerCaseVersion4WithTheRfc4122Variant) {
  for (int i = 0; i < 1000; ++i) {
    const std::string uuid = NewUuid();
    ASSERT_EQ(uuid.size(), 36u) << uuid;
    ASSERT_THAT(uuid, MatchesRegex(kV4Pattern));
  }
}

TEST(NewUuidTest, UniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::mutex mu;
  std::set<std::string> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> mine;
      for (int i = 0; i < kPerThread; ++i) mine.push_back(NewUuid());
      std::lock_guard<std::mutex> lk(mu);
      seen.insert(mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

// A forked child must not replay its parent's sequence, even though it
// inherits the calling thread's generator state.
TEST(NewUuidTest, ForkedChildDoesNotRepeatItsParent) {
  (void)NewUuid();  // seed this thread's generator before forking
  int fds[2];
  ASSERT_EQ(pipe(fds), 0) << std::strerror(errno);
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    for (int i = 0; i < 4; ++i) out += NewUuid();
    const bool ok = write(fds[1], out.data(), out.size()) ==
                    static_cast<ssize_t>(out.size());
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  std::set<std::string> parent;
  for (int i = 0; i < 4; ++i) parent.insert(NewUuid());
  std::string child;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) child.append(buf, n);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(child.size(), 4u * 36u);
  for (int i = 0; i < 4; ++i) {
    const std::string uuid = child.substr(i * 36, 36);
    EXPECT_THAT(uuid, MatchesRegex(kV4Pattern));
    EXPECT_EQ(parent.count(uuid), 0u) << "the child repeated " << uuid;
  }
}

}  // namespace
}  // namespace tractor::discovery
