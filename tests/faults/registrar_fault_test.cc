// SPDX-License-Identifier: AGPL-3.0-or-later
// Faults of a registrar, on one host: two registrar daemons, actors
// registered with both.
//
// - One registrar stopped with SIGSTOP (alive, silent): lookups over both
//   still answer within a bound, registration with the live one goes on,
//   nothing hangs; SIGCONT heals it within a refresh period.
// - A registrar SIGKILLed while a dialog streams, and while a nursery
//   spawns: the dialog and the spawns do not notice.
//
// Every wait is bounded; every figure is printed.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/discovery.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

using testing::Daemon;
using testing::Proc;
using testing::TempDir;

// Streams 0..n-1, pausing `pause_ms` every 10 items, then returns n.
int64_t Ticker(Context& ctx, int64_t n, int64_t pause_ms) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  for (int64_t i = 0; i < n; ++i) {
    stream.Send(i);
    if (i % 10 == 9) Sleep(absl::Milliseconds(pause_ms));
  }
  stream.Close();
  return n;
}
TRACTOR_EXPORT("regfault:ticker", Ticker, "n", "pause_ms");

int64_t Square(int64_t x) { return x * x; }
TRACTOR_EXPORT("regfault:square", Square);

const ActorOptions kOpts = {.enable_modules = {"regfault"}};
constexpr absl::Duration kLease = absl::Seconds(2);

// Whether `registrar` lists the actor `uuid`; false when it does not
// answer within 1 s.
bool Lists(const std::string& registrar, const std::string& uuid) {
  try {
    for (const auto& r : GetRegistry(registrar)) {
      if (r.aid().uuid() == uuid) return true;
    }
  } catch (const TransportClosed&) {
  }
  return false;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

class RegistrarFaultTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(90); }

  void SetUp() override {
    ProcessTest::SetUp();
    actor_bin_ = testing::RunfilePath("tests/discovery/discovery_actor");
    ASSERT_FALSE(actor_bin_.empty()) << "discovery_actor not in runfiles";
  }

  Daemon StartRegistrar(const std::string& listen) {
    std::string error;
    auto d = testing::StartRegistrar(
        listen, {"--lease_ms", absl::StrCat(absl::ToInt64Milliseconds(kLease))},
        &error);
    if (!d.has_value()) {
      ADD_FAILURE() << error;
      return Daemon{};
    }
    return *std::move(d);
  }

  // A separate root actor program `name` registered with `registry`;
  // returns its uuid ("" on failure).
  std::string Serve(const std::string& name, const std::vector<std::string>& registry,
                    std::unique_ptr<Proc>* proc) {
    *proc = Proc::Spawn({actor_bin_, "serve", "--name", name, "--registry",
                         absl::StrJoin(registry, ","), "--lease_ms",
                         absl::StrCat(absl::ToInt64Milliseconds(kLease))});
    auto line = (*proc)->ReadLineStartingWith("ready ", absl::Seconds(15));
    if (!line.has_value()) {
      ADD_FAILURE() << "discovery_actor '" << name << "' did not get ready";
      return "";
    }
    std::vector<std::string> parts = absl::StrSplit(*line, ' ');
    return parts.at(1);
  }

  std::string actor_bin_;
};

