// SPDX-License-Identifier: AGPL-3.0-or-later
// A root actor for the tractorctl and Python client tests. Configured by
// its environment (a test's command line stays free of runtime flags):
//
//   CTL_ACTOR_NAME  its name (default "ctl")
//   CTL_REGISTRY    registrar addresses, comma-separated (default: none,
//                   the root serves its own registrar)
//   CTL_CHILDREN    names of child actors to spawn, comma-separated
//
// Serves the "demo" namespace (its children too), prints
// "ready <addr>" on stdout once its children are up, and runs until it is
// cancelled (exit 0) or its stdin closes.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

namespace {

tractor::Payload Echo(const tractor::Payload& p) { return p; }
TRACTOR_EXPORT("demo:echo", Echo);

std::string Fail(const std::string& why) { throw std::invalid_argument(why); }
TRACTOR_EXPORT("demo:fail", Fail);

std::string Repeat(int64_t count, const std::string& label) {
  std::string out;
  for (int64_t i = 0; i < count; ++i) out += label;
  return out;
}
TRACTOR_EXPORT("demo:repeat", Repeat, "count", "label");

// Sleeps (cancellably) for `seconds`, then returns them.
double Nap(double seconds) {
  tractor::Sleep(absl::Seconds(seconds));
  return seconds;
}
TRACTOR_EXPORT("demo:nap", Nap);

// Started(n), then every item doubled until the caller closes its side;
// returns how many items came.
int64_t Doubler(tractor::Context& ctx, int64_t n) {
  ctx.Started(n);
  auto stream = ctx.OpenStream();
  int64_t count = 0;
  for (const auto& v : stream) {
    stream.Send(v.AsDouble() * 2);
    ++count;
  }
  return count;
}
TRACTOR_EXPORT("demo:doubler", Doubler);

// Started(null), opens its stream and reads nothing for `seconds`: the
// caller's items queue up (and overrun a small queue).
double Hold(tractor::Context& ctx, double seconds) {
  ctx.Started(nullptr);
  auto stream = ctx.OpenStream();
  tractor::Sleep(absl::Seconds(seconds));
  return seconds;
}
TRACTOR_EXPORT("demo:hold", Hold);

std::string Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

std::vector<std::string> EnvList(const char* name) {
  return absl::StrSplit(Env(name, ""), ',', absl::SkipEmpty());
}

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    tractor::RootOptions options;
    options.name = Env("CTL_ACTOR_NAME", "ctl");
    options.enable_modules = {"demo"};
    options.registry_addrs = EnvList("CTL_REGISTRY");
    tractor::OpenRootActor(options, [] {
      tractor::OpenNursery([](tractor::ActorNursery& an) {
        for (const std::string& child : EnvList("CTL_CHILDREN")) {
          an.StartActor(child, {.enable_modules = {"demo"}});
        }
        std::printf("ready %s\n", tractor::AcceptAddrs().at(0).c_str());
        std::fflush(stdout);
        std::thread([] {
          char buf[64];
          while (read(0, buf, sizeof buf) > 0) {
          }
          _exit(0);
        }).detach();
        for (;;) tractor::Sleep(absl::Hours(1));
      });
    });
    return 0;
  });
}
