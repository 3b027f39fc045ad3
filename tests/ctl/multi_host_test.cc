// SPDX-License-Identifier: AGPL-3.0-or-later
// Operating a mesh across hosts: network namespaces stand for four hosts on
// one bridge (tests/faults/hosts.h, plus a fourth host D made here):
//
//   A 10.77.0.1  the registrar daemon
//   B 10.77.0.2  the actor daemon "alpha" (tests/ctl/ctl_actor --daemon)
//   C 10.77.0.3  the actor daemon "beta"
//   D 10.77.0.4  tractorctl, the operator
//
// Every program is configured by its command line alone (the mesh secret by
// a file named there). From D, tractorctl lists the registry, finds, calls,
// streams, shows stats for and cancels both daemons, which then exit 0 and
// leave the registry.
//
// Needs root (CAP_NET_ADMIN) and no Bazel sandbox (tags = ["no-sandbox"]);
// skips with a message where namespaces cannot be created. Namespaces and
// links get unique names per run and are deleted on every path.
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/faults/hosts.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::InNs;
using testing::Proc;
using testing::Sh;
using testing::TempDir;

constexpr char kRegistrar[] = "10.77.0.1:7400";

// A fourth namespace host, D (10.77.0.4), on A's bridge.
class FourthHost {
 public:
  explicit FourthHost(const testing::Hosts& hosts)
      : hosts_(hosts), ns_(names_.Namespace("d")) {}
  ~FourthHost() {
    if (created_) Sh(absl::StrCat("ip netns del ", ns_));
    Sh(absl::StrCat("ip link del ", Link("0")));
  }

  // Returns "" or what failed.
  std::string SetUp() {
    testing::RemoveStaleNetns();
    Sh(absl::StrCat("ip link del ", Link("0")));
    // The bridge: "N: <name>: <FLAGS> ..." of the one bridge in A.
    const std::string line =
        testing::ShOutput(absl::StrCat("ip -n ", hosts_.A(), " -o link show type bridge"));
    std::vector<std::string> parts = absl::StrSplit(line, ": ");
    if (parts.size() < 2) return "no bridge in host A";
    const std::string bridge(absl::StripSuffix(parts[1], "@NONE"));
    if (Sh(absl::StrCat("ip netns add ", ns_)) != 0) {
      return "ip netns add failed";
    }
    created_ = true;
    const std::vector<std::string> cmds = {
        absl::StrCat("ip -n ", ns_, " link set lo up"),
        absl::StrCat("ip link add ", Link("0"), " type veth peer name ",
                     Link("1")),
        absl::StrCat("ip link set ", Link("0"), " netns ", hosts_.A()),
        absl::StrCat("ip link set ", Link("1"), " netns ", ns_),
        absl::StrCat("ip -n ", hosts_.A(), " link set ", Link("0"), " master ",
                     bridge, " up"),
        absl::StrCat("ip -n ", ns_, " addr add 10.77.0.4/24 dev ", Link("1")),
        absl::StrCat("ip -n ", ns_, " link set ", Link("1"), " up"),
    };
    for (const auto& c : cmds) {
      if (Sh(c) != 0) return absl::StrCat("'", c, "' failed");
    }
    // A new bridge port may change the bridge's MAC address (a bridge takes
    // the lowest of its ports'), and with it the MAC of A's 10.77.0.1: the
    // entries B and C cached for it would send into the void until they
    // expire. Forget them.
    for (const std::string& host : {hosts_.B(), hosts_.C()}) {
      Sh(absl::StrCat("ip -n ", host, " neigh flush all"));
    }
    // Reachable once a connect to a closed port on A is refused (bridge
    // ports come up asynchronously).
    auto reaches_a = [&](const std::string& from) {
      return Sh(absl::StrCat("ip netns exec ", from,
                             " timeout 1 bash -c 'exec 3<>/dev/tcp/"
                             "10.77.0.1/9' 2>&1 | grep -q refused")) == 0;
    };
    const bool reached = testing::WaitFor(
        [&] {
          return reaches_a(ns_) && reaches_a(hosts_.B()) &&
                 reaches_a(hosts_.C());
        },
        absl::Seconds(10));
    return reached ? "" : "hosts B, C and D do not all reach host A";
  }

