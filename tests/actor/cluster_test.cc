// SPDX-License-Identifier: AGPL-3.0-or-later
// tractor's tests/test_clustering.py: OpenActorCluster and GatherContexts.
#include "actor/cluster.h"

#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// Echoes every item of the caller's stream; returns how many it echoed.
int64_t EchoAll(Context& ctx) {
  ctx.Started(CurrentActor().name());
  auto stream = ctx.OpenStream();
  int64_t n = 0;
  for (const auto& item : stream) {
    stream.Send(item);
    ++n;
  }
  return n;
}
TRACTOR_EXPORT("cluster:echo_all", EchoAll);

// Starts, then fails.
void FailAfterStarted(Context& ctx) {
  ctx.Started();
  throw std::runtime_error("worker failed");
}
TRACTOR_EXPORT("cluster:fail", FailAfterStarted);

// Starts, then waits to be cancelled.
void WaitForCancel(Context& ctx) {
  ctx.Started();
  Sleep(absl::Hours(1));
}
TRACTOR_EXPORT("cluster:wait", WaitForCancel);

class ClusterTest : public testing::ProcessTest {};

// test_streaming_to_actor_cluster: a cluster of 2 workers (the machine's
// cores), a context and stream to each through GatherContexts, round-robin
// sends; tractor's budget 6 s.
TEST_F(ClusterTest, StreamingToAnActorCluster) {
  absl::Time t0 = absl::Now();
  OpenRootActor({}, [] {
    OpenActorCluster({"cluster"}, 2, [](std::map<std::string, Portal>& portals) {
      ASSERT_EQ(portals.size(), 2u);
      EXPECT_EQ(portals.count("root.worker_0"), 1u);
      EXPECT_EQ(portals.count("root.worker_1"), 1u);
      std::vector<ContextCall> calls;
      for (auto& [name, portal] : portals) {
        calls.push_back({.portal = portal, .func = "cluster:echo_all"});
      }
      constexpr int kRounds = 200;
      std::vector<Payload> counts = GatherContexts(
          calls, [&](const std::vector<Context*>& ctxs,
                     const std::vector<Payload>& firsts) {
            ASSERT_EQ(ctxs.size(), 2u);
            EXPECT_EQ(firsts[0].AsString(), "root.worker_0");
            EXPECT_EQ(firsts[1].AsString(), "root.worker_1");
            std::vector<MsgStream> streams;
            for (Context* c : ctxs) streams.push_back(c->OpenStream());
            for (int i = 0; i < kRounds; ++i) {
              MsgStream& s = streams[i % streams.size()];
              s.Send(i);
              std::optional<Payload> back = s.Receive();
              ASSERT_TRUE(back.has_value());
              EXPECT_EQ(back->AsInt(), i);
            }
            for (auto& s : streams) s.Close();
          });
      ASSERT_EQ(counts.size(), 2u);
      EXPECT_EQ(counts[0].AsInt(), kRounds / 2);
      EXPECT_EQ(counts[1].AsInt(), kRounds / 2);
    });
  });
  // tractor's budget (scaled only in sanitizer builds).
  EXPECT_LT(absl::Now() - t0, discovery::ScaleTimeout(absl::Seconds(6)));
}

// test_empty_mngrs_input_raises.
TEST_F(ClusterTest, GatherContextsOfNothingRaisesUsageError) {
  OpenRootActor({}, [] {
    EXPECT_THROW(GatherContexts({}, [](auto&, auto&) {}), UsageError);
  });
}

TEST_F(ClusterTest, NamesMustMatchTheCount) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenActorCluster({"cluster"}, 2, [](auto&) {}, {"only_one"}),
                 UsageError);
  });
}

TEST_F(ClusterTest, AFailingContextCancelsTheOthersAndIsRaised) {
  OpenRootActor({}, [] {
    OpenActorCluster(
        {"cluster"}, 2,
        [](std::map<std::string, Portal>& portals) {
          try {
            GatherContexts({{.portal = portals.at("root.a"), .func = "cluster:wait"},
                            {.portal = portals.at("root.b"), .func = "cluster:fail"}},
                           [&](auto&, auto&) {
                             Sleep(absl::Seconds(10));  // interrupted
                           });
            ADD_FAILURE() << "no error";
          } catch (const RemoteActorError& e) {
            EXPECT_EQ(e.boxed_type(), "std::runtime_error");
            EXPECT_EQ(e.src_uid(), portals.at("root.b").aid().uuid());
          }
        },
        {"a", "b"});
  });
}

}  // namespace
}  // namespace tractor
