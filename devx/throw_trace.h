// SPDX-License-Identifier: AGPL-3.0-or-later
// The stack of an exception's throw site, captured when it is thrown.
//
// Linking this library interposes `__cxa_throw`, the C++ runtime's entry
// for every `throw` (of any type, in any library that calls it through the
// dynamic linker, libstdc++'s own `std::out_of_range` etc. included): it
// records the thrower's return addresses next to the exception object and
// forgets them when the object is destroyed. Code that does not throw pays
// nothing; a throw pays one stack walk (see tools/bench, "throw trace").
// `std::make_exception_ptr` and `std::rethrow_exception` do not go through
// `__cxa_throw`: an exception created by the former has no throw site, one
// rethrown by the latter keeps the one it had.
#ifndef TRACTOR_DEVX_THROW_TRACE_H_
#define TRACTOR_DEVX_THROW_TRACE_H_

#include <exception>
#include <string>
#include <vector>

namespace tractor::devx {

// The environment variable that turns throw-site capture off ("0").
inline constexpr char kThrowTraceEnv[] = "TRACTOR_THROW_TRACE";

// Returns the return addresses captured when the exception held by `e` was
// thrown, innermost (the throw site) first; empty when none were captured.
// Thread-safe.
std::vector<void*> ThrowSiteStack(const std::exception_ptr& e);

// Returns the throw site's stack of `e` symbolized, one frame a line (see
// FormatFrames in devx/stack.h), or "" when none was captured.
std::string ThrowSiteTrace(const std::exception_ptr& e,
                           const std::string& indent = "    ");

// Turns capture on or off for throws from now on (on by default unless
// TRACTOR_THROW_TRACE=0). Thread-safe.
void SetThrowCapture(bool on);
bool ThrowCaptureEnabled();

// How many thrown exceptions currently have a recorded stack (for tests).
int TrackedThrows();

}  // namespace tractor::devx

#endif  // TRACTOR_DEVX_THROW_TRACE_H_