  const std::string& ns() const { return ns_; }

 private:
  std::string Link(const std::string& suffix) const {
    return names_.Link(absl::StrCat("d", suffix));
  }
  const testing::Hosts& hosts_;
  const testing::NetnsNames names_;
  const std::string ns_;
  bool created_ = false;
};

struct Result {
  int status = -1;  // exit status; -1: did not exit in time
  std::string out;  // stdout and stderr
};

class MultiHostTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(120); }

  // Runs tractorctl on host D with `args`, `input` on its stdin.
  Result Ctl(const std::vector<std::string>& args,
             const std::string& input = "") {
    std::vector<std::string> full = {
        "/usr/bin/env", "CTL_INPUT=" + input, "/bin/sh", "-c",
        "printf '%s' \"$CTL_INPUT\" | \"$0\" \"$@\" 2>&1",
        testing::RunfilePath("tools/tractorctl/tractorctl"),
        "--registry=" + std::string(kRegistrar), "--secret_file=" + secret_,
        "--timeout=10s"};
    full.insert(full.end(), args.begin(), args.end());
    std::unique_ptr<Proc> p = InNs(d_->ns(), full);
    Result r;
    if (!p) return r;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (auto line = p->ReadLine(deadline - absl::Now())) {
      absl::StrAppend(&r.out, *line, "\n");
    }
    std::optional<int> st = p->Wait(absl::Seconds(5));
    if (st.has_value() && WIFEXITED(*st)) r.status = WEXITSTATUS(*st);
    return r;
  }

  // Starts an actor daemon on `ns`, bound to `ip`; returns it once it
  // printed its "listening on" line. A daemon that exits 1 at boot (its
  // probe of the registrar got no answer in time, on a loaded machine) is
  // started again, as the systemd unit of docs/deploying.md does
  // (Restart=on-failure), up to three times.
  std::unique_ptr<Proc> StartDaemon(const std::string& ns,
                                    const std::string& name,
                                    const std::string& ip) {
    for (int attempt = 1; attempt <= 3; ++attempt) {
      std::unique_ptr<Proc> p = InNs(
          ns, {"/usr/bin/env", "TRACTOR_SECRET_FILE=" + secret_,
               testing::RunfilePath("tests/ctl/ctl_actor"), "--daemon",
               "--name=" + name, "--bind=" + ip + ":0",
               "--registry=" + std::string(kRegistrar), "--lease_ms=3000"});
      if (!p) break;
      std::optional<std::string> line =
          p->ReadLineStartingWith(name + " ", absl::Seconds(30));
      if (line.has_value()) {
        EXPECT_THAT(*line, HasSubstr("listening on " + ip + ":"));
        return p;
      }
      std::optional<int> st = p->Wait(absl::Seconds(5));
      if (!st.has_value() || !WIFEXITED(*st) || WEXITSTATUS(*st) != 1) break;
      printf("daemon '%s' exited 1 at boot (attempt %d), starting it again\n",
             name.c_str(), attempt);
    }
    ADD_FAILURE() << "daemon '" << name << "' did not start";
    return nullptr;
  }

  std::unique_ptr<testing::Hosts> hosts_;
  std::unique_ptr<FourthHost> d_;
  std::string secret_;
};

