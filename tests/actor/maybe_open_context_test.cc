// SPDX-License-Identifier: AGPL-3.0-or-later
// tractor's tests/test_resource_cache.py scenarios for MaybeOpenContext.
#include "actor/maybe_open_context.h"

#include <atomic>
#include <functional>
#include <stdexcept>
#include <vector>
#include <string>

#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// A resource that counts how often it was set up and torn down.
struct Counted {
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  ResourceFn Fn(const std::string& value) {
    return [this, value](const auto& serve) {
      ++opened;
      serve(Payload(value));
      ++closed;
    };
  }
};

// Polls `pred` until `timeout`; each step is a checkpoint that lets the
// actor's other tasks run.
bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() >= deadline) return false;
    Sleep(absl::Milliseconds(1));
  }
  return true;
}

class MaybeOpenContextTest : public testing::ProcessTest {};

TEST_F(MaybeOpenContextTest, TheFirstUserOpensAndTheOthersShareTheValue) {
  OpenRootActor({}, [] {
    Counted r;
    std::atomic<int> hits{0}, misses{0}, inside{0};
    TaskGroup::Open([&](TaskGroup& g) {
      for (int i = 0; i < 4; ++i) {
        g.Spawn([&] {
          MaybeOpenContext("test:shared", r.Fn("v1"),
                           [&](bool hit, const Payload& v) {
                             (hit ? hits : misses)++;
                             EXPECT_EQ(v.AsString(), "v1");
                             ++inside;
                             // Stay until every user is in.
                             EXPECT_TRUE(WaitUntil([&] { return inside == 4; },
                                                   absl::Seconds(5)));
                           });
        });
      }
    });
    EXPECT_EQ(misses, 1);
    EXPECT_EQ(hits, 3);
    EXPECT_EQ(r.opened, 1);
    EXPECT_EQ(r.closed, 1);  // torn down before the last user returned
  });
}

TEST_F(MaybeOpenContextTest, ReentryAfterTeardownIsAFreshMissAndKeysAreIsolated) {
  OpenRootActor({}, [] {
    Counted a, b;
    bool hit1 = true, hit2 = true, hit3 = true;
    MaybeOpenContext("test:a", a.Fn("a"), [&](bool hit, const Payload& v) {
      hit1 = hit;
      MaybeOpenContext("test:b", b.Fn("b"), [&](bool hit, const Payload& w) {
        hit2 = hit;
        EXPECT_EQ(v.AsString(), "a");
        EXPECT_EQ(w.AsString(), "b");
      });
    });
    MaybeOpenContext("test:a", a.Fn("a"), [&](bool hit, const Payload&) { hit3 = hit; });
    EXPECT_FALSE(hit1);
    EXPECT_FALSE(hit2);
    EXPECT_FALSE(hit3);
    EXPECT_EQ(a.opened, 2);
    EXPECT_EQ(a.closed, 2);
    EXPECT_EQ(b.opened, 1);
    EXPECT_EQ(b.closed, 1);
  });
}

TEST_F(MaybeOpenContextTest, AUserArrivingDuringTeardownWaitsAndGetsAFreshMiss) {
  OpenRootActor({}, [] {
    std::atomic<int> opened{0};
    std::atomic<bool> tearing_down{false};
    ResourceFn slow_close = [&](const auto& serve) {
      ++opened;
      serve(Payload(static_cast<int64_t>(opened.load())));
      tearing_down = true;
      Sleep(absl::Milliseconds(200));
      tearing_down = false;
    };
    bool late_hit = true;
    int64_t late_value = 0;
    TaskGroup::Open([&](TaskGroup& g) {
      g.Spawn([&] {
        MaybeOpenContext("test:slow_close", slow_close, [](bool, const Payload&) {});
      });
      g.Spawn([&] {
        ASSERT_TRUE(WaitUntil([&] { return tearing_down.load(); }, absl::Seconds(5)));
        MaybeOpenContext("test:slow_close", slow_close, [&](bool hit, const Payload& v) {
          EXPECT_FALSE(tearing_down);  // entered after the teardown ended
          late_hit = hit;
          late_value = v.AsInt();
        });
      });
    });
    EXPECT_FALSE(late_hit);
    EXPECT_EQ(late_value, 2);
    EXPECT_EQ(opened, 2);
  });
}

