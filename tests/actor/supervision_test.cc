// SPDX-License-Identifier: AGPL-3.0-or-later
// One-cancels-all supervision, error relay and teardown across real actor
// processes (docs/behaviour.md#supervision and the scenarios of tractor's
// test_cancellation.py, test_spawning.py, test_reg_err_types.py and
// test_runtime.py).
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

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
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// A registered user error: re-thrown as itself across actors.
struct QuotaExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Never registered: arrives as a RemoteActorError.
struct Unregistered : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const bool kRegistered = [] {
  RegisterErrorType<QuotaExceeded>("QuotaExceeded");
  return true;
}();

void AssertFalse() { throw std::logic_error("assert False"); }
TRACTOR_EXPORT("sup:assert_false", AssertFalse);

void AssertFalseLater() {
  Sleep(absl::Milliseconds(500));
  throw std::logic_error("assert False");
}
TRACTOR_EXPORT("sup:assert_false_later", AssertFalseLater);

int64_t Square(int64_t x) { return x * x; }
TRACTOR_EXPORT("sup:square", Square);

void SleepForever() { Sleep(absl::Hours(1)); }
TRACTOR_EXPORT("sup:sleep_forever", SleepForever);

void RaiseQuota(const std::string& msg) { throw QuotaExceeded(msg); }
TRACTOR_EXPORT("sup:raise_quota", RaiseQuota);

void RaiseUnregistered(const std::string& msg) { throw Unregistered(msg); }
TRACTOR_EXPORT("sup:raise_unregistered", RaiseUnregistered);

std::string Loglevel() { return CurrentLogLevel(); }
TRACTOR_EXPORT("sup:loglevel", Loglevel);

// Recursive tree of RunInActor spawners (breadth 2) whose leaves fail.
void SpawnTree(int64_t depth) {
  if (depth == 0) throw std::logic_error("leaf failed");
  OpenNursery([&](ActorNursery& an) {
    for (int i = 0; i < 2; ++i) {
      an.RunInActor(absl::StrCat("spawner_", depth, "_", i), "sup:spawn_tree",
                    depth - 1);
    }
  });
}
TRACTOR_EXPORT("sup:spawn_tree", SpawnTree);

// Spawns a grandchild that fails; the error is relayed through this actor.
void RelayGrandchildError() {
  OpenNursery([](ActorNursery& an) {
    an.RunInActor("grandchild", "sup:assert_false");
  });
}
TRACTOR_EXPORT("sup:relay", RelayGrandchildError);

// Starts a daemon and a one-shot child, then fails with their pids in the
// error ("pids <daemon> <one-shot>"): its block cancels both, and this
// actor goes on once they said bye, reaping them before it exits.
void SpawnThenThrow() {
  OpenNursery([](ActorNursery& an) {
    const ActorOptions sup = {.enable_modules = {"sup"}};
    Portal daemon = an.StartActor("gc_daemon", sup);
    Portal one_shot =
        an.RunInActor("gc_one_shot", "sup:sleep_forever", {}, sup);
    throw std::logic_error(absl::StrCat("pids ", daemon.aid().pid(), " ",
                                        one_shot.aid().pid()));
  });
}
TRACTOR_EXPORT("sup:spawn_then_throw", SpawnThenThrow);

// Spins without any checkpoint for `seconds`.
void BusyWait(double seconds) {
  absl::Time end = absl::Now() + absl::Seconds(seconds);
  volatile int64_t spin = 0;
  while (absl::Now() < end) spin = spin + 1;
}
TRACTOR_EXPORT("sup:busy", BusyWait);

// Spawns a grandchild stuck in non-yielding code and waits on it.
void StuckGrandchild() {
  OpenNursery([](ActorNursery& an) {
    Portal gc = an.StartActor("stuck", {.enable_modules = {"sup"}});
    gc.Run("sup:busy", 3.0);
  });
}
TRACTOR_EXPORT("sup:stuck_grandchild", StuckGrandchild);

// Creates a file, registers its removal for actor exit, then fails or waits.
void TmpThenFail(const std::string& path) {
  std::ofstream(path) << "x";
  AddLifetimeCallback([path] { ::unlink(path.c_str()); });
  throw std::runtime_error("fail after making " + path);
}
TRACTOR_EXPORT("sup:tmp_then_fail", TmpThenFail);

