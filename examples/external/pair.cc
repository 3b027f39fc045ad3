// SPDX-License-Identifier: AGPL-3.0-or-later
// Two actors from a program outside tractor-cpp's repository: the root
// spawns a worker, calls its exported function and cancels it.
//
//   bazel run //:pair                   # root + worker, prints the answer
//   bazel-bin/pair --daemon --name=w1   # serves work:square until SIGTERM
#include <cstdint>
#include <cstdio>

#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

namespace {

int64_t Square(int64_t x) { return x * x; }
TRACTOR_EXPORT("work:square", Square);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    tractor::OpenRootActor({.name = "boss"}, [] {
      tractor::OpenNursery([](tractor::ActorNursery& an) {
        tractor::Portal worker =
            an.StartActor("worker", {.enable_modules = {"work"}});
        std::printf("worker answered %lld\n",
                    static_cast<long long>(
                        worker.Run<int64_t>("work:square", int64_t{7})));
        an.Cancel();
      });
    });
    return 0;
  });
}
