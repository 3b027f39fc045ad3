// SPDX-License-Identifier: AGPL-3.0-or-later
// A pool of reusable threads for remote tasks and runtime helpers.
#ifndef TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_
#define TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_

#include <functional>

namespace tractor::internal {

// Runs `fn` on a pooled thread. Every queued item gets a worker of its own
// (items may block for long, e.g. a remote task waiting on its stream): an
// idle worker is woken while there are more idle workers than queued items,
// else a new worker starts. Workers idle for 30 s exit.
//
// Thread-safe. The pool is process-wide and never destroyed; it owns its
// workers: one that exits after being idle is joined by the pool (on a
// later `RunPooled`), and those still parked when the process ends are
// process-lifetime threads, never joined.
void RunPooled(std::function<void()> fn);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_
