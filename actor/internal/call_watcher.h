// SPDX-License-Identifier: AGPL-3.0-or-later
// Where the unary calls' replies and client-gone notices complete.
#ifndef TRACTOR_ACTOR_INTERNAL_CALL_WATCHER_H_
#define TRACTOR_ACTOR_INTERNAL_CALL_WATCHER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

// The completion queue of the unary calls' replies and of their
// `AsyncNotifyWhenDone` tags (the client went away, or the call is over),
// and the thread that delivers them (`ServiceCall::Proceed`). The queue
// polls no socket: a completion on it wakes no thread unless the watcher
// waits on it. While calls are live the thread takes what the queue holds
// every `kPollInterval`, so that a call's end costs no wake-up; once a call
// has been live that long (its task runs long), it waits on the queue
// itself, so that a client going away is acted on at once. It sleeps once
// no call was live for `kIdleAfter`, and a call arriving then wakes it.
// The thread that served a call also delivers what is ready once it sent
// the reply (`Reap`), so that the watcher's poll finds little: a poll that
// delivers a whole interval's completions at once (a few hundred calls'
// clean-up) delays the calls running meanwhile.
// Thread-safe; owns its thread and joins it on destruction, after which it
// shuts the queue down and delivers what is left: every operation on the
// queue must complete by then (the server was shut down).
class CallWatcher {
 public:
  static constexpr std::chrono::milliseconds kPollInterval{20};
  // The watcher sleeps (no polling) once no call was live for this long.
  static constexpr absl::Duration kIdleAfter = absl::Seconds(1);

  CallWatcher();
  ~CallWatcher();
  CallWatcher(const CallWatcher&) = delete;
  CallWatcher& operator=(const CallWatcher&) = delete;

  // Bind the calls to this queue (their `new_call_cq`); every tag posted
  // on it is a `ServiceTag` (actor/internal/dialog_transport.h).
  grpc::CompletionQueue* cq() { return cq_.get(); }

  // Delivers at most `max` completions that are ready, without waiting;
  // returns how many it delivered. Any thread, while the watcher exists.
  size_t Reap(size_t max);
  // What a call's serving thread reaps after its reply: its own reply's
  // and done tag's completions, and some left over by others.
  static constexpr size_t kReapPerCall = 8;

  // A call bound to cq() arrived: live until Forget(id).
  uint64_t Add() ABSL_LOCKS_EXCLUDED(mu_);
  void Forget(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Delivers one completion, waiting until `deadline`; false if none came.
  bool DeliverOne(absl::Time deadline);

  std::unique_ptr<grpc::CompletionQueue> cq_;
  Mutex mu_;
  CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Live calls, by id, and when each arrived (a table that keeps its
  // storage, so that a call costs it no allocation).
  absl::flat_hash_map<uint64_t, absl::Time> calls_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_CALL_WATCHER_H_
