// SPDX-License-Identifier: AGPL-3.0-or-later
// The storm: the root runs 20 actors, each in its own nursery inside a task
// that catches ActorFailure and respawns it under the same name; a
// producer/consumer dialog runs between every pair of neighbours (actor i
// streams numbered items to actor i+1), over and over; a random actor is
// SIGKILLed every 100 ms for 5 s (a seeded PRNG; TRACTOR_STORM_SEED replays
// a run). Then:
//
// - every dialog either delivered every item exactly once and in order, or
//   ended with a clear error (a tractor error type and a message), none
//   hung (each is bounded);
// - once the kills stop, every actor is back and a dialog between every
//   pair completes;
// - the registry lists exactly the live actors within one lease;
// - no process of this test is left: /proc holds no process carrying this
//   run's environment mark once the root has exited.
//
// Every wait is bounded; every figure is printed.
#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "discovery/registry_client.h"
#include "gtest/gtest.h"
#include "tests/faults/proc_scan.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// An item was lost, duplicated or reordered: what the storm must never see.
struct DeliveryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const bool kRegistered = [] {
  RegisterErrorType<DeliveryError>("DeliveryError");
  return true;
}();

// Consumer: checks that items 0..n-1 arrive exactly once and in order, and
// returns how many arrived.
int64_t Consume(Context& ctx, int64_t n) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  int64_t next = 0;
  for (const auto& v : stream) {
    const int64_t got = v.AsInt();
    if (got != next) {
      throw DeliveryError(
          absl::StrCat("item ", got, " arrived where item ", next, " was due"));
    }
    ++next;
  }
  if (next != n) {
    throw DeliveryError(absl::StrCat(next, " of ", n, " items arrived"));
  }
  return next;
}
TRACTOR_EXPORT("storm:consume", Consume);

// Producer: streams items 0..n-1 to the consumer at `addr` (the actor with
// `uuid`) and returns the count the consumer confirmed.
int64_t Produce(const std::string& addr, const std::string& uuid, int64_t n) {
  v1::Aid aid;
  aid.set_uuid(uuid);
  Portal consumer = Portal::Connect(addr, aid);
  const Payload got = consumer.OpenContext(
      "storm:consume", n, [&](Context& ctx, const Payload&) {
        auto stream = ctx.OpenStream();
        for (int64_t i = 0; i < n; ++i) stream.Send(i);
        stream.Close();
      });
  if (got.AsInt() != n) {
    throw DeliveryError(absl::StrCat("the consumer confirmed ", got.AsInt(),
                                     " of ", n, " items"));
  }
  return n;
}
TRACTOR_EXPORT("storm:produce", Produce, "addr", "uuid", "n");

constexpr int kActors = 20;
constexpr int64_t kItems = 100;
constexpr absl::Duration kKillEvery = absl::Milliseconds(100);
constexpr absl::Duration kStorm = absl::Seconds(5);
constexpr absl::Duration kLease = absl::Seconds(2);
// A dialog of 100 items takes a few ms; a dead peer on loopback is noticed
// at once (a reset). The longest measured on the loaded 2-core machine was
// 9.9 s (a respawn under way); 30 s is a hang, whatever the load (times
// TRACTOR_TIMEOUT_SCALE: a sanitized build runs several times slower; one
// took 37.6 s under TSan).
absl::Duration DialogBound() {
  return discovery::ScaleTimeout(absl::Seconds(30));
}
constexpr char kMarkVar[] = "TRACTOR_STORM_MARK";

std::string Name(int i) { return absl::StrCat("storm-", i); }

