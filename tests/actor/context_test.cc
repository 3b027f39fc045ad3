// SPDX-License-Identifier: AGPL-3.0-or-later
// Contexts and streams between real actor processes.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// Started(n+1), returns "yo".
std::string Simple(Context& ctx, int64_t n) {
  ctx.Started(n + 1);
  return "yo";
}
TRACTOR_EXPORT("ctx:simple", Simple);

// Started, then sleeps until cancelled.
void Sleeper(Context& ctx) {
  ctx.Started("sleeping");
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("ctx:sleeper", Sleeper);

// Echoes every item until the caller closes; returns the count.
int64_t Echoer(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  int64_t n = 0;
  for (const auto& v : stream) {
    stream.Send(v);
    ++n;
  }
  return n;
}
TRACTOR_EXPORT("ctx:echoer", Echoer);

void StartedTwice(Context& ctx) {
  ctx.Started(1);
  ctx.Started(2);
}
TRACTOR_EXPORT("ctx:started_twice", StartedTwice);

void StreamBeforeStarted(Context& ctx) { ctx.OpenStream(); }
TRACTOR_EXPORT("ctx:stream_before_started", StreamBeforeStarted);

void RaisesAfterStarted(Context& ctx) {
  ctx.Started();
  throw std::domain_error("child failed after started");
}
TRACTOR_EXPORT("ctx:raises", RaisesAfterStarted);

void CancelsItself(Context& ctx) {
  ctx.Cancel();
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("ctx:cancels_itself", CancelsItself);

// Streams `n` items as fast as it can, then returns n.
int64_t Producer(Context& ctx, int64_t n) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  for (int64_t i = 0; i < n; ++i) stream.Send(i);
  stream.Close();
  return n;
}
TRACTOR_EXPORT("ctx:producer", Producer);

int64_t Pid() { return getpid(); }
TRACTOR_EXPORT("ctx:pid", Pid);

// Sends `started` as its first value under a null|number spec, then returns
// `ret`.
Payload SpecChecked(Context& ctx, const Payload& args) {
  ctx.SetPayloadSpec(PayloadSpec::Of<double>() | PayloadSpec::Null());
  ctx.Started(args["started"]);
  return args["ret"];
}
TRACTOR_EXPORT("ctx:spec_checked", SpecChecked);

// Never opens its stream; waits to be cancelled.
void NeverReads(Context& ctx) {
  ctx.Started();
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("ctx:never_reads", NeverReads);

// Opens its stream without options (so it keeps the queue its caller asked
// for) and never reads it.
void OpensNeverReads(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("ctx:opens_never_reads", OpensNeverReads);

// Streams forever (blocked by backpressure once the caller stops reading);
// counts what it sent in a file named by the argument.
std::atomic<bool> g_infinite_running{false};
void Infinite(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  g_infinite_running = true;
  try {
    for (int64_t i = 0;; ++i) stream.Send(Payload::Raw(std::string(1024, 'x')));
  } catch (...) {
    g_infinite_running = false;
    throw;
  }
}
TRACTOR_EXPORT("ctx:infinite", Infinite);

// Streams 1 KiB items forever, counting them in `g_produced`.
std::atomic<int64_t> g_produced{0};
void CountingProducer(Context& ctx) {
  g_produced = 0;
  ctx.Started();
  auto stream = ctx.OpenStream();
  for (;;) {
    stream.Send(Payload::Raw(std::string(1024, 'x')));
    ++g_produced;
  }
}
TRACTOR_EXPORT("ctx:counting_producer", CountingProducer);

int64_t Produced() { return g_produced.load(); }
TRACTOR_EXPORT("ctx:produced", Produced);

bool InfiniteRunning() { return g_infinite_running.load(); }
TRACTOR_EXPORT("ctx:infinite_running", InfiniteRunning);

// Cancels the actor at `addr` on behalf of this actor.
bool CancelActorAt(const std::string& addr) {
  return Portal::Connect(addr).CancelActor();
}
TRACTOR_EXPORT("ctx:cancel_actor_at", CancelActorAt);

// Streams `n` messages of 64 KiB as fast as backpressure allows.
int64_t BigProducer(Context& ctx, int64_t n) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  std::string blob(64 << 10, 'x');
  for (int64_t i = 0; i < n; ++i) {
    stream.Send(Payload::Object({{"i", i}, {"blob", blob}}));
  }
  stream.Close();
  return n;
}
TRACTOR_EXPORT("ctx:big_producer", BigProducer);

// Reads a "VmHWM"/"VmRSS"-style field (kB) of this process.
int64_t StatusKb(const std::string& field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

int64_t PeakRssKb() { return StatusKb("VmHWM"); }
TRACTOR_EXPORT("ctx:peak_rss_kb", PeakRssKb);

// Streams "yo" every 10 ms from one task and answers "ping" with "pong"
// from another, on the same stream.
void ReqResp(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  TaskGroup::Open([&](TaskGroup& tg) {
    tg.Spawn([&] {
      for (;;) {
        stream.Send("yo");
        Sleep(absl::Milliseconds(10));
      }
    });
    for (const auto& v : stream) {
      if (v.AsString() == "ping") stream.Send("pong");
    }
    tg.Cancel();
  });
}
TRACTOR_EXPORT("ctx:reqresp", ReqResp);

// Opens its stream, closes it at once and returns.
std::string OpensAndCloses(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  stream.Close();
  return "done";
}
TRACTOR_EXPORT("ctx:opens_and_closes", OpensAndCloses);

// Started, then sleeps until cancelled, counting its cancellations.
std::atomic<int64_t> g_sleeper_cancels{0};
void CountedSleeper(Context& ctx) {
  ctx.Started();
  try {
    Sleep(absl::Hours(1));
  } catch (const Cancelled&) {
    ++g_sleeper_cancels;
    throw;
  }
}
TRACTOR_EXPORT("ctx:counted_sleeper", CountedSleeper);
int64_t SleeperCancels() { return g_sleeper_cancels.load(); }
TRACTOR_EXPORT("ctx:sleeper_cancels", SleeperCancels);

// The cid `CurrentContext()` gives in the endpoint and in a task it starts.
Payload CurrentCids(Context& ctx) {
  std::optional<Context> here = CurrentContext();
  std::string in_task;
  TaskGroup::Open([&](TaskGroup& tg) {
    tg.Spawn([&] {
      if (auto c = CurrentContext()) in_task = c->cid();
    });
  });
  ctx.Started();
  return Payload::List({here ? here->cid() : "", in_task, ctx.cid()});
}
TRACTOR_EXPORT("ctx:current_cids", CurrentCids);
std::string CurrentCidOfACall() {
  std::optional<Context> c = CurrentContext();
  return c ? c->cid() : "";
}
TRACTOR_EXPORT("ctx:current_cid_of_a_call", CurrentCidOfACall);

// What a `Receive` blocked in `ctx:receive_once` ended with.
const char* const kReceiveOutcomes[] = {"not started", "receiving", "received",
                                        "TransportClosed", "Cancelled",
                                        "another error"};
std::atomic<int> g_receive_outcome{0};
void SetReceiveOutcome(const std::string& outcome) {
  for (int i = 0; i < 6; ++i) {
    if (outcome == kReceiveOutcomes[i]) g_receive_outcome = i;
  }
}
void ReceiveOnce(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  SetReceiveOutcome("receiving");
  try {
    stream.Receive();
    SetReceiveOutcome("received");
  } catch (const TransportClosed&) {
    SetReceiveOutcome("TransportClosed");
    throw;
  } catch (const Cancelled&) {
    SetReceiveOutcome("Cancelled");
    throw;
  } catch (...) {
    SetReceiveOutcome("another error");
    throw;
  }
}
TRACTOR_EXPORT("ctx:receive_once", ReceiveOnce);
std::string ReceiveOutcome() { return kReceiveOutcomes[g_receive_outcome.load()]; }
TRACTOR_EXPORT("ctx:receive_outcome", ReceiveOutcome);
// Opens `ctx:receive_once` in the actor at `addr` and sleeps in the body.
void OpenReceiverAndSleep(const std::string& addr) {
  Portal::Connect(addr).OpenContext(
      "ctx:receive_once", Payload(), [](Context& ctx, const Payload&) {
        auto stream = ctx.OpenStream();
        Sleep(absl::Hours(1));
      });
}
TRACTOR_EXPORT("ctx:open_receiver_and_sleep", OpenReceiverAndSleep);

class ContextTest : public testing::ProcessTest {};

const ActorOptions kCtxNs = {.enable_modules = {"ctx"}};

TEST_F(ContextTest, StartedValueAndResultReachTheCaller) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    Payload first;
    Payload result = p.OpenContext(
        "ctx:simple", 10,
        [&](Context& ctx, const Payload& f) {
          first = f;
          EXPECT_TRUE(ctx.is_caller());
        });
    EXPECT_EQ(first.AsInt(), 11);
    EXPECT_EQ(result.AsString(), "yo");
  });
}

