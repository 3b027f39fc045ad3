// SPDX-License-Identifier: AGPL-3.0-or-later
// A pool of reusable threads for remote tasks and runtime helpers.
#ifndef TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_
#define TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_

#include <cstddef>
#include <functional>

#include "absl/time/time.h"

namespace tractor::internal {

// Runs `fn` on a pooled thread. Every queued item gets a worker of its own
// (items may block for long, e.g. a remote task waiting on its stream): an
// idle worker is woken while there are more idle workers than queued items,
// else a new worker starts. Workers idle for 1 s exit, so the threads of a
// burst of tasks are released promptly. Every worker is named "tr-task".
//
// Thread-safe. The pool is process-wide and never destroyed; it owns its
// workers: a worker that exits after being idle is joined at once by the
// pool's reaper thread ("tr-pool-reaper", which runs while workers exit and
// ends once it has joined them all), so no exited worker is left unjoined
// and an idle pool holds no thread. Workers still parked when the process ends are
// process-lifetime threads.
void RunPooled(std::function<void()> fn);

// The pool's threads, for tests and diagnostics.
struct PoolThreadCounts {
  size_t workers = 0;   // running or idle workers
  size_t unjoined = 0;  // workers that exited and are not joined yet
};
PoolThreadCounts PooledThreadCounts();

// For the way out of the process: from now on no worker leaves when idle
// (the parked ones are process-lifetime threads), and the workers that
// already left are joined, waiting up to `bound` for those the reaper is
// joining, so that no thread is left finished and unjoined when the process
// ends (ThreadSanitizer reports such a thread as leaked). `exit` runs it by
// itself (atexit); a path that leaves by `_exit` calls it first. Work may
// still be queued afterwards, and runs as before.
void QuiescePoolForExit(absl::Duration bound = absl::Seconds(2));

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_
