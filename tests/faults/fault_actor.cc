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
    // A long hang timeout: while this root is stopped, only the leaf's own
    // side of its link gives up (its keepalive, about 4 s).
    tractor::OpenRootActor({.name = "fault-root", .hang_timeout = absl::Seconds(60)}, [&] {
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