void TmpThenSleep(const std::string& path) {
  std::ofstream(path) << "x";
  AddLifetimeCallback([path] { ::unlink(path.c_str()); });
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("sup:tmp_then_sleep", TmpThenSleep);

// Arms a barrier at this actor's exit: its lifetime callback (run once the
// actor was cancelled and its tasks ended) makes `<dir>/<pid>`, then waits
// until `n` such files exist (up to 10 s) and, if they all did, makes
// `<dir>/<pid>.all`. An actor whose siblings are asked to exit only after
// it exited never sees them all.
void ExitBarrier(const Payload& args) {
  const std::string dir = args["dir"].AsString();
  const int64_t n = args["n"].AsInt();
  AddLifetimeCallback([dir, n] {
    const std::string self = absl::StrCat(dir, "/", getpid());
    std::ofstream(self) << "x";
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    for (;;) {
      int64_t arrived = 0;
      if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
          const std::string name = e->d_name;
          if (name != "." && name != ".." &&
              name.find('.') == std::string::npos) {
            ++arrived;
          }
        }
        ::closedir(d);
      }
      if (arrived >= n) {
        std::ofstream(self + ".all") << "x";
        return;
      }
      if (absl::Now() > deadline) return;
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
}
TRACTOR_EXPORT("sup:exit_barrier", ExitBarrier);

// True when two tasks of this actor ran at the same time: each spins
// (without a checkpoint) until both are inside, or 300 ms pass.
bool TwoTasksOverlap() {
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  TaskGroup::Open([&](TaskGroup& tg) {
    for (int i = 0; i < 2; ++i) {
      tg.Spawn([&] {
        ++inside;
        absl::Time end = absl::Now() + absl::Milliseconds(300);
        while (absl::Now() < end) {
          if (inside.load() == 2) overlapped = true;
        }
        --inside;
      });
    }
  });
  return overlapped.load();
}
TRACTOR_EXPORT("sup:two_tasks_overlap", TwoTasksOverlap);

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class SupervisionTest : public testing::ProcessTest {};

const ActorOptions kSup = {.enable_modules = {"sup"}};

// A task cancels the nursery while other tasks are still starting children:
// every child that started is torn down and reaped, and a start that comes
// too late is refused, never left running.
TEST_F(SupervisionTest, CancelWhileChildrenAreStartingReapsEveryChild) {
  std::atomic<int> started{0};
  std::atomic<int> refused{0};
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      TaskGroup::Open([&](TaskGroup& tg) {
        for (int i = 0; i < 4; ++i) {
          tg.Spawn([&, i] {
            try {
              an.StartActor(absl::StrCat("starter", i), kSup);
              ++started;
            } catch (const Cancelled&) {
              ++refused;
              throw;
            } catch (const ActorError&) {
              ++refused;
            }
          });
        }
        tg.Spawn([&] { an.Cancel(); });
      });
    });
  });
  EXPECT_EQ(started + refused, 4);
  EXPECT_TRUE(testing::Descendants(getpid()).empty());
}

TEST_F(SupervisionTest, StartActorAfterCancelIsRefusedAndLeavesNoChild) {
  // A daemon started after Cancel would never be cancelled, and the block's
  // exit would wait for it forever.
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      an.Cancel();
      EXPECT_THROW(an.StartActor("late", kSup), UsageError);
    });
  });
  EXPECT_TRUE(testing::Descendants(getpid()).empty());
}

TEST_F(SupervisionTest, RemoteErrorFromRunInActorFailsTheNursery) {
  OpenRootActor({}, [] {
    try {
      OpenNursery([](ActorNursery& an) {
        an.RunInActor("errorer", "sup:assert_false");
      });
      ADD_FAILURE() << "no error";
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(e.boxed_type(), "std::logic_error");
      EXPECT_EQ(e.src().name(), "errorer");
    }
  });
}

TEST_F(SupervisionTest, UnexpectedArgumentsFailTheNurseryWithMsgTypeError) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
                   an.RunInActor("typed", "sup:square", "not an int");
                 }),
                 MsgTypeError);
  });
}

