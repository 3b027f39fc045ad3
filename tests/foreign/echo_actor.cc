// A standalone actor for foreign-client tests: serves the "demo" namespace
// on 127.0.0.1:0, prints "ready <addr>" on stdout, and runs until SIGTERM or
// until its stdin closes.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/export.h"
#include "actor/runtime.h"

namespace {

tractor::Payload Echo(const tractor::Payload& p) { return p; }
TRACTOR_EXPORT("demo:echo", Echo);

double Add(const tractor::Payload& p) {
  return p["a"].AsDouble() + p["b"].AsDouble();
}
TRACTOR_EXPORT("demo:add", Add);

std::string Fail(const std::string& why) { throw std::invalid_argument(why); }
TRACTOR_EXPORT("demo:fail", Fail);

// Context endpoint: Started(n), then echoes every item doubled until the
// caller closes its stream, then returns how many it echoed.
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

std::string Secret() { return "hidden"; }
TRACTOR_EXPORT("secret:peek", Secret);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] {
    tractor::OpenRootActor({.name = "echo", .enable_modules = {"demo"}}, [] {
      std::printf("ready %s\n", tractor::AcceptAddrs().at(0).c_str());
      std::fflush(stdout);
      // Run until stdin closes (the test's end of the pipe).
      std::thread([] {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
        _exit(0);
      }).detach();
      for (;;) tractor::Sleep(absl::Hours(1));
    });
    return 0;
  });
}
