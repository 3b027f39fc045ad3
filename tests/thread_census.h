// SPDX-License-Identifier: AGPL-3.0-or-later
// Counting this process's threads by name, for tests that check which
// threads a component starts (gRPC's callback threads, the runtime's own),
// and waiting with a deadline for such a count to settle.
#ifndef TRACTOR_TESTS_THREAD_CENSUS_H_
#define TRACTOR_TESTS_THREAD_CENSUS_H_

#include <dirent.h>

#include <sys/types.h>

#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tractor::testing {

// How many threads of this process have the name `name` (as
// /proc/self/task/*/comm gives it); -1 when /proc cannot be read.
inline int ThreadsNamed(const std::string& name) {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat("/proc/self/task/", e->d_name, "/comm"));
    std::string comm_name;
    std::getline(comm, comm_name);
    if (comm_name == name) ++n;
  }
  closedir(dir);
  return n;
}

// The names of process `pid`'s threads (/proc/<pid>/task/*/comm), counted;
// empty when /proc cannot be read.
inline std::map<std::string, int> ThreadNamesOf(pid_t pid) {
  std::map<std::string, int> names;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream comm(absl::StrCat(dir, "/", e->d_name, "/comm"));
      std::string name;
      if (std::getline(comm, name)) ++names[name];
    }
    closedir(d);
  }
  return names;
}

// Polls `pred` every 20 ms until it holds or `timeout` passes (for states
// nobody signals, such as the thread list in /proc); returns `pred()`.
template <class Pred>
bool WaitUntil(Pred pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() >= deadline) return pred();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_THREAD_CENSUS_H_