TEST_F(SupervisionTest, TwoFailingChildrenRaiseAnErrorGroup) {
  OpenRootActor({}, [] {
    try {
      OpenNursery([](ActorNursery& an) {
        an.RunInActor("e1", "sup:assert_false");
        an.RunInActor("e2", "sup:assert_false");
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorErrorGroup& g) {
      ASSERT_EQ(g.errors().size(), 2u);
      for (auto& e : g.errors()) {
        try {
          std::rethrow_exception(e);
        } catch (const RemoteActorError& r) {
          EXPECT_EQ(r.boxed_type(), "std::logic_error");
        }
      }
    }
  });
}

void RunManyFailing(const std::string& func) {
  // tractor's budget, for 25 actor processes started and torn down: CPU
  // work, stretched by whatever else the machine runs (CpuBoundBudget).
  const absl::Duration start_budget = testing::CpuBoundBudget(absl::Seconds(30));
  absl::Time t0 = absl::Now();
  OpenRootActor({}, [&] {
    try {
      OpenNursery([&](ActorNursery& an) {
        for (int i = 0; i < 25; ++i) {
          an.RunInActor(absl::StrCat("child_", i), func);
        }
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorErrorGroup& g) {
      EXPECT_EQ(g.errors().size(), 25u);
      for (auto& e : g.errors()) {
        try {
          std::rethrow_exception(e);
        } catch (const RemoteActorError& r) {
          EXPECT_EQ(r.boxed_type(), "std::logic_error");
        } catch (const std::exception& other) {
          ADD_FAILURE() << "not a RemoteActorError: "
                        << ::testing::internal::GetTypeName(typeid(other))
                        << ": " << other.what();
        } catch (...) {
          ADD_FAILURE() << "not a RemoteActorError";
        }
      }
    }
  });
  absl::Duration took = absl::Now() - t0;
  const absl::Duration budget =
      std::max(start_budget, testing::CpuBoundBudget(absl::Seconds(30)));
  printf("25 failing children (%s) to error group: %.0f ms (budget %.0f ms)\n",
         func.c_str(), absl::ToDoubleMilliseconds(took),
         absl::ToDoubleMilliseconds(budget));
  EXPECT_LT(took, budget);
}

TEST_F(SupervisionTest, TwentyFiveFailingChildrenRaiseAGroupOfTwentyFive) {
  RunManyFailing("sup:assert_false");
}

TEST_F(SupervisionTest, TwentyFiveChildrenFailingDuringSpawnRaiseAGroupOfTwentyFive) {
  RunManyFailing("sup:assert_false_later");
}

TEST_F(SupervisionTest, CancelSingleChildAfterACall) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("single", kSup);
      EXPECT_EQ(p.Run("sup:square", 12).AsInt(), 144);
      an.Cancel();
      EXPECT_TRUE(an.cancel_called());
    });
  });
}

TEST_F(SupervisionTest, ErrorRaisedInTheBlockPropagatesAndReapsTheChild) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
                   Portal p = an.StartActor("single", kSup);
                   EXPECT_EQ(p.Run("sup:square", 3).AsInt(), 9);
                   throw std::overflow_error("user interrupt");
                 }),
                 std::overflow_error);
  });
}

// tractor's test_some_cancels_all, six mixes: (daemons, one-shots, which
// fails).
struct Mix {
  int daemons;
  int one_shots;
  bool one_shots_fail;   // every one-shot fails
  bool daemon_call_fails;  // the block calls a failing function on a daemon
  size_t expected_errors;  // 1: a single RemoteActorError; N: a group
};

class SomeCancelsAllTest : public SupervisionTest,
                           public ::testing::WithParamInterface<Mix> {};

TEST_P(SomeCancelsAllTest, AnyFailureCancelsEveryOtherChild) {
  Mix mix = GetParam();
  OpenRootActor({}, [&] {
    try {
      OpenNursery([&](ActorNursery& an) {
        std::vector<Portal> daemons;
        for (int i = 0; i < mix.daemons; ++i) {
          daemons.push_back(an.StartActor(absl::StrCat("daemon_", i), kSup));
        }
        for (int i = 0; i < mix.one_shots; ++i) {
          an.RunInActor(absl::StrCat("oneshot_", i),
                        mix.one_shots_fail ? "sup:assert_false"
                                           : "sup:sleep_forever");
        }
        if (mix.daemon_call_fails) daemons.at(0).Run("sup:assert_false");
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorErrorGroup& g) {
      std::string got;
      for (auto& e : g.errors()) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          absl::StrAppend(&got, "\n  ", x.what());
        }
      }
      EXPECT_EQ(g.errors().size(), mix.expected_errors) << got;
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(mix.expected_errors, 1u);
      EXPECT_EQ(e.boxed_type(), "std::logic_error");
    }
  });
}

INSTANTIATE_TEST_SUITE_P(
    Mixes, SomeCancelsAllTest,
    ::testing::Values(Mix{1, 0, false, true, 1}, Mix{2, 0, false, true, 1},
                      Mix{1, 1, false, true, 1}, Mix{2, 2, false, true, 1},
                      Mix{0, 2, true, false, 2}, Mix{2, 2, true, false, 2}));

