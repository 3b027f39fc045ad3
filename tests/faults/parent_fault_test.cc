// SPDX-License-Identifier: AGPL-3.0-or-later
// Faults of a parent in the middle of a tree (root -> parent -> children):
//
// - SIGKILL of the parent while its child streams through it to the root:
//   the root's dialog ends with TransportClosed, its nursery fails naming
//   the parent, and the child is gone within a second.
// - SIGKILL of the parent while it spawns children: no child, booted or
//   half-booted, is left (an environment mark finds them in /proc).
// - A parent stopped (SIGSTOP) long enough for its child's link to break:
//   the child exits, and when the parent resumes its nursery reports the
//   child as failed (it used to take the exit for a daemon ending on
//   purpose, and went on waiting for a child that was gone).
//
// Every wait is bounded; every figure is printed.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/faults/proc_scan.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

using testing::ProcState;
using testing::Proc;

const ActorOptions kPf = {.enable_modules = {"pf"}};

// Streams 0, 1, 2, ... every 5 ms until cancelled.
void Ticker(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  for (int64_t i = 0;; ++i) {
    stream.Send(i);
    Sleep(absl::Milliseconds(5));
  }
}
TRACTOR_EXPORT("pf:ticker", Ticker);

// Spawns a child "leaf" running pf:ticker and relays its items to the
// caller; the first value is the leaf's pid.
void Relay(Context& ctx) {
  OpenNursery([&](ActorNursery& an) {
    Portal leaf = an.StartActor("leaf", kPf);
    ctx.Started(leaf.aid().pid());
    auto out = ctx.OpenStream();
    leaf.OpenContext("pf:ticker", Payload(), [&](Context& lctx, const Payload&) {
      auto in = lctx.OpenStream();
      while (auto item = in.Receive()) out.Send(*item);
    });
  });
}
TRACTOR_EXPORT("pf:relay", Relay);

// Spawns `n` children at once and streams each one's pid as it comes up,
// then waits.
void SpawnMany(Context& ctx, int64_t n) {
  ctx.Started();
  auto out = ctx.OpenStream();
  OpenNursery([&](ActorNursery& an) {
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int64_t i = 0; i < n; ++i) {
        tg.Spawn([&, i] {
          out.Send(an.StartActor(absl::StrCat("kid", i), kPf).aid().pid());
        });
      }
    });
    Sleep(absl::Hours(1));
  });
}
TRACTOR_EXPORT("pf:spawn_many", SpawnMany);

bool Gone(pid_t pid) {
  const char s = ProcState(pid);
  return s == 0 || s == 'Z' || s == 'X';
}

class ParentFaultTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(90); }

  // Marks this test's processes (inherited by every actor it starts).
  void SetUp() override {
    ProcessTest::SetUp();
    const std::string value = absl::StrCat(getpid(), "-", absl::ToUnixNanos(absl::Now()));
    setenv("TRACTOR_FAULT_MARK", value.c_str(), 1);
    mark_ = absl::StrCat("TRACTOR_FAULT_MARK=", value);
  }
  void TearDown() override {
    unsetenv("TRACTOR_FAULT_MARK");
    ProcessTest::TearDown();
  }
  std::string mark_;
};

TEST_F(ParentFaultTest, KillNineOfAParentMidStreamEndsTheDialogAndTakesItsChild) {
  pid_t leaf = 0;
  absl::Duration woke = absl::InfiniteDuration();
  absl::Duration leaf_gone = absl::InfiniteDuration();
  int64_t items = 0;
  OpenRootActor({}, [&] {
    try {
      OpenNursery([&](ActorNursery& an) {
        Portal parent = an.StartActor("parent", kPf);
        CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
        shield.Run([&] {
          absl::Time killed;
          try {
            parent.OpenContext("pf:relay", Payload(), [&](Context& ctx, const Payload& first) {
              leaf = static_cast<pid_t>(first.AsInt());
              auto in = ctx.OpenStream();
              while (auto item = in.Receive()) {
                ASSERT_EQ(item->AsInt(), items) << "an item was lost or repeated";
                if (++items == 50) {
                  ASSERT_EQ(kill(parent.aid().pid(), SIGKILL), 0);
                  killed = absl::Now();
                }
              }
            });
            ADD_FAILURE() << "the dialog ended without an error";
          } catch (const TransportClosed& e) {
            woke = absl::Now() - killed;
            EXPECT_TRUE(absl::StrContains(e.what(), "parent")) << e.what();
          }
          EXPECT_TRUE(testing::WaitFor([&] { return Gone(leaf); }, absl::Seconds(5)))
              << "the child of the killed parent is still running";
          leaf_gone = absl::Now() - killed;
        });
        Sleep(absl::Seconds(30));  // interrupted by the parent's failure
      });
      ADD_FAILURE() << "the nursery did not fail";
    } catch (const ActorFailure& e) {
      EXPECT_TRUE(absl::StrContains(e.what(), "'parent'")) << e.what();
      EXPECT_TRUE(absl::StrContains(e.what(), "signal 9")) << e.what();
    }
  });
  std::printf("parent SIGKILLed after %lld relayed items: the root's dialog "
              "woke with TransportClosed after %.1f ms, the child was gone "
              "after %.1f ms\n",
              static_cast<long long>(items), absl::ToDoubleMilliseconds(woke),
              absl::ToDoubleMilliseconds(leaf_gone));
  EXPECT_LT(woke, absl::Seconds(1));
  EXPECT_LT(leaf_gone, absl::Seconds(1));
  EXPECT_TRUE(testing::MarkedProcesses(mark_).empty());
}

