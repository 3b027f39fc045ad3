// SPDX-License-Identifier: AGPL-3.0-or-later
// Three network namespaces standing for three hosts, for the cross-host and
// fault tests: A holds a bridge (10.77.0.1), B (10.77.0.2) and C
// (10.77.0.3) hang off it through veth pairs. The subnet exists only inside
// these namespaces. Names are unique per run; everything is deleted on
// every path (destructor). Needs root (CAP_NET_ADMIN) and no Bazel sandbox.
// Header-only, test-only.
#ifndef TRACTOR_TESTS_FAULTS_HOSTS_H_
#define TRACTOR_TESTS_FAULTS_HOSTS_H_

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tests/discovery/test_procs.h"

namespace tractor::testing {

// Runs a shell command quietly; returns its exit status.
inline int Sh(const std::string& cmd) {
  const std::string quiet = absl::StrCat(cmd, " >/dev/null 2>&1");
  int rc = std::system(quiet.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// Three namespaces A, B, C; B and C hang off a bridge in A.
class Hosts {
 public:
  Hosts() {
    std::random_device rd;
    id_ = absl::StrFormat("%05x", (rd() ^ getpid()) & 0xfffff);
    for (const char* h : {"a", "b", "c"}) ns_.push_back(absl::StrCat("tr", h, id_));
  }
  ~Hosts() { TearDown(); }

  // Builds the topology; returns "" or what failed.
  std::string SetUp() {
    for (const auto& ns : ns_) {
      if (Sh(absl::StrCat("ip netns add ", ns)) != 0) {
        return absl::StrCat("ip netns add ", ns, " failed");
      }
      created_.push_back(ns);
      if (Sh(absl::StrCat("ip -n ", ns, " link set lo up")) != 0) {
        return "lo up failed";
      }
    }
    const std::string br = Link("br");
    std::vector<std::string> cmds = {
        absl::StrCat("ip -n ", A(), " link add ", br, " type bridge"),
        absl::StrCat("ip -n ", A(), " addr add 10.77.0.1/24 dev ", br),
        absl::StrCat("ip -n ", A(), " link set ", br, " up"),
    };
    for (const auto& [host, ip] : {std::pair{B(), "10.77.0.2"}, {C(), "10.77.0.3"}}) {
      const std::string hub_end = Link(host.substr(2, 1) + "0");
      const std::string host_end = Link(host.substr(2, 1) + "1");
      cmds.push_back(absl::StrCat("ip link add ", hub_end, " type veth peer name ", host_end));
      cmds.push_back(absl::StrCat("ip link set ", hub_end, " netns ", A()));
      cmds.push_back(absl::StrCat("ip link set ", host_end, " netns ", host));
      cmds.push_back(absl::StrCat("ip -n ", A(), " link set ", hub_end, " master ", br, " up"));
      cmds.push_back(absl::StrCat("ip -n ", host, " addr add ", ip, "/24 dev ", host_end));
      cmds.push_back(absl::StrCat("ip -n ", host, " link set ", host_end, " up"));
    }
    for (const auto& c : cmds) {
      if (Sh(c) != 0) return absl::StrCat("'", c, "' failed");
    }
    // Wait until C reaches B and B reaches A through the bridge (bridge
    // ports come up asynchronously): a TCP connect to a closed port is
    // refused once the peer is reachable.
    auto reaches = [&](const std::string& from, const std::string& ip) {
      return Sh(absl::StrCat("ip netns exec ", from,
                             " timeout 1 bash -c 'exec 3<>/dev/tcp/", ip,
                             "/9' 2>&1 | grep -q refused")) == 0;
    };
    for (int i = 0; i < 50; ++i) {
      if (reaches(C(), "10.77.0.2") && reaches(B(), "10.77.0.1")) return "";
      absl::SleepFor(absl::Milliseconds(100));
    }
    return "the namespaces do not reach each other";
  }

  void TearDown() {
    for (const auto& ns : created_) Sh(absl::StrCat("ip netns del ", ns));
    created_.clear();
    // veth ends left in the root namespace if setup stopped half-way.
    for (const char* l : {"b0", "b1", "c0", "c1"}) Sh(absl::StrCat("ip link del ", Link(l)));
  }

  // Takes B's link down at the bridge: a silent partition (no FIN, no RST).
  bool CutB() { return SetLink("b0", "down"); }
  bool HealB() { return SetLink("b0", "up"); }
  bool CutC() { return SetLink("c0", "down"); }
  bool HealC() { return SetLink("c0", "up"); }

  std::string Exec(const std::string& ns) const {
    return absl::StrCat("ip netns exec ", ns);
  }
  const std::string& A() const { return ns_[0]; }
  const std::string& B() const { return ns_[1]; }
  const std::string& C() const { return ns_[2]; }

 private:
  bool SetLink(const std::string& suffix, const char* state) {
    return Sh(absl::StrCat("ip -n ", A(), " link set ", Link(suffix), " ",
                           state)) == 0;
  }
  std::string Link(const std::string& suffix) const {
    return absl::StrCat("tv", id_, suffix);  // <= 15 bytes (IFNAMSIZ)
  }
  std::string id_;
  std::vector<std::string> ns_;
  std::vector<std::string> created_;
};

// Runs `args` in the namespace `ns`.
inline std::unique_ptr<Proc> InNs(const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> full = {"/usr/sbin/ip", "netns", "exec", ns};
  if (access(full[0].c_str(), X_OK) != 0) full[0] = "/sbin/ip";
  full.insert(full.end(), args.begin(), args.end());
  return Proc::Spawn(full);
}

// Returns "" when namespace hosts can be built here, else why not (the test
// then skips with it).
inline std::string NetnsUnavailable() {
  if (geteuid() != 0) {
    return "needs root to create network namespaces (run bazel as root; the "
           "test is tagged no-sandbox)";
  }
  if (Sh("ip netns list") != 0) return "the 'ip' tool (iproute2) is not available";
  return "";
}

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_FAULTS_HOSTS_H_
