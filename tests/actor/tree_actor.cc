// SPDX-License-Identifier: AGPL-3.0-or-later
// A root actor whose child spawns a grandchild; prints "pids <root> <child>
// <grandchild>" and waits. Used by tree_test to kill or interrupt the root.
#include <unistd.h>

#include <cstdio>

#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

namespace {

int64_t Pid() { return getpid(); }
TRACTOR_EXPORT("tree:pid", Pid);

// Spawns a grandchild, reports its pid as the first value, then waits.
void Middle(tractor::Context& ctx) {
  tractor::OpenNursery([&](tractor::ActorNursery& an) {
    auto leaf = an.StartActor("leaf", {.enable_modules = {"tree"}});
    ctx.Started(leaf.aid().pid());
    tractor::Sleep(absl::Hours(1));
  });
}
TRACTOR_EXPORT("tree:middle", Middle);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    tractor::OpenRootActor({}, [] {
      tractor::OpenNursery([](tractor::ActorNursery& an) {
        auto mid = an.StartActor("middle", {.enable_modules = {"tree"}});
        mid.OpenContext("tree:middle", tractor::Payload(),
                        [&](tractor::Context&, const tractor::Payload& leaf) {
          std::printf("pids %d %lld %lld\n", getpid(),
                      static_cast<long long>(mid.aid().pid()),
                      static_cast<long long>(leaf.AsInt()));
          std::fflush(stdout);
          tractor::Sleep(absl::Hours(1));
        });
      });
    });
    return 0;
  });
}
