// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tests/process_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "discovery/listen.h"

namespace tractor::testing {

std::set<pid_t> Descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  DIR* d = opendir("/proc");
  if (d == nullptr) return {};
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    auto rparen = line.rfind(')');
    if (rparen == std::string::npos) continue;
    std::istringstream rest(line.substr(rparen + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (state == 'Z' || state == 'X') continue;  // exited, not yet reaped
    // ThreadSanitizer's symbolizer, which the sanitizer runtime starts (and
    // keeps until exit) the first time it symbolizes a stack, a suppressed
    // report's too: the sanitizer's helper, not a process of the test.
    const auto lparen = line.find('(');
    if (lparen != std::string::npos &&
        line.compare(lparen + 1, rparen - lparen - 1, "llvm-symbolizer") == 0) {
      continue;
    }
    kids[ppid].push_back(pid);
  }
  closedir(d);
  std::set<pid_t> out;
  std::vector<pid_t> stack = {root};
  while (!stack.empty()) {
    pid_t p = stack.back();
    stack.pop_back();
    for (pid_t c : kids[p]) {
      if (out.insert(c).second) stack.push_back(c);
    }
  }
  return out;
}

namespace {
absl::Duration ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}
}  // namespace

double CpuContention() {
  // Computes until this thread has had 50 ms of CPU, and compares the wall
  // time that took: what share of a CPU a runnable thread of this process
  // gets now. (The load average overstates it: it counts niced builds,
  // which yield to this process, and this test's own earlier processes.)
  constexpr absl::Duration kSample = absl::Milliseconds(50);
  const absl::Time wall0 = absl::Now();
  const absl::Duration cpu0 = ThreadCpuTime();
  volatile uint64_t sink = 0;
  while (ThreadCpuTime() - cpu0 < kSample) {
    for (int i = 0; i < 10000; ++i) sink = sink + i;
  }
  return std::max(1.0, absl::FDivDuration(absl::Now() - wall0, kSample));
}

absl::Duration CpuBoundBudget(absl::Duration budget) {
  return discovery::ScaleTimeout(budget) * CpuContention();
}

bool Alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto r = line.rfind(')');
  return r != std::string::npos && line[r + 2] != 'Z' && line[r + 2] != 'X';
}

bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Duration step = absl::Milliseconds(1);
  while (!pred()) {
    if (absl::Now() >= deadline) return pred();
    absl::SleepFor(step);
    step = std::min(step * 2, absl::Milliseconds(20));
  }
  return true;
}

void ProcessTest::SetUp() {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  // Stretched like the runtime's timeouts under the sanitizer
  // configurations (TRACTOR_TIMEOUT_SCALE).
  absl::Duration limit = discovery::ScaleTimeout(TestTimeout());
  watchdog_ = std::thread([this, name, limit] {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, absl::ToChronoNanoseconds(limit),
                      [&] { return done_; })) {
      fprintf(stderr, "test %s exceeded its time bound of %s; aborting\n",
              name.c_str(), absl::FormatDuration(limit).c_str());
      for (pid_t p : Descendants(getpid())) kill(p, SIGKILL);
      abort();
    }
  });
}

void ProcessTest::TearDown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
  watchdog_.join();
  pid_t self = getpid();
  bool clean = WaitFor([&] { return Descendants(self).empty(); },
                       discovery::ScaleTimeout(absl::Seconds(3)));
  if (!clean) {
    auto left = Descendants(self);
    std::string pids;
    for (pid_t p : left) {
      pids += " " + std::to_string(p);
      kill(p, SIGKILL);
    }
    ADD_FAILURE() << "test left " << left.size()
                  << " descendant process(es) running:" << pids;
  }
}

}  // namespace tractor::testing
