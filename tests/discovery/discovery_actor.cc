// SPDX-License-Identifier: AGPL-3.0-or-later
// A standalone actor program for multi-program discovery tests (a separate
// root actor process, possibly in another network namespace).
//
//   discovery_actor serve --name N [--registry A,B] [--bind A,B] [--lease_ms MS]
//     Runs a root actor serving "disc" and prints
//       ready <uuid> accept=<a,b> registry=<r,s> registrar=<0|1>
//     then serves until SIGINT (graceful: unregisters) or SIGKILL.
//   discovery_actor find --registry A --target N [--ticks] [--wait_gone]
//     Runs a root actor "caller" that finds N and prints
//       found <uuid> <ms>     or     notfound <ms>
//     With --ticks it then opens "disc:ticker" in N and prints "tick <i>" per
//     item until an error, which it prints as
//       error <TypeName> <ms since the last tick>: <message>
//     With --wait_gone it then polls the first registrar until N is no
//     longer listed and prints "gone <ms since the error>" (or "still-listed"
//     after 20 s).
// Exit status: 0 on success, 1 on an error, 2 on a bad command line.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/discovery.h"

namespace {

struct Args {
  std::string mode;
  std::string name = "served";
  std::string target;
  std::vector<std::string> registry;
  std::vector<std::string> bind;
  int lease_ms = 0;
  bool ticks = false;
  bool wait_gone = false;
};

std::vector<std::string> List(const char* v) {
  return absl::StrSplit(v, ',', absl::SkipEmpty());
}

bool ParseArgs(int argc, char** argv, Args* a) {
  if (argc < 2) return false;
  a->mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (f == "--name") a->name = next();
    else if (f == "--target") a->target = next();
    else if (f == "--registry") a->registry = List(next());
    else if (f == "--bind") a->bind = List(next());
    else if (f == "--lease_ms") a->lease_ms = atoi(next());
    else if (f == "--ticks") a->ticks = true;
    else if (f == "--wait_gone") a->wait_gone = true;
    else return false;
  }
  return a->mode == "serve" || (a->mode == "find" && !a->target.empty());
}

double MsSince(absl::Time t) { return absl::ToDoubleMilliseconds(absl::Now() - t); }

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&]() -> int {
    Args a;
    if (!ParseArgs(argc, argv, &a)) {
      fprintf(stderr, "usage: see tests/discovery/discovery_actor.cc\n");
      return 2;
    }
    setvbuf(stdout, nullptr, _IOLBF, 0);
    tractor::RootOptions opts;
    opts.enable_modules = {"disc"};
    opts.registry_addrs = a.registry;
    opts.bind_addrs = a.bind;
    opts.registry_lease = absl::Milliseconds(a.lease_ms);
    if (a.mode == "serve") {
      opts.name = a.name;
      tractor::OpenRootActor(opts, [] {
        printf("ready %s accept=%s registry=%s registrar=%d\n",
               tractor::CurrentActor().uuid().c_str(),
               absl::StrJoin(tractor::AcceptAddrs(), ",").c_str(),
               absl::StrJoin(tractor::RegistryAddrs(), ",").c_str(),
               tractor::IsRegistrar() ? 1 : 0);
        tractor::Sleep(absl::InfiniteDuration());
      });
      return 0;
    }
    opts.name = "caller";
    int rc = 0;
    tractor::OpenRootActor(opts, [&] {
      const absl::Time start = absl::Now();
      auto portal = tractor::FindActor(a.target);
      if (!portal) {
        printf("notfound %.1f\n", MsSince(start));
        rc = 1;
        return;
      }
      printf("found %s %.1f %s\n", portal->aid().uuid().c_str(), MsSince(start),
             portal->addr().c_str());
      if (!a.ticks) return;
      absl::Time last = absl::Now();
      try {
        portal->OpenContext(
            "disc:ticker", int64_t{100},
            [&](tractor::Context& ctx, const tractor::Payload&) {
              auto stream = ctx.OpenStream();
              while (auto item = stream.Receive()) {
                last = absl::Now();
                printf("tick %lld\n", static_cast<long long>(item->AsInt()));
              }
            });
        printf("error none %.1f: the stream ended\n", MsSince(last));
      } catch (const tractor::ActorError& e) {
        printf("error %s %.1f: %s\n", e.TypeName().c_str(), MsSince(last),
               e.what());
      }
      rc = 1;
      if (!a.wait_gone) return;
      const absl::Time failed = absl::Now();
      while (absl::Now() - failed < absl::Seconds(20)) {
        bool listed = false;
        try {
          for (const auto& r : tractor::GetRegistry()) {
            if (r.aid().name() == a.target) listed = true;
          }
        } catch (const tractor::TransportClosed&) {
          listed = true;  // cannot tell; keep polling
        }
        if (!listed) {
          printf("gone %.1f\n", MsSince(failed));
          return;
        }
        tractor::Sleep(absl::Milliseconds(50));
      }
      printf("still-listed\n");
    });
    return rc;
  });
}
