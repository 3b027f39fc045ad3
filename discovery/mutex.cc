// SPDX-License-Identifier: AGPL-3.0-or-later
// Process-wide set-up for the project's `Mutex` (mutex.h) under
// ThreadSanitizer with Debian's uninstrumented Abseil; empty in every other
// build (with the instrumented Abseil of tools/tsan_deps.sh, TSan sees
// Abseil's own spin lock around that graph, and its deadlock detection stays
// on as in a plain build).
#include "discovery/mutex.h"

#ifdef TRACTOR_TSAN_ANNOUNCE
namespace tractor {
namespace {

// Turns Abseil's own deadlock detection off when the process starts, under
// TSan only. The system's Abseil is a debug build that keeps the
// acquired-before graph of every `absl::Mutex` (its `GraphCycles`) under a
// spin lock of its own; Abseil is not instrumented, so TSan cannot see that
// lock and reports the graph's updates from several threads as races inside
// libabsl. Nothing is lost: TSan detects lock-order inversions itself, for
// every `Mutex` (mutex.h announces each lock and unlock to it).
const bool kAbseilDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace
}  // namespace tractor
#endif
