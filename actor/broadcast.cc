// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/broadcast.h"

#include <deque>
#include <exception>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/scope.h"
#include "discovery/mutex.h"
#include "glog/logging.h"

namespace tractor {
namespace internal {

// Shared by every consumer of one broadcast. Values carry sequence numbers:
// `window` holds the values numbered [next_seq - window.size(), next_seq),
// oldest first, and each consumer records the number of the next value it
// reads, so "behind by more than the window" is a comparison.
//
// Fairness. Tasks are threads, so a consumer woken for a new value may not
// have been scheduled yet when the puller, already running, wants the next
// one; pulling again right away would lag consumers that keep up, which
// trio's scheduler never does. So a consumer blocked in `Receive` (waiting,
// or handing the task lock over before it pulls) records the state
// generation it last looked at (`seen_gen`), and nobody pulls while another
// blocked consumer has not yet looked at the latest state: woken consumers
// take their value first. Consumers busy elsewhere (slow ones) are not
// waited for, and a consumer with values pending takes them all at once.
struct BroadcastState {
  struct Sub {
    uint64_t next = 0;      // sequence number of the next value to read
    bool blocked = false;   // inside Receive's wait
    uint64_t seen_gen = 0;  // while blocked: last generation looked at
  };

  BroadcastReceiver::Source source;  // immutable after construction
  size_t capacity = 64;              // immutable after construction

  Mutex mu;
  CondVar cv;
  std::deque<Payload> window ABSL_GUARDED_BY(mu);
  uint64_t next_seq ABSL_GUARDED_BY(mu) = 0;
  std::map<uint64_t, Sub> subs ABSL_GUARDED_BY(mu);  // by consumer key
  uint64_t next_key ABSL_GUARDED_BY(mu) = 0;
  uint64_t gen ABSL_GUARDED_BY(mu) = 0;  // bumped on every change
  bool pulling ABSL_GUARDED_BY(mu) = false;  // a task is inside source()
  bool ended ABSL_GUARDED_BY(mu) = false;    // source ended or failed
  std::exception_ptr error ABSL_GUARDED_BY(mu);  // why it failed

  uint64_t oldest() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return next_seq - window.size();
  }

  // Wakes every blocked consumer to look at the new state.
  void Changed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++gen;
    cv.SignalAll();
  }

  // True when every blocked consumer but `self` has looked at the latest
  // state (so none is about to take a value).
  bool OthersSettled(uint64_t self) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& [key, sub] : subs) {
      if (key != self && sub.blocked && sub.seen_gen != gen) return false;
    }
    return true;
  }
};

// Marks consumer `key` as blocked in `Receive` while alive. `s.mu` must be
// held when it is created and destroyed.
class BlockedGuard {
 public:
  BlockedGuard(BroadcastState& s, uint64_t key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu)
      : s_(s), key_(key) {
    auto it = s_.subs.find(key_);
    if (it == s_.subs.end()) return;
    it->second.blocked = true;
    it->second.seen_gen = s_.gen;
  }
  BlockedGuard(const BlockedGuard&) = delete;
  BlockedGuard& operator=(const BlockedGuard&) = delete;
  // Runs with `s.mu` held (also when a wait throws: `Wait` holds the mutex
  // again before it throws).
  ~BlockedGuard() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    s_.mu.AssertHeld();
    auto it = s_.subs.find(key_);
    if (it != s_.subs.end()) it->second.blocked = false;
    s_.cv.SignalAll();  // candidates to pull re-check OthersSettled
  }

 private:
  BroadcastState& s_;
  const uint64_t key_;
};

}  // namespace internal

namespace {
constexpr size_t kDefaultCapacity = 64;
}  // namespace

BroadcastReceiver::BroadcastReceiver(Source source, BroadcastOptions options)
    : state_(std::make_shared<internal::BroadcastState>()),
      raise_on_lag_(options.raise_on_lag) {
  CHECK(source) << "a broadcast needs a source";
  state_->source = std::move(source);
  state_->capacity =
      options.capacity == 0 ? kDefaultCapacity : options.capacity;
  MutexLock lock(&state_->mu);  // not shared yet; for the analysis
  key_ = state_->next_key++;
  state_->subs.emplace(key_, internal::BroadcastState::Sub{});
}

BroadcastReceiver::BroadcastReceiver(
    std::shared_ptr<internal::BroadcastState> state, bool raise_on_lag)
    : state_(std::move(state)), raise_on_lag_(raise_on_lag) {}

BroadcastReceiver::BroadcastReceiver(BroadcastReceiver&& other) noexcept
    : state_(std::move(other.state_)),
      key_(other.key_),
      raise_on_lag_(other.raise_on_lag_) {
  other.state_ = nullptr;
}

BroadcastReceiver& BroadcastReceiver::operator=(
    BroadcastReceiver&& other) noexcept {
  if (this != &other) {
    Close();
    state_ = std::move(other.state_);
    other.state_ = nullptr;
    key_ = other.key_;
    raise_on_lag_ = other.raise_on_lag_;
  }
  return *this;
}

