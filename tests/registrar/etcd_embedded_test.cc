// SPDX-License-Identifier: AGPL-3.0-or-later
// Embedded registrars (those root actors serve) keeping their registrations
// in a real 3-member etcd cluster (tests/registrar/etcd_cluster.h), chosen
// three ways: `RootOptions::registry_etcd` (this test's root),
// tractor::Main's --registry_etcd flags (a daemon) and the
// TRACTOR_REGISTRY_ETCD environment variables (a third program). Each root
// serves its own registrar on its own socket; all three share one registry.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/errors.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/discovery.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"
#include "tests/registrar/etcd_cluster.h"

namespace tractor {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testing::Proc;
using testing::TempDir;

std::vector<std::string> NamesAt(const std::string& registry) {
  std::vector<std::string> out;
  try {
    for (const auto& r : GetRegistry(registry)) out.push_back(r.aid().name());
  } catch (const TransportClosed&) {
    out.push_back("<unreachable>");
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool WaitForNames(const std::string& registry, std::vector<std::string> names,
                  absl::Duration timeout) {
  std::sort(names.begin(), names.end());
  return testing::WaitFor([&] { return NamesAt(registry) == names; }, timeout);
}

class EtcdEmbeddedTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(120); }

  void SetUp() override {
    // Every root here serves a registrar that honours Register from members
    // of the mesh only: they share the secret by configuration.
    setenv("TRACTOR_SECRET", "etcd-embedded-test-secret", 1);
    ProcessTest::SetUp();
    cluster_ = std::make_unique<testing::EtcdCluster>(3);
    absl::Status started = cluster_->Start();
    ASSERT_TRUE(started.ok()) << started << "\n" << cluster_->Logs();
    absl::BitGen gen;
    prefix_ = absl::StrCat("/tractor-embedded/", absl::Uniform<uint32_t>(gen),
                           "/");
  }

  void TearDown() override {
    cluster_.reset();
    ProcessTest::TearDown();
  }

  int LiveLeases() {
    etcdserverpb::LeaseLeasesResponse response;
    absl::Status s = cluster_->client()->LeaseLeases(&response);
    EXPECT_TRUE(s.ok()) << s;
    return response.leases_size();
  }

  std::unique_ptr<testing::EtcdCluster> cluster_;
  std::string prefix_;
};

TEST_F(EtcdEmbeddedTest, RootsServingRegistrarsShareOneRegistryInEtcd) {
  TempDir dir;
  const std::string reg_a = dir.Sock("a.sock");
  const std::string reg_b = dir.Sock("b.sock");
  const std::string reg_c = dir.Sock("c.sock");

  // alpha: a daemon configured by tractor::Main's flags alone.
  auto alpha = Proc::Spawn(
      {testing::RunfilePath("tests/discovery/daemon_actor"), "--daemon",
       "--name=alpha", "--registry=" + reg_a,
       "--registry_etcd=" + cluster_->Endpoints(),
       "--registry_etcd_prefix=" + prefix_, "--lease_ms=2000"});
  ASSERT_TRUE(alpha);
  ASSERT_TRUE(alpha->ReadLineStartingWith("alpha ", absl::Seconds(30)))
      << "the alpha daemon did not start";

  // beta: a program configured by the environment.
  setenv("TRACTOR_REGISTRY_ETCD", cluster_->Endpoints().c_str(), 1);
  setenv("TRACTOR_REGISTRY_ETCD_PREFIX", prefix_.c_str(), 1);
  auto beta =
      Proc::Spawn({testing::RunfilePath("tests/discovery/discovery_actor"),
                   "serve", "--name", "beta", "--registry", reg_b,
                   "--lease_ms", "2000"});
  unsetenv("TRACTOR_REGISTRY_ETCD");
  unsetenv("TRACTOR_REGISTRY_ETCD_PREFIX");
  ASSERT_TRUE(beta);
  std::optional<std::string> ready =
      beta->ReadLineStartingWith("ready ", absl::Seconds(30));
  ASSERT_TRUE(ready.has_value()) << "beta did not get ready";
  EXPECT_THAT(*ready, HasSubstr("registrar=1"));

  // This test's root: RootOptions.
  RootOptions options;
  options.name = "observer";
  options.registry_addrs = {reg_c};
  options.registry_lease = absl::Seconds(2);
  options.registry_etcd.endpoints = cluster_->EndpointList();
  options.registry_etcd.prefix = prefix_;
  OpenRootActor(options, [&] {
    ASSERT_TRUE(IsRegistrar());
    // Each registrar lists every actor, whichever registrar it registered
    // with: the entries live in etcd.
    for (const std::string& r : {reg_a, reg_b, reg_c}) {
      EXPECT_TRUE(WaitForNames(r, {"alpha", "beta", "observer"},
                               absl::Seconds(10)))
          << r << ": " << absl::StrJoin(NamesAt(r), ",");
    }
    std::optional<Portal> p = FindActor("alpha", {reg_c});
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->Run("greet:hello", "through etcd").AsString(),
              "hello through etcd");

    // One etcd lease per actor, however many refresh rounds went by
    // (three per lease).
    absl::SleepFor(absl::Seconds(2));  // let refresh rounds happen
    EXPECT_EQ(LiveLeases(), 3);

    // A crashed actor's entry expires from every registrar within its
    // lease (2 s) + 1 s.
    beta->Signal(SIGKILL);
    ASSERT_TRUE(beta->Wait(absl::Seconds(10)).has_value());
    const absl::Time killed = absl::Now();
    EXPECT_TRUE(WaitForNames(reg_c, {"alpha", "observer"}, absl::Seconds(10)))
        << absl::StrJoin(NamesAt(reg_c), ",");
    const absl::Duration took = absl::Now() - killed;
    printf("entry of a SIGKILLed actor expired after %.0f ms (lease 2000 "
           "ms)\n",
           absl::ToDoubleMilliseconds(took));
    EXPECT_LE(took, absl::Seconds(3));
    EXPECT_EQ(NamesAt(reg_a), (std::vector<std::string>{"alpha", "observer"}));

    // A daemon that exits on SIGTERM unregisters at once.
    alpha->Signal(SIGTERM);
    std::optional<int> st = alpha->Wait(absl::Seconds(20));
    ASSERT_TRUE(st.has_value());
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
    EXPECT_TRUE(WaitForNames(reg_c, {"observer"}, absl::Milliseconds(500)))
        << absl::StrJoin(NamesAt(reg_c), ",");
  });
}

TEST_F(EtcdEmbeddedTest, ABadEtcdConfigurationFailsBootNamingIt) {
  TempDir dir;
  RootOptions options;
  options.registry_addrs = {dir.Sock("r.sock")};
  options.registry_etcd.endpoints = cluster_->EndpointList();
  options.registry_etcd.prefix = prefix_;
  options.registry_etcd.ca_file = dir.path() + "/missing-ca.pem";
  try {
    OpenRootActor(options, [] { FAIL() << "booted with a missing CA file"; });
    FAIL() << "no RuntimeFailure";
  } catch (const RuntimeFailure& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing-ca.pem"));
  }

  // A bad flag value exits 2 with one line naming the flag.
  auto bad = Proc::Spawn({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1",
                          testing::RunfilePath("tests/discovery/daemon_actor"),
                          "--daemon", "--registry_etcd=not an address"});
  ASSERT_TRUE(bad);
  std::optional<std::string> line = bad->ReadLine(absl::Seconds(20));
  ASSERT_TRUE(line.has_value());
  EXPECT_THAT(*line, HasSubstr("--registry_etcd"));
  std::optional<int> st = bad->Wait(absl::Seconds(20));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 2);
}

}  // namespace
}  // namespace tractor
