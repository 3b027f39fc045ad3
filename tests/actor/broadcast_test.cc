// SPDX-License-Identifier: AGPL-3.0-or-later
// Broadcast fan-out between local tasks, no processes
// (docs/behaviour.md#broadcast-to-local-tasks; the scenarios of tractor's
// tests/test_task_broadcasting.py).
#include "actor/broadcast.h"

#include <atomic>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "discovery/mutex.h"
#include "glog/logging.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// A bounded in-process channel (trio's memory channel): `Send` blocks while
// it is full, `Receive` while it is empty; both are checkpoints. Closing
// ends it for receivers once it is drained. Thread-safe.
class Channel {
 public:
  explicit Channel(size_t capacity) : capacity_(capacity) {}

  void Send(Payload v) {
    MutexLock lk(&mu_);
    internal::Wait(cv_, mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return items_.size() < capacity_ || closed_;
    });
    if (closed_) throw UsageError("send on a closed channel");
    items_.push_back(std::move(v));
    cv_.SignalAll();
  }

  std::optional<Payload> Receive() {
    MutexLock lk(&mu_);
    ++receivers_;
    cv_.SignalAll();
    struct Leave {
      Channel* c;
      // Runs before `lk` releases the mutex.
      ~Leave() ABSL_NO_THREAD_SAFETY_ANALYSIS { --c->receivers_; }
    } leave{this};
    internal::Wait(cv_, mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !items_.empty() || closed_;
    });
    if (items_.empty()) return std::nullopt;
    Payload v = std::move(items_.front());
    items_.pop_front();
    cv_.SignalAll();
    return v;
  }

  void Close() {
    MutexLock lk(&mu_);
    closed_ = true;
    cv_.SignalAll();
  }

  // Waits (a checkpoint) until a task is blocked receiving from the empty
  // channel; returns false if that did not happen within `timeout`.
  bool WaitForBlockedReceiver(absl::Duration timeout) {
    MutexLock lk(&mu_);
    return internal::Wait(
        cv_, mu_,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return receivers_ > 0 && items_.empty();
        },
        absl::Now() + timeout);
  }

  BroadcastReceiver::Source AsSource() {
    return [this] { return Receive(); };
  }

 private:
  const size_t capacity_;
  Mutex mu_;
  CondVar cv_;
  std::deque<Payload> items_ ABSL_GUARDED_BY(mu_);
  int receivers_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs `fn` on the calling thread as a user task of this (runtime-less)
// process: it holds the task lock and hands it over at checkpoints, like
// the tasks a TaskGroup spawns.
void RunAsTask(const std::function<void()>& fn) {
  internal::UserTask task;
  fn();
}

// Lets the other tasks run until `pred()` holds; returns false if it did not
// within `timeout`. In single-task mode, once this task runs again after a
// task set a flag, that task has reached its next checkpoint.
bool CheckpointUntil(const std::function<bool()>& pred,
                     absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() >= deadline) return false;
    Checkpoint();
  }
  return true;
}

// Counts glog warnings that mention "lagged".
class LagLogCounter : public google::LogSink {
 public:
  LagLogCounter() { google::AddLogSink(this); }
  ~LagLogCounter() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int,
            const google::LogMessageTime&, const char* message,
            size_t len) override {
    if (severity == google::GLOG_WARNING &&
        std::string(message, len).find("lagged") != std::string::npos) {
      ++count;
    }
  }
  std::atomic<int> count{0};
};

class BroadcastTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(30); }
};

constexpr int64_t kN = 1000;

// Sends 0..n-1 into `ch`, then closes it.
void Produce(Channel& ch, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ch.Send(i);
  ch.Close();
}

TEST_F(BroadcastTest, TenSubscribersAndTheSourceEachReceiveEveryValueInOrder) {
  RunAsTask([] {
    Channel ch(64);
    BroadcastReceiver first(ch.AsSource());
    std::vector<BroadcastReceiver> subs;
    for (int i = 0; i < 10; ++i) subs.push_back(first.Subscribe());
    std::vector<BroadcastReceiver*> all = {&first};
    for (auto& s : subs) all.push_back(&s);
    EXPECT_EQ(first.subscriber_count(), 11u);
    std::vector<std::vector<int64_t>> got(all.size());
    std::atomic<size_t> started{0};
    FailAfter(absl::Seconds(10), [&] {
      TaskGroup::Open([&](TaskGroup& tg) {
        for (size_t i = 0; i < all.size(); ++i) {
          tg.Spawn([&, i] {
            ++started;
            for (const Payload& v : *all[i]) got[i].push_back(v.AsInt());
          });
        }
        tg.Spawn([&] {
          // Every consumer is blocked in Receive before the first value,
          // as trio's tasks are once started.
          ASSERT_TRUE(CheckpointUntil([&] { return started == all.size(); },
                                      absl::Seconds(5)));
          Produce(ch, kN);
        });
      });
    });
    std::vector<int64_t> want;
    for (int64_t i = 0; i < kN; ++i) want.push_back(i);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], want) << "consumer " << i;
    }
  });
}

