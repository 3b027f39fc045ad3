// SPDX-License-Identifier: AGPL-3.0-or-later
// A shutdown gate (the shape of Seastar's `gate`): work that must finish
// before its owner does enters the gate and holds it; the owner closes the
// gate, which refuses new entries, and waits for the holders to leave.
//
//   Gate gate;
//   std::optional<Gate::Holder> hold = gate.TryEnter();
//   if (!hold) throw UsageError("closing");
//   std::thread([hold = *std::move(hold)] { ... }).detach();  // leaves at
//                                                             // its end
//   ...
//   gate.Close(CloseReason::kExit);
//   gate.WaitDrained();  // every holder has left
//
// A thread that holds the gate needs no owner that joins it: the gate's
// owner waits for it to leave instead. A holder leaves as the last thing it
// does with the owner's state.
#ifndef TRACTOR_ACTOR_INTERNAL_GATE_H_
#define TRACTOR_ACTOR_INTERNAL_GATE_H_

#include <cstddef>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"

namespace tractor::internal {

// Why a gate was closed: given to `Gate::Close` and reported to whoever
// waits for the gate (`WaitDrained`) or asks after it (`close_reason`).
enum class CloseReason {
  // The owner finished its work normally and is exiting: the holders run to
  // their natural end.
  kExit,
  // The owner was cancelled or failed: the holders' work is being cut short
  // (by the owner, through its own means; the gate cancels nothing).
  kCancel,
};

// Thread-safe. The gate must outlive `WaitDrained`; the destructor checks
// that no holder is left (a holder keeps only the gate's counter alive, not
// what the gate protects).
class Gate {
 public:
  // One entry into the gate; leaves it when destroyed (or `Leave`d).
  // Move-only.
  class Holder {
   public:
    Holder(Holder&& other) noexcept = default;
    Holder& operator=(Holder&& other) noexcept;
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;
    ~Holder() { Leave(); }

    // Leaves the gate now. Idempotent.
    void Leave();

   private:
    friend class Gate;
    struct State;
    explicit Holder(std::shared_ptr<State> state) : state_(std::move(state)) {}

    std::shared_ptr<State> state_;  // null once left or moved from
  };

  Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  // Dies (CHECK) when a holder is still inside.
  ~Gate();

  // Enters the gate, or returns nullopt once it is closed.
  std::optional<Holder> TryEnter();

  // Refuses every later `TryEnter`. The first reason given is kept.
  // Idempotent; does not wait.
  void Close(CloseReason reason);

  // The reason the gate was closed with, or nullopt while it is open.
  std::optional<CloseReason> close_reason() const;

  // How many holders are inside.
  size_t holders() const;

  // Blocks until the gate is closed and every holder has left, or until
  // `deadline`. Returns the reason the gate was closed with, or nullopt
  // when `deadline` passed first. A checkpoint (`internal::Wait`): throws
  // Cancelled when the caller's scope is cancelled (a caller that must not
  // be cut short waits shielded), and hands the task lock over while
  // blocked, so holders that are tasks can finish.
  std::optional<CloseReason> WaitDrained(
      absl::Time deadline = absl::InfiniteFuture());

 private:
  using State = Holder::State;
  const std::shared_ptr<State> state_;
};

// The counter a gate and its holders share.
struct Gate::Holder::State {
  Mutex mu;
  CondVar cv;  // signalled when the gate closes or its last holder leaves
  size_t holders ABSL_GUARDED_BY(mu) = 0;
  std::optional<CloseReason> closed ABSL_GUARDED_BY(mu);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_GATE_H_
