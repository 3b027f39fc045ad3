// SPDX-License-Identifier: AGPL-3.0-or-later
// Finding a test's processes through /proc, also once they are reparented:
// the test sets an environment mark that every process it starts inherits.
// Header-only, test-only.
#ifndef TRACTOR_TESTS_FAULTS_PROC_SCAN_H_
#define TRACTOR_TESTS_FAULTS_PROC_SCAN_H_

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tractor::testing {

// Returns the pids of every process (this one excluded) whose environment
// holds `mark`, a whole "VAR=value" entry.
inline std::vector<pid_t> MarkedProcesses(const std::string& mark) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid == getpid()) continue;
    std::ifstream env(absl::StrCat("/proc/", pid, "/environ"), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(env)),
                           std::istreambuf_iterator<char>());
    size_t at = 0;
    while (at < text.size()) {
      size_t end = text.find('\0', at);
      if (end == std::string::npos) end = text.size();
      if (text.compare(at, end - at, mark) == 0) {
        out.push_back(pid);
        break;
      }
      at = end + 1;
    }
  }
  closedir(proc);
  return out;
}

// Field `n` (n >= 3, numbered as in proc(5)) of /proc/<pid>/stat, or ""
// when there is no such process or field. The command name (field 2) is in
// parentheses and may hold spaces, so fields are counted after its ')'.
inline std::string ProcStatField(pid_t pid, int n) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(f, line)) return "";
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return "";
  std::istringstream rest(line.substr(paren + 1));
  std::string field;
  for (int i = 3; i <= n; ++i) {
    if (!(rest >> field)) return "";
  }
  return field;
}

// The state letter of a process ('R', 'S', 'T', 'Z', ...), or 0 when there
// is no such process.
inline char ProcState(pid_t pid) {
  const std::string state = ProcStatField(pid, 3);
  return state.empty() ? 0 : state[0];
}

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_FAULTS_PROC_SCAN_H_