// `tractor_budget` is tractor's, for an idle machine. A depth-3 tree is 30
// actor processes started and torn down level by level: CPU work, so the
// budget is stretched by the machine's contention (CpuBoundBudget; under
// load ~13 on 2 cores the tree took 12.8 s against the unstretched 12 s).
void RunTree(int depth, absl::Duration tractor_budget) {
  const absl::Duration start_budget = testing::CpuBoundBudget(tractor_budget);
  absl::Time t0 = absl::Now();
  OpenRootActor({}, [&] {
    try {
      OpenNursery([&](ActorNursery& an) {
        for (int i = 0; i < 2; ++i) {
          an.RunInActor(absl::StrCat("spawner_top_", i), "sup:spawn_tree",
                        depth);
        }
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorErrorGroup& g) {
      ASSERT_EQ(g.errors().size(), 2u);
      for (auto& e : g.errors()) {
        try {
          std::rethrow_exception(e);
        } catch (const RemoteActorError& r) {
          // Each subtree's supervisor failed with its own group.
          EXPECT_EQ(r.boxed_type(), "ExceptionGroup");
          EXPECT_EQ(r.msgdata().children_size(), 2);
        }
      }
    }
  });
  absl::Duration took = absl::Now() - t0;
  const absl::Duration budget =
      std::max(start_budget, testing::CpuBoundBudget(tractor_budget));
  printf("depth-%d failing tree torn down: %.0f ms (budget %.0f ms)\n", depth,
         absl::ToDoubleMilliseconds(took), absl::ToDoubleMilliseconds(budget));
  EXPECT_LT(took, budget);
}

TEST_F(SupervisionTest, NestedMultiErrorsDepthOne) {
  RunTree(1, absl::Seconds(6));
}

TEST_F(SupervisionTest, NestedMultiErrorsDepthThree) {
  RunTree(3, absl::Seconds(12));
}

TEST_F(SupervisionTest, RelayedErrorKeepsItsOriginAndRecordsThePath) {
  OpenRootActor({}, [] {
    try {
      OpenNursery([](ActorNursery& an) { an.RunInActor("middle", "sup:relay"); });
      ADD_FAILURE() << "no error";
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(e.boxed_type(), "RemoteActorError");
      EXPECT_EQ(e.src_type(), "std::logic_error");
      EXPECT_EQ(e.src().name(), "grandchild");
      ASSERT_EQ(e.relay_path().size(), 2);
      EXPECT_EQ(e.relay_path()[0].name(), "grandchild");
      EXPECT_EQ(e.relay_path()[1].name(), "middle");
      EXPECT_EQ(e.relay_uid().name(), "middle");
      EXPECT_TRUE(e.IsInception());
    }
  });
}

// A child actor's block goes on once its cancelled children said bye, and
// reaps them before the actor exits: when the root's block ends, every
// descendant is gone. The test process is a subreaper meanwhile, so a
// grandchild whose parent exited without reaping it would be left here
// (as a zombie at least) instead of vanishing into init.
TEST_F(SupervisionTest, TheRootsBlockEndsWithEveryDescendantReaped) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  for (int round = 0; round < 3; ++round) {
    std::vector<pid_t> pids;
    OpenRootActor({}, [&] {
      try {
        OpenNursery([&](ActorNursery& an) {
          pids.push_back(an.StartActor("idle", kSup).aid().pid());
          pids.push_back(
              an.RunInActor("middle", "sup:spawn_then_throw", {}, kSup)
                  .aid()
                  .pid());
        });
        ADD_FAILURE() << "no error";
      } catch (const RemoteActorError& e) {
        EXPECT_EQ(e.src().name(), "middle");
        long daemon = 0, one_shot = 0;  // NOLINT(runtime/int): sscanf's %ld
        const char* at = strstr(e.what(), "pids ");
        ASSERT_NE(at, nullptr) << e.what();
        ASSERT_EQ(sscanf(at, "pids %ld %ld", &daemon, &one_shot), 2)
            << e.what();
        pids.push_back(static_cast<pid_t>(daemon));
        pids.push_back(static_cast<pid_t>(one_shot));
      }
      // At once, not eventually: the block's end is the guarantee.
      for (pid_t pid : pids) {
        EXPECT_EQ(kill(pid, 0), -1) << "pid " << pid << " is still there";
        EXPECT_EQ(errno, ESRCH);
      }
      EXPECT_TRUE(testing::Descendants(getpid()).empty());
    });
    ASSERT_EQ(pids.size(), 4u);
  }
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}

TEST_F(SupervisionTest, GrandchildStuckInSyncCodeIsStillReaped) {
  absl::Time t0 = absl::Now();
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
                   Portal child = an.StartActor("child", kSup);
                   TaskGroup::Open([&](TaskGroup& tg) {
                     tg.Spawn([&] { child.Run("sup:stuck_grandchild"); });
                     Sleep(absl::Seconds(1));
                     throw std::logic_error("root gives up");
                   });
                 }),
                 std::logic_error);
  });
  absl::Duration took = absl::Now() - t0;
  printf("stuck grandchild reaped after: %.0f ms\n",
         absl::ToDoubleMilliseconds(took));
  EXPECT_LT(took, discovery::ScaleTimeout(absl::Seconds(4)));
}

