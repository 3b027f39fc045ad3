// SPDX-License-Identifier: AGPL-3.0-or-later
// Stopping a thread of this process in gdb, on this process's terminal.
//
// `StopInDebugger` forks `gdb -p <this pid>` with this process's standard
// streams as its terminal and stops the calling thread under it with the
// frame of interest selected; the other threads stop with it (gdb's
// all-stop mode). When the user continues (`continue`, `c`), gdb detaches
// and exits, and the thread returns. The tree-wide lock that decides who
// may use the terminal lives in the runtime (actor/internal/debugger.h);
// this library depends on nothing of //actor.
#ifndef TRACTOR_DEVX_DEBUGGER_H_
#define TRACTOR_DEVX_DEBUGGER_H_

#include <exception>
#include <functional>
#include <string>

namespace tractor::devx {

struct DebuggerStop {
  // Printed to stderr before gdb starts (who stops, and why).
  std::string banner;
  // gdb selects the frame that called the innermost function whose name
  // contains this (e.g. "tractor::Pause": the user's frame). Empty: the
  // stopped thread's innermost frame.
  std::string select_caller_of;
};

// Stops the calling thread in gdb as described above and returns once gdb
// has detached. Returns "" then, or why no debugger could be started (gdb
// not installed, fork failed), having printed that to stderr. Without a
// terminal on stdin gdb reads end-of-file, detaches and the thread goes
// on. One stop at a time per process: a second caller waits.
std::string StopInDebugger(const DebuggerStop& stop);

// For a process whose terminal is not the user's (another host): prints
// `banner` and how to attach (`gdb -p PID` on this host) to stderr, then
// blocks until a debugger has attached and detached again.
void WaitForExternalDebugger(const std::string& banner);

// The post-mortem hook: what the runtime does, in debug mode, with an error
// that escapes a task before it is boxed (takes the tree-wide lock and
// stops in gdb). `where` names the task. Not set: `PostMortem` does
// nothing.
using PostMortemHook =
    std::function<void(const std::exception_ptr& error, const std::string& where)>;
void SetPostMortemHook(PostMortemHook hook);
// Runs the hook, if any, on the calling thread, once per exception object:
// an error examined already (by OpenCrashHandler, then by the task it
// escapes) is not examined again. Exceptions the hook throws are swallowed
// (logged to stderr).
void PostMortem(const std::exception_ptr& error, const std::string& where);

}  // namespace tractor::devx

#endif  // TRACTOR_DEVX_DEBUGGER_H_
