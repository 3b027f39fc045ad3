// SPDX-License-Identifier: AGPL-3.0-or-later
// Signal handling: one thread owns SIGTERM (and, in children, SIGINT is
// ignored); SIGINT in the root cancels the root's scope.
#ifndef TRACTOR_ACTOR_INTERNAL_SIGNALS_H_
#define TRACTOR_ACTOR_INTERNAL_SIGNALS_H_

#include <signal.h>

#include <atomic>
#include <functional>
#include <initializer_list>
#include <memory>
#include <thread>

#include "actor/cancel.h"

namespace tractor::internal {

// Blocks `sigs` in the calling thread (and the threads it starts later).
void BlockSignals(std::initializer_list<int> sigs);

// While alive, SIGINT cancels `scope` (once) instead of killing the
// process; `fired()` tells whether it did. The root actor raises
// KeyboardInterrupt after its tree is torn down. A SIGINT that arrives while
// `ignore_now` returns true is dropped (logged): the root ignores SIGINT
// while a debugger holds the terminal. Bound to the thread that creates it;
// owns the thread that waits for the signal and joins it.
class SigintWatch {
 public:
  explicit SigintWatch(std::shared_ptr<ScopeState> scope,
                       std::function<bool()> ignore_now = nullptr);
  ~SigintWatch();
  SigintWatch(const SigintWatch&) = delete;
  SigintWatch& operator=(const SigintWatch&) = delete;

  bool fired() const { return fired_.load(); }

 private:
  std::shared_ptr<ScopeState> scope_;
  std::function<bool()> ignore_now_;
  std::atomic<bool> fired_{false};
  std::atomic<bool> stop_{false};
  struct sigaction previous_;
  std::thread thread_;
};

// While alive, a thread of its own waits for SIGTERM (which the caller must
// have blocked in every thread) and then calls `on_term` once. Owns that
// thread and joins it: the destructor wakes it without calling `on_term`.
// A child actor keeps one for its whole life (`ChildMain`, which lets it go
// with `LeaveForExit` just before it ends the process with `_exit`).
class SigtermWatch {
 public:
  explicit SigtermWatch(std::function<void()> on_term);
  ~SigtermWatch();
  // Ends the watch and joins its thread (what the destructor does).
  // Idempotent.
  void Stop();
  // Ends the watch without waking or joining its thread, for a process
  // about to leave by `_exit`: the thread is detached and, unless a SIGTERM
  // woke it already, stays blocked in `sigwait` until the `_exit` ends it; a
  // SIGTERM from now on no longer calls `on_term`. (Waking the thread to
  // join it made an exiting child wait, on its way to `_exit`, for that
  // thread to be scheduled and to exit; a detached thread, finished or not,
  // is no thread leak to ThreadSanitizer.) Afterwards `Stop` and the
  // destructor do nothing. Idempotent.
  void LeaveForExit();
  SigtermWatch(const SigtermWatch&) = delete;
  SigtermWatch& operator=(const SigtermWatch&) = delete;

 private:
  // Shared with the thread, which may outlive this object once detached.
  std::shared_ptr<std::atomic<bool>> stop_ =
      std::make_shared<std::atomic<bool>>(false);
  std::thread thread_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_SIGNALS_H_
