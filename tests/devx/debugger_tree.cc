// SPDX-License-Identifier: AGPL-3.0-or-later
// A debug-mode actor tree for the debugger tests (debugger_test.py), which
// run it under a pseudo-terminal and drive gdb through it. The first
// argument picks the scenario:
//
//   pause             child 'alice' calls tractor::Pause() in InspectMe
//   pause_grandchild  the same, one level further down
//   post_mortem       child 'alice' throws std::out_of_range three calls deep
//   race              children 'alice' and 'bob' pause at once
//   race_shielded     the same, each pause in a shielded scope (a waiter
//                     keeps waiting for the lock when the tree is cancelled)
//   sigint            as pause, then the root waits for SIGINT
//   root_error        the root's own block throws std::out_of_range three
//                     calls deep, with child 'alice' running
//   give_up FIFO      child 'alice' pauses; once a line is written to FIFO,
//                     child 'bob' pauses under a 3 s deadline (it gives up
//                     waiting for the lock), then, once alice continued,
//                     child 'carol' pauses
//   cancel FIFO       child 'alice' pauses; once a line is written to FIFO,
//                     the root cancels its nursery
//
// The root prints "root got N" for a pause's result, "root caught: ..." for
// the error that reached it, and "root interrupted" on KeyboardInterrupt.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"

namespace {

// The user function a pause stops in: gdb's `bt` shows it.
__attribute__((noinline)) int InspectMe(int x) {
  volatile int doubled = x * 2;
  tractor::Pause();
  return doubled + 1;
}
int PauseTask(int x) { return InspectMe(x); }
TRACTOR_EXPORT("dbg:pause", PauseTask);

// A pause that the actor's cancellation does not interrupt while it waits
// for the lock.
int PauseShielded(int x) {
  int result = 0;
  tractor::CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
  shield.Run([&] { result = InspectMe(x); });
  return result;
}
TRACTOR_EXPORT("dbg:pause_shielded", PauseShielded);

int PauseBelow(int x) {
  int result = 0;
  tractor::OpenNursery([&](tractor::ActorNursery& an) {
    result = an.RunInActor("grandchild", "dbg:pause", x).Result().AsInt();
  });
  return result;
}
TRACTOR_EXPORT("dbg:pause_below", PauseBelow);

// The throw site a post-mortem shows, three calls below the task.
__attribute__((noinline)) int LookUpSlot(int i) {
  std::vector<int> slots(3);
  return slots.at(static_cast<size_t>(i));
}
__attribute__((noinline)) int SumAround(int i) { return LookUpSlot(i) + 1; }
int Failing(int i) { return SumAround(i); }
TRACTOR_EXPORT("dbg:fail", Failing);

// Pauses unless 3 s pass first: returns x + 1 after a pause, -1 when the
// wait for the lock was given up.
int PauseOrGiveUp(int x) {
  int result = -1;
  tractor::MoveOnAfter(absl::Seconds(3), [&] { result = InspectMe(x); });
  return result;
}
TRACTOR_EXPORT("dbg:pause_or_give_up", PauseOrGiveUp);

int WaitLong(int x) {
  tractor::Sleep(absl::Seconds(120));
  return x;
}
TRACTOR_EXPORT("dbg:wait", WaitLong);

// The root's own throw site, three calls below its block.
__attribute__((noinline)) int RootLookUp(int i) {
  std::vector<int> slots(2);
  return slots.at(static_cast<size_t>(i));
}
__attribute__((noinline)) int RootSumAround(int i) { return RootLookUp(i) + 1; }

// Blocks until a line is written to the FIFO at `path`.
void AwaitGo(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  char c = 0;
  while (read(fd, &c, 1) == 1 && c != '\n') {
  }
  close(fd);
}

void Flush() {
  std::fflush(stdout);
  std::fflush(stderr);
}

int Run(const std::string& mode, const std::string& fifo) {
  tractor::RootOptions options;
  options.debug_mode = true;
  // The FIFO scenarios block a task in read(2): tasks run free.
  options.single_task = mode != "give_up" && mode != "cancel";
  tractor::OpenRootActor(options, [&] {
    tractor::OpenNursery([&](tractor::ActorNursery& an) {
      if (mode == "pause" || mode == "sigint") {
        tractor::Portal alice = an.RunInActor("alice", "dbg:pause", 20);
        std::printf("root got %d\n", static_cast<int>(alice.Result().AsInt()));
        Flush();
        if (mode == "sigint") {
          std::printf("root waits for SIGINT\n");
          Flush();
          tractor::Sleep(absl::Seconds(60));
          std::printf("root was not interrupted\n");
        }
      } else if (mode == "pause_grandchild") {
        tractor::Portal child = an.RunInActor("child", "dbg:pause_below", 20);
        std::printf("root got %d\n", static_cast<int>(child.Result().AsInt()));
      } else if (mode == "post_mortem") {
        an.RunInActor("alice", "dbg:fail", 5).Result();
      } else if (mode == "race" || mode == "race_shielded") {
        const std::string func =
            mode == "race" ? "dbg:pause" : "dbg:pause_shielded";
        tractor::Portal alice = an.RunInActor("alice", func, 1);
        tractor::Portal bob = an.RunInActor("bob", func, 2);
        const int a = static_cast<int>(alice.Result().AsInt());
        const int b = static_cast<int>(bob.Result().AsInt());
        std::printf("root got %d and %d\n", a, b);
      } else if (mode == "root_error") {
        tractor::Portal alice = an.RunInActor("alice", "dbg:wait", 1);
        std::printf("root got %d\n", RootSumAround(7));
      } else if (mode == "give_up") {
        tractor::Portal alice = an.RunInActor("alice", "dbg:pause", 20);
        tractor::TaskGroup::Open([&](tractor::TaskGroup& tg) {
          // A waiter on the result drives the call to alice.
          tg.Spawn([&] {
            const int got = static_cast<int>(alice.Result().AsInt());
            std::printf("root got %d\n", got);
            Flush();
          });
          AwaitGo(fifo);
          tractor::Portal bob =
              an.RunInActor("bob", "dbg:pause_or_give_up", 1);
          std::printf("bob returned %d\n",
                      static_cast<int>(bob.Result().AsInt()));
          Flush();
        });
        tractor::Portal carol = an.RunInActor("carol", "dbg:pause", 3);
        std::printf("root got %d\n", static_cast<int>(carol.Result().AsInt()));
      } else if (mode == "cancel") {
        tractor::Portal alice = an.RunInActor("alice", "dbg:pause", 20);
        tractor::TaskGroup::Open([&](tractor::TaskGroup& tg) {
          tg.Spawn([&] {
            try {
              alice.Result();
              std::printf("alice returned\n");
            } catch (const std::exception& e) {
              std::printf("alice failed: %s\n", e.what());
            }
            Flush();
          });
          AwaitGo(fifo);
          std::printf("root cancels its nursery\n");
          Flush();
          an.Cancel();
          std::printf("root cancelled its nursery\n");
          Flush();
        });
      } else {
        std::fprintf(stderr, "unknown scenario '%s'\n", mode.c_str());
      }
      Flush();
    });
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    if (argc != 2 && argc != 3) {
      std::fprintf(stderr, "usage: %s SCENARIO [FIFO]\n", argv[0]);
      return 2;
    }
    try {
      return Run(argv[1], argc == 3 ? argv[2] : "");
    } catch (const tractor::KeyboardInterrupt&) {
      std::printf("root interrupted\n");
      Flush();
      return 130;
    } catch (const std::exception& e) {
      std::printf("root caught: %s\n", e.what());
      Flush();
      return 1;
    }
  });
}
