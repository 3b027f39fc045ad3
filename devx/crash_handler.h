// SPDX-License-Identifier: AGPL-3.0-or-later
// The fatal-signal handler, stack dumps on SIGUSR1 and OpenCrashHandler
// (docs/debugging.md).
//
// Every actor process installs the crash handler (the root in
// OpenRootActor, a child in its boot); any other program may too. On
// SIGSEGV, SIGABRT, SIGBUS, SIGFPE or SIGILL it writes a report to stderr
// and, in a child actor, to the crash pipe its parent opened at spawn
// (`SpawnSpec.crash_fd`): the signal, the crashing thread's stack (with
// file:line from addr2line where the binary carries debug information) and
// every other thread's stack as symbolized frames, each labelled with the
// task it runs. Then the signal takes its default action, so the process
// dies by it and its parent sees which. The handler runs only
// async-signal-safe code (see devx/stack.h).
#ifndef TRACTOR_DEVX_CRASH_HANDLER_H_
#define TRACTOR_DEVX_CRASH_HANDLER_H_

#include <exception>
#include <string>
#include <utility>

#include "devx/debugger.h"

namespace tractor::devx {

// When the crash handler does its preparation: loading the unwinder and
// the symbolizer, and finding which loaded binaries carry debug
// information (a few milliseconds, mostly file reads).
enum class CrashHandlerPreparation {
  kNow,       // before InstallCrashHandler returns
  kByCaller,  // when the caller calls PrepareCrashHandler, on any thread
};

// Installs the fatal-signal handler for the whole process (idempotent; a
// later call with `crash_fd >= 0` sets the crash pipe). The report also
// goes to `crash_fd` when it is >= 0; the handler never blocks on it (the
// descriptor is made non-blocking; a report that does not fit is cut).
// With `kByCaller` the handler is installed at once and the caller runs
// PrepareCrashHandler soon after, e.g. on a thread of its own while it
// does other work. A fatal signal while the preparation runs waits for it
// (at most 2 s; not on the thread preparing); a report written without
// the preparation (a signal before it started, or on its thread) has no
// source lines, and its unwinder is loaded in the handler. Thread-safe.
void InstallCrashHandler(
    int crash_fd = -1,
    CrashHandlerPreparation preparation = CrashHandlerPreparation::kNow);

// The crash handler's preparation (see CrashHandlerPreparation).
// Idempotent; thread-safe; returns once it is done.
void PrepareCrashHandler();

// Names the process in crash reports and stack dumps ("actor 'worker'
// 1a2b3c4d pid 1234"). Thread-safe; call before other threads crash.
void SetProcessLabel(const std::string& label);

// Installs the SIGUSR1 handler: each SIGUSR1 writes every thread's stack,
// symbolized and labelled with its task, to stderr (DumpThreads in
// devx/stack.h), from a thread of its own that lives as long as the
// process. Idempotent; thread-safe.
void InstallStackDumpOnSignal();

// Returns the text SIGUSR1 writes: a header naming the process, then every
// thread's stack.
std::string StackReport();

// Writes to stderr what OpenCrashHandler prints for an escaping exception:
// its type and message and the stack of its throw site. Returns the text.
std::string ReportEscapingException(const std::exception_ptr& e);

// Runs `fn` with the crash handler installed; an exception escaping `fn`
// is reported (ReportEscapingException: its throw site's stack on stderr)
// and rethrown. A `tractor::Cancelled` is rethrown without a report. In an
// actor in debug mode the actor first stops in the debugger under the
// tree-wide lock (`PostMortem`, devx/debugger.h), once per exception: the
// task the error then escapes does not stop for it again. Works in any
// code, in an actor or not. Returns what `fn` returns.
template <class F>
decltype(auto) OpenCrashHandler(F&& fn) {
  InstallCrashHandler();
  try {
    return std::forward<F>(fn)();
  } catch (...) {
    const std::exception_ptr error = std::current_exception();
    ReportEscapingException(error);
    PostMortem(error, "OpenCrashHandler");
    throw;
  }
}

}  // namespace tractor::devx

#endif  // TRACTOR_DEVX_CRASH_HANDLER_H_