TEST_F(BroadcastTest, FanOutIsThreadSafeWithFreeRunningThreads) {
  // Free threads really run in parallel; a window as large as the stream
  // means nobody can lag, so every consumer must see every value.
  internal::SetSingleTaskMode(false);
  struct Restore {
    ~Restore() { internal::SetSingleTaskMode(true); }
  } restore;
  Channel ch(8);
  BroadcastReceiver first(ch.AsSource(), {.capacity = kN});
  std::vector<BroadcastReceiver> subs;
  for (int i = 0; i < 7; ++i) subs.push_back(first.Subscribe());
  std::vector<BroadcastReceiver*> all = {&first};
  for (auto& s : subs) all.push_back(&s);
  std::vector<int64_t> counts(all.size(), 0);
  std::vector<bool> in_order(all.size(), true);
  FailAfter(absl::Seconds(10), [&] {
    TaskGroup::Open([&](TaskGroup& tg) {
      for (size_t i = 0; i < all.size(); ++i) {
        tg.Spawn([&, i] {
          for (const Payload& v : *all[i]) {
            if (v.AsInt() != counts[i]) in_order[i] = false;
            ++counts[i];
          }
        });
      }
      tg.Spawn([&] { Produce(ch, kN); });
    });
  });
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(counts[i], kN) << "consumer " << i;
    EXPECT_TRUE(in_order[i]) << "consumer " << i;
  }
}

// Faster party never lags; the slower one lags and resyncs (or raises
// Lagged), in both arrangements (tractor: one_side_slow / other_side_slow).
class ConsumerAndSubscriberMaybeLag
    : public BroadcastTest,
      public ::testing::WithParamInterface<bool> {};

TEST_P(ConsumerAndSubscriberMaybeLag, FasterNeverLagsSlowerLagsAndResyncs) {
  const bool first_is_slow = GetParam();
  RunAsTask([&] {
    Channel ch(64);
    BroadcastReceiver first(ch.AsSource());
    BroadcastReceiver sub = first.Subscribe();
    BroadcastReceiver& fast = first_is_slow ? sub : first;
    BroadcastReceiver& slow = first_is_slow ? first : sub;

    std::vector<int64_t> fast_got;
    int fast_lags = 0;
    std::vector<int64_t> slow_got;
    int slow_lags = 0;
    bool slow_resynced_to_oldest = true;
    FailAfter(absl::Seconds(10), [&] {
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] {
          for (;;) {
            try {
              auto v = fast.Receive();
              if (!v) break;
              fast_got.push_back(v->AsInt());
            } catch (const Lagged&) {
              ++fast_lags;
            }
          }
        });
        tg.Spawn([&] {
          bool after_lag = false;
          for (;;) {
            try {
              auto v = slow.Receive();
              if (!v) break;
              int64_t value = v->AsInt();
              if (after_lag && !slow_got.empty() &&
                  value <= slow_got.back()) {
                slow_resynced_to_oldest = false;
              }
              after_lag = false;
              slow_got.push_back(value);
              Sleep(absl::Milliseconds(5));
            } catch (const Lagged& e) {
              ++slow_lags;
              after_lag = true;
              EXPECT_GT(e.skipped(), 0u);
              EXPECT_EQ(e.TypeName(), "Lagged");
            }
          }
        });
        tg.Spawn([&] { Produce(ch, kN); });
      });
    });
    std::vector<int64_t> want;
    for (int64_t i = 0; i < kN; ++i) want.push_back(i);
    EXPECT_EQ(fast_got, want);
    EXPECT_EQ(fast_lags, 0);
    EXPECT_GE(slow_lags, 1) << "the slow consumer never lagged";
    EXPECT_TRUE(slow_resynced_to_oldest);
    // The slow one skipped values but stayed in order and saw the end.
    ASSERT_FALSE(slow_got.empty());
    EXPECT_LT(slow_got.size(), static_cast<size_t>(kN));
    for (size_t i = 1; i < slow_got.size(); ++i) {
      EXPECT_LT(slow_got[i - 1], slow_got[i]);
    }
    EXPECT_EQ(slow_got.back(), kN - 1);
  });
}

