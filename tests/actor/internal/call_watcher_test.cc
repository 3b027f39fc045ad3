// SPDX-License-Identifier: AGPL-3.0-or-later
// The queue of the unary calls' completions: who delivers them, and that
// none is lost when the watcher goes away.
#include "actor/internal/call_watcher.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/internal/dialog_transport.h"
#include "discovery/mutex.h"
#include "grpcpp/alarm.h"
#include "gtest/gtest.h"

namespace tractor::internal {
namespace {

// Records each delivery: on which thread, with which `ok`.
class RecordingCall final : public ServiceCall {
 public:
  struct Delivery {
    std::thread::id thread;
    bool ok;
  };

  void Proceed(ServiceTag*, bool ok) override {
    {
      MutexLock lk(&mu_);
      deliveries_.push_back({std::this_thread::get_id(), ok});
    }
    cv_.SignalAll();
  }

  // Waits until `n` deliveries came or `bound` passed; returns them.
  std::vector<Delivery> WaitFor(size_t n, absl::Duration bound) {
    const absl::Time deadline = absl::Now() + bound;
    MutexLock lk(&mu_);
    while (deliveries_.size() < n && !cv_.WaitWithDeadline(&mu_, deadline)) {
    }
    return deliveries_;
  }

  std::vector<Delivery> Deliveries() {
    MutexLock lk(&mu_);
    return deliveries_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
};

void* AsTag(ServiceTag* tag) { return static_cast<CqTransport::Tag*>(tag); }

TEST(CallWatcherTest, ACompletionOfALiveCallIsDeliveredOnTheWatchersThread) {
  RecordingCall call;
  ServiceTag tag(&call);
  CallWatcher watcher;
  const uint64_t id = watcher.Add();
  grpc::Alarm alarm;
  alarm.Set(watcher.cq(), absl::ToChronoTime(absl::Now()), AsTag(&tag));
  // Nobody here reaps: the watcher's own poll delivers it.
  const auto got = call.WaitFor(1, absl::Seconds(10));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].ok);
  EXPECT_NE(got[0].thread, std::this_thread::get_id());
  watcher.Forget(id);
}

TEST(CallWatcherTest, ReapDeliversOnTheCallingThreadAtMostMaxAtATime) {
  constexpr size_t kPosted = 5;
  RecordingCall call;
  std::vector<std::unique_ptr<ServiceTag>> tags;
  std::vector<std::unique_ptr<grpc::Alarm>> alarms;
  CallWatcher watcher;
  const uint64_t id = watcher.Add();
  for (size_t i = 0; i < kPosted; ++i) {
    tags.push_back(std::make_unique<ServiceTag>(&call));
    alarms.push_back(std::make_unique<grpc::Alarm>());
    alarms.back()->Set(watcher.cq(), absl::ToChronoTime(absl::Now()),
                       AsTag(tags.back().get()));
  }
  // The watcher's thread takes some too: whatever Reap returned was
  // delivered here, and every completion exactly once.
  size_t reaped = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (call.Deliveries().size() < kPosted && absl::Now() < deadline) {
    const size_t n = watcher.Reap(2);
    EXPECT_LE(n, 2u);
    reaped += n;
    if (n == 0) std::this_thread::yield();
  }
  const auto got = call.Deliveries();
  ASSERT_EQ(got.size(), kPosted);
  size_t here = 0;
  for (const auto& d : got) {
    EXPECT_TRUE(d.ok);
    if (d.thread == std::this_thread::get_id()) ++here;
  }
  EXPECT_EQ(here, reaped);
  watcher.Forget(id);
}

TEST(CallWatcherTest, WhatIsLeftIsDeliveredBeforeTheWatcherIsGone) {
  RecordingCall call;
  ServiceTag tag(&call);
  {
    CallWatcher watcher;
    grpc::Alarm alarm;
    alarm.Set(watcher.cq(), absl::ToChronoTime(absl::Now() + absl::Hours(1)),
              AsTag(&tag));
    // Cancelled: its completion (ok false) is on the queue, or about to be;
    // whichever thread takes it, it is delivered by the time the watcher's
    // destructor returns.
    alarm.Cancel();
  }
  const auto got = call.Deliveries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].ok);
}

}  // namespace
}  // namespace tractor::internal