TEST_F(RegistrarFaultTest, AStoppedRegistrarDelaysNoLookupNorRegistrationAndHealsOnSigcont) {
  TempDir dir;
  Daemon r1 = StartRegistrar("127.0.0.1:0");
  Daemon r2 = StartRegistrar(dir.Sock("r2.sock"));
  ASSERT_TRUE(r1.proc && r2.proc);
  const std::vector<std::string> both = {r1.addrs[0], r2.addrs[0]};
  std::unique_ptr<Proc> worker_proc;
  const std::string worker = Serve("worker", both, &worker_proc);
  ASSERT_FALSE(worker.empty());
  bool resumed = false;

  OpenRootActor({.registry_addrs = both, .registry_lease = kLease}, [&] {
    ASSERT_TRUE(testing::WaitFor(
        [&] { return Lists(r1.addrs[0], worker) && Lists(r2.addrs[0], worker); },
        absl::Seconds(5)))
        << "the worker is not listed by both registrars";
    auto lookups = [&](int n) {
      std::vector<double> ms;
      for (int i = 0; i < n; ++i) {
        const absl::Time start = absl::Now();
        auto p = FindActor("worker", both);
        ms.push_back(Ms(absl::Now() - start));
        EXPECT_TRUE(p.has_value()) << "lookup " << i;
        if (p) {
          EXPECT_EQ(p->aid().uuid(), worker);
        }
      }
      std::sort(ms.begin(), ms.end());
      return std::pair{ms[ms.size() / 2], ms.back()};
    };
    lookups(3);  // warm the channels
    const auto [base_median, base_max] = lookups(21);

    ASSERT_EQ(kill(r1.proc->pid(), SIGSTOP), 0);
    const absl::Time stopped = absl::Now();
    struct Resume {
      pid_t pid;
      bool* done;
      ~Resume() {
        if (!*done) kill(pid, SIGCONT);
      }
    } resume{r1.proc->pid(), &resumed};

    // Lookups over both: the live one answers; the stopped one is not
    // waited for once an answer is in.
    const auto [stop_median, stop_max] = lookups(21);
    std::printf("FindActor over both registrars, median/max of 21: %.1f/%.1f ms "
                "both running; %.1f/%.1f ms with one stopped\n",
                base_median, base_max, stop_median, stop_max);
    EXPECT_LT(stop_max, 500) << "a lookup waited for the stopped registrar";
    // A name nobody has: both must answer; the stopped one is given up
    // after FindActor's timeout.
    const absl::Time none_start = absl::Now();
    EXPECT_FALSE(FindActor("nobody", both).has_value());
    const absl::Duration none = absl::Now() - none_start;
    std::printf("FindActor of a missing name with one registrar stopped: %.0f ms "
                "(timeout %.0f ms)\n",
                Ms(none), Ms(discovery::kFindTimeout));
    EXPECT_LT(none, discovery::kFindTimeout + absl::Milliseconds(700));

    // Registration with the live registrar goes on: a new child is listed
    // there at once, its boot not held up by the stopped one.
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      const absl::Time spawn_start = absl::Now();
      Portal late = an.StartActor("late", kOpts);
      const absl::Duration spawn = absl::Now() - spawn_start;
      EXPECT_TRUE(Lists(r2.addrs[0], late.aid().uuid()));
      std::printf("child spawned with one registrar stopped in %.0f ms, listed "
                  "by the live one\n",
                  Ms(spawn));
      // Scaled under the sanitizer configurations (TRACTOR_TIMEOUT_SCALE):
      // the bound is a plain build's spawn time.
      EXPECT_LT(spawn, discovery::ScaleTimeout(absl::Seconds(3)));
      EXPECT_EQ(late.Run("regfault:square", int64_t{9}).AsInt(), 81);

      // The worker's and the child's entries with the live registrar stay
      // refreshed over two leases (they would expire after one).
      const absl::Time watch_until = absl::Now() + 2 * kLease + absl::Milliseconds(500);
      int checks = 0;
      while (absl::Now() < watch_until) {
        ASSERT_TRUE(Lists(r2.addrs[0], worker))
            << "the worker's entry expired at the live registrar after "
            << absl::FormatDuration(absl::Now() - stopped);
        ASSERT_TRUE(Lists(r2.addrs[0], late.aid().uuid()));
        ++checks;
        Sleep(absl::Milliseconds(100));  // pacing of the checks
      }
      std::printf("worker and child stayed listed by the live registrar over "
                  "%.1f s with the other stopped (%d checks)\n",
                  absl::ToDoubleSeconds(absl::Now() - stopped), checks);

      // SIGCONT: the stopped registrar gets both registrations back within
      // a refresh period (entries it held expired while it was stopped).
      ASSERT_EQ(kill(r1.proc->pid(), SIGCONT), 0);
      resumed = true;
      const absl::Time cont = absl::Now();
      ASSERT_TRUE(testing::WaitFor(
          [&] {
            return Lists(r1.addrs[0], worker) &&
                   Lists(r1.addrs[0], late.aid().uuid());
          },
          absl::Seconds(10)))
          << "the resumed registrar did not get the registrations back in 10 s";
      const absl::Duration healed = absl::Now() - cont;
      std::printf("resumed registrar lists the worker and the child %.0f ms "
                  "after SIGCONT (lease %.0f ms)\n",
                  Ms(healed), Ms(kLease));
      EXPECT_LT(healed, kLease);
    });
  });
  worker_proc->Signal(SIGINT);
  EXPECT_TRUE(worker_proc->Wait(absl::Seconds(10)).has_value());
  for (Proc* p : {r1.proc.get(), r2.proc.get()}) {
    p->Signal(SIGINT);
    EXPECT_TRUE(p->Wait(absl::Seconds(10)).has_value());
  }
}

TEST_F(RegistrarFaultTest, ARegistrarKilledMidStreamAndMidSpawnGoesUnnoticed) {
  TempDir dir;
  Daemon reg = StartRegistrar(dir.Sock("reg.sock"));
  ASSERT_TRUE(reg.proc);
  OpenRootActor({.registry_addrs = reg.addrs, .registry_lease = kLease,
                 .single_task = false},
                [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal streamer = an.StartActor("streamer", kOpts);
      constexpr int64_t kN = 300;
      int64_t next = 0;
      std::atomic<int64_t> spawned{0};
      absl::Duration spawns_took;
      const Payload result = streamer.OpenContext(
          "regfault:ticker", Payload{{"n", kN}, {"pause_ms", 10}},
          [&](Context& ctx, const Payload&) {
            auto stream = ctx.OpenStream();
            while (auto item = stream.Receive()) {
              ASSERT_EQ(item->AsInt(), next) << "an item was lost or repeated";
              ++next;
              if (next != 100) continue;
              // Mid-stream and mid-spawn: four children start while the
              // registrar they register with dies under them.
              const absl::Time t0 = absl::Now();
              TaskGroup::Open([&](TaskGroup& tg) {
                for (int i = 0; i < 4; ++i) {
                  tg.Spawn([&, i] {
                    Portal c = an.StartActor(absl::StrCat("spawned", i), kOpts);
                    EXPECT_EQ(c.Run("regfault:square", int64_t{i}).AsInt(), i * i);
                    ++spawned;
                  });
                }
                tg.Spawn([&] {
                  reg.proc->Signal(SIGKILL);
                  reg.proc->Wait(absl::Seconds(5));
                });
              });
              spawns_took = absl::Now() - t0;
            }
          });
      EXPECT_EQ(result.AsInt(), kN);
      EXPECT_EQ(next, kN);
      EXPECT_EQ(spawned, 4);
      std::printf("registrar SIGKILLed mid-stream and mid-spawn: %lld of %lld "
                  "items in order, %lld of 4 children up in %.0f ms\n",
                  static_cast<long long>(next), static_cast<long long>(kN),
                  static_cast<long long>(spawned.load()), Ms(spawns_took));
      // Four instrumented children take longer to start: scaled under the
      // sanitizer configurations (TRACTOR_TIMEOUT_SCALE).
      EXPECT_LT(spawns_took, discovery::ScaleTimeout(absl::Seconds(10)));
    });
  });
}

}  // namespace
}  // namespace tractor
