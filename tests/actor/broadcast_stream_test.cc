// SPDX-License-Identifier: AGPL-3.0-or-later
// `MsgStream::Subscribe` between real actor processes
// (docs/behaviour.md#broadcast-to-local-tasks; tractor's
// test_advanced_streaming.py `test_local_task_fanout_from_stream`).
#include <atomic>
#include <stdexcept>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/broadcast.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// Streams 0, 1, 2, ... one per millisecond until the caller sends "done",
// then closes its side. Returns how many items it sent before closing.
int64_t InfStreamer(Context& ctx) {
  ctx.Started();
  MsgStream stream = ctx.OpenStream();
  std::atomic<bool> done{false};
  int64_t sent = 0;
  int64_t sent_before_close = -1;
  TaskGroup::Open([&](TaskGroup& tg) {
    tg.Spawn([&] {
      for (const Payload& msg : stream) {
        if (msg.IsString() && msg.AsString() == "done") {
          sent_before_close = sent;
          done = true;
          stream.Close();
          return;
        }
      }
    });
    constexpr int64_t kCap = 10000;  // never spin forever
    for (int64_t i = 0; i < kCap && !done; ++i) {
      try {
        stream.Send(i);
      } catch (const UsageError&) {
        break;  // closed while this send waited
      }
      ++sent;
      Sleep(absl::Milliseconds(1));
    }
  });
  if (!done) throw std::runtime_error("the streamer was never told to stop");
  return sent_before_close;
}
TRACTOR_EXPORT("bcast:inf_streamer", InfStreamer);

class BroadcastStreamTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(30); }
};

TEST_F(BroadcastStreamTest, TwentyTwoLocalSubscribersAllSeeEveryItem) {
  OpenRootActor({}, [] {
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal p = an.StartActor("inf_streamer", {.enable_modules = {"bcast"}});
      constexpr int kConsumers = 22;
      constexpr int64_t kStopAfter = 100;
      std::vector<int64_t> counts(kConsumers, 0);
      std::vector<bool> in_order(kConsumers, true);
      absl::Duration took;
      Payload result = p.OpenContext(
          "bcast:inf_streamer", Payload(), [&](Context& ctx, const Payload&) {
            MsgStream stream = ctx.OpenStream();
            // Subscribe all before any item is pulled, so all see the same.
            std::vector<MsgStream::Subscription> subs;
            for (int i = 0; i < kConsumers; ++i) {
              subs.push_back(stream.Subscribe());
            }
            absl::Time t0 = absl::Now();
            // tractor's budget, scaled for sanitizer builds.
            FailAfter(discovery::ScaleTimeout(absl::Seconds(3)), [&] {
              TaskGroup::Open([&](TaskGroup& tg) {
                for (int i = 0; i < kConsumers; ++i) {
                  tg.Spawn([&, i] {
                    for (const Payload& v : subs[i]) {
                      if (v.AsInt() != counts[i]) in_order[i] = false;
                      ++counts[i];
                      // A subscriber's Send goes to the stream: the first
                      // one tells the streamer to stop.
                      if (i == 0 && counts[i] == kStopAfter) {
                        subs[i].Send("done");
                      }
                    }
                  });
                }
              });
            });
            took = absl::Now() - t0;
          });
      EXPECT_LT(took, discovery::ScaleTimeout(absl::Seconds(3)));
      // Every subscriber saw every item the streamer sent before closing.
      ASSERT_GE(result.AsInt(), kStopAfter);
      for (int i = 0; i < kConsumers; ++i) {
        EXPECT_EQ(counts[i], result.AsInt()) << "subscriber " << i;
        EXPECT_TRUE(in_order[i]) << "subscriber " << i;
      }
    });
  });
}

// Values the stream received before the first Subscribe are not replayed;
// afterwards the stream's own Receive is one more consumer.
TEST_F(BroadcastStreamTest, StreamReceiveBecomesAConsumerAfterSubscribe) {
  OpenRootActor({}, [] {
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal p = an.StartActor("inf_streamer", {.enable_modules = {"bcast"}});
      Payload result = p.OpenContext(
          "bcast:inf_streamer", Payload(), [&](Context& ctx, const Payload&) {
            MsgStream stream = ctx.OpenStream({.msg_buffer_size = 16});
            ASSERT_EQ(stream.Receive()->AsInt(), 0);
            ASSERT_EQ(stream.Receive()->AsInt(), 1);
            MsgStream::Subscription sub = stream.Subscribe();
            MsgStream::Subscription late = stream.Subscribe(false);
            EXPECT_EQ(sub.Receive()->AsInt(), 2);
            EXPECT_EQ(stream.Receive()->AsInt(), 2);
            EXPECT_EQ(stream.Receive()->AsInt(), 3);
            EXPECT_EQ(sub.Receive()->AsInt(), 3);
            // Closing one subscription leaves the others.
            sub.Close();
            EXPECT_THROW(sub.Receive(), UsageError);
            EXPECT_EQ(late.Receive()->AsInt(), 2);
            // The stream's own consumer fell behind by more than the window
            // of 16 while `late` read on.
            for (int64_t want = 3; want < 40; ++want) {
              EXPECT_EQ(late.Receive()->AsInt(), want);
            }
            EXPECT_THROW(stream.Receive(), Lagged);
            late.Send("done");
            int64_t last = 39;  // the items after it, if any, end with:
            for (const Payload& v : late) {
              EXPECT_EQ(v.AsInt(), last + 1);
              last = v.AsInt();
            }
            // The end reaches every consumer, after the items it kept.
            int64_t own_last = -1;
            for (;;) {
              try {
                auto v = stream.Receive();
                if (!v) break;
                own_last = v->AsInt();
              } catch (const Lagged&) {
              }
            }
            EXPECT_EQ(own_last, last);
            EXPECT_FALSE(stream.Receive().has_value());
          });
      EXPECT_GE(result.AsInt(), 40);
    });
  });
}

}  // namespace
}  // namespace tractor
