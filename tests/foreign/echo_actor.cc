// SPDX-License-Identifier: AGPL-3.0-or-later
// A standalone actor for foreign-client tests: serves the "demo" namespace
// on 127.0.0.1:0, prints "ready <addr>" on stdout ("ready <addr> asan" when
// built with AddressSanitizer, "ready <addr> tsan" with ThreadSanitizer,
// whose allocators and shadow memory move RSS, which a test that reads RSS
// must account for), and runs until SIGTERM or until its stdin
// closes. `--max_tasks N` sets RootOptions::max_tasks.
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/export.h"
#include "actor/internal/thread_pool.h"
#include "actor/runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define ECHO_ACTOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ECHO_ACTOR_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define ECHO_ACTOR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ECHO_ACTOR_TSAN 1
#endif
#endif

namespace {

#ifdef ECHO_ACTOR_ASAN
constexpr char kBuild[] = " asan";
#elif defined(ECHO_ACTOR_TSAN)
constexpr char kBuild[] = " tsan";
#else
constexpr char kBuild[] = "";
#endif

tractor::Payload Echo(const tractor::Payload& p) { return p; }
TRACTOR_EXPORT("demo:echo", Echo);

double Add(const tractor::Payload& p) {
  return p["a"].AsDouble() + p["b"].AsDouble();
}
TRACTOR_EXPORT("demo:add", Add);

std::string Fail(const std::string& why) { throw std::invalid_argument(why); }
TRACTOR_EXPORT("demo:fail", Fail);

// Named parameters: a foreign client passes an object of them.
std::string Repeat(int64_t count, const std::string& label) {
  std::string out;
  for (int64_t i = 0; i < count; ++i) out += label;
  return out;
}
TRACTOR_EXPORT("demo:repeat", Repeat, "count", "label");

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

// demo:gate waits until demo:open_gate is called with the same key (or
// 10 s pass), then returns "opened" (or "timed out"): a client can tell what
// the callee sent while the function still ran.
std::mutex g_gates_mu;
std::set<std::string> g_open_gates;  // guarded by g_gates_mu

std::string Gate(const std::string& key) {
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < until) {
    {
      std::lock_guard<std::mutex> lk(g_gates_mu);
      if (g_open_gates.count(key)) return "opened";
    }
    tractor::Sleep(absl::Milliseconds(5));
  }
  return "timed out";
}
TRACTOR_EXPORT("demo:gate", Gate);

bool OpenGate(const std::string& key) {
  std::lock_guard<std::mutex> lk(g_gates_mu);
  return g_open_gates.insert(key).second;
}
TRACTOR_EXPORT("demo:open_gate", OpenGate);

// An `int` parameter: a number outside its range is a MsgTypeError.
int TwiceInt(int x) { return x * 2; }
TRACTOR_EXPORT("demo:twice_int", TwiceInt);

// A message parameter: an `Any` whose bytes do not parse as tractor.v1.Aid
// is a MsgTypeError.
std::string AidName(const tractor::v1::Aid& aid) { return aid.name(); }
TRACTOR_EXPORT("demo:aid_name", AidName);

// Sleeps (a checkpoint: a cancel ends it), then returns true.
bool SleepFor(double seconds) {
  tractor::Sleep(absl::Seconds(seconds));
  return true;
}
TRACTOR_EXPORT("demo:sleep", SleepFor);

std::string Secret() { return "hidden"; }
TRACTOR_EXPORT("secret:peek", Secret);

}  // namespace

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    // `echo_actor --max_tasks N` bounds its concurrent tasks (default 1024).
    size_t max_tasks = 0;
    if (argc == 3 && std::string(argv[1]) == "--max_tasks" &&
        absl::SimpleAtoi(argv[2], &max_tasks)) {
    } else if (argc != 1) {
      std::fprintf(stderr, "usage: echo_actor [--max_tasks N]\n");
      return 2;
    }
    tractor::OpenRootActor({.name = "echo", .enable_modules = {"demo"},
                            .max_tasks = max_tasks}, [] {
      std::printf("ready %s%s\n", tractor::AcceptAddrs().at(0).c_str(),
                  kBuild);
      std::fflush(stdout);
      // Run until stdin closes (the test's end of the pipe).
      std::thread([] {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
        // Leaves no finished pool thread unjoined (see thread_pool.h).
        tractor::internal::QuiescePoolForExit();
        _exit(0);
      }).detach();
      for (;;) tractor::Sleep(absl::Hours(1));
    });
    return 0;
  });
}
