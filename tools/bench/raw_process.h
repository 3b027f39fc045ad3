// SPDX-License-Identifier: AGPL-3.0-or-later
// A raw_server child process of the bench, and reading a process's memory.
// Internal to //tools/bench.
#ifndef TRACTOR_TOOLS_BENCH_RAW_PROCESS_H_
#define TRACTOR_TOOLS_BENCH_RAW_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace tractor::bench {

// One running raw_server. Not thread-safe; owned by the thread that started
// it, which must live as long as the process does (the child gets
// PR_SET_PDEATHSIG, which fires when the forking thread exits). The
// destructor stops and reaps the process.
class RawServerProcess {
 public:
  // Forks and executes `path` with `args` (raw_server's flags: "--once",
  // "--api=sync", "--unix=PATH"), then waits up to 10 s for it to print its
  // port. Throws std::runtime_error on failure.
  static std::unique_ptr<RawServerProcess> Start(
      const std::string& path, const std::vector<std::string>& args);
  ~RawServerProcess();
  RawServerProcess(const RawServerProcess&) = delete;
  RawServerProcess& operator=(const RawServerProcess&) = delete;

  // "127.0.0.1:<port>".
  std::string addr() const;
  pid_t pid() const { return pid_; }

  // Closes the server's stdin (which ends it) and reaps it; SIGKILL after
  // `grace_ms`. Idempotent.
  void Stop(int grace_ms = 2000);
  // Waits up to `ms` for the process to exit by itself (--once), then stops
  // it. Returns true if it exited by itself.
  bool WaitExit(int ms);

 private:
  RawServerProcess() = default;
  bool Reap(int ms);

  pid_t pid_ = -1;
  int port_ = 0;
  int stdin_fd_ = -1;
  bool reaped_ = false;
};

// Finds the raw_server binary: `flag` if set, else next to this binary or in
// its runfiles. Throws std::runtime_error when there is none.
std::string FindRawServer(const std::string& flag);

// Returns the resident set size of `pid` in KiB (VmRSS), or -1.
long VmRssKiB(pid_t pid);

}  // namespace tractor::bench

#endif  // TRACTOR_TOOLS_BENCH_RAW_PROCESS_H_
