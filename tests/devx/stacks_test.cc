// SPDX-License-Identifier: AGPL-3.0-or-later
// Stack dumps on demand: SIGUSR1 to an actor prints every thread's stack,
// labelled with the task it runs; DumpTreeStacks gathers them from every
// actor of the tree.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

__attribute__((noinline)) void ParkHere() {
  Sleep(absl::Hours(1));
  asm volatile("");  // keeps the frame (no tail call)
}
void Park() { ParkHere(); }
TRACTOR_EXPORT("stacks:park", Park);

// Starts a grandchild parked in ParkHere and waits on it.
void ParkLeaf() {
  OpenNursery([](ActorNursery& an) {
    Portal leaf = an.StartActor("leaf", {.enable_modules = {"stacks"}});
    leaf.Run("stacks:park");
  });
}
TRACTOR_EXPORT("stacks:park_leaf", ParkLeaf);

class StacksTest : public testing::ProcessTest {};

// Redirects this process's stderr (and so its future children's) to a
// file for the object's lifetime.
class StderrToFile {
 public:
  StderrToFile() {
    char tmpl[] = "/tmp/tractor-stacks-XXXXXX";
    fd_ = mkstemp(tmpl);
    path_ = tmpl;
    fflush(stderr);
    saved_ = dup(2);
    dup2(fd_, 2);
  }
  ~StderrToFile() {
    fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    close(fd_);
    unlink(path_.c_str());
  }
  std::string Read() const {
    std::ifstream f(path_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  int fd_ = -1;
  int saved_ = -1;
  std::string path_;
};

TEST_F(StacksTest, Sigusr1PrintsEveryThreadLabelledWithItsTask) {
  StderrToFile err;
  std::string text;
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      // The parked task runs while the block polls.
      Portal p = an.RunInActor("sleeper", "stacks:park");
      // Signal until the dump shows the parked task (it may not have
      // started yet when the first signal arrives). Both waits stretch with
      // TRACTOR_TIMEOUT_SCALE: a dump symbolizes every thread's stack,
      // seconds under the sanitizers.
      const absl::Time deadline =
          absl::Now() + discovery::ScaleTimeout(absl::Seconds(20));
      while (absl::Now() < deadline && !absl::StrContains(text, "ParkHere")) {
        kill(p.aid().pid(), SIGUSR1);
        const absl::Time wait_until =
            absl::Now() + discovery::ScaleTimeout(absl::Seconds(2));
        while (absl::Now() < wait_until) {
          text = err.Read();
          if (absl::StrContains(text, "ParkHere") &&
              absl::StrContains(text, "*** end of stacks")) {
            break;
          }
          Sleep(absl::Milliseconds(20));
        }
      }
      an.Cancel();
    });
  });
  EXPECT_TRUE(absl::StrContains(text, "stacks of every thread of actor "
                                      "'sleeper'"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "(task 'stacks:park' cid ")) << text;
  EXPECT_TRUE(absl::StrContains(text, "for 'root'")) << text;
  EXPECT_TRUE(absl::StrContains(text, "ParkHere")) << text;
}

TEST_F(StacksTest, DumpTreeStacksGathersEveryActorOfTheTree) {
  std::vector<ActorStacks> stacks;
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      an.RunInActor("middle", "stacks:park_leaf");
      // DumpTreeStacks blocks this task (the root's only one runs at a
      // time), so the middle actor gets its call only between two dumps;
      // each takes seconds under the sanitizers.
      const absl::Time deadline =
          absl::Now() + discovery::ScaleTimeout(absl::Seconds(20));
      for (;;) {
        stacks = DumpTreeStacks();
        if (stacks.size() == 3 && absl::StrContains(stacks[2].text, "ParkHere")) {
          break;
        }
        if (absl::Now() > deadline) break;
        Sleep(absl::Milliseconds(100));
      }
      an.Cancel();
    });
  });
  ASSERT_EQ(stacks.size(), 3u);
  EXPECT_EQ(stacks[0].aid.name(), "root");
  EXPECT_EQ(stacks[1].aid.name(), "middle");
  EXPECT_EQ(stacks[2].aid.name(), "leaf");
  for (const ActorStacks& s : stacks) EXPECT_EQ(s.error, "") << s.aid.name();
  // The middle actor waits in its task for the leaf; the leaf is parked.
  EXPECT_TRUE(absl::StrContains(stacks[1].text, "(task 'stacks:park_leaf'"))
      << stacks[1].text;
  EXPECT_TRUE(absl::StrContains(stacks[1].text, "ParkLeaf")) << stacks[1].text;
  EXPECT_TRUE(absl::StrContains(stacks[2].text, "(task 'stacks:park' cid "))
      << stacks[2].text;
  EXPECT_TRUE(absl::StrContains(stacks[2].text, "for 'middle'"))
      << stacks[2].text;
  EXPECT_TRUE(absl::StrContains(stacks[2].text, "ParkHere")) << stacks[2].text;
  // The root's own stacks include the thread asking.
  EXPECT_TRUE(absl::StrContains(stacks[0].text, "DumpThreads"))
      << stacks[0].text;
}

}  // namespace
}  // namespace tractor