TEST_F(SupervisionTest, CancelWhileWaitingOnADaemonUsesTheGracefulPath) {
  absl::Time t0 = absl::Now();
  OpenRootActor({}, [] {
    EXPECT_THROW(TaskGroup::Open([](TaskGroup& tg) {
                   tg.Spawn([] {
                     OpenNursery([](ActorNursery& an) {
                       an.StartActor("daemon", kSup);
                       // Block exit now waits for the daemon.
                     });
                   });
                   Sleep(absl::Milliseconds(500));
                   throw std::runtime_error("interrupt");
                 }),
                 std::runtime_error);
  });
  absl::Duration took = absl::Now() - t0;
  EXPECT_LT(took, discovery::ScaleTimeout(absl::Milliseconds(2900)));
}

// Cancelling a nursery asks every child to exit before it waits for any
// of them: each child, on its way out, waits for all its siblings to be on
// their way out too (a barrier in its lifetime callback), which a teardown
// of one child after the other would never let happen.
TEST_F(SupervisionTest, CancelTearsTheChildrenDownConcurrently) {
  constexpr int kChildren = 6;
  char dir_template[] = "/tmp/tr.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  std::vector<pid_t> pids;
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      for (int i = 0; i < kChildren; ++i) {
        Portal p = an.StartActor(absl::StrCat("c", i), kSup);
        p.Run("sup:exit_barrier",
              Payload::Object({{"dir", dir}, {"n", int64_t{kChildren}}}));
        pids.push_back(p.aid().pid());
      }
      an.Cancel();
    });
  });
  ASSERT_EQ(pids.size(), kChildren);
  for (pid_t pid : pids) {
    const std::string self = absl::StrCat(dir, "/", pid);
    EXPECT_TRUE(Exists(self)) << "child " << pid << " never reached its exit";
    EXPECT_TRUE(Exists(self + ".all"))
        << "child " << pid << " exited before all its siblings were asked to";
    ::unlink(self.c_str());
    ::unlink((self + ".all").c_str());
  }
  ::rmdir(dir.c_str());
}

TEST_F(SupervisionTest, RegisteredUserErrorIsRethrownAsItself) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("quota", kSup);
      try {
        p.Run("sup:raise_quota", "over the limit");
        ADD_FAILURE() << "no error";
      } catch (const QuotaExceeded& e) {
        EXPECT_STREQ(e.what(), "over the limit");
      }
      try {
        p.Run("sup:raise_unregistered", "unknown kind");
        ADD_FAILURE() << "no error";
      } catch (const RemoteActorError& e) {
        EXPECT_NE(e.boxed_type().find("Unregistered"), std::string::npos);
        EXPECT_EQ(e.boxed_type(), e.src_type());
        EXPECT_EQ(e.remote_message(), "unknown kind");
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
        EXPECT_FALSE(e.traceback().empty());
      }
      an.Cancel();
    });
  });
}

TEST_F(SupervisionTest, LifetimeCallbacksRunWhenTheActorErrorsOrIsCancelled) {
  char dir_template[] = "/tmp/tr.XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::string failed = dir + "/failed", cancelled = dir + "/cancelled";
  OpenRootActor({}, [&] {
    EXPECT_THROW(OpenNursery([&](ActorNursery& an) {
                   an.RunInActor("fails", "sup:tmp_then_fail", failed);
                 }),
                 RemoteActorError);
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("sleeps", kSup);
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] {
          try {
            p.Run("sup:tmp_then_sleep", cancelled);
          } catch (const ContextCancelled&) {
          }
        });
        // Poll with runtime sleeps: they are checkpoints, so the calling
        // task runs meanwhile (one task at a time in this actor).
        absl::Time deadline = absl::Now() + absl::Seconds(5);
        while (!Exists(cancelled) && absl::Now() < deadline) {
          Sleep(absl::Milliseconds(5));
        }
        EXPECT_TRUE(Exists(cancelled)) << "the child never created " << cancelled;
        an.Cancel();
      });
    });
  });
  EXPECT_FALSE(Exists(failed));
  EXPECT_FALSE(Exists(cancelled));
  ::rmdir(dir.c_str());
}

