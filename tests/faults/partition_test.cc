// SPDX-License-Identifier: AGPL-3.0-or-later
// Faults across hosts (tests/faults/hosts.h): a registrar on host A, a
// daemon actor "worker" on host B, callers on host C.
//
// - A partitioned actor is dropped from the registry within its lease and is
//   found again soon after the partition heals.
// - A registrar killed with SIGKILL and restarted on the same address is
//   repopulated by the actors' registration upkeep.
//
// Every wait is bounded; every figure is printed.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
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
using ::testing::StartsWith;
using testing::InNs;
using testing::Proc;

class PartitionTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(90); }

  // Builds the hosts and starts the registrar on A (at `listen`) and the
  // worker on B. Returns false (after a skip or a failure) when it cannot.
  bool StartMesh(const std::string& listen = "/ip4/10.77.0.1/tcp/0") {
    if (const std::string why = testing::NetnsUnavailable(); !why.empty()) {
      skip_ = why;
      return false;
    }
    const std::string setup = hosts_.SetUp();
    if (absl::StrContains(setup, "ip netns add")) {
      skip_ = "cannot create network namespaces here (" + setup + ")";
      return false;
    }
    EXPECT_EQ(setup, "") << "building the three-host topology failed";
    if (!setup.empty()) return false;
    registrar_bin_ = testing::RunfilePath("registrar/registrar");
    actor_bin_ = testing::RunfilePath("tests/discovery/discovery_actor");
    EXPECT_FALSE(registrar_bin_.empty());
    EXPECT_FALSE(actor_bin_.empty());
    if (!StartRegistrar(listen)) return false;
    worker_ = InNs(hosts_.B(), {actor_bin_, "serve", "--name", "worker",
                                "--registry", reg_addr_, "--lease_ms", "2000"});
    auto ready = worker_->ReadLineStartingWith("ready ", absl::Seconds(15));
    EXPECT_TRUE(ready.has_value()) << "the worker did not start on host B";
    return ready.has_value();
  }

  bool StartRegistrar(const std::string& listen) {
    registrar_ = InNs(hosts_.A(), {registrar_bin_, "--listen", listen,
                                   "--lease_ms", "2000", "--loglevel", "warning"});
    auto ready = registrar_->ReadLine(absl::Seconds(15));
    EXPECT_TRUE(ready.has_value()) << "the registrar did not start on host A";
    if (!ready) return false;
    std::vector<std::string> words = absl::StrSplit(*ready, ' ');
    EXPECT_EQ(words.size(), 5u) << *ready;
    if (words.size() != 5u) return false;
    reg_addr_ = words[4];
    return true;
  }

  // Runs one lookup of "worker" from host C; true when it was found.
  bool FoundFromC() {
    auto find = InNs(hosts_.C(), {actor_bin_, "find", "--registry", reg_addr_,
                                  "--target", "worker"});
    auto line = find->ReadLine(absl::Seconds(10));
    find->Wait(absl::Seconds(5));
    return line.has_value() && absl::StartsWith(*line, "found ");
  }

  // Repeats lookups from C until one's outcome is `found`; returns the time
  // it took, or nullopt after `bound`.
  std::optional<absl::Duration> UntilFound(bool found, absl::Duration bound) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < bound) {
      if (FoundFromC() == found) return absl::Now() - start;
    }
    return std::nullopt;
  }

  void StopAll() {
    for (Proc* p : {worker_.get(), registrar_.get()}) {
      if (p == nullptr) continue;
      p->Signal(SIGINT);
      EXPECT_TRUE(p->Wait(absl::Seconds(10)).has_value());
    }
  }

  testing::Hosts hosts_;
  std::string skip_;
  std::string registrar_bin_, actor_bin_, reg_addr_;
  std::unique_ptr<Proc> registrar_, worker_;
};

TEST_F(PartitionTest, PartitionedActorLeavesTheRegistryAndIsFoundAgainAfterHealing) {
  if (!StartMesh()) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    return;
  }
  ASSERT_TRUE(UntilFound(true, absl::Seconds(10)).has_value());

  ASSERT_TRUE(hosts_.CutB());
  // Lease 2 s: the entry expires within it (plus the sweep).
  auto gone = UntilFound(false, absl::Seconds(10));
  ASSERT_TRUE(gone.has_value()) << "the partitioned worker stayed listed";
  std::printf("worker unlisted %.0f ms after B was cut (lease 2000 ms)\n",
              absl::ToDoubleMilliseconds(*gone));
  EXPECT_LT(*gone, absl::Seconds(4));

  ASSERT_TRUE(hosts_.HealB());
  auto back = UntilFound(true, absl::Seconds(15));
  ASSERT_TRUE(back.has_value()) << "the worker was not found after healing";
  std::printf("worker found again %.0f ms after B's link came back\n",
              absl::ToDoubleMilliseconds(*back));
  // Its registration upkeep retries with a backoff of at most 1 s.
  EXPECT_LT(*back, absl::Seconds(4));
  StopAll();
}

TEST_F(PartitionTest, RegistrarKilledAndRestartedOnItsAddressIsRepopulated) {
  if (!StartMesh()) {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    return;
  }
  ASSERT_TRUE(UntilFound(true, absl::Seconds(10)).has_value());
  const std::string same = reg_addr_;

  registrar_->Signal(SIGKILL);
  ASSERT_TRUE(registrar_->Wait(absl::Seconds(5)).has_value());
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(StartRegistrar(same));
  EXPECT_EQ(reg_addr_, same);
  auto back = UntilFound(true, absl::Seconds(15));
  ASSERT_TRUE(back.has_value()) << "the restarted registrar never listed the worker";
  std::printf("worker listed again %.0f ms after the registrar was killed "
              "(restart included)\n",
              absl::ToDoubleMilliseconds(absl::Now() - killed));
  EXPECT_LT(absl::Now() - killed, absl::Seconds(5));
  StopAll();
}

}  // namespace
}  // namespace tractor