TEST_F(ContextTest, StreamEchoesBothWaysAndCloseEndsTheCalleeLoop) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    Payload result = p.OpenContext("ctx:echoer", Payload(),
                                   [](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream();
      for (int i = 0; i < 10; ++i) {
        stream.Send(i);
        auto got = stream.Receive();
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(got->AsInt(), i);
      }
      stream.Close();
      // The callee answers our Stop with its own: the stream ends.
      EXPECT_FALSE(stream.Receive().has_value());
      EXPECT_FALSE(stream.Receive().has_value());
    });
    EXPECT_EQ(result.AsInt(), 10);
  });
}

TEST_F(ContextTest, CallerCancelIsAbsorbedAndAcked) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    bool acked = false;
    v1::Aid canceller;
    absl::Time t0 = absl::Now();
    p.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
      ctx.Cancel();
      EXPECT_TRUE(ctx.cancel_called());
      EXPECT_TRUE(ctx.Result().IsNull());
      acked = ctx.cancel_acked();
      canceller = ctx.canceller();
    });
    EXPECT_LT(absl::Now() - t0, absl::Milliseconds(500));
    EXPECT_TRUE(acked);
    EXPECT_EQ(canceller.uuid(), CurrentActor().uuid());
    // The child is still serving.
    EXPECT_GT(p.Run("ctx:pid").AsInt(), 0);
  });
}