// The incarnation of each actor, shared by the root's tasks. A slot holds
// a portal from the actor's start until its nursery has seen it fail; an
// actor this test killed is not live, even while its slot still holds it.
class Slots {
 public:
  void Set(int i, Portal p) {
    absl::MutexLock lock(&mu_);
    slots_[i] = std::move(p);
  }
  void Clear(int i) {
    absl::MutexLock lock(&mu_);
    slots_[i] = Portal();
  }
  Portal Get(int i) {
    absl::MutexLock lock(&mu_);
    return slots_[i];
  }
  // Kills a random live actor with SIGKILL, drawing from `prng`. Returns
  // its name, "" when none is live, or the error of kill(2).
  std::string KillOne(std::mt19937& prng, bool* killed) {
    absl::MutexLock lock(&mu_);
    *killed = false;
    std::vector<int> live;
    for (int i = 0; i < kActors; ++i) {
      if (LiveLocked(i)) live.push_back(i);
    }
    if (live.empty()) return "";
    const v1::Aid& victim = slots_[live[prng() % live.size()]].aid();
    if (kill(victim.pid(), SIGKILL) != 0) {
      return absl::StrCat("kill ", victim.name(), " pid ", victim.pid(), ": ",
                          strerror(errno));
    }
    killed_.insert(victim.pid());
    *killed = true;
    return victim.name();
  }
  // Waits until every slot holds a live actor; false after `timeout`.
  bool AwaitAllLive(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(this, &Slots::AllLiveLocked),
                                timeout);
  }
  std::set<std::pair<std::string, std::string>> LiveSet() {
    absl::MutexLock lock(&mu_);
    std::set<std::pair<std::string, std::string>> out;
    for (int i = 0; i < kActors; ++i) {
      if (LiveLocked(i)) out.emplace(slots_[i].aid().name(), slots_[i].aid().uuid());
    }
    return out;
  }

 private:
  bool LiveLocked(int i) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return slots_[i].valid() && !killed_.count(slots_[i].aid().pid());
  }
  bool AllLiveLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (int i = 0; i < kActors; ++i) {
      if (!LiveLocked(i)) return false;
    }
    return true;
  }
  absl::Mutex mu_;
  Portal slots_[kActors] ABSL_GUARDED_BY(mu_);
  std::set<int64_t> killed_ ABSL_GUARDED_BY(mu_);
};

// How the dialogs ended.
class Tally {
 public:
  void Completed(absl::Duration took) {
    absl::MutexLock lock(&mu_);
    ++completed_;
    longest_ = std::max(longest_, took);
  }
  void Errored(const std::string& type, const std::string& message,
               absl::Duration took) {
    absl::MutexLock lock(&mu_);
    ++errored_;
    ++by_type_[type];
    longest_ = std::max(longest_, took);
    if (message.empty() || absl::StrContains(type, "DeliveryError") ||
        absl::StrContains(type, "TooSlowError") || type == "unknown") {
      bad_.push_back(absl::StrCat(type, ": ", message));
    }
  }
  int completed() {
    absl::MutexLock lock(&mu_);
    return completed_;
  }
  int errored() {
    absl::MutexLock lock(&mu_);
    return errored_;
  }
  std::vector<std::string> bad() {
    absl::MutexLock lock(&mu_);
    return bad_;
  }
  std::string Summary() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> parts;
    for (const auto& [type, n] : by_type_) parts.push_back(absl::StrCat(type, " x", n));
    return absl::StrCat(completed_, " completed, ", errored_, " ended with an error (",
                        absl::StrJoin(parts, ", "), "), longest ",
                        absl::FormatDuration(longest_));
  }

 private:
  absl::Mutex mu_;
  int completed_ ABSL_GUARDED_BY(mu_) = 0;
  int errored_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> by_type_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> bad_ ABSL_GUARDED_BY(mu_);
  absl::Duration longest_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

