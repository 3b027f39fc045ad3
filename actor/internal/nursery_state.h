// SPDX-License-Identifier: AGPL-3.0-or-later
// The state of one OpenNursery block and of each child it started, shared
// by the spawn path (actor/nursery.cc) and the supervision of the children
// (actor/internal/supervision.h).
#ifndef TRACTOR_ACTOR_INTERNAL_NURSERY_STATE_H_
#define TRACTOR_ACTOR_INTERNAL_NURSERY_STATE_H_

#include <exception>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "actor/internal/child_proc.h"
#include "actor/internal/gate.h"
#include "actor/internal/portal_state.h"
#include "actor/internal/scope.h"
#include "actor/portal.h"
#include "discovery/mutex.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// A child's reaper's entry into its nursery's gate. The reaper leaves once
// the child is reaped; a nursery that goes on without waiting for the reap
// (the child said bye: `CancelAll` with `defer_reaping`) lets it go
// earlier. Thread-safe; leaving twice is harmless.
class ReaperHold {
 public:
  explicit ReaperHold(Gate::Holder hold) : hold_(std::move(hold)) {}
  void Leave() ABSL_LOCKS_EXCLUDED(mu_) {
    std::optional<Gate::Holder> hold;
    {
      MutexLock lock(&mu_);
      hold.swap(hold_);
    }
  }

 private:
  Mutex mu_;
  std::optional<Gate::Holder> hold_ ABSL_GUARDED_BY(mu_);
};

// One child of a nursery, filled in by `Spawn`: `portal`, `portal_state` and
// the final `aid` once the child linked back (it is listed in the nursery's
// `children` before that, so `Spawn` writes them, and `CancelAll` reads
// them, under the nursery's `mu`); `one_shot` by `RunInActor`.
struct ChildEntry {
  v1::Aid aid;
  Portal portal;
  std::shared_ptr<PortalState> portal_state;  // `portal`'s
  std::shared_ptr<ChildProc> proc;
  // Its reaper's entry into the nursery's gate; set before it is listed.
  std::shared_ptr<ReaperHold> reaper_hold;
  bool one_shot = false;
};

// State of one OpenNursery block.
class NurseryState {
 public:
  // Records a child's error; `cancel_siblings` also cancels the block (and
  // through it every other child).
  void RecordError(std::exception_ptr e, bool cancel_siblings)
      ABSL_LOCKS_EXCLUDED(mu) {
    {
      MutexLock lock(&mu);
      errors.push_back(std::move(e));
    }
    if (cancel_siblings && scope) scope->Cancel();
  }

  Mutex mu;
  std::vector<std::shared_ptr<ChildEntry>> children ABSL_GUARDED_BY(mu);
  std::vector<std::exception_ptr> errors ABSL_GUARDED_BY(mu);
  bool cancel_called ABSL_GUARDED_BY(mu) = false;
  // The block's scope: set before the body runs, then read-only.
  std::shared_ptr<ScopeState> scope;
  // Held by every child's reaper and every RunInActor result waiter, the
  // helper threads of the block; the block's exit closes it (no child is
  // started after that) and waits for them all to leave (a reaper whose
  // child said bye may be let go first: `CancelAll`).
  Gate helpers;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_NURSERY_STATE_H_