TEST_F(ContextTest, PortalCancelActorRaisesContextCancelledNamingTheCaller) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      try {
        p.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
          EXPECT_TRUE(p.CancelActor());
          ctx.Result();
        });
        ADD_FAILURE() << "no ContextCancelled";
      } catch (const ContextCancelled& e) {
        EXPECT_EQ(e.canceller().uuid(), CurrentActor().uuid());
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
      }
    });
  });
}

TEST_F(ContextTest, CalleeErrorInterruptsTheCallerBlock) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    absl::Time t0 = absl::Now();
    try {
      p.OpenContext("ctx:raises", Payload(), [](Context&, const Payload&) {
        Sleep(absl::Seconds(30));  // interrupted by the remote error
      });
      ADD_FAILURE() << "no error";
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(e.boxed_type(), "std::domain_error");
      EXPECT_EQ(e.remote_message(), "child failed after started");
    }
    EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  });
}

TEST_F(ContextTest, StartedTwiceAndStreamBeforeStartedAreErrors) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    for (const char* fn : {"ctx:started_twice", "ctx:stream_before_started"}) {
      try {
        p.OpenContext(fn, Payload(), [](Context& ctx, const Payload&) {
          ctx.Result();
        });
        ADD_FAILURE() << fn << ": no error";
      } catch (const RemoteActorError& e) {
        EXPECT_EQ(e.boxed_type(), "UsageError") << fn;
      }
    }
  });
}

TEST_F(ContextTest, CalleeSelfCancelReachesCallerNamingTheCallee) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    try {
      p.OpenContext("ctx:cancels_itself", Payload(),
                    [](Context&, const Payload&) {});
      ADD_FAILURE() << "no ContextCancelled";
    } catch (const ContextCancelled& e) {
      EXPECT_EQ(e.canceller().uuid(), p.aid().uuid());
      EXPECT_NE(e.remote_message().find("itself"), std::string::npos);
    }
  });
}

TEST_F(ContextTest, ErrorInCallerBlockCancelsTheRemoteTask) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    EXPECT_THROW(p.OpenContext("ctx:sleeper", Payload(),
                               [](Context&, const Payload&) {
                                 throw std::out_of_range("caller failed");
                               }),
                 std::out_of_range);
    EXPECT_GT(p.Run("ctx:pid").AsInt(), 0);
  });
}

TEST_F(ContextTest, BackpressureDeliversEveryItemInOrderToASlowConsumer) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    constexpr int64_t kN = 2000;
    Payload result = p.OpenContext("ctx:producer", kN,
                                   [&](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream({.msg_buffer_size = 4});
      int64_t expect = 0;
      for (const auto& v : stream) {
        ASSERT_EQ(v.AsInt(), expect);
        ++expect;
        if (expect % 500 == 0) Sleep(absl::Milliseconds(20));
      }
      EXPECT_EQ(expect, kN);
    });
    EXPECT_EQ(result.AsInt(), kN);
  });
}

TEST_F(ContextTest, KilledCalleeWakesTheCallerWithTransportClosedWithinOneSecond) {
  OpenRootActor({}, [] {
    // The nursery also sees its child die (ActorFailure); the dialog runs
    // shielded so that only the transport loss can wake it.
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
      shield.Run([&] {
        absl::Duration waited = absl::InfiniteDuration();
        try {
          p.OpenContext("ctx:echoer", Payload(), [&](Context& ctx, const Payload&) {
            auto stream = ctx.OpenStream();
            stream.Send(1);
            ASSERT_TRUE(stream.Receive().has_value());
            kill(p.aid().pid(), SIGKILL);
            absl::Time t0 = absl::Now();
            try {
              stream.Receive();
            } catch (...) {
              waited = absl::Now() - t0;
              throw;
            }
          });
          ADD_FAILURE() << "no TransportClosed";
        } catch (const TransportClosed& e) {
          EXPECT_NE(std::string(e.what()).find("child"), std::string::npos);
        }
        EXPECT_LT(waited, absl::Seconds(1));
      });
    }), ActorFailure);
  });
}

