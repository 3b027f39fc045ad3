// SPDX-License-Identifier: AGPL-3.0-or-later
#include "devx/debugger.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_replace.h"

// Set by gdb (through the script below) once it is attached and its
// breakpoint is in place; read by the stopping thread. C linkage and no
// debug information needed: gdb finds both by their symbol.
extern "C" {
volatile int tractor_debugger_attached = 0;
// Called by the stopped thread once gdb let it go on: gdb's breakpoint here
// detaches and quits.
__attribute__((noinline, used)) void tractor_debugger_resumed() {
  asm volatile("" ::: "memory");
}
}

namespace tractor::devx {
namespace {

std::mutex g_stop_mu;  // one stop at a time in this process
std::mutex g_hook_mu;
PostMortemHook* g_hook = nullptr;

void WriteStderr(const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = write(STDERR_FILENO, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// The pid of this process's tracer (0: none).
int TracerPid() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("TracerPid:", 0) == 0) {
      int pid = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(10)), &pid)) {
        return pid;
      }
    }
  }
  return 0;
}

// The gdb script: attach, stop the thread `tid`, select the frame of
// interest; on continue, the breakpoint at tractor_debugger_resumed
// detaches and quits.
std::string GdbScript(long tid, const std::string& select_caller_of) {
  const std::string needle = absl::StrReplaceAll(
      select_caller_of, {{"\\", "\\\\"}, {"'", "\\'"}});
  return absl::StrCat(
      "set pagination off\n"
      "set confirm off\n"
      "set print thread-events off\n"
      "set style enabled off\n"
      // A ctrl-c at the terminal reaches every process of the group; the
      // actors ignore it, and gdb must not stop the inferior for it.
      "handle SIGINT nostop noprint pass\n"
      "break tractor_debugger_resumed\n"
      "commands\n"
      "silent\n"
      "detach\n"
      "quit\n"
      "end\n"
      "set var *(int*)&tractor_debugger_attached = 1\n"
      "continue\n"
      "python\n"
      "for t in gdb.selected_inferior().threads():\n"
      "    if t.ptid[1] == ", tid, ":\n"
      "        t.switch()\n"
      "needle = '", needle, "'\n"
      "f = gdb.newest_frame()\n"
      "if needle:\n"
      "    while f is not None and needle not in (f.name() or ''):\n"
      "        f = f.older()\n"
      "    if f is not None and f.older() is not None:\n"
      "        f = f.older()\n"
      "if f is not None:\n"
      "    f.select()\n"
      "end\n"
      "echo [tractor] stopped; 'bt' shows the stack, 'continue' resumes\\n\n"
      "frame\n");
}

}  // namespace

std::string StopInDebugger(const DebuggerStop& stop) {
  std::lock_guard<std::mutex> one_at_a_time(g_stop_mu);
  // Under Yama's ptrace scope 1 a process may be traced only by its
  // ancestors or by the tracer it names; gdb is this process's child.
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  const pid_t self = getpid();
  const long tid = syscall(SYS_gettid);
  char path[] = "/tmp/tractor-gdb-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    const std::string why =
        absl::StrCat("cannot write the gdb script: ", strerror(errno));
    WriteStderr(absl::StrCat("[tractor] ", why, "\n"));
    return why;
  }
  const std::string script = GdbScript(tid, stop.select_caller_of);
  const bool written =
      write(fd, script.data(), script.size()) ==
      static_cast<ssize_t>(script.size());
  close(fd);
  if (!written) {
    unlink(path);
    WriteStderr("[tractor] cannot write the gdb script\n");
    return "cannot write the gdb script";
  }
  WriteStderr(stop.banner);
  tractor_debugger_attached = 0;
  // Everything the child needs, prepared before fork (only async-signal-safe
  // calls between fork and exec).
  const std::string pid_arg = std::to_string(self);
  std::vector<const char*> argv = {"gdb", "-q", "-nx", "-p", pid_arg.c_str(),
                                   "-x", path, nullptr};
  const pid_t gdb = fork();
  if (gdb == 0) {
    // gdb goes when this process goes (a holder killed mid-session), and
    // gets the signals the actor blocks or ignores (SIGTERM, SIGINT).
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != self) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    execvp("gdb", const_cast<char* const*>(argv.data()));
    const char msg[] = "[tractor] cannot run gdb (is it installed?)\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  if (gdb < 0) {
    unlink(path);
    const std::string why = absl::StrCat("cannot fork gdb: ", strerror(errno));
    WriteStderr(absl::StrCat("[tractor] ", why, "\n"));
    return why;
  }
  // Wait for gdb to attach (it stops this thread meanwhile), or to exit.
  bool gdb_exited = false;
  int status = 0;
  while (tractor_debugger_attached == 0) {
    const pid_t r = waitpid(gdb, &status, WNOHANG);
    if (r == gdb || (r < 0 && errno != EINTR)) {
      gdb_exited = true;
      break;
    }
    usleep(10 * 1000);
  }
  // gdb has read the script by now (or is gone): no file is left behind
  // even when this process is killed in the debugger.
  unlink(path);
  if (!gdb_exited && TracerPid() != 0) {
    // gdb stops this thread here, with the frame of interest selected.
    raise(SIGTRAP);
    tractor_debugger_resumed();
  }
  if (!gdb_exited) {
    while (waitpid(gdb, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (gdb_exited && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
    return "gdb could not attach";
  }
  return "";
}

void WaitForExternalDebugger(const std::string& banner) {
  std::lock_guard<std::mutex> one_at_a_time(g_stop_mu);
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  WriteStderr(absl::StrCat(banner, "[tractor] attach with: gdb -p ", getpid(),
                           " (on host ", host,
                           "); the task goes on once the debugger detaches\n"));
  while (TracerPid() == 0) usleep(100 * 1000);
  while (TracerPid() != 0) usleep(100 * 1000);
}

void SetPostMortemHook(PostMortemHook hook) {
  std::lock_guard<std::mutex> lock(g_hook_mu);
  delete g_hook;
  g_hook = hook ? new PostMortemHook(std::move(hook)) : nullptr;
}

void PostMortem(const std::exception_ptr& error, const std::string& where) {
  // The last error this thread examined: a rethrow of the same object
  // compares equal.
  thread_local std::exception_ptr examined;
  PostMortemHook hook;
  {
    std::lock_guard<std::mutex> lock(g_hook_mu);
    if (g_hook == nullptr) return;
    hook = *g_hook;
  }
  if (error != nullptr && error == examined) return;
  examined = error;
  try {
    hook(error, where);
  } catch (const std::exception& e) {
    WriteStderr(absl::StrCat("[tractor] post-mortem failed: ", e.what(), "\n"));
  } catch (...) {
    WriteStderr("[tractor] post-mortem failed\n");
  }
}

}  // namespace tractor::devx