INSTANTIATE_TEST_SUITE_P(OneSideSlow, ConsumerAndSubscriberMaybeLag,
                         ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "FirstReceiverSlow"
                                             : "SubscriberSlow";
                         });

TEST_F(BroadcastTest, CancellingThePullingSubscriberLetsTheOthersContinue) {
  RunAsTask([] {
    Channel ch(64);
    BroadcastReceiver first(ch.AsSource());
    BroadcastReceiver faster = first.Subscribe();
    BroadcastReceiver slower = first.Subscribe();
    CancelScope faster_scope;
    std::vector<int64_t> main_got, slower_got;
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        faster_scope.Run([&] {
          for (const Payload& v : faster) (void)v;
          ADD_FAILURE() << "the faster subscriber saw the end";
        });
      });
      // The faster subscriber is now the one pulling from the empty source.
      ASSERT_TRUE(ch.WaitForBlockedReceiver(absl::Seconds(5)))
          << "no subscriber blocked on the source";
      ASSERT_TRUE(faster.pulling());
      std::atomic<bool> slower_started{false};
      tg.Spawn([&] {
        slower_started = true;
        for (const Payload& v : slower) slower_got.push_back(v.AsInt());
      });
      // Once we run again, the slower subscriber waits on the puller too.
      ASSERT_TRUE(CheckpointUntil([&] { return slower_started.load(); },
                                  absl::Seconds(5)));
      faster_scope.Cancel();
      tg.Spawn([&] { Produce(ch, kN); });
      absl::Time t0 = absl::Now();
      FailAfter(absl::Milliseconds(500), [&] {
        for (const Payload& v : first) {
          main_got.push_back(v.AsInt());
          if (v.AsInt() == kN - 1) break;
        }
      });
      EXPECT_LT(absl::Now() - t0, absl::Milliseconds(500));
    });
    EXPECT_TRUE(faster_scope.cancelled_caught());
    std::vector<int64_t> want;
    for (int64_t i = 0; i < kN; ++i) want.push_back(i);
    EXPECT_EQ(main_got, want);
    EXPECT_EQ(slower_got, want);
    // Cancelling a task does not unsubscribe its receiver; it can go on
    // reading (from the oldest retained value, after a Lagged).
    EXPECT_FALSE(faster.closed());
    EXPECT_THROW(faster.Receive(), Lagged);
    EXPECT_EQ(faster.Receive()->AsInt(), kN - 64);
  });
}

TEST_F(BroadcastTest, SubscribeAndReceiveOnAClosedReceiverThrowUsageError) {
  RunAsTask([] {
    Channel ch(1);
    BroadcastReceiver first(ch.AsSource(), {.capacity = 1});
    {
      BroadcastReceiver sub = first.Subscribe();
      EXPECT_EQ(first.subscriber_count(), 2u);
    }
    // Destroying a subscriber unsubscribes it.
    EXPECT_EQ(first.subscriber_count(), 1u);
    first.Close();
    first.Close();  // idempotent
    EXPECT_TRUE(first.closed());
    EXPECT_THROW(first.Subscribe(), UsageError);
    EXPECT_THROW(first.Receive(), UsageError);

    // A moved-from handle is closed; the moved-to one works.
    BroadcastReceiver a(ch.AsSource());
    BroadcastReceiver b = std::move(a);
    EXPECT_TRUE(a.closed());
    EXPECT_THROW(a.Subscribe(), UsageError);
    EXPECT_FALSE(b.closed());
    BroadcastReceiver c = b.Subscribe();
    EXPECT_EQ(c.subscriber_count(), 2u);
  });
}