TEST_F(SupervisionTest, LogLevelIsPropagatedToChildren) {
  OpenRootActor({.loglevel = "cancel"}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal inherits = an.StartActor("inherits", kSup);
      Portal own = an.StartActor(
          "own", {.enable_modules = {"sup"}, .loglevel = "debug"});
      EXPECT_EQ(inherits.Run("sup:loglevel").AsString(), "cancel");
      EXPECT_EQ(own.Run("sup:loglevel").AsString(), "debug");
      an.Cancel();
    });
  });
}

TEST_F(SupervisionTest, ActorsRunOneTaskAtATimeUnlessTheyOptIntoFreeThreads) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal single = an.StartActor("single", kSup);
      Portal free = an.StartActor(
          "free", {.enable_modules = {"sup"}, .single_task = false});
      EXPECT_FALSE(single.Run("sup:two_tasks_overlap").AsBool());
      EXPECT_TRUE(free.Run("sup:two_tasks_overlap").AsBool());
      an.Cancel();
    });
  });
}

TEST_F(SupervisionTest, ACrashedDaemonFailsItsNurseryAndCancelsSiblings) {
  OpenRootActor({}, [] {
    try {
      OpenNursery([](ActorNursery& an) {
        an.StartActor("sibling", kSup);
        Portal victim = an.StartActor("victim", kSup);
        kill(victim.aid().pid(), SIGKILL);
        Sleep(absl::Seconds(30));  // interrupted by the failure
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorFailure& e) {
      EXPECT_NE(std::string(e.what()).find("victim"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos);
    }
  });
}

TEST_F(SupervisionTest, AStoppedChildIsFoundUnresponsiveFailsItsNurseryAndIsReaped) {
  OpenRootActor({}, [] {
    pid_t victim_pid = -1;
    pid_t sibling_pid = -1;
    absl::Duration noticed = absl::InfiniteDuration();
    try {
      OpenNursery([&](ActorNursery& an) {
        sibling_pid = an.StartActor("sibling", kSup).aid().pid();
        victim_pid = an.StartActor("victim", kSup).aid().pid();
        ASSERT_EQ(kill(victim_pid, SIGSTOP), 0);
        const absl::Time stopped = absl::Now();
        try {
          Sleep(absl::Seconds(30));  // idle: interrupted by the failure
        } catch (const Cancelled&) {
          noticed = absl::Now() - stopped;
          throw;
        }
      });
      ADD_FAILURE() << "no error";
    } catch (const ActorFailure& e) {
      EXPECT_NE(std::string(e.what()).find("'victim'"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("unresponsive"), std::string::npos)
          << e.what();
    }
    std::printf("stopped child noticed after %s\n",
                absl::FormatDuration(noticed).c_str());
    // The default hang timeout promises 3 s; 0.3 s more for the scheduling
    // of this test's own threads on a loaded machine.
    EXPECT_LE(noticed, discovery::ScaleTimeout(absl::Milliseconds(3300)));
    // Both children are reaped: the stopped one too.
    for (pid_t pid : {victim_pid, sibling_pid}) {
      errno = 0;
      EXPECT_EQ(kill(pid, 0), -1) << "pid " << pid << " is still there";
      EXPECT_EQ(errno, ESRCH);
    }
  });
}

TEST_F(SupervisionTest, AChildBusyInUserCodeIsNeverTakenForHung) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal busy = an.StartActor("busy", kSup);
      Portal idle = an.StartActor("idle", kSup);
      // Ten seconds without a checkpoint, over three times the hang timeout.
      const absl::Time start = absl::Now();
      busy.Run("sup:busy", 10.0);
      EXPECT_GE(absl::Now() - start, absl::Seconds(10));
      EXPECT_EQ(idle.Run("sup:square", int64_t{7}).AsInt(), 49);
      an.Cancel();
    });
  });
}

}  // namespace
}  // namespace tractor
