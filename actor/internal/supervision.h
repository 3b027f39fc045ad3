// SPDX-License-Identifier: AGPL-3.0-or-later
// The supervision of a nursery's children: the reaper that reports a
// child's death, the hang checks (a dropped link, missing heartbeats), the
// teardown ladder (graceful cancel, SIGTERM, SIGKILL) and the failure an
// abnormal exit becomes (docs/behaviour.md#supervision).
#ifndef TRACTOR_ACTOR_INTERNAL_SUPERVISION_H_
#define TRACTOR_ACTOR_INTERNAL_SUPERVISION_H_

#include <exception>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "actor/internal/child_proc.h"
#include "actor/internal/gate.h"
#include "actor/internal/nursery_state.h"
#include "actor/portal.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// The failure of a child whose process ended abnormally: it waits (up to
// two seconds) for the child's exit to be reaped, and returns the
// ActorFailure naming its exit status and crash report, once per child;
// null when it exited cleanly, has not exited, or was reported already
// (then `*reported_elsewhere` is set).
std::exception_ptr TakeExitFailure(ChildProc& proc, const v1::Aid& aid,
                                   bool* reported_elsewhere);

// Reaps the child on the process's reaper thread (or a helper thread of its
// own) holding `hold` (the nursery's gate) until it is reaped.
void StartReaper(std::shared_ptr<ChildProc> proc, v1::Aid aid,
                 std::weak_ptr<NurseryState> nursery,
                 std::shared_ptr<ReaperHold> hold);

// A child whose link was dropped: on its own thread, a failure of the tree
// unless it turns out to have exited.
void SuspectHang(std::weak_ptr<ChildProc> weak_proc, v1::Aid aid,
                 std::weak_ptr<NurseryState> nursery,
                 absl::Duration hang_timeout);

// Debug mode: suspects a hang of a child that sends no heartbeat.
void WatchHeartbeats(std::weak_ptr<ChildProc> weak_proc,
                     absl::Duration hang_timeout);

// The teardown ladder of one child; returns once it is reaped.
void TearDownChild(ChildProc& proc, Portal portal, const v1::Aid& aid,
                   bool hard_kill);

// Marks the nursery cancelled and tears every child down, in parallel;
// returns once every child is reaped. With `defer_reaping`, a child that
// acknowledged the cancel and then said bye on its link (its tasks are
// over; it has nothing left to tell this actor) is not waited for: the
// process's reaper takes the rest of its ladder over (SIGTERM when its
// exit is overdue, then SIGKILL), its reaper leaves the nursery's gate,
// and the runtime reaps it before this process exits
// (`Runtime::KeepUnreaped`). Only a child actor's nursery defers: a root's
// `OpenNursery` returns with every descendant reaped.
void CancelAll(NurseryState& st, bool hard_kill, bool defer_reaping = false)
    ABSL_LOCKS_EXCLUDED(st.mu);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_SUPERVISION_H_