TEST_F(BroadcastTest, ClosingOneSubscriberLeavesTheOthersReceiving) {
  RunAsTask([] {
    Channel ch(8);
    BroadcastReceiver first(ch.AsSource(), {.capacity = 8});
    BroadcastReceiver a = first.Subscribe();
    BroadcastReceiver b = first.Subscribe();
    ch.Send(1);
    ch.Send(2);
    EXPECT_EQ(a.Receive()->AsInt(), 1);
    a.Close();
    EXPECT_EQ(first.subscriber_count(), 2u);
    EXPECT_THROW(a.Receive(), UsageError);
    EXPECT_EQ(b.Receive()->AsInt(), 1);
    EXPECT_EQ(b.Receive()->AsInt(), 2);
    EXPECT_EQ(first.Receive()->AsInt(), 1);
    EXPECT_EQ(first.Receive()->AsInt(), 2);
    // A subscriber sees only values received after it subscribed.
    BroadcastReceiver late = first.Subscribe();
    ch.Send(3);
    ch.Close();
    EXPECT_EQ(late.Receive()->AsInt(), 3);
    EXPECT_FALSE(late.Receive().has_value());
    // End of stream reaches everyone, after the values before it, and
    // stays.
    EXPECT_EQ(b.Receive()->AsInt(), 3);
    EXPECT_FALSE(b.Receive().has_value());
    EXPECT_FALSE(b.Receive().has_value());
    EXPECT_EQ(first.Receive()->AsInt(), 3);
    EXPECT_FALSE(first.Receive().has_value());
  });
}

TEST_F(BroadcastTest, ClosingASubscriberWakesItsBlockedReceive) {
  RunAsTask([] {
    Channel ch(1);
    BroadcastReceiver first(ch.AsSource());
    BroadcastReceiver waiter = first.Subscribe();
    bool got_usage_error = false;
    std::atomic<bool> waiter_started{false};
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        // `first` pulls; `waiter` then blocks waiting for its value.
        EXPECT_EQ(first.Receive()->AsInt(), 7);
      });
      ASSERT_TRUE(ch.WaitForBlockedReceiver(absl::Seconds(5)));
      tg.Spawn([&] {
        waiter_started = true;
        try {
          waiter.Receive();
        } catch (const UsageError&) {
          got_usage_error = true;
        }
      });
      // Once we run again, the waiter is blocked in Receive.
      ASSERT_TRUE(CheckpointUntil([&] { return waiter_started.load(); },
                                  absl::Seconds(5)));
      waiter.Close();
      ch.Send(7);
    });
    EXPECT_TRUE(got_usage_error);
  });
}

TEST_F(BroadcastTest, SourceErrorReachesEverySubscriberAfterItsValues) {
  RunAsTask([] {
    int calls = 0;
    BroadcastReceiver first([&]() -> std::optional<Payload> {
      if (calls == 3) throw std::out_of_range("source broke");
      return Payload(calls++);
    });
    BroadcastReceiver a = first.Subscribe();
    BroadcastReceiver b = first.Subscribe();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(a.Receive()->AsInt(), i);
    EXPECT_THROW(a.Receive(), std::out_of_range);
    EXPECT_THROW(a.Receive(), std::out_of_range);  // stays failed
    for (int i = 0; i < 3; ++i) EXPECT_EQ(b.Receive()->AsInt(), i);
    try {
      b.Receive();
      ADD_FAILURE() << "no error";
    } catch (const std::out_of_range& e) {
      EXPECT_STREQ(e.what(), "source broke");
    }
    for (int i = 0; i < 3; ++i) EXPECT_EQ(first.Receive()->AsInt(), i);
    EXPECT_THROW(first.Receive(), std::out_of_range);
    EXPECT_EQ(calls, 3);  // the source was not called again after failing
  });
}

