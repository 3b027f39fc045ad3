// SPDX-License-Identifier: AGPL-3.0-or-later
// A root actor program for socket_files_test: its root opens a nursery,
// starts one child, prints "uuids <root uuid> <child uuid>", cancels the
// child, and then returns from its block ("return", the default) or throws
// out of it ("throw"). With --daemon it is a host daemon (tractor::Main).
#include <cstdio>
#include <stdexcept>
#include <string>

#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&]() -> int {
    const std::string mode = argc > 1 ? argv[1] : "return";
    tractor::RootOptions root;
    root.name = "sockroot";
    tractor::OpenRootActor(root, [&] {
      std::string line = "uuids " + tractor::CurrentActor().uuid();
      tractor::OpenNursery([&](tractor::ActorNursery& an) {
        tractor::Portal kid = an.StartActor("sockkid");
        line += " " + kid.aid().uuid();
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        an.Cancel();
      });
      if (mode == "throw") throw std::runtime_error("the root's block failed");
    });
    return 0;
  });
}