// A portal keeps a dialog built ahead for its next open: one built while its
// actor lived fails, once the actor died, with TransportClosed naming it.
TEST_F(ContextTest, APortalWhoseActorDiedFailsItsNextOpenWithTransportClosed) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      // Shielded: the nursery's cancel on the child's death must not be
      // what ends the open.
      CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
      shield.Run([&] {
        // The second open goes out on the dialog the first one built.
        for (int i = 0; i < 2; ++i) {
          EXPECT_EQ(p.OpenContext("ctx:simple", i,
                                  [](Context&, const Payload&) {})
                        .AsString(),
                    "yo");
        }
        kill(p.aid().pid(), SIGKILL);
        const absl::Time t0 = absl::Now();
        try {
          p.OpenContext("ctx:simple", 2, [](Context&, const Payload&) {
            ADD_FAILURE() << "a dead actor's task started";
          });
          ADD_FAILURE() << "no TransportClosed";
        } catch (const TransportClosed& e) {
          EXPECT_NE(std::string(e.what()).find("child"), std::string::npos)
              << e.what();
        }
        EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
      });
    }), ActorFailure);
  });
}

TEST_F(ContextTest, AThousandConcurrentDialogsBetweenTwoActorsComplete) {
  OpenRootActor({.single_task = false}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      std::atomic<int> ok{0};
      TaskGroup::Open([&](TaskGroup& tg) {
        for (int t = 0; t < 20; ++t) {
          tg.Spawn([&, t] {
            for (int i = 0; i < 50; ++i) {
              Payload r = p.OpenContext("ctx:simple", t * 100 + i,
                                        [](Context&, const Payload&) {});
              if (r.AsString() == "yo") ++ok;
            }
          });
        }
      });
      EXPECT_EQ(ok.load(), 1000);
      an.Cancel();
    });
  });
}

TEST_F(ContextTest, PayloadSpecRejectsABadStartedInTheCallee) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    // Valid: started 10, returns null.
    Payload ok = p.OpenContext(
        "ctx:spec_checked", Payload::Object({{"started", 10}, {"ret", nullptr}}),
        [](Context&, const Payload& first) { EXPECT_EQ(first.AsInt(), 10); });
    EXPECT_TRUE(ok.IsNull());
    // Invalid Started: the callee raises MsgTypeError before sending.
    try {
      p.OpenContext("ctx:spec_checked",
                    Payload::Object({{"started", "ten"}, {"ret", nullptr}}),
                    [](Context&, const Payload&) {});
      ADD_FAILURE() << "no error";
    } catch (const MsgTypeError& e) {
      EXPECT_EQ(e.expected_msg_type(), "Started");
      EXPECT_EQ(e.src_uid(), p.aid().uuid());
      EXPECT_NE(e.remote_message().find("does not match type-spec `Started.pld: number|null`"),
                std::string::npos) << e.remote_message();
    }
  });
}

TEST_F(ContextTest, PayloadSpecRejectsABadReturnInTheCaller) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    std::string cid;
    try {
      p.OpenContext(
          "ctx:spec_checked", Payload::Object({{"started", 1}, {"ret", "yo"}}),
          [&](Context& ctx, const Payload&) { cid = ctx.cid(); },
          {.pld_spec = PayloadSpec::Of<double>() | PayloadSpec::Null()});
      ADD_FAILURE() << "no error";
    } catch (const MsgTypeError& e) {
      EXPECT_EQ(e.expected_msg_type(), "Return");
      EXPECT_EQ(e.cid(), cid);
      EXPECT_EQ(e.src_uid(), CurrentActor().uuid());  // raised here
      EXPECT_NE(e.remote_message().find("\"yo\" has type string"),
                std::string::npos) << e.remote_message();
    }
  });
}

// The caller asks for kError on the callee's queue (callee_stream); the
// callee's own OpenStream() without options keeps that policy.
void ExpectStreamOverrunInTheSender(const std::string& callee) {
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      absl::Time t0 = absl::Now();
      try {
        p.OpenContext(
            callee, Payload(),
            [](Context& ctx, const Payload&) {
              auto stream = ctx.OpenStream();
              for (int i = 0; i < 65; ++i) stream.Send(i);
              Sleep(absl::Seconds(10));  // interrupted by the overrun error
            },
            {.callee_stream = {.msg_buffer_size = 64,
                               .overrun = OverrunPolicy::kError}});
        ADD_FAILURE() << "no StreamOverrun";
      } catch (const StreamOverrun& e) {
        EXPECT_EQ(e.boxed_type(), "StreamOverrun");
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
        EXPECT_EQ(e.sender().uuid(), CurrentActor().uuid());
      }
      EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
      // The callee's task was cancelled when the caller left the dialog.
      EXPECT_GT(p.Run("ctx:pid").AsInt(), 0);
      an.Cancel();
    });
  });
}