TEST_F(MaybeOpenContextTest, TheLastUserGetsTheTeardownError) {
  OpenRootActor({}, [] {
    ResourceFn failing_close = [](const auto& serve) {
      serve(Payload(1));
      throw std::runtime_error("close failed");
    };
    try {
      MaybeOpenContext("test:failing_close", failing_close, [](bool, const Payload&) {});
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "close failed");
    }
    // An error while opening reaches the user that waited for it.
    ResourceFn failing_open = [](const auto&) { throw std::logic_error("open failed"); };
    EXPECT_THROW(MaybeOpenContext("test:failing_open", failing_open,
                                  [](bool, const Payload&) { ADD_FAILURE(); }),
                 std::logic_error);
  });
}

TEST_F(MaybeOpenContextTest, CancellingTheFirstUserMidMissLeavesTheKeyUsable) {
  OpenRootActor({}, [] {
    std::atomic<int> torn_down{0};
    ResourceFn slow = [&](const auto& serve) {
      Sleep(absl::Milliseconds(300));  // a slow set-up; teardown waits for it
      serve(Payload("slow"));
      ++torn_down;
    };
    absl::Time t0 = absl::Now();
    EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(50), [&] {
      MaybeOpenContext("test:slow", slow, [](bool, const Payload&) {
        ADD_FAILURE() << "entered although cancelled";
      });
    }));
    // The next user gets a fresh miss; the abandoned set-up was torn down.
    bool hit = true;
    MaybeOpenContext("test:slow", slow, [&](bool h, const Payload& v) {
      hit = h;
      EXPECT_EQ(v.AsString(), "slow");
    });
    EXPECT_FALSE(hit);
    EXPECT_EQ(torn_down, 2);
    EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  });
}

}  // namespace
}  // namespace tractor

