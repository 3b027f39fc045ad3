// SPDX-License-Identifier: AGPL-3.0-or-later
// A root actor program for parent_fault_test: it starts one daemon child
// "leaf", prints "leaf <pid>", and waits. When its nursery fails it prints
// "failure <message>" and exits 1; it exits 0 on SIGINT. The test stops and
// resumes this root (SIGSTOP, SIGCONT) with no call in flight towards it.
#include <cstdio>
#include <string>

#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    int rc = 0;
    // While this root is stopped, only the leaf's own side of its link can
    // give up: its keepalive, a ping every hang_timeout / 2 with
    // hang_timeout to answer, at least 2 s + 4 s (discovery::LinkChannelArgs),
    // so the leaf exits about 6 s after the stop.
    tractor::OpenRootActor({.name = "fault-root", .hang_timeout = absl::Seconds(4)}, [&] {
      try {
        tractor::OpenNursery([](tractor::ActorNursery& an) {
          tractor::Portal leaf = an.StartActor("leaf");
          std::printf("leaf %lld\n", static_cast<long long>(leaf.aid().pid()));
          std::fflush(stdout);
          tractor::Sleep(absl::Hours(1));
        });
      } catch (const tractor::ActorError& e) {
        std::printf("failure %s\n",
                    absl::StrReplaceAll(e.what(), {{"\n", " "}}).c_str());
        std::fflush(stdout);
        rc = 1;
      }
    });
    return rc;
  });
}