TEST_F(ContextTest, OverrunOfACalleeThatNeverReadsRaisesStreamOverrunInTheSender) {
  ExpectStreamOverrunInTheSender("ctx:never_reads");
}

TEST_F(ContextTest, CalleeOpenStreamWithoutOptionsKeepsTheCallersPolicy) {
  ExpectStreamOverrunInTheSender("ctx:opens_never_reads");
}

TEST_F(ContextTest, OverrunOfTheCallerCrashesTheFastCallee) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    try {
      // 64 KiB items: more than the HTTP/2 windows hold, so the producer
      // cannot finish before this side starts dropping.
      p.OpenContext("ctx:big_producer", 1000, [](Context& ctx, const Payload&) {
        ctx.OpenStream({.msg_buffer_size = 1, .overrun = OverrunPolicy::kError});
        Sleep(absl::Seconds(10));  // never reads
      });
      ADD_FAILURE() << "no error";
    } catch (const RemoteActorError& e) {
      // The producer's task died of our StreamOverrun and relayed it.
      EXPECT_EQ(e.boxed_type(), "RemoteActorError");
      EXPECT_EQ(e.src_type(), "StreamOverrun");
    }
  });
}

TEST_F(ContextTest, UnboundedPolicyTakesEverythingWithoutError) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    Payload n = p.OpenContext("ctx:producer", 500, [](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream({.msg_buffer_size = 1,
                                    .overrun = OverrunPolicy::kUnbounded});
      Sleep(absl::Milliseconds(100));  // let it all arrive unread
      int64_t count = 0;
      for (const auto& v : stream) EXPECT_EQ(v.AsInt(), count++);
      EXPECT_EQ(count, 500);
    });
    EXPECT_EQ(n.AsInt(), 500);
  });
}

TEST_F(ContextTest, CancelTaskArrivesWhileTheDataStreamIsFull) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    absl::Duration took;
    p.OpenContext("ctx:infinite", Payload(), [&](Context& ctx, const Payload&) {
      ctx.OpenStream({.msg_buffer_size = 4});
      // Let the producer fill our queue, the HTTP/2 windows and its own
      // outbox, so it blocks in Send.
      absl::Time until = absl::Now() + absl::Seconds(5);
      while (!p.Run("ctx:infinite_running").AsBool() && absl::Now() < until) {
        Sleep(absl::Milliseconds(5));
      }
      Sleep(absl::Milliseconds(200));
      absl::Time t0 = absl::Now();
      ctx.Cancel();
      EXPECT_TRUE(ctx.Result().IsNull());
      took = absl::Now() - t0;
      EXPECT_TRUE(ctx.cancel_acked());
    });
    EXPECT_LT(took, absl::Seconds(1));
    EXPECT_FALSE(p.Run("ctx:infinite_running").AsBool());
  });
}

TEST_F(ContextTest, CancelFromAThirdActorNamesTheCanceller) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal sleeper = an.StartActor("sleeper", kCtxNs);
      Portal canceller = an.StartActor("canceller", kCtxNs);
      try {
        sleeper.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
          EXPECT_TRUE(canceller.Run("ctx:cancel_actor_at", sleeper.addr()).AsBool());
          ctx.Result();
        });
        ADD_FAILURE() << "no ContextCancelled";
      } catch (const ContextCancelled& e) {
        EXPECT_EQ(e.canceller().name(), "canceller");
        EXPECT_EQ(e.canceller().uuid(), canceller.aid().uuid());
        EXPECT_EQ(e.src_uid(), sleeper.aid().uuid());
      }
      an.Cancel();
    });
  });
}

TEST_F(ContextTest, SlowConsumerKeepsTheProducersMemoryBounded) {
  OpenRootActor({}, [] {
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal p = an.StartActor("producer", kCtxNs);
      int64_t before_kb = p.Run("ctx:peak_rss_kb").AsInt();
      constexpr int64_t kN = 1500;  // 1500 x 64 KiB = 94 MiB if unbounded
      absl::Time t0 = absl::Now();
      p.OpenContext("ctx:big_producer", kN, [&](Context& ctx, const Payload&) {
        auto stream = ctx.OpenStream({.msg_buffer_size = 16});
        int64_t expect = 0;
        for (const auto& v : stream) {
          ASSERT_EQ(v["i"].AsInt(), expect++);
          Sleep(absl::Milliseconds(1));  // ~100x slower than the producer
        }
        EXPECT_EQ(expect, kN);
      });
      int64_t after_kb = p.Run("ctx:peak_rss_kb").AsInt();
      int64_t growth_kb = after_kb - before_kb;
      printf("slow consumer: %lld msgs of 64 KiB in %.0f ms; producer peak RSS "
             "%lld kB -> %lld kB (+%lld kB); root peak RSS %lld kB\n",
             static_cast<long long>(kN),
             absl::ToDoubleMilliseconds(absl::Now() - t0),
             static_cast<long long>(before_kb), static_cast<long long>(after_kb),
             static_cast<long long>(growth_kb),
             static_cast<long long>(StatusKb("VmHWM")));
      EXPECT_LT(growth_kb, 24 * 1024) << "producer memory grew by " << growth_kb << " kB";
    });
  });
}

