// SPDX-License-Identifier: AGPL-3.0-or-later
// The naming of the test namespaces (tests/faults/hosts.h): names carry
// their creating process, concurrent sets never collide, and the leftovers
// of a run killed before its destructor ran are deleted at the next setup
// while those of a live process are kept. Needs root (CAP_NET_ADMIN) and no
// Bazel sandbox; skips with a message where namespaces cannot be created.
#include "tests/faults/hosts.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace tractor::testing {
namespace {

bool NetnsExists(const std::string& name) {
  return access(absl::StrCat("/run/netns/", name).c_str(), F_OK) == 0;
}

bool LinkExists(const std::string& name) {
  return Sh(absl::StrCat("ip link show ", name)) == 0;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(NetnsNamesTest, NamesCarryTheCreatorAndDifferPerSet) {
  NetnsNames one, two;
  const std::string pid = absl::StrCat(getpid());
  EXPECT_TRUE(absl::StartsWith(one.Namespace("a"), absl::StrCat("trt-", pid, "-")))
      << one.Namespace("a");
  EXPECT_NE(one.Namespace("a"), two.Namespace("a"));
  EXPECT_NE(one.Link("b0"), two.Link("b0"));
  EXPECT_NE(one.Link("b0"), one.Link("b1"));
  // Link names fit IFNAMSIZ (15 bytes) with the longest suffix used ("dd0").
  EXPECT_LE(one.Link("dd0").size(), 15u) << one.Link("dd0");
  EXPECT_EQ(ProcessStartTime(getpid()) > 0, true);
  EXPECT_EQ(ProcessStartTime(-1), 0u);
}

// A process that made a namespace and a root-namespace link and was then
// killed (its destructor never ran): the next setup deletes both, and keeps
// the namespace of a process that still runs.
TEST(RemoveStaleNetnsTest, DeletesWhatADeadCreatorLeftAndKeepsTheLiving) {
  if (const std::string why = NetnsUnavailable(); !why.empty()) {
    GTEST_SKIP() << why;
  }
  // The dead creator: a child that names its namespace and link, makes
  // them, and is killed with SIGKILL.
  int names_pipe[2];
  ASSERT_EQ(pipe(names_pipe), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(30);  // never outlives the test, whatever happens to it
    close(names_pipe[0]);
    NetnsNames names;
    const std::string ns = names.Namespace("a");
    const std::string link = names.Link("b0");
    int ok = Sh(absl::StrCat("ip netns add ", ns)) == 0 &&
             Sh(absl::StrCat("ip link add ", link, " type veth peer name ",
                             names.Link("b1"))) == 0;
    const std::string line = absl::StrCat(ok ? "ok " : "failed ", ns, " ",
                                          link, " ", names.Link("b1"), "\n");
    (void)!write(names_pipe[1], line.data(), line.size());
    close(names_pipe[1]);
    for (;;) pause();  // until killed
  }
  close(names_pipe[1]);
  // The child's line, within 20 s.
  std::string line;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (line.find('\n') == std::string::npos && absl::Now() < deadline) {
    pollfd p{names_pipe[0], POLLIN, 0};
    const int left = static_cast<int>(
        absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
    char buf[256];
    const ssize_t n = read(names_pipe[0], buf, sizeof(buf));
    if (n <= 0) break;
    line.append(buf, n);
  }
  close(names_pipe[0]);
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  std::vector<std::string> words = absl::StrSplit(
      absl::StripSuffix(line, "\n"), ' ');
  ASSERT_EQ(words.size(), 4u) << line;
  const std::string stale_ns = words[1];
  const std::string stale_link = words[2];
  const std::string stale_peer = words[3];  // goes with stale_link
  if (words[0] != "ok") {
    Sh(absl::StrCat("ip netns del ", stale_ns));
    Sh(absl::StrCat("ip link del ", stale_link));
    GTEST_SKIP() << "cannot create a namespace and a veth pair here";
  }
  ASSERT_TRUE(NetnsExists(stale_ns));
  ASSERT_TRUE(LinkExists(stale_link));

  // A living creator: this process.
  NetnsNames mine;
  const std::string live_ns = mine.Namespace("a");
  ASSERT_EQ(Sh(absl::StrCat("ip netns add ", live_ns)), 0);

  const std::vector<std::string> removed = RemoveStaleNetns();
  const bool stale_ns_gone = !NetnsExists(stale_ns);
  const bool stale_link_gone = !LinkExists(stale_link);
  const bool live_kept = NetnsExists(live_ns);
  Sh(absl::StrCat("ip netns del ", live_ns));
  Sh(absl::StrCat("ip netns del ", stale_ns));
  Sh(absl::StrCat("ip link del ", stale_link));
  EXPECT_TRUE(stale_ns_gone) << stale_ns << " is still there";
  EXPECT_TRUE(Contains(removed, stale_ns));
  EXPECT_TRUE(stale_link_gone) << stale_link << " is still there";
  // Deleting either end of a veth pair deletes both.
  EXPECT_TRUE(Contains(removed, stale_link) || Contains(removed, stale_peer));
  EXPECT_TRUE(live_kept) << live_ns << " (of a live process) was deleted";
  EXPECT_FALSE(Contains(removed, live_ns));
}

}  // namespace
}  // namespace tractor::testing