TEST_F(MultiHostTest, TractorctlOnAFourthHostOperatesDaemonsOnThree) {
  if (std::string why = testing::NetnsUnavailable(); !why.empty()) {
    GTEST_SKIP() << why;
  }
  hosts_ = std::make_unique<testing::Hosts>();
  std::string failed = hosts_->SetUp();
  ASSERT_EQ(failed, "");
  d_ = std::make_unique<FourthHost>(*hosts_);
  failed = d_->SetUp();
  ASSERT_EQ(failed, "");
  TempDir dir;
  secret_ = dir.path() + "/mesh.secret";
  std::ofstream(secret_) << "multi-host-test-secret\n";

  std::unique_ptr<Proc> registrar =
      InNs(hosts_->A(), {testing::RunfilePath("registrar/registrar"),
                         "--listen", kRegistrar, "--secret_file", secret_,
                         "--lease_ms", "3000"});
  ASSERT_TRUE(registrar);
  ASSERT_TRUE(registrar->ReadLineStartingWith("registrar ", absl::Seconds(30)))
      << "the registrar did not start";
  std::unique_ptr<Proc> alpha = StartDaemon(hosts_->B(), "alpha", "10.77.0.2");
  std::unique_ptr<Proc> beta = StartDaemon(hosts_->C(), "beta", "10.77.0.3");
  ASSERT_TRUE(alpha && beta);

  // ls: the registry, seen from D.
  Result ls = Ctl({"ls"});
  ASSERT_EQ(ls.status, 0) << ls.out;
  EXPECT_THAT(ls.out, HasSubstr("alpha"));
  EXPECT_THAT(ls.out, HasSubstr("beta"));
  EXPECT_THAT(ls.out, HasSubstr("10.77.0.2:"));
  EXPECT_THAT(ls.out, HasSubstr("10.77.0.3:"));

  // find
  Result find = Ctl({"--json", "find", "beta"});
  ASSERT_EQ(find.status, 0) << find.out;
  EXPECT_THAT(find.out, HasSubstr("\"name\":\"beta\""));
  EXPECT_THAT(find.out, HasSubstr("10.77.0.3:"));

  // call, on each host
  Result call = Ctl({"call", "alpha", "demo:repeat",
                     R"({"count": 2, "label": "ab"})"});
  EXPECT_EQ(call.status, 0) << call.out;
  EXPECT_EQ(call.out, "\"abab\"\n");
  Result fail = Ctl({"call", "beta", "demo:fail", R"("on purpose")"});
  EXPECT_EQ(fail.status, 1) << fail.out;
  EXPECT_THAT(fail.out, HasSubstr("std::invalid_argument from actor 'beta'"));

  // stream: stdin lines go out as items, the doubled items come back.
  Result stream = Ctl({"stream", "beta", "demo:doubler", "7"}, "1\n2.5\n");
  EXPECT_EQ(stream.status, 0) << stream.out;
  EXPECT_EQ(stream.out,
            "{\"started\":7}\n{\"yield\":2}\n{\"yield\":5}\n"
            "{\"result\":2}\n");

  // stats
  Result stats = Ctl({"stats", "alpha"});
  EXPECT_EQ(stats.status, 0) << stats.out;
  EXPECT_THAT(stats.out, HasSubstr("running tasks"));
  EXPECT_THAT(stats.out, HasSubstr("alpha"));

  // cancel: each daemon exits 0 and leaves the registry.
  for (const auto& [name, proc] :
       std::vector<std::pair<std::string, Proc*>>{{"alpha", alpha.get()},
                                                  {"beta", beta.get()}}) {
    Result cancel = Ctl({"cancel", name});
    EXPECT_EQ(cancel.status, 0) << cancel.out;
    EXPECT_THAT(cancel.out, HasSubstr("cancelled '" + name + "'"));
    std::optional<int> st = proc->Wait(absl::Seconds(20));
    ASSERT_TRUE(st.has_value()) << name << " did not exit after the cancel";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << name;
    Result gone = Ctl({"find", name});
    EXPECT_EQ(gone.status, 3) << gone.out;
  }
  Result empty = Ctl({"ls"});
  EXPECT_EQ(empty.status, 0) << empty.out;
  EXPECT_THAT(empty.out, Not(HasSubstr("alpha")));

  registrar->Signal(SIGTERM);
  std::optional<int> st = registrar->Wait(absl::Seconds(20));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
}

}  // namespace
}  // namespace tractor