TEST_F(ContextTest, RequestResponseOnTopOfAStreamFromTwoTasks) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    int pongs = 0, yos = 0;
    p.OpenContext("ctx:reqresp", Payload(), [&](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream();
      FailAfter(absl::Seconds(2), [&] {
        stream.Send("ping");
        while (pongs < 1 || yos < 3) {
          auto v = stream.Receive();
          ASSERT_TRUE(v.has_value());
          if (v->AsString() == "pong") ++pongs;
          if (v->AsString() == "yo") ++yos;
        }
      });
      stream.Close();
      // Drain what is still in flight until the callee's Stop.
      while (stream.Receive()) {
      }
    });
    EXPECT_GE(pongs, 1);
  });
}

TEST_F(ContextTest, CancelFromASiblingTaskIsAbsorbedAtExit) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    bool acked = false;
    p.OpenContext("ctx:echoer", Payload(), [&](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream();
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] {
          for (const auto& v : stream) (void)v;  // ends with ContextCancelled
        });
        stream.Send(1);
        ctx.Cancel();
      });
      ADD_FAILURE() << "the receiving task did not see the cancel";
    });
    // Reaching here means the ContextCancelled was absorbed.
    acked = true;
    EXPECT_TRUE(acked);
  });
}

// A sender blocked on a full stream (the callee never reads) while a sibling
// task cancels the context: the cancel is this side's, so it is absorbed at
// the block's exit, never raised as a transport error.
TEST_F(ContextTest, CancelFromASiblingWhileBlockedInSendIsAbsorbed) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    for (int round = 0; round < 6; ++round) {
      std::atomic<int64_t> sent{0};
      bool blocked = false;
      p.OpenContext("ctx:opens_never_reads", Payload(),
                    [&](Context& ctx, const Payload&) {
        auto stream = ctx.OpenStream();
        TaskGroup::Open([&](TaskGroup& tg) {
          tg.Spawn([&] {
            // Waits until the sender made no progress for 50 ms: it is
            // blocked on the full stream.
            const absl::Time deadline = absl::Now() + absl::Seconds(20);
            int64_t last = -1;
            while (absl::Now() < deadline) {
              const int64_t now = sent.load();
              if (now > 0 && now == last) {
                blocked = true;
                break;
              }
              last = now;
              Sleep(absl::Milliseconds(50));
            }
            ctx.Cancel();
          });
          for (;;) {
            stream.Send(Payload::Raw(std::string(1024, 'x')));
            ++sent;
          }
        });
        ADD_FAILURE() << "the sender was not interrupted";
      });
      EXPECT_TRUE(blocked) << "round " << round;
      EXPECT_GT(sent.load(), 0);
    }
  });
}

// Returns `count()` once it stayed the same for 100 ms (the sender is
// blocked), polling with a 20 s deadline.
int64_t WhenStalled(const std::function<int64_t()>& count) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  int64_t last = count();
  while (absl::Now() < deadline) {
    Sleep(absl::Milliseconds(100));
    const int64_t now = count();
    if (now == last) return now;
    last = now;
  }
  ADD_FAILURE() << "the sender never stalled";
  return last;
}

