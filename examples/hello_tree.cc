// SPDX-License-Identifier: AGPL-3.0-or-later
// A root actor spawns two child actors, calls a function in each, prints the
// answers and cancels the children.
//
//   bazel run //examples:hello_tree
#include <cstdio>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

namespace {

// Runs in a child actor: says who answers.
std::string Greet(const std::string& who) {
  const auto& me = tractor::CurrentActor();
  return "hello " + who + ", from actor '" + me.name() + "' (pid " +
         std::to_string(me.pid()) + ")";
}
TRACTOR_EXPORT("hello:greet", Greet);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    tractor::OpenRootActor({}, [] {
      tractor::OpenNursery([](tractor::ActorNursery& an) {
        absl::Time t0 = absl::Now();
        auto alice = an.StartActor("alice", {.enable_modules = {"hello"}});
        std::string first = alice.Run<std::string>("hello:greet", std::string("root"));
        absl::Duration first_call = absl::Now() - t0;
        auto bob = an.StartActor("bob", {.enable_modules = {"hello"}});
        std::printf("%s\n", first.c_str());
        std::printf("%s\n",
                    bob.Run<std::string>("hello:greet", std::string("root")).c_str());
        std::printf("StartActor + first Run: %.1f ms\n",
                    absl::ToDoubleMilliseconds(first_call));
        an.Cancel();
      });
    });
    std::printf("all children cancelled and reaped\n");
    return 0;
  });
}