// Runs one dialog from actor `i` to actor `i + 1`, bounded; records how it
// ended. Returns true when it completed.
bool RunDialog(Slots& slots, Tally& tally, int i) {
  Portal producer = slots.Get(i);
  Portal consumer = slots.Get((i + 1) % kActors);
  if (!producer.valid() || !consumer.valid()) return false;
  const absl::Time start = absl::Now();
  try {
    int64_t confirmed = 0;
    FailAfter(DialogBound(), [&] {
      confirmed = producer
                      .Run("storm:produce",
                           Payload{{"addr", consumer.addr()},
                                   {"uuid", consumer.aid().uuid()},
                                   {"n", kItems}})
                      .AsInt();
    });
    if (confirmed != kItems) {
      tally.Errored("DeliveryError", absl::StrCat(confirmed, " confirmed"),
                    absl::Now() - start);
      return false;
    }
    tally.Completed(absl::Now() - start);
    return true;
  } catch (const RemoteActorError& e) {
    tally.Errored(absl::StrCat(e.TypeName(), "(", e.boxed_type(), ")"),
                  e.what(), absl::Now() - start);
  } catch (const ActorError& e) {
    tally.Errored(e.TypeName(), e.what(), absl::Now() - start);
  } catch (const std::exception& e) {
    tally.Errored("unknown", e.what(), absl::Now() - start);
  }
  return false;
}

class StormTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(150); }
};