TEST_F(ContextTest, StrictBackpressureBoundsItemsInFlight) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    // Caller -> callee, whose 3-slot queue is never read.
    const auto sent_until_blocked = [&](bool strict) {
      std::atomic<int64_t> sent{0};
      int64_t stalled = -1;
      p.OpenContext(
          "ctx:opens_never_reads", Payload(),
          [&](Context& ctx, const Payload&) {
            auto stream = ctx.OpenStream();
            TaskGroup::Open([&](TaskGroup& tg) {
              tg.Spawn([&] {
                stalled = WhenStalled([&] { return sent.load(); });
                ctx.Cancel();
              });
              for (;;) {
                stream.Send(Payload::Raw(std::string(1024, 'x')));
                ++sent;
              }
            });
          },
          {.callee_stream = {.msg_buffer_size = 3, .strict = strict}});
      return stalled;
    };
    const int64_t loose = sent_until_blocked(false);
    const int64_t strict = sent_until_blocked(true);
    std::printf(
        "caller -> callee, 3-slot queue, 1 KiB items out before the sender "
        "blocks: %lld without strict, %lld with\n",
        static_cast<long long>(loose), static_cast<long long>(strict));
    EXPECT_EQ(strict, 3);
    EXPECT_GT(loose, 3);

    // Callee -> caller, whose 3-slot strict queue is set before the call.
    ContextOptions options;
    options.caller_stream = StreamOptions{.msg_buffer_size = 3, .strict = true};
    const auto produced = [&] { return p.Run("ctx:produced").AsInt(); };
    p.OpenContext(
        "ctx:counting_producer", Payload(),
        [&](Context& ctx, const Payload&) {
          auto stream = ctx.OpenStream();
          EXPECT_EQ(WhenStalled(produced), 3);
          // Taking items lets more come, at most a queue ahead.
          for (int i = 0; i < 10; ++i) ASSERT_TRUE(stream.Receive());
          const int64_t after = WhenStalled(produced);
          EXPECT_GE(after, 10);
          EXPECT_LE(after, 13);
          ctx.Cancel();
        },
        options);
  });
}

TEST_F(ContextTest, CalleeThatClosesAtOnceEndsTheCallersIteration) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    Payload r = p.OpenContext("ctx:opens_and_closes", Payload(),
                              [](Context& ctx, const Payload&) {
      auto stream = ctx.OpenStream();
      int items = 0;
      for (const auto& v : stream) {
        (void)v;
        ++items;
      }
      EXPECT_EQ(items, 0);
      EXPECT_FALSE(stream.Receive().has_value());  // end again
      EXPECT_TRUE(stream.closed());
      EXPECT_THROW(ctx.OpenStream(), UsageError);  // single use
    });
    EXPECT_EQ(r.AsString(), "done");
  });
}

TEST_F(ContextTest, CallerThatNeverOpensItsStreamStillGetsTheResult) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    // The callee streams 100 items nobody reads; Result() discards them.
    Payload r = p.OpenContext("ctx:producer", 100, [](Context&, const Payload&) {});
    EXPECT_EQ(r.AsInt(), 100);
  });
}

}  // namespace
}  // namespace tractor

namespace tractor {
namespace {

TEST_F(ContextTest, CancelOnExitCancelsTheRemoteTaskWhenTheBodyReturns) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    absl::Time t0 = absl::Now();
    Payload result = p.OpenContext(
        "ctx:counted_sleeper", Payload(), [](Context&, const Payload&) {},
        {.cancel_on_exit = true});
    EXPECT_TRUE(result.IsNull());
    EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
    EXPECT_EQ(p.Run("ctx:sleeper_cancels").AsInt(), 1);
  });
}

TEST_F(ContextTest, ResultAfterOwnCancelReturnsAndMaybeErrorHoldsTheCancel) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    p.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
      EXPECT_EQ(ctx.maybe_error(), nullptr);
      ctx.Cancel();
      EXPECT_TRUE(ctx.Result().IsNull());
      ASSERT_NE(ctx.maybe_error(), nullptr);
      try {
        std::rethrow_exception(ctx.maybe_error());
      } catch (const ContextCancelled& e) {
        EXPECT_EQ(e.canceller().uuid(), CurrentActor().uuid());
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
      } catch (...) {
        ADD_FAILURE() << "maybe_error() is not a ContextCancelled";
      }
    });
  });
}

TEST_F(ContextTest, CurrentContextIsTheDialogOfTheTaskOnBothSides) {
  EXPECT_FALSE(CurrentContext().has_value());
  testing::WithChild(kCtxNs, [&](Portal& p) {
    EXPECT_FALSE(CurrentContext().has_value());
    std::string caller_cid, seen_in_body, seen_in_task;
    Payload result = p.OpenContext(
        "ctx:current_cids", Payload(), [&](Context& ctx, const Payload&) {
          caller_cid = ctx.cid();
          if (auto c = CurrentContext()) {
            seen_in_body = c->cid();
            EXPECT_TRUE(c->is_caller());
          }
          TaskGroup::Open([&](TaskGroup& tg) {
            tg.Spawn([&] {
              if (auto c = CurrentContext()) seen_in_task = c->cid();
            });
          });
        });
    EXPECT_FALSE(caller_cid.empty());
    EXPECT_EQ(seen_in_body, caller_cid);
    EXPECT_EQ(seen_in_task, caller_cid);
    // The callee saw the same dialog, in its task and in a task it started.
    EXPECT_EQ(result, Payload::List({caller_cid, caller_cid, caller_cid}));
    EXPECT_FALSE(CurrentContext().has_value());
    // A plain call runs in a dialog too.
    EXPECT_NE(p.Run("ctx:current_cid_of_a_call").AsString(), "");
  });
}