namespace tractor {
namespace {

// Two opening functions; each serves a value naming itself.
void OpenAlpha(const Payload&, const std::function<void(std::string&)>& serve) {
  std::string v = "alpha";
  serve(v);
}
void OpenBeta(const Payload&, const std::function<void(std::string&)>& serve) {
  std::string v = "beta";
  serve(v);
}

TEST_F(MaybeOpenContextTest, TwoFunctionsWithTheSameKeyNeverShare) {
  OpenRootActor({}, [] {
    MaybeOpenContext<std::string>(
        OpenAlpha, Payload(), "same", [](bool hit, std::string& a) {
          EXPECT_FALSE(hit);
          EXPECT_EQ(a, "alpha");
          MaybeOpenContext<std::string>(
              OpenBeta, Payload(), "same", [](bool hit, std::string& b) {
                EXPECT_FALSE(hit);
                EXPECT_EQ(b, "beta");
              });
          // The same function and key: a hit on the same object.
          MaybeOpenContext<std::string>(
              OpenAlpha, Payload(), "same", [&](bool hit, std::string& again) {
                EXPECT_TRUE(hit);
                EXPECT_EQ(&again, &a);
              });
        });
    // The Payload form: two different functions under one key.
    Counted x, y;
    MaybeOpenContext("test:one_key", x.Fn("x"), [&](bool hit, const Payload& v) {
      EXPECT_FALSE(hit);
      EXPECT_EQ(v.AsString(), "x");
      ResourceFn other = [&](const auto& serve) {
        ++y.opened;
        serve(Payload("y"));
      };
      MaybeOpenContext("test:one_key", other, [&](bool hit, const Payload& w) {
        EXPECT_FALSE(hit);
        EXPECT_EQ(w.AsString(), "y");
      });
    });
    EXPECT_EQ(x.opened, 1);
    EXPECT_EQ(y.opened, 1);
  });
}

// Serves the count of its opens, as an int shared by reference.
std::atomic<int> g_counter_opens{0};
void OpenCounter(const Payload&, const std::function<void(int&)>& serve) {
  int n = ++g_counter_opens;
  serve(n);
}

TEST_F(MaybeOpenContextTest, AKeyCallableOrTheArgumentsChooseTheResource) {
  OpenRootActor({}, [] {
    g_counter_opens = 0;
    auto by_host = [](const Payload& kw) { return kw["host"].AsString(); };
    MaybeOpenContext<int>(
        OpenCounter, Payload::Object({{"host", "h"}, {"try", 1}}), by_host,
        [&](bool hit, int& first) {
          EXPECT_FALSE(hit);
          MaybeOpenContext<int>(
              OpenCounter, Payload::Object({{"host", "h"}, {"try", 2}}), by_host,
              [&](bool hit, int& same) {
                EXPECT_TRUE(hit);
                EXPECT_EQ(&same, &first);
              });
          MaybeOpenContext<int>(
              OpenCounter, Payload::Object({{"host", "g"}, {"try", 1}}), by_host,
              [](bool hit, int&) { EXPECT_FALSE(hit); });
        });
    EXPECT_EQ(g_counter_opens, 2);
    // Without a key, the arguments are the key.
    MaybeOpenContext<int>(
        OpenCounter, Payload::Object({{"a", 1}}), {}, [&](bool hit, int&) {
          EXPECT_FALSE(hit);
          MaybeOpenContext<int>(OpenCounter, Payload::Object({{"a", 1}}), {},
                                [](bool hit, int&) { EXPECT_TRUE(hit); });
          MaybeOpenContext<int>(OpenCounter, Payload::Object({{"a", 2}}), {},
                                [](bool hit, int&) { EXPECT_FALSE(hit); });
        });
    EXPECT_EQ(g_counter_opens, 4);
  });
}

// A user type, not copyable, shared by reference.
struct Connection {
  explicit Connection(std::string host) : host(std::move(host)) {}
  Connection(const Connection&) = delete;
  std::string host;
  std::vector<std::string> log;
};

TEST_F(MaybeOpenContextTest, TheSharedValueMayBeAnyTypeAPortalOrAUserObject) {
  OpenRootActor({}, [] {
    auto open_conn = [](const Payload& kw,
                        const std::function<void(Connection&)>& serve) {
      Connection c(kw["host"].AsString());
      serve(c);
    };
    std::atomic<int> inside{0};
    TaskGroup::Open([&](TaskGroup& g) {
      for (int i = 0; i < 2; ++i) {
        g.Spawn([&, i] {
          MaybeOpenContext<Connection>(
              open_conn, Payload::Object({{"host", "db"}}), {},
              [&](bool, Connection& c) {
                EXPECT_EQ(c.host, "db");
                c.log.push_back("task " + std::to_string(i));
                ++inside;
                EXPECT_TRUE(WaitUntil([&] { return inside == 2; },
                                      absl::Seconds(5)));
                // Both tasks wrote into the one object.
                EXPECT_EQ(c.log.size(), 2u);
              });
        });
      }
    });
    // A portal (here, to this actor itself).
    auto open_portal = [](const Payload&,
                          const std::function<void(Portal&)>& serve) {
      Portal p = Portal::Connect(AcceptAddrs().front());
      serve(p);
    };
    MaybeOpenContext<Portal>(open_portal, Payload(), "self",
                             [](bool hit, Portal& p) {
                               EXPECT_FALSE(hit);
                               EXPECT_EQ(p.aid().uuid(), CurrentActor().uuid());
                             });
  });
}

// Set when the thread that ran `open` has exited (its thread-locals are
// destroyed as it ends).
std::atomic<bool> g_open_thread_exited{false};
struct MarksThreadExit {
  ~MarksThreadExit() { g_open_thread_exited = true; }
};

TEST_F(MaybeOpenContextTest, OpensTaskHasEndedWhenTheLastUserReturns) {
  OpenRootActor({}, [] {
    for (int round = 0; round < 20; ++round) {
      g_open_thread_exited = false;
      auto open = [](const Payload&, const std::function<void(int&)>& serve) {
        thread_local MarksThreadExit mark;
        (void)mark;
        int v = 1;
        serve(v);
      };
      MaybeOpenContext<int>(open, Payload(), "joined", [](bool, int&) {});
      ASSERT_TRUE(g_open_thread_exited)
          << "round " << round << ": open's thread was still running";
    }
  });
}

TEST_F(MaybeOpenContextTest, MaybeOpenNurseryUsesTheGivenGroupOrOpensOne) {
  OpenRootActor({}, [] {
    // Without a group: a new one, whose tasks end before it returns.
    std::atomic<bool> done{false};
    MaybeOpenNursery(nullptr, [&](TaskGroup& g) {
      g.Spawn([&] {
        Sleep(absl::Milliseconds(50));
        done = true;
      });
    });
    EXPECT_TRUE(done);
    // With a group: that group; its task outlives the call.
    std::atomic<bool> spawned_done{false};
    bool returned_first = false;
    TaskGroup::Open([&](TaskGroup& outer) {
      MaybeOpenNursery(&outer, [&](TaskGroup& g) {
        EXPECT_EQ(&g, &outer);
        g.Spawn([&] {
          Sleep(absl::Milliseconds(100));
          spawned_done = true;
        });
      });
      returned_first = !spawned_done;
    });
    EXPECT_TRUE(returned_first);
    EXPECT_TRUE(spawned_done);
  });
}

}  // namespace
}  // namespace tractor