TEST_F(BroadcastTest, SlowConsumersLagOutWhileTheFastOneSeesEverything) {
  RunAsTask([] {
    constexpr size_t kSize = 3;
    constexpr int kRetries = 3;
    Channel ch(kSize);
    BroadcastReceiver first(ch.AsSource(), {.capacity = kSize});
    EXPECT_EQ(first.capacity(), kSize);
    // The first subscriber is fast; the others sleep per item.
    const std::vector<absl::Duration> delays = {
        absl::ZeroDuration(),   absl::Milliseconds(2), absl::Milliseconds(3),
        absl::Milliseconds(4),  absl::Milliseconds(5), absl::Milliseconds(6),
        absl::Milliseconds(7),  absl::Milliseconds(8), absl::Milliseconds(9),
        absl::Milliseconds(10)};
    std::vector<int> lags(delays.size(), 0);
    std::vector<int64_t> fast_got;
    bool fast_saw_end = false;
    int64_t sent = 0;
    FailAfter(absl::Seconds(10), [&] {
      TaskGroup::Open([&](TaskGroup& tg) {
        for (size_t i = 0; i < delays.size(); ++i) {
          tg.Spawn([&, i, sub = std::make_shared<BroadcastReceiver>(
                              first.Subscribe())] {
            for (;;) {
              try {
                auto v = sub->Receive();
                if (!v) {
                  if (i == 0) fast_saw_end = true;
                  sub->Close();
                  return;
                }
                if (i == 0) {
                  fast_got.push_back(v->AsInt());
                } else {
                  Sleep(delays[i]);
                }
              } catch (const Lagged&) {
                if (++lags[i] > kRetries) {
                  sub->Close();  // too slow: give up
                  return;
                }
              }
            }
          });
        }
        // Produce until only `first` and the fast subscriber remain.
        tg.Spawn([&] {
          while (first.subscriber_count() > 2) ch.Send(sent++);
          ch.Close();
        });
      });
    });
    EXPECT_EQ(lags[0], 0) << "the fast subscriber lagged";
    EXPECT_TRUE(fast_saw_end);
    for (size_t i = 1; i < lags.size(); ++i) {
      EXPECT_EQ(lags[i], kRetries + 1) << "subscriber " << i;
    }
    ASSERT_EQ(fast_got.size(), static_cast<size_t>(sent));
    for (int64_t i = 0; i < sent; ++i) ASSERT_EQ(fast_got[i], i);
    EXPECT_EQ(first.subscriber_count(), 1u);
    // The first receiver never read: it is lagged, then resynced to the
    // oldest retained value.
    if (sent > static_cast<int64_t>(kSize)) {
      EXPECT_THROW(first.Receive(), Lagged);
      EXPECT_EQ(first.Receive()->AsInt(), sent - static_cast<int64_t>(kSize));
    }
  });
}

TEST_F(BroadcastTest, CancellingTheFirstReceiverLetsAWaitingOneTakeOver) {
  RunAsTask([] {
    Channel ch(1);
    BroadcastReceiver first(ch.AsSource(), {.capacity = 1});
    CancelScope sub_scope;
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        sub_scope.Run([&] {
          BroadcastReceiver sub = first.Subscribe();
          for (const Payload& v : sub) (void)v;
        });
      });
      ASSERT_TRUE(ch.WaitForBlockedReceiver(absl::Seconds(5)));
      EXPECT_TRUE(first.pulling());
      // Runs once this task blocks in Receive below: cancels the puller
      // while we wait on it, then sends.
      tg.Spawn([&] {
        sub_scope.Cancel();
        ch.Send(1);
      });
      FailAfter(absl::Milliseconds(500), [&] {
        auto v = first.Receive();
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(v->AsInt(), 1);
      });
    });
    EXPECT_TRUE(sub_scope.cancelled_caught());
    // The cancelled subscriber unsubscribed on the way out.
    EXPECT_EQ(first.subscriber_count(), 1u);
  });
}

TEST_F(BroadcastTest, NoRaiseOnLagLogsAndResyncs) {
  RunAsTask([] {
    LagLogCounter log;
    constexpr size_t kSize = 16;
    Channel ch(kSize);
    BroadcastReceiver first(ch.AsSource(), {.capacity = kSize});
    BroadcastReceiver slow = first.Subscribe(/*raise_on_lag=*/false);
    BroadcastReceiver fast = first.Subscribe();
    first.Close();
    std::vector<int64_t> slow_got;
    int64_t fast_count = 0;
    FailAfter(absl::Seconds(10), [&] {
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] {
          for (const Payload& v : slow) {
            slow_got.push_back(v.AsInt());
            Sleep(absl::Milliseconds(5));
          }
        });
        tg.Spawn([&] {
          for (const Payload& v : fast) {
            EXPECT_EQ(v.AsInt(), fast_count);
            ++fast_count;
          }
        });
        tg.Spawn([&] { Produce(ch, kN); });
      });
    });
    EXPECT_EQ(fast_count, kN);
    ASSERT_FALSE(slow_got.empty());
    EXPECT_LT(slow_got.size(), static_cast<size_t>(kN));
    for (size_t i = 1; i < slow_got.size(); ++i) {
      EXPECT_LT(slow_got[i - 1], slow_got[i]);
    }
    EXPECT_EQ(slow_got.back(), kN - 1);
    EXPECT_GE(log.count.load(), 1) << "no lag warning was logged";
  });
}

}  // namespace
}  // namespace tractor