TEST_F(StormTest, TwentyActorsUnderRandomKillsRespawnDeliverAndConverge) {
  uint32_t seed = std::random_device()();
  if (const char* s = std::getenv("TRACTOR_STORM_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(s, &seed)) << "TRACTOR_STORM_SEED=" << s;
  }
  std::printf("storm seed %u (TRACTOR_STORM_SEED=%u replays it)\n", seed, seed);
  // Every actor of this run inherits the mark; /proc tells them apart from
  // anything else on the machine, also once reparented.
  const std::string mark_value = absl::StrCat(getpid(), "-", seed);
  setenv(kMarkVar, mark_value.c_str(), 1);
  const std::string mark = absl::StrCat(kMarkVar, "=", mark_value);

  Slots slots;
  Tally storm_tally, final_tally;
  std::atomic<int> respawns{0}, kills{0}, ticks{0}, idle_ticks{0},
      boot_failures{0}, killed_failures{0}, gone_ticks{0};
  std::atomic<bool> storm_over{false};
  std::vector<std::string> failures_seen, kill_errors;
  absl::Mutex failures_mu;
  int peak_processes = 0;

  // 21 processes on 2 cores, shared: like the bench's tree, a 10 s hang
  // timeout, so that a child starved of CPU for 1.5 s is not taken for hung.
  OpenRootActor({.registry_lease = kLease,
                 .single_task = false,
                 .hang_timeout = absl::Seconds(10)},
                [&] {
    TaskGroup::Open([&](TaskGroup& actors) {
      // One task per actor: its own nursery, respawned after every failure.
      for (int i = 0; i < kActors; ++i) {
        actors.Spawn([&, i] {
          for (;;) {
            try {
              OpenNursery([&](ActorNursery& an) {
                slots.Set(i, an.StartActor(Name(i),
                                           {.enable_modules = {"storm"},
                                            .single_task = false,
                                            .spawn_timeout = absl::Seconds(30)}));
                Sleep(absl::Hours(1));  // until it fails or the test ends
              });
            } catch (const ActorFailure& e) {
              slots.Clear(i);
              ++respawns;
              if (absl::StrContains(e.what(), "signal 9")) ++killed_failures;
              absl::MutexLock lock(&failures_mu);
              if (failures_seen.size() < 3 ||
                  (!absl::StrContains(e.what(), "signal 9") &&
                   failures_seen.size() < 12)) {
                failures_seen.push_back(e.what());
              }
            } catch (const RuntimeFailure& e) {
              // It did not boot (on an overloaded machine, its link to
              // this process can time out): clear, and start it again.
              slots.Clear(i);
              ++boot_failures;
              absl::MutexLock lock(&failures_mu);
              failures_seen.push_back(e.what());
            }
          }
        });
      }
      // The storm and its checks; the actors' tasks are cancelled after it
      // on every path (an assertion returns from this lambda).
      [&] {
        const absl::Time boot = absl::Now();
        ASSERT_TRUE(slots.AwaitAllLive(absl::Seconds(60)))
            << "the 20 actors did not all start within 60 s";
        std::printf("20 actors up in %s\n",
                    absl::FormatDuration(absl::Now() - boot).c_str());

        TaskGroup::Open([&](TaskGroup& storm) {
          for (int i = 0; i < kActors; ++i) {
            storm.Spawn([&, i] {
              while (!storm_over) {
                if (!RunDialog(slots, storm_tally, i)) {
                  Sleep(absl::Milliseconds(20));  // a respawn in progress
                }
              }
            });
          }
          // The killer.
          std::mt19937 prng(seed);
          const absl::Time start = absl::Now();
          for (int k = 1; start + k * kKillEvery <= start + kStorm; ++k) {
            Sleep(start + k * kKillEvery - absl::Now());
            ++ticks;
            bool killed = false;
            const std::string what = slots.KillOne(prng, &killed);
            if (killed) {
              ++kills;
            } else if (what.empty()) {
              ++idle_ticks;  // every actor is down, being respawned
            } else {
              // It had exited already (its failure is on its way to its
              // nursery): no kill.
              ++gone_ticks;
              absl::MutexLock lock(&failures_mu);
              if (kill_errors.size() < 5) kill_errors.push_back(what);
            }
            if (k % 10 == 0) {
              peak_processes = std::max<int>(peak_processes,
                                             testing::MarkedProcesses(mark).size());
            }
          }
          storm_over = true;
        });
        const absl::Time kills_stopped = absl::Now();
        std::printf("kills: %d in %s (a tick every %s: %d ticks, %d found "
                    "every actor down, %d found its victim gone already), "
                    "respawns so far: %d\n",
                    kills.load(), absl::FormatDuration(kStorm).c_str(),
                    absl::FormatDuration(kKillEvery).c_str(), ticks.load(),
                    idle_ticks.load(), gone_ticks.load(), respawns.load());
        std::printf("dialogs during the storm: %s\n", storm_tally.Summary().c_str());
        {
          absl::MutexLock lock(&failures_mu);
          for (const auto& f : failures_seen) std::printf("  e.g. %s\n", f.c_str());
          for (const auto& f : kill_errors) std::printf("  kill failed: %s\n", f.c_str());
        }

        ASSERT_TRUE(slots.AwaitAllLive(absl::Seconds(30)))
            << "not every actor was respawned within 30 s of the last kill";
        const absl::Time all_live = absl::Now();
        std::printf("all 20 live again %s after the last kill; respawns: %d, "
                    "boots that failed and were retried: %d\n",
                    absl::FormatDuration(all_live - kills_stopped).c_str(),
                    respawns.load(), boot_failures.load());
        // Every kill is one ActorFailure, and one respawn: naming the signal,
        // unless the actor had exited already for another reason (a link
        // that broke on the overloaded machine: a clear error too, respawned
        // the same way, and the kill hit its zombie).
        EXPECT_LE(killed_failures.load(), kills.load());
        EXPECT_GE(respawns.load(), kills.load());
        std::printf("ActorFailures: %d for the kills, %d for other causes\n",
                    killed_failures.load(), respawns.load() - killed_failures.load());

        // The registry converges to the live set.
        const auto registrar = discovery::Address::Parse(RegistryAddrs().at(0));
        ASSERT_TRUE(registrar.ok()) << registrar.status();
        auto live = slots.LiveSet();
        std::set<std::pair<std::string, std::string>> listed;
        bool converged = false;
        // An actor that fails now (a link broken on the overloaded machine)
        // changes the live set: the lease counts from the last change.
        absl::Time live_since = std::max(kills_stopped, all_live);
        absl::Time deadline = live_since + kLease + absl::Seconds(5);
        while (absl::Now() < deadline) {
          std::vector<v1::Registration> regs;
          if (auto now_live = slots.LiveSet(); now_live != live) {
            live = std::move(now_live);
            live_since = absl::Now();
            deadline = std::max(deadline, live_since + kLease + absl::Seconds(5));
          }
          if (discovery::ListRegistrations(*registrar, &regs).ok()) {
            listed.clear();
            for (const auto& r : regs) {
              if (absl::StartsWith(r.aid().name(), "storm-")) {
                listed.emplace(r.aid().name(), r.aid().uuid());
              }
            }
            if (listed == live) {
              converged = true;
              break;
            }
          }
          Sleep(absl::Milliseconds(20));
        }
        const absl::Time converged_at = absl::Now();
        if (!converged) {
          for (const auto& [name, uuid] : listed) {
            if (!live.count({name, uuid})) {
              std::printf("  listed, not live: %s %s\n", name.c_str(), uuid.c_str());
            }
          }
          for (const auto& [name, uuid] : live) {
            if (!listed.count({name, uuid})) {
              std::printf("  live, not listed: %s %s\n", name.c_str(), uuid.c_str());
            }
          }
        }
        ASSERT_TRUE(converged) << "the registry lists " << listed.size()
                               << " storm actors, " << live.size() << " live";
        std::printf("registry = live set %s after the last kill, %s after all "
                    "were live (lease %s)\n",
                    absl::FormatDuration(converged_at - kills_stopped).c_str(),
                    absl::FormatDuration(converged_at - all_live).c_str(),
                    absl::FormatDuration(kLease).c_str());
        // Entries of killed actors expire within one lease of the last kill;
        // 0.5 s more for this loaded machine's scheduling and the poll.
        EXPECT_LE(converged_at - live_since, kLease + absl::Milliseconds(500));

        // The healed ring: a dialog between every pair completes.
        // (On the overloaded machine an actor may still fail and be
        // respawned: a pair whose dialog ended with an error tries again,
        // within 60 s.)
        std::atomic<int> pairs_done{0};
        TaskGroup::Open([&](TaskGroup& ring) {
          for (int i = 0; i < kActors; ++i) {
            ring.Spawn([&, i] {
              const absl::Time until = absl::Now() + absl::Seconds(60);
              while (absl::Now() < until) {
                if (RunDialog(slots, final_tally, i)) {
                  ++pairs_done;
                  return;
                }
                Sleep(absl::Milliseconds(50));  // a respawn in progress
              }
            });
          }
        });
        std::printf("dialogs after the storm: %s\n", final_tally.Summary().c_str());
        EXPECT_EQ(pairs_done.load(), kActors);
      }();
      actors.Cancel();
    });
  });

  std::printf("processes of this run at the storm's peak: %d\n", peak_processes);
  EXPECT_GT(storm_tally.completed(), 0);
  // A tick kills one live actor, unless all are down being respawned (a
  // respawn takes 1-3 s on a loaded 2-core machine, as long as 10-30
  // ticks).
  EXPECT_EQ(ticks.load(), kStorm / kKillEvery);
  EXPECT_EQ(kills.load() + idle_ticks.load() + gone_ticks.load(), ticks.load());
  EXPECT_GE(kills.load(), kActors / 2) << "fewer kills than half the actors";
  for (const auto& b : storm_tally.bad()) ADD_FAILURE() << "unclear or wrong end: " << b;
  for (const auto& b : final_tally.bad()) ADD_FAILURE() << "after the storm: " << b;

  // No process of this run is left (orphans would carry the mark).
  std::vector<pid_t> left;
  const bool none = testing::WaitFor(
      [&] {
        left = testing::MarkedProcesses(mark);
        return left.empty();
      },
      absl::Seconds(10));
  EXPECT_TRUE(none) << left.size() << " processes of this run are left, e.g. pid "
                    << (left.empty() ? 0 : left[0]);
  for (pid_t pid : left) kill(pid, SIGKILL);
  std::printf("processes of this run left after the root exited: %zu\n",
              left.size());
  unsetenv(kMarkVar);
}

}  // namespace
}  // namespace tractor
