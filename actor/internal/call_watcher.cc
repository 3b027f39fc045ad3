// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/call_watcher.h"

#include "absl/algorithm/container.h"
#include "actor/internal/dialog_transport.h"
#include "discovery/thread_name.h"

namespace tractor::internal {

namespace {

// A queue that polls no socket (what the sync API's queues are in a server
// with an application queue): waiting on it is waiting on a condition
// variable, and a completion wakes only a thread waiting on it.
class NonPollingQueue final : public grpc::CompletionQueue {
 public:
  NonPollingQueue()
      : grpc::CompletionQueue(grpc_completion_queue_attributes{
            GRPC_CQ_CURRENT_VERSION, GRPC_CQ_NEXT, GRPC_CQ_NON_POLLING,
            nullptr}) {}
};

}  // namespace

CallWatcher::CallWatcher()
    : cq_(std::make_unique<NonPollingQueue>()), thread_([this] {
        discovery::NameThisThread("call-watcher");
        Loop();
      }) {}

CallWatcher::~CallWatcher() {
  {
    MutexLock lk(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  cq_->Shutdown();
  while (DeliverOne(absl::InfiniteFuture())) {
  }
}

uint64_t CallWatcher::Add() {
  bool wake;
  uint64_t id;
  {
    MutexLock lk(&mu_);
    id = next_id_++;
    calls_.emplace(id, absl::Now());
    // Only a sleeping watcher is woken: while calls keep coming it takes
    // their completions every kPollInterval, so a call costs it no
    // wake-up.
    wake = sleeping_;
    sleeping_ = false;
  }
  if (wake) cv_.SignalAll();
  return id;
}

void CallWatcher::Forget(uint64_t id) {
  MutexLock lk(&mu_);
  calls_.erase(id);
}

bool CallWatcher::DeliverOne(absl::Time deadline) {
  void* raw = nullptr;
  bool ok = false;
  grpc::CompletionQueue::NextStatus st;
  if (deadline == absl::InfiniteFuture()) {
    st = cq_->Next(&raw, &ok) ? grpc::CompletionQueue::GOT_EVENT
                              : grpc::CompletionQueue::SHUTDOWN;
  } else if (deadline == absl::InfinitePast()) {
    st = cq_->AsyncNext(&raw, &ok, gpr_inf_past(GPR_CLOCK_REALTIME));
  } else {
    st = cq_->AsyncNext(&raw, &ok, absl::ToChronoTime(deadline));
  }
  if (st != grpc::CompletionQueue::GOT_EVENT) return false;
  auto* tag = static_cast<ServiceTag*>(static_cast<CqTransport::Tag*>(raw));
  tag->call->Proceed(tag, ok);
  return true;
}

size_t CallWatcher::Reap(size_t max) {
  size_t n = 0;
  while (n < max && DeliverOne(absl::InfinitePast())) ++n;
  return n;
}

void CallWatcher::Loop() {
  absl::Time last_call = absl::Now();
  for (;;) {
    absl::Time tick;
    bool wait_on_queue;
    {
      MutexLock lk(&mu_);
      if (stop_) break;
      const absl::Time now = absl::Now();
      if (!calls_.empty()) last_call = now;
      if (calls_.empty() && now - last_call > kIdleAfter) {
        sleeping_ = true;
        while (!stop_ && sleeping_) cv_.Wait(&mu_);
        last_call = absl::Now();
        continue;
      }
      tick = now + absl::FromChrono(kPollInterval);
      // The oldest live call arrived a poll ago: its task runs long (or
      // its reply is still being sent); wait on the queue itself.
      const absl::Time cutoff = now - absl::FromChrono(kPollInterval);
      wait_on_queue = absl::c_any_of(
          calls_, [cutoff](const auto& call) { return call.second < cutoff; });
      if (!wait_on_queue) cv_.WaitWithDeadline(&mu_, tick);
    }
    if (wait_on_queue) DeliverOne(tick);
    while (DeliverOne(absl::InfinitePast())) {
    }
  }
}

}  // namespace tractor::internal
