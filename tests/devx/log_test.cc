// SPDX-License-Identifier: AGPL-3.0-or-later
// Logging by layer: the `cancel` level (16) shows who cancelled what, from
// every actor of the tree, and none of the `runtime` (15) lines; every line
// names its actor and short uuid.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

int64_t Echo(int64_t x) { return x; }
TRACTOR_EXPORT("log:echo", Echo);

class LogTest : public testing::ProcessTest {
 protected:
  void SetUp() override {
    ProcessTest::SetUp();
    unsetenv("TRACTOR_LOGLEVEL");
  }

  // Runs a root (at `level`) with one child, calls it, cancels it; returns
  // everything the tree wrote to stderr, and the two actors' ids.
  std::string RunTree(const std::string& level, v1::Aid* root, v1::Aid* child) {
    char tmpl[] = "/tmp/tractor-log-XXXXXX";
    const int fd = mkstemp(tmpl);
    fflush(stderr);
    const int saved = dup(2);
    dup2(fd, 2);  // the children inherit it
    OpenRootActor({.loglevel = level}, [&] {
      *root = CurrentActor();
      OpenNursery([&](ActorNursery& an) {
        Portal p = an.StartActor("child", {.enable_modules = {"log"}});
        *child = p.aid();
        EXPECT_EQ(p.Run("log:echo", 5).AsInt(), 5);
        an.Cancel();
      });
    });
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    std::ifstream f(tmpl);
    std::stringstream ss;
    ss << f.rdbuf();
    unlink(tmpl);
    return ss.str();
  }
};

std::string Tag(const v1::Aid& aid) {
  return absl::StrCat(aid.name(), "[", aid.uuid().substr(0, 8), "] ");
}

TEST_F(LogTest, CancelLevelShowsTheChildsCancellationAndNoRuntimeLines) {
  v1::Aid root, child;
  const std::string text = RunTree("cancel", &root, &child);
  // The child logs who cancelled it, under its own name and uuid.
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(child), "cancel: actor 'child' ",
                         child.uuid(), " cancelled by 'root' ", root.uuid())))
      << text;
  // The root logs which child its nursery cancels.
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(root), "cancel: actor 'root' ", root.uuid(),
                         " cancels actor 'child' ", child.uuid())))
      << text;
  // No runtime (VLOG(1)) line: e.g. the child's registration.
  EXPECT_FALSE(absl::StrContains(text, "registered with")) << text;
  // Every glog line names its actor.
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.size() < 10 || !(line[0] == 'I' || line[0] == 'W' ||
                              line[0] == 'E') ||
        line[1] != '2') {
      continue;  // not a glog line
    }
    ++lines;
    EXPECT_TRUE(absl::StrContains(line, absl::StrCat("] ", Tag(root))) ||
                absl::StrContains(line, absl::StrCat("] ", Tag(child))))
        << line;
  }
  EXPECT_GE(lines, 2);
}

TEST_F(LogTest, RuntimeLevelAlsoShowsRuntimeLines) {
  v1::Aid root, child;
  const std::string text = RunTree("runtime", &root, &child);
  EXPECT_TRUE(absl::StrContains(text, "cancel: actor 'child'")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(child), "actor 'child' registered with")))
      << text;
}

TEST_F(LogTest, TransportLevelShowsTransportEvents) {
  v1::Aid root, child;
  const std::string text = RunTree("transport", &root, &child);
  // The link, seen from both ends.
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(root), "transport: link from child 'child' ",
                         child.uuid(), " up")))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(root), "transport: link from child 'child' ",
                         child.uuid(), " down: the child said bye")))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(child), "transport: link to parent 'root' ")))
      << text;
  // The call's connection and its dialog stream, opened and closed.
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("] ", Tag(root), "transport: connection to ")))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "transport: call stream 'log:echo' to actor 'child' opened"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "transport: call stream 'log:echo' to actor 'child' closed: OK"))
      << text;
}

TEST_F(LogTest, DebugLevelHidesTransportEvents) {
  v1::Aid root, child;
  const std::string text = RunTree("debug", &root, &child);
  EXPECT_FALSE(absl::StrContains(text, "transport: ")) << text;
  // The level is in effect: its cancellation lines are there.
  EXPECT_TRUE(absl::StrContains(text, "cancel: actor 'child'")) << text;
}

TEST_F(LogTest, InfoLevelHidesCancellationLines) {
  v1::Aid root, child;
  const std::string text = RunTree("info", &root, &child);
  EXPECT_FALSE(absl::StrContains(text, "cancel: ")) << text;
}

}  // namespace
}  // namespace tractor
