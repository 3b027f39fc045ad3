// SPDX-License-Identifier: AGPL-3.0-or-later
// The process's reaper of child processes: one thread (`tr-reaper`) waits
// for the exit of every child watched here, through each child's pidfd in
// one epoll set, reaps it and runs its `done`. Process-wide and never
// destroyed, like the spawner; its thread starts with the first child and
// is never joined.
#ifndef TRACTOR_ACTOR_INTERNAL_REAPER_H_
#define TRACTOR_ACTOR_INTERNAL_REAPER_H_

#include <sys/types.h>

#include <functional>

#include "absl/time/time.h"

namespace tractor::internal {

// Watches `pid`, a child this process must reap, and runs `done` with its
// wait status on the reaper's thread once it has exited and been reaped
// (`done` must not block for long: it delays the other children's reaping).
// False when it cannot (no pidfd on this kernel): the caller reaps the
// child itself.
bool WatchChildExit(pid_t pid, std::function<void(int status)> done);

// The rest of the teardown ladder for a watched child nobody waits on any
// more (a nursery that went on once the child said bye): unless it has
// exited by `term_at`, the reaper's thread sends it SIGTERM (and SIGCONT)
// then, and SIGKILL `term_grace` later. False when `pid` is not watched
// here (no pidfd, or already reaped).
bool EscalateChildExit(pid_t pid, absl::Time term_at,
                       absl::Duration term_grace);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_REAPER_H_
