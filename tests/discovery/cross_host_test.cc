// SPDX-License-Identifier: AGPL-3.0-or-later
// Actors across hosts: three network namespaces stand for three hosts,
// joined by veth pairs on a bridge in host A (subnet 10.77.0.0/24, which
// exists only inside these namespaces):
//
//   A 10.77.0.1  the registrar daemon            --lease_ms 2000
//   B 10.77.0.2  a daemon actor "worker", registered with A
//   C 10.77.0.3  a caller: finds "worker" through A, opens a streaming
//                context with it
//
// Then B's link goes down: the caller must get a clear error within a
// bounded time, and B's entry must expire from A within the lease.
//
// Needs root (CAP_NET_ADMIN) and no Bazel sandbox (tags = ["no-sandbox"]);
// skips with a message where namespaces cannot be created. Namespaces and
// links get unique names per run and are deleted on every path.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/faults/hosts.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

using ::testing::HasSubstr;
using testing::InNs;
using testing::Proc;

class CrossHostTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(90); }
};

TEST_F(CrossHostTest, CallerFindsAnActorOnAnotherHostAndSeesItsLinkGoDown) {
  if (const std::string why = testing::NetnsUnavailable(); !why.empty()) {
    GTEST_SKIP() << why;
  }
  testing::Hosts hosts;
  const std::string setup = hosts.SetUp();
  if (absl::StrContains(setup, "ip netns add")) {
    GTEST_SKIP() << "cannot create network namespaces here (" << setup
                 << "); inside Bazel's sandbox this needs tags = "
                    "[\"no-sandbox\"]";
  }
  ASSERT_EQ(setup, "") << "building the three-host topology failed";

  const std::string registrar_bin = testing::RunfilePath("registrar/registrar");
  const std::string actor_bin = testing::RunfilePath("tests/discovery/discovery_actor");
  ASSERT_FALSE(registrar_bin.empty());
  ASSERT_FALSE(actor_bin.empty());

  // Host A: the registrar daemon.
  auto registrar = InNs(hosts.A(), {registrar_bin, "--listen", "/ip4/10.77.0.1/tcp/0",
                                    "--lease_ms", "2000", "--loglevel", "warning"});
  auto ready = registrar->ReadLine(absl::Seconds(10));
  ASSERT_TRUE(ready.has_value()) << "the registrar did not start on host A";
  std::vector<std::string> words = absl::StrSplit(*ready, ' ');
  ASSERT_EQ(words.size(), 5u) << *ready;
  const std::string reg_addr = words[4];
  EXPECT_THAT(reg_addr, ::testing::StartsWith("10.77.0.1:"));

  // Host B: a daemon actor registered with A. Its default bind addresses
  // are loopback plus the interface that routes to A.
  auto worker = InNs(hosts.B(), {actor_bin, "serve", "--name", "worker",
                                 "--registry", reg_addr});
  auto worker_ready = worker->ReadLineStartingWith("ready ", absl::Seconds(10));
  ASSERT_TRUE(worker_ready.has_value()) << "the worker did not start on host B";
  EXPECT_THAT(*worker_ready, HasSubstr("10.77.0.2:"));
  EXPECT_THAT(*worker_ready, HasSubstr("registrar=0"));
  const std::string worker_uuid = std::vector<std::string>(absl::StrSplit(*worker_ready, ' '))[1];

  // Host C: the caller.
  auto caller = InNs(hosts.C(), {actor_bin, "find", "--registry", reg_addr,
                                 "--target", "worker", "--ticks", "--wait_gone"});
  auto found = caller->ReadLine(absl::Seconds(10));
  ASSERT_TRUE(found.has_value()) << "the caller printed nothing";
  ASSERT_THAT(*found, ::testing::StartsWith("found " + worker_uuid)) << *found;
  printf("host C found 'worker' on host B through host A: %s\n", found->c_str());
  // Another network namespace is another host: no same-host socket, even
  // though a unix socket would be reachable from here.
  EXPECT_THAT(*found, HasSubstr(" 10.77.0.2:")) << *found;
  for (int i = 0; i < 3; ++i) {
    auto tick = caller->ReadLine(absl::Seconds(5));
    ASSERT_TRUE(tick.has_value() && absl::StartsWith(*tick, "tick "))
        << "no ticks streamed from B to C: " << tick.value_or("<nothing>");
  }

  // B's link goes down.
  ASSERT_TRUE(hosts.CutB());
  const absl::Time cut = absl::Now();
  std::optional<std::string> error;
  while (auto line = caller->ReadLine(absl::Seconds(15) - (absl::Now() - cut))) {
    if (absl::StartsWith(*line, "error ")) {
      error = line;
      break;
    }
  }
  const absl::Duration to_error = absl::Now() - cut;
  ASSERT_TRUE(error.has_value()) << "the caller saw no error within 15 s of the link going down";
  printf("caller's error %.0f ms after B's link went down: %s\n",
         absl::ToDoubleMilliseconds(to_error), error->c_str());
  EXPECT_THAT(*error, HasSubstr("TransportClosed"));
  EXPECT_LT(to_error, absl::Seconds(10));
  // A silent link loss (no FIN, no RST) wakes the waiting caller within
  // 1.5 s: the actor channels' keepalive (0.5 s + 0.5 s).
  EXPECT_LT(to_error, absl::Milliseconds(1500))
      << "the waiting caller took too long to notice a silent link loss";

  auto gone = caller->ReadLine(absl::Seconds(15));
  ASSERT_TRUE(gone.has_value()) << "no news of B's entry from A";
  ASSERT_THAT(*gone, ::testing::StartsWith("gone ")) << *gone;
  const absl::Duration to_gone = absl::Now() - cut;
  printf("B's entry expired from A %.0f ms after the link went down (lease 2000 ms)\n",
         absl::ToDoubleMilliseconds(to_gone));
  EXPECT_LT(to_gone, to_error + absl::Milliseconds(2500));

  caller->Wait(absl::Seconds(5));
  worker->Signal(SIGINT);
  registrar->Signal(SIGINT);
  EXPECT_TRUE(worker->Wait(absl::Seconds(5)).has_value());
  EXPECT_TRUE(registrar->Wait(absl::Seconds(5)).has_value());
}

}  // namespace
}  // namespace tractor
