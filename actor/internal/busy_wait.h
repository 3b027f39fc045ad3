// SPDX-License-Identifier: AGPL-3.0-or-later
// Busy wait: keeps a CPU of the process awake for a short window after the
// runtime's own I/O, so that the answer to what was just sent (or the next
// message of a dialog that is moving) wakes a thread on a CPU that is
// running, not on one that must first come out of its idle state (on a
// virtual machine, a halted virtual CPU the host has to schedule again).
//
// The runtime's waiting threads block as they always did (in gRPC's
// poller, on a condition variable); what spins is one thread per process,
// `tr-busy-wait`. Every runtime operation that sends or receives calls
// `NoteIo()`: while the spinner is awake that is one atomic add; it spins
// while the last `NoteIo()` is younger than the window, then sleeps on a
// futex until the next one.
//
// The spinner takes next to no time from a thread of this or another
// program that wants a CPU:
// - it spins by calling `sched_yield()`, so a thread woken on its CPU runs
//   at once (the scheduler need not preempt it);
// - when it finds it waited over a millisecond for its CPU (preempted that
//   long while spinning, or waiting that long to run after a wake-up), the
//   machine is busy: it stops spinning for 20 ms, and again for as long as
//   it keeps waiting.
// It is a thread of the normal class on purpose. An idle-class
// (SCHED_IDLE) spinner was measured first: the scheduler charges such a
// thread hundreds of times over for the CPU it gets (weight 3 against
// 1,024) and makes it wait that much longer for its next turn, and a
// process cannot exit before each of its threads has run once more, the
// last one out tearing down its memory at that thread's priority. On a
// machine kept busy by two spinning shells, a depth-3 failure (bench row
// 7b) then took 101 and 526 ms to reach its root in two runs, against 40
// ms without a spinner; with this one, 30-58 ms in three (29-40 without).
//
// The window is `RootOptions::busy_wait` (children inherit it; zero turns
// the spinner off). docs/architecture.md, "Performance", says what it buys
// and what it costs.
#ifndef TRACTOR_ACTOR_INTERNAL_BUSY_WAIT_H_
#define TRACTOR_ACTOR_INTERNAL_BUSY_WAIT_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/time/time.h"
#include "discovery/mutex.h"

namespace tractor::internal {

// The window when nothing sets it, and the longest one accepted.
inline constexpr absl::Duration kDefaultBusyWait = absl::Microseconds(200);
inline constexpr absl::Duration kMaxBusyWait = absl::Seconds(1);

// Thread-safe. `Note` may be called from any thread at any time, also
// before `Start` and after `Stop` (then it does nothing).
class BusyWait {
 public:
  // The process's, started and stopped by the runtime. Never destroyed: a
  // thread that notes I/O while the process exits never meets a destroyed
  // object.
  static BusyWait& Process();
  static void NoteIo() { Process().Note(); }

  BusyWait() = default;
  ~BusyWait() { Stop(); }
  BusyWait(const BusyWait&) = delete;
  BusyWait& operator=(const BusyWait&) = delete;

  // Sets the window and starts the spinner (asleep until the first
  // `Note`); a zero or negative window stops it. May be called again.
  void Start(absl::Duration window) ABSL_LOCKS_EXCLUDED(mu_);
  // Tells the spinner to end, without waiting for it: `Note` does nothing
  // from now on. The runtime's shutdown calls this first and `Stop` last,
  // so the thread ends while the rest shuts down.
  void RequestStop();
  // Stops and joins the spinner. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Marks I/O: the window starts again; wakes the spinner if it sleeps.
  void Note() {
    if (!on_.load(std::memory_order_relaxed)) return;
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst)) Wake();
  }

  // For tests and diagnostics.
  bool sleeping() const { return sleeping_.load(); }
  // How many `Note`s had to wake the spinner (a system call each).
  uint64_t wakes() const { return wakes_.load(); }
  // How many times the spinner backed off a busy machine.
  uint64_t backoffs() const { return backoffs_.load(); }
  // The spinner's thread id, 0 when none runs.
  pid_t spinner_tid() const { return tid_.load(); }

 private:
  void Wake();
  void Run(int64_t window_ns);
  void BackOff(int stat_fd);

  // True between Start and Stop; read first by `Note`.
  std::atomic<bool> on_{false};
  // Counts `Note`s; the futex word the spinner sleeps on.
  std::atomic<uint32_t> seq_{0};
  // The spinner is asleep, or about to be: `Note` must wake it.
  std::atomic<bool> sleeping_{true};
  // 1 once Stop asks the spinner to end; the futex word of its back-off.
  std::atomic<uint32_t> stop_{0};
  std::atomic<uint64_t> wakes_{0};
  std::atomic<uint64_t> backoffs_{0};
  std::atomic<pid_t> tid_{0};
  Mutex mu_;  // orders Start and Stop
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_BUSY_WAIT_H_