TEST_F(ParentFaultTest, KillNineOfAParentMidSpawnLeavesNoChild) {
  constexpr int64_t kKids = 6;
  int64_t up_before_kill = 0;
  size_t marked_during = 0;
  absl::Duration all_gone = absl::InfiniteDuration();
  OpenRootActor({}, [&] {
    try {
      OpenNursery([&](ActorNursery& an) {
        Portal parent = an.StartActor("parent", kPf);
        CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
        shield.Run([&] {
          try {
            parent.OpenContext("pf:spawn_many", kKids, [&](Context& ctx, const Payload&) {
              auto in = ctx.OpenStream();
              // The first child is up; the others are still booting.
              ASSERT_TRUE(in.Receive().has_value());
              up_before_kill = 1;
              marked_during = testing::MarkedProcesses(mark_).size();
              ASSERT_EQ(kill(parent.aid().pid(), SIGKILL), 0);
              while (in.Receive()) ++up_before_kill;
            });
          } catch (const TransportClosed&) {
          }
        });
        const absl::Time killed = absl::Now();
        std::vector<pid_t> left;
        EXPECT_TRUE(testing::WaitFor(
            [&] {
              left.clear();
              for (pid_t pid : testing::MarkedProcesses(mark_)) {
                if (!Gone(pid)) left.push_back(pid);
              }
              return left.empty();
            },
            absl::Seconds(5)))
            << left.size() << " children of the killed parent are still running";
        all_gone = absl::Now() - killed;
        Sleep(absl::Seconds(30));  // interrupted by the parent's failure
      });
      ADD_FAILURE() << "the nursery did not fail";
    } catch (const ActorFailure& e) {
      EXPECT_TRUE(absl::StrContains(e.what(), "'parent'")) << e.what();
    }
  });
  std::printf("parent SIGKILLed mid-spawn (%lld of %lld children up, %zu "
              "processes of the test then): every child gone after %.1f ms\n",
              static_cast<long long>(up_before_kill), static_cast<long long>(kKids),
              marked_during, absl::ToDoubleMilliseconds(all_gone));
  EXPECT_GE(marked_during, 2u);  // the parent and at least its first child
  EXPECT_LT(all_gone, absl::Seconds(2));
}

TEST_F(ParentFaultTest, AChildWhoseLinkBrokeWhileItsParentWasStoppedIsReportedOnResume) {
  const std::string bin = testing::RunfilePath("tests/faults/fault_actor");
  ASSERT_FALSE(bin.empty());
  auto root = Proc::Spawn({bin});
  auto line = root->ReadLineStartingWith("leaf ", absl::Seconds(20));
  ASSERT_TRUE(line.has_value()) << "the fault actor did not start its leaf";
  int leaf = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line->substr(5), &leaf)) << *line;

  ASSERT_EQ(kill(root->pid(), SIGSTOP), 0);
  const absl::Time stopped = absl::Now();
  // The leaf's keepalive towards its stopped parent gives up (2 s + 4 s
  // with the root's 4 s hang timeout, scaled by TRACTOR_TIMEOUT_SCALE), and
  // the leaf exits: a zombie until the parent runs again.
  const bool exited = testing::WaitFor([&] { return Gone(leaf); },
                                       discovery::ScaleTimeout(absl::Seconds(15)));
  const absl::Duration leaf_exit = absl::Now() - stopped;
  kill(root->pid(), SIGCONT);
  ASSERT_TRUE(exited) << "the leaf did not exit while its parent was stopped";
  const absl::Time resumed = absl::Now();
  auto failure = root->ReadLineStartingWith("failure ", absl::Seconds(10));
  ASSERT_TRUE(failure.has_value())
      << "the resumed parent did not report its child, gone since "
      << absl::FormatDuration(absl::Now() - stopped - leaf_exit);
  std::printf("leaf exited %.0f ms after its parent was stopped; the resumed "
              "parent reported it after %.0f ms: %s\n",
              absl::ToDoubleMilliseconds(leaf_exit),
              absl::ToDoubleMilliseconds(absl::Now() - resumed), failure->c_str());
  EXPECT_TRUE(absl::StrContains(*failure, "'leaf'")) << *failure;
  EXPECT_TRUE(absl::StrContains(*failure, "link to this parent broke")) << *failure;
  EXPECT_LT(absl::Now() - resumed, discovery::ScaleTimeout(absl::Seconds(3)));
  auto status = root->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << *status;
}

}  // namespace
}  // namespace tractor
