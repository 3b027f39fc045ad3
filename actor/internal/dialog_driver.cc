// SPDX-License-Identifier: AGPL-3.0-or-later
// Who drives a dialog's completion queue: the task waiting on it
// (`DriveBlocker`), or a pooled thread while nobody waits (see dialog.h).
#include "actor/internal/dialog.h"

#include <utility>

#include "actor/internal/thread_pool.h"

namespace tractor::internal {

void Dialog::DriveBlocker::Block(Mutex& mu, absl::Time deadline) {
  Dialog& d = *d_;
  d.mu_.AssertHeld();
  CqTransport* t = d.owned_.get();
  if (t != nullptr && !t->finished()) {
    if (d.driver_ == Driver::kNone) {
      d.DriveOnceLocked(deadline);
      return;
    }
    // A receiver takes the queue over from a pooled thread, so the message
    // it waits for wakes no other thread first. A sender waiting for room
    // leaves it there: the pooled thread's write completions wake it.
    if (d.driver_ == Driver::kBackground && !d.task_wants_queue_ &&
        !d.close_requested_ && cv_ != &d.send_cv_) {
      d.task_wants_queue_ = true;
      t->Kick();
    }
  }
  if (deadline == absl::InfiniteFuture()) {
    cv_->Wait(&d.mu_);
  } else {
    cv_->WaitWithDeadline(&d.mu_, deadline);
  }
}

void Dialog::DriveOnceLocked(absl::Time deadline) {
  driver_ = Driver::kTask;
  mu_.Unlock();
  owned_->DriveOnce(deadline);
  mu_.Lock();
  driver_ = Driver::kNone;
  undriven_since_ = absl::Now();
  // Another waiter (a sender while this one receives) may drive now.
  SignalWaitersLocked();
}

void Dialog::DriveBlocker::Wake() {
  // Called with mu_ held (by the cancel's waker).
  Dialog& d = *d_;
  d.mu_.AssertHeld();
  if (d.driver_ != Driver::kNone && d.owned_ && !d.owned_->finished()) {
    d.owned_->Kick();
  }
}

void Dialog::AfterWaitLocked() {
  if (close_requested_) StartBackgroundLocked();
}

void Dialog::StartBackgroundLocked(bool writes_only) {
  CqTransport* t = owned_.get();
  // A closed dialog is driven until its RPC is over (the thread holds it
  // alive); an open one only while something is in flight.
  if (t == nullptr || t->finished() || driver_ != Driver::kNone ||
      (!close_requested_ && !t->busy())) {
    return;
  }
  driver_ = Driver::kBackground;
  writes_only_ = writes_only;
  RunPooled([self = shared_from_this()] { self->DriveInBackground(); });
}

void Dialog::DriveInBackground() {
  CqTransport* t = owned_.get();
  for (;;) {
    {
      MutexLock lk(&mu_);
      // A waiting task takes the queue over; with nothing in flight there
      // is nothing to drive (the watcher comes back when there is).
      // A closed dialog is driven to its end here, even when a task asked
      // for the queue (it may have stopped waiting meanwhile).
      if ((task_wants_queue_ && !close_requested_) || t->finished() ||
          (!close_requested_ && !t->busy()) ||
          (writes_only_ && !close_requested_ && !write_busy_ &&
           outbox_.empty())) {
        writes_only_ = false;
        driver_ = Driver::kNone;
        task_wants_queue_ = false;
        undriven_since_ = absl::Now();
        SignalWaitersLocked();
        return;
      }
    }
    // Bounded: a closed dialog may have nothing in flight for a moment
    // (its last operation being posted), and then this looks again.
    t->DriveOnce(absl::Now() + absl::Milliseconds(100));
  }
}

void Dialog::CheckAway(absl::Time now) {
  bool undeferred = false;
  {
    MutexLock lk(&mu_);
    // The task took a message and has done nothing on the dialog since:
    // the next read starts now, so that what arrives (an Error) is seen.
    if (driver_ == Driver::kNone && now - undriven_since_ >= kAwayAfter) {
      undeferred = UndeferReadLocked();
    }
  }
  if (undeferred) Pump();
  MutexLock lk(&mu_);
  CqTransport* t = owned_.get();
  if (t == nullptr || driver_ != Driver::kNone || t->finished() || !t->busy()) {
    return;
  }
  if (close_requested_ || now - undriven_since_ >= kAwayAfter) {
    StartBackgroundLocked();
  }
}

void Dialog::DriveQueuedWrites() {
  // A message queued behind a write in flight leaves when that write's
  // completion is taken. Nobody may wait on this dialog soon (a sender
  // streams on), so a pooled thread drives the queue until the outbox is
  // empty; the messages that queue meanwhile leave together (a Batch).
  MutexLock lk(&mu_);
  if (!write_busy_ || outbox_.empty() || driver_ != Driver::kNone) return;
  StartBackgroundLocked(/*writes_only=*/true);
}

void Dialog::DriveToTheEnd() {
  // Closed: what is still in flight usually completes within microseconds
  // (the peer's status is on its way), so this thread drives the queue a
  // little while before it hands it to a pooled thread.
  MutexLock lk(&mu_);
  CqTransport* t = owned_.get();
  const absl::Time until = absl::Now() + kLinger;
  while (t != nullptr && driver_ == Driver::kNone && !t->finished() &&
         t->busy() && absl::Now() < until) {
    DriveOnceLocked(until);
  }
  closer_lingers_ = false;
  StartBackgroundLocked();
}

}  // namespace tractor::internal