BroadcastReceiver::~BroadcastReceiver() { Close(); }

std::optional<Payload> BroadcastReceiver::Receive() {
  if (!state_) throw UsageError("Receive on a moved-from broadcast receiver");
  // As in trio: a consumer with values pending takes them without letting
  // other tasks run (so one that is behind catches up in one go), but it
  // does let them run before it pulls the next value from the source.
  internal::ThrowIfCancelled();
  internal::BroadcastState& s = *state_;
  MutexLock lock(&s.mu);
  bool yielded = false;
  for (;;) {
    auto it = s.subs.find(key_);
    if (it == s.subs.end()) {
      throw UsageError("Receive on a closed broadcast receiver");
    }
    uint64_t& next = it->second.next;
    const uint64_t oldest = s.oldest();
    if (next < oldest) {
      const uint64_t skipped = oldest - next;
      next = oldest;  // resync to the oldest retained value
      std::string msg = absl::StrCat(
          "broadcast consumer lagged: skipped ", skipped,
          " values (window of ", s.capacity,
          "); resynced to the oldest retained value");
      if (raise_on_lag_) throw Lagged(msg, skipped);
      LOG(WARNING) << msg;
    }
    if (next < s.next_seq) {
      Payload value = s.window[next - oldest];
      ++next;
      return value;
    }
    if (s.ended) {
      if (s.error) std::rethrow_exception(s.error);
      return std::nullopt;
    }
    if (s.pulling || !s.OthersSettled(key_)) {
      // Wait for the puller's value, its end or its cancellation (then one
      // waiter takes over), or for the woken consumers to take theirs.
      const uint64_t want = next;
      const uint64_t key = key_;
      internal::BlockedGuard blocked(s, key);
      internal::Wait(s.cv, s.mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        auto me = s.subs.find(key);
        if (me == s.subs.end() || s.next_seq > want || s.ended) return true;
        if (!s.pulling && s.OthersSettled(key)) return true;
        if (me->second.seen_gen != s.gen) {
          me->second.seen_gen = s.gen;
          s.cv.SignalAll();  // this consumer just settled
        }
        return false;
      });
      continue;
    }
    if (!yielded) {
      // Let the actor's other tasks run before pulling, as trio's receive
      // does. Counted as blocked meanwhile: a thread handing over the task
      // lock may be descheduled before it queues for it again.
      yielded = true;
      internal::BlockedGuard blocked(s, key_);
      s.mu.Unlock();
      try {
        Checkpoint();
      } catch (...) {
        s.mu.Lock();
        throw;
      }
      s.mu.Lock();
      continue;
    }
    // Become the puller. The source is called without the lock, so the
    // others can read the window, subscribe and close meanwhile.
    s.pulling = true;
    s.mu.Unlock();
    std::optional<Payload> value;
    try {
      value = s.source();
    } catch (const Cancelled&) {
      // Only this task was cancelled: hand the pulling over; nothing was
      // taken from the source.
      s.mu.Lock();
      s.pulling = false;
      s.Changed();
      throw;
    } catch (...) {
      s.mu.Lock();
      s.pulling = false;
      s.ended = true;
      s.error = std::current_exception();
      s.Changed();
      throw;
    }
    s.mu.Lock();
    s.pulling = false;
    if (value) {
      s.window.push_back(std::move(*value));
      ++s.next_seq;
      if (s.window.size() > s.capacity) s.window.pop_front();
    } else {
      s.ended = true;
    }
    s.Changed();
  }
}

BroadcastReceiver BroadcastReceiver::Subscribe(bool raise_on_lag) {
  if (!state_) throw UsageError("Subscribe on a moved-from broadcast receiver");
  MutexLock lock(&state_->mu);
  if (state_->subs.count(key_) == 0) {
    throw UsageError("Subscribe on a closed broadcast receiver");
  }
  BroadcastReceiver sub(state_, raise_on_lag);
  sub.key_ = state_->next_key++;
  state_->subs.emplace(
      sub.key_, internal::BroadcastState::Sub{.next = state_->next_seq});
  return sub;
}

void BroadcastReceiver::Close() {
  if (!state_) return;
  MutexLock lock(&state_->mu);
  if (state_->subs.erase(key_) > 0) state_->cv.SignalAll();
}

bool BroadcastReceiver::closed() const {
  if (!state_) return true;
  MutexLock lock(&state_->mu);
  return state_->subs.count(key_) == 0;
}

size_t BroadcastReceiver::capacity() const {
  return state_ ? state_->capacity : 0;
}

size_t BroadcastReceiver::subscriber_count() const {
  if (!state_) return 0;
  MutexLock lock(&state_->mu);
  return state_->subs.size();
}

bool BroadcastReceiver::pulling() const {
  if (!state_) return false;
  MutexLock lock(&state_->mu);
  return state_->pulling;
}

}  // namespace tractor