TEST_F(ContextTest, OpeningAContextWithItselfIsRefused) {
  OpenRootActor({}, [] {
    Portal self = Portal::Connect(AcceptAddrs().front());
    ASSERT_EQ(self.aid().uuid(), CurrentActor().uuid());
    bool body_ran = false;
    try {
      self.OpenContext("ctx:simple", 1,
                       [&](Context&, const Payload&) { body_ran = true; });
      ADD_FAILURE() << "a context with itself was opened";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("with itself"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(body_ran);
  });
}

TEST_F(ContextTest, CalleeBlockedInReceiveWakesWithTransportClosedWhenItsCallerIsKilled) {
  OpenRootActor({}, [] {
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal callee = an.StartActor("callee", kCtxNs);
      absl::Time killed_at;
      // The caller's own nursery sees it die (ActorFailure).
      EXPECT_THROW(OpenNursery([&](ActorNursery& inner) {
        Portal caller = inner.StartActor("caller", kCtxNs);
        TaskGroup::Open([&](TaskGroup& tg) {
          tg.Spawn([&] {
            // Ends with TransportClosed, or is cancelled by the nursery
            // that sees the caller die; either way not with a result.
            try {
              caller.Run("ctx:open_receiver_and_sleep", callee.addr());
              ADD_FAILURE() << "the killed caller returned";
            } catch (const ActorError&) {
            }
          });
          ASSERT_TRUE(testing::WaitFor(
              [&] {
                return callee.Run("ctx:receive_outcome").AsString() ==
                       "receiving";
              },
              absl::Seconds(5)))
              << "the callee never blocked in Receive";
          kill(caller.aid().pid(), SIGKILL);
          killed_at = absl::Now();
        });
      }), ActorFailure);
      std::string outcome;
      EXPECT_TRUE(testing::WaitFor(
          [&] {
            outcome = callee.Run("ctx:receive_outcome").AsString();
            return outcome != "receiving";
          },
          absl::Seconds(3)));
      EXPECT_EQ(outcome, "TransportClosed");
      EXPECT_LT(absl::Now() - killed_at, absl::Milliseconds(1500));
    });
  });
}

// Kills the callee, then waits in the body until the stream reports the
// broken transport; returns when it did.
void KillAndAwaitTransportClosed(Portal& p, Context& ctx) {
  auto stream = ctx.OpenStream();
  kill(p.aid().pid(), SIGKILL);
  EXPECT_THROW(stream.Receive(), TransportClosed);
}

TEST_F(ContextTest, ASideWhoseTransportBrokeLeavesItsDialogAtOnce) {
  OpenRootActor({}, [] {
    // Each nursery also sees its child die (ActorFailure); the dialogs run
    // shielded so that only the transport loss reaches them.
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
      shield.Run([&] {
        // The body returns normally: no result is waited for; the dialog
        // ends with the transport's error at once.
        absl::Time exited;
        try {
          p.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
            KillAndAwaitTransportClosed(p, ctx);
            exited = absl::Now();
          });
          ADD_FAILURE() << "OpenContext returned a result over a broken transport";
        } catch (const TransportClosed&) {
          EXPECT_LT(absl::Now() - exited, absl::Milliseconds(200));
        }
      });
    }), ActorFailure);
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("child", kCtxNs);
      CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
      shield.Run([&] {
        // The body raises: no cancel acknowledgement is waited for.
        absl::Time raised;
        EXPECT_THROW(
            p.OpenContext("ctx:sleeper", Payload(), [&](Context& ctx, const Payload&) {
              KillAndAwaitTransportClosed(p, ctx);
              raised = absl::Now();
              throw std::out_of_range("caller failed");
            }),
            std::out_of_range);
        EXPECT_LT(absl::Now() - raised, absl::Milliseconds(200));
      });
    }), ActorFailure);
  });
}

TEST_F(ContextTest, ErrorInCallerBlockCancelsTheRemoteTaskWhichSeesItsCancellation) {
  testing::WithChild(kCtxNs, [&](Portal& p) {
    EXPECT_THROW(p.OpenContext("ctx:counted_sleeper", Payload(),
                               [](Context&, const Payload&) {
                                 throw std::out_of_range("caller failed");
                               }),
                 std::out_of_range);
    int64_t cancels = 0;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          cancels = p.Run("ctx:sleeper_cancels").AsInt();
          return cancels > 0;
        },
        absl::Seconds(3)))
        << "the remote task never saw its cancellation";
    EXPECT_EQ(cancels, 1);
  });
}

}  // namespace
}  // namespace tractor
