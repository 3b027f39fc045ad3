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
// Thread-safe. The pool lives for the whole process (workers are never
// joined: a worker exits by itself once idle, and the process may end with
// workers parked).
void RunPooled(std::function<void()> fn);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_THREAD_POOL_H_
