// SPDX-License-Identifier: AGPL-3.0-or-later
// A debug-mode actor tree for the debugger tests (debugger_test.py), which
// run it under a pseudo-terminal and drive gdb through it. The first
// argument picks the scenario:
//
//   pause             child 'alice' calls tractor::Pause() in InspectMe
//   pause_grandchild  the same, one level further down
//   post_mortem       child 'alice' throws std::out_of_range three calls deep
//   race              children 'alice' and 'bob' pause at once
//   sigint            as pause, then the root waits for SIGINT
//
// The root prints "root got N" for a pause's result, "root caught: ..." for
// the error that reached it, and "root interrupted" on KeyboardInterrupt.
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

void Flush() {
  std::fflush(stdout);
  std::fflush(stderr);
}

int Run(const std::string& mode) {
  tractor::RootOptions options;
  options.debug_mode = true;
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
      } else if (mode == "race") {
        tractor::Portal alice = an.RunInActor("alice", "dbg:pause", 1);
        tractor::Portal bob = an.RunInActor("bob", "dbg:pause", 2);
        const int a = static_cast<int>(alice.Result().AsInt());
        const int b = static_cast<int>(bob.Result().AsInt());
        std::printf("root got %d and %d\n", a, b);
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
    if (argc != 2) {
      std::fprintf(stderr, "usage: %s SCENARIO\n", argv[0]);
      return 2;
    }
    try {
      return Run(argv[1]);
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
