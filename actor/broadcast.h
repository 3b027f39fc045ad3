// SPDX-License-Identifier: AGPL-3.0-or-later
// Broadcast fan-out of one receive source to many local consumers
// (tractor's `trionics.broadcast_receiver`;
// docs/behaviour.md#broadcast-to-local-tasks).
//
// A `BroadcastReceiver` is one consumer of a shared broadcast. The first one
// is made from a source function; `Subscribe()` makes more. Every consumer
// sees every value the broadcast received after that consumer was created,
// in order. Only one task at a time pulls from the source; the others wait
// and then read from a shared window of the most recent values. A consumer
// that falls more than the window behind is "lagged": it skips to the
// oldest value still retained and, by default, its next `Receive` throws
// `Lagged` to say so.
//
//   BroadcastReceiver first([&] { return stream.Receive(); });
//   TaskGroup::Open([&](TaskGroup& tg) {
//     tg.Spawn([&] {
//       BroadcastReceiver sub = first.Subscribe();
//       for (const Payload& v : sub) Use(v);
//     });
//     ...
//   });
#ifndef TRACTOR_ACTOR_BROADCAST_H_
#define TRACTOR_ACTOR_BROADCAST_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "actor/cancel.h"
#include "actor/payload.h"

namespace tractor {

namespace internal {
struct BroadcastState;
}  // namespace internal

// A broadcast consumer fell more than the window behind; values were
// skipped. The consumer has been resynced to the oldest retained value, so
// its next `Receive` continues from there.
class Lagged : public TooSlowError {
 public:
  explicit Lagged(const std::string& message, uint64_t skipped = 0)
      : TooSlowError(message), skipped_(skipped) {}
  std::string TypeName() const override { return "Lagged"; }
  // How many values this consumer missed.
  uint64_t skipped() const { return skipped_; }

 private:
  uint64_t skipped_;
};

struct BroadcastOptions {
  // How many of the most recent values the broadcast retains for consumers
  // that are behind (tractor: the stream's `msg_buffer_size`). 0 means 64.
  size_t capacity = 64;
  // For the first consumer: throw `Lagged` when it fell behind; false logs
  // a warning (glog) and resyncs silently.
  bool raise_on_lag = true;
};

// One consumer of a broadcast. Move-only; destroying it unsubscribes it
// (`Close`). The broadcast's shared state (source, window) lives as long as
// any consumer of it.
//
// Thread-safety: one handle is used by one task at a time; different
// handles of the same broadcast may be used from any tasks or threads
// concurrently. Waiting is a checkpoint (`internal::Wait`), so a task
// blocked in `Receive` can be cancelled and hands the actor's task lock over
// while it waits.
class BroadcastReceiver {
 public:
  // Returns the next value, or nullopt at the end of the stream.
  // `source` is called by at most one task at a time, never with the
  // broadcast's lock held; it returns nullopt at the end and may throw (the
  // error ends the broadcast for every consumer) or be cancelled (another
  // waiting consumer then calls it again; a source must not lose a value
  // when cancelled).
  using Source = std::function<std::optional<Payload>()>;

  // Starts a broadcast over `source` and returns its first consumer. The
  // source is retained until the last consumer is gone. Calls nothing yet.
  explicit BroadcastReceiver(Source source, BroadcastOptions options = {});

  BroadcastReceiver(BroadcastReceiver&& other) noexcept;
  BroadcastReceiver& operator=(BroadcastReceiver&& other) noexcept;
  BroadcastReceiver(const BroadcastReceiver&) = delete;
  BroadcastReceiver& operator=(const BroadcastReceiver&) = delete;
  ~BroadcastReceiver();

  // Returns the next value this consumer has not seen, or nullopt once the
  // source ended and every value before the end was read (repeatedly).
  // A checkpoint. Returns a pending value at once; otherwise blocks until
  // a value arrives, or becomes the task that pulls from the source, after
  // letting the actor's other tasks run and the consumers blocked waiting
  // for the previous value take it (so consumers that keep up never lag). Throws `Lagged` (after resyncing) when this
  // consumer fell more than the window behind and raises on lag; rethrows
  // the source's error (to every consumer, after the values before it);
  // throws `Cancelled` when the calling task is cancelled, and `UsageError`
  // on a closed (or moved-from) consumer.
  std::optional<Payload> Receive();

  // Returns a new consumer of the same broadcast that sees every value
  // received from now on. Throws UsageError when this consumer is closed.
  BroadcastReceiver Subscribe(bool raise_on_lag = true);

  // Unsubscribes this consumer; the others are unaffected. Idempotent. A
  // task blocked in this consumer's `Receive` wakes with UsageError.
  void Close();
  bool closed() const;

  // The window size.
  size_t capacity() const;
  // How many consumers of this broadcast are open.
  size_t subscriber_count() const;
  // True while some task is pulling from the source.
  bool pulling() const;

  // Range-for over received values; ends at the end of the stream.
  class iterator {
   public:
    iterator() = default;
    explicit iterator(BroadcastReceiver* r) : receiver_(r) { ++*this; }
    const Payload& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = receiver_->Receive();
      if (!value_) receiver_ = nullptr;
      return *this;
    }
    bool operator!=(const iterator& o) const {
      return receiver_ != o.receiver_;
    }

   private:
    BroadcastReceiver* receiver_ = nullptr;
    std::optional<Payload> value_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  BroadcastReceiver(std::shared_ptr<internal::BroadcastState> state,
                    bool raise_on_lag);

  std::shared_ptr<internal::BroadcastState> state_;
  uint64_t key_ = 0;
  bool raise_on_lag_ = true;
};

}  // namespace tractor

#endif  // TRACTOR_ACTOR_BROADCAST_H_
