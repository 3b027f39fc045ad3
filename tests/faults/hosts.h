// SPDX-License-Identifier: AGPL-3.0-or-later
// Three network namespaces standing for three hosts, for the cross-host and
// fault tests: A holds a bridge (10.77.0.1), B (10.77.0.2) and C
// (10.77.0.3) hang off it through veth pairs. The subnet exists only inside
// these namespaces. Every test that makes namespaces names them with
// `NetnsNames`: the names carry the creating process, so concurrent runs
// never collide, and setup deletes what a run killed before its destructor
// ran left behind (`RemoveStaleNetns`). Everything is deleted on every path
// (destructor). Needs root (CAP_NET_ADMIN) and no Bazel sandbox.
// Header-only, test-only.
#ifndef TRACTOR_TESTS_FAULTS_HOSTS_H_
#define TRACTOR_TESTS_FAULTS_HOSTS_H_

#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/discovery/test_procs.h"
#include "tests/faults/proc_scan.h"

namespace tractor::testing {

// Runs a shell command quietly; returns its exit status.
inline int Sh(const std::string& cmd) {
  const std::string quiet = absl::StrCat(cmd, " >/dev/null 2>&1");
  int rc = std::system(quiet.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

// The output of a shell command, or "".
inline std::string ShOutput(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[512];
  while (fgets(buf, sizeof(buf), f) != nullptr) out += buf;
  pclose(f);
  return out;
}

// The start time of process `pid` (field 22 of /proc/<pid>/stat, in clock
// ticks since boot), or 0 when there is no such process. With the pid it
// names one process for good: a pid is reused, a (pid, start time) is not.
inline uint64_t ProcessStartTime(pid_t pid) {
  uint64_t start = 0;
  return absl::SimpleAtoi(ProcStatField(pid, 22), &start) ? start : 0;
}

// The names of the network namespaces and links one test run makes. Each
// carries the creating process, so that
//  - concurrent runs (in other processes) never pick the same name, and
//  - a later run can tell what a run killed before its destructor ran left
//    behind (its creator is gone) from what a live run is using.
//   namespace: trt-<pid>-<start time>-<n>-<host>
//   link:      tt<pid, 6 hex digits><n, 2 hex digits><suffix>
// where n counts the NetnsNames of this process (several hosts sets may
// live at once). A link name stays within IFNAMSIZ (15 bytes) for a suffix
// of up to 5 bytes. Links live in the root namespace only between `ip link
// add` and being moved into a namespace, so their names carry no start
// time: one left in the root namespace is removed once no process has its
// pid, and before a process makes a link it deletes any of its own name.
class NetnsNames {
 public:
  static constexpr char kNamespacePrefix[] = "trt-";
  static constexpr char kLinkPrefix[] = "tt";

  NetnsNames() {
    static std::atomic<unsigned> next{0};
    pid_ = getpid();
    start_ = ProcessStartTime(pid_);
    n_ = next.fetch_add(1) & 0xff;
  }

  std::string Namespace(const std::string& host) const {
    return absl::StrCat(kNamespacePrefix, pid_, "-", start_, "-", n_, "-",
                        host);
  }
  std::string Link(const std::string& suffix) const {
    return absl::StrFormat("%s%06x%02x%s", kLinkPrefix, pid_ & 0xffffff, n_,
                           suffix);
  }

 private:
  pid_t pid_;
  uint64_t start_;
  unsigned n_;
};

// Deletes the namespaces named by `NetnsNames` whose creating process is
// gone (no process with that pid and start time), and the links of that
// naming left in the root namespace whose creating pid is not running.
// Returns what it deleted. Namespaces of other naming schemes are left
// alone. Called at the start of every namespace setup.
inline std::vector<std::string> RemoveStaleNetns() {
  std::vector<std::string> removed;
  if (DIR* dir = opendir("/run/netns")) {
    std::vector<std::string> names;
    while (dirent* e = readdir(dir)) names.push_back(e->d_name);
    closedir(dir);
    for (const std::string& name : names) {
      if (!absl::StartsWith(name, NetnsNames::kNamespacePrefix)) continue;
      std::vector<std::string> parts = absl::StrSplit(name, '-');
      int pid = 0;
      uint64_t start = 0;
      if (parts.size() != 5 || !absl::SimpleAtoi(parts[1], &pid) ||
          !absl::SimpleAtoi(parts[2], &start) || pid <= 0) {
        continue;
      }
      if (ProcessStartTime(pid) == start) continue;  // its creator runs
      if (Sh(absl::StrCat("ip netns del ", name)) == 0) removed.push_back(name);
    }
  }
  // "N: <name>[@<peer>]: <FLAGS> ..." per link of the root namespace.
  for (absl::string_view line :
       absl::StrSplit(ShOutput("ip -o link show"), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ": ");
    if (fields.size() < 2) continue;
    const std::string link(
        fields[1].substr(0, fields[1].find('@')));
    if (!absl::StartsWith(link, NetnsNames::kLinkPrefix) || link.size() < 11) {
      continue;
    }
    uint32_t pid = 0;
    if (!absl::SimpleHexAtoi(link.substr(2, 6), &pid) || pid == 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    if (Sh(absl::StrCat("ip link del ", link)) == 0) removed.push_back(link);
  }
  return removed;
}

// Three namespaces A, B, C; B and C hang off a bridge in A.
class Hosts {
 public:
  Hosts() {
    for (const char* h : {"a", "b", "c"}) ns_.push_back(names_.Namespace(h));
  }
  ~Hosts() { TearDown(); }

  // Builds the topology, after deleting the leftovers of killed runs;
  // returns "" or what failed.
  std::string SetUp() {
    RemoveStaleNetns();
    for (const char* l : {"b0", "c0"}) Sh(absl::StrCat("ip link del ", Link(l)));
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
      const std::string letter = host == B() ? "b" : "c";
      const std::string hub_end = Link(letter + "0");
      const std::string host_end = Link(letter + "1");
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
    return names_.Link(suffix);
  }
  NetnsNames names_;
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
