// SPDX-License-Identifier: AGPL-3.0-or-later
// The dialog transport: a client Dialog and a server Dialog joined by one
// `tractor.v1.Actor/Open` stream over an in-process gRPC channel (no actors,
// no listening port), plus the outbox's batching seen through a recording
// transport. Every wait is bounded by a deadline.
#include "actor/internal/dialog.h"

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/dialog_acceptor.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/wire.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {
namespace {

// Bound of a wait for something that is expected to happen.
constexpr absl::Duration kWait = absl::Seconds(10);

absl::Time Deadline() { return absl::Now() + kWait; }

v1::Msg YieldMsg(int i) {
  v1::Msg m;
  m.mutable_yielded()->mutable_payload()->set_raw(std::to_string(i));
  return m;
}

v1::Msg StopMsg() {
  v1::Msg m;
  m.mutable_stop();
  return m;
}

v1::Msg StartMsg(const std::string& cid, const std::string& func) {
  v1::Msg m;
  m.mutable_start()->set_cid(cid);
  m.mutable_start()->set_func(func);
  return m;
}

v1::Msg ReturnMsg(const std::string& raw) {
  v1::Msg m;
  m.mutable_returned()->mutable_payload()->set_raw(raw);
  return m;
}

// A count that a test can wait for, bumped from gRPC threads.
class Counter {
 public:
  void Add() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      ++n_;
    }
    cv_.notify_all();
  }
  // True once the count reached `n`; false when `until` passed first.
  bool WaitFor(int n, absl::Time until) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_until(lk, absl::ToChronoTime(until),
                          [&] { return n_ >= n; });
  }
  int value() {
    std::lock_guard<std::mutex> lk(mu_);
    return n_;
  }
  // True once `pred` holds, checked now and after each Add; false when
  // `until` passed first.
  bool WaitUntil(const std::function<bool()>& pred, absl::Time until) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_until(lk, absl::ToChronoTime(until), pred);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

// The server side of the pair: each Actor/Open stream becomes a Dialog the
// test can take, configured by `setup` before its first read.
class CapturingActorService final
    : public v1::Actor::WithRawMethod_Open<v1::Actor::Service> {
 public:
  // Runs on the thread that accepts the stream, before reads start.
  std::function<void(Dialog&)> setup;

  // Given each accepted stream by the acceptor.
  void Accept(std::shared_ptr<Dialog> dialog) {
    if (setup) setup(*dialog);
    dialog->ResumeReads();
    {
      std::lock_guard<std::mutex> lk(mu_);
      opened_.push_back(dialog);
    }
    cv_.notify_all();
  }

  // The `index`th stream opened, or null when none came before `until`.
  std::shared_ptr<Dialog> AwaitOpened(size_t index, absl::Time until) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_until(lk, absl::ToChronoTime(until),
                        [&] { return opened_.size() > index; })) {
      return nullptr;
    }
    return opened_[index];
  }

  std::vector<std::shared_ptr<Dialog>> opened() {
    std::lock_guard<std::mutex> lk(mu_);
    return opened_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Dialog>> opened_;  // guarded by mu_
};

class DialogPairTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    cq_ = builder.AddCompletionQueue();
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    acceptor_ = std::make_unique<DialogAcceptor>(
        [this](grpc::ServerContext* ctx,
               grpc::ServerAsyncReaderWriter<grpc::ByteBuffer,
                                             grpc::ByteBuffer>* stream,
               grpc::CompletionQueue* call_cq,
               grpc::ServerCompletionQueue* cq, void* tag) {
          service_.RequestOpen(ctx, stream, call_cq, cq, tag);
        },
        cq_.get(),
        [this](std::shared_ptr<Dialog> d) { service_.Accept(std::move(d)); });
    acceptor_->Start();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }

  void TearDown() override {
    // Each side ends its half; both RPC halves complete before the server
    // stops.
    if (client_) {
      client_->Close(grpc::Status::OK, /*abort=*/true);
      client_->WaitDoneReason(kWait);
    }
    for (auto& d : service_.opened()) d->WaitDoneReason(kWait);
    if (acceptor_) acceptor_->StopRequesting();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
    }
    if (acceptor_) acceptor_->Stop();
  }

  // Opens the stream and returns once the server side is accepted.
  void Connect() {
    client_ = Dialog::Connect(channel_);
    server_dialog_ = service_.AwaitOpened(0, Deadline());
    ASSERT_NE(server_dialog_, nullptr) << "the server never saw the stream";
  }

  // Receives on `d` within kWait; fails the test on a timeout.
  static std::optional<v1::Msg> ReceiveOn(Dialog& d) {
    bool timed_out = false;
    auto m = d.Receive(Deadline(), &timed_out);
    EXPECT_FALSE(timed_out) << "no message within " << kWait;
    return m;
  }

  CapturingActorService service_;  // outlives server_
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;  // outlives server_
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<DialogAcceptor> acceptor_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<Dialog> client_;
  std::shared_ptr<Dialog> server_dialog_;

  // Sends items 0..items-1 and a Stop from a thread of their own (FailAfter
  // bounds each blocked Send) while the server's side receives: expects
  // every item once and in order, then the Stop, and no send error.
  void StreamInOrder(int items) {
    std::exception_ptr send_error;
    std::thread sender([&] {
      try {
        FailAfter(kWait, [&] {
          for (int i = 0; i < items; ++i) client_->Send(YieldMsg(i));
          client_->Send(StopMsg());
        });
      } catch (...) {
        send_error = std::current_exception();
      }
    });
    int received = 0;
    for (int i = 0; i < items; ++i) {
      auto m = ReceiveOn(*server_dialog_);
      if (!m.has_value() || !m->has_yielded() ||
          m->yielded().payload().raw() != std::to_string(i)) {
        ADD_FAILURE() << "item " << i << ": "
                      << (m ? m->ShortDebugString() : "stream ended");
        break;
      }
      ++received;
    }
    if (received == items) {
      auto stop = ReceiveOn(*server_dialog_);
      EXPECT_TRUE(stop.has_value() && stop->has_stop())
          << (stop ? stop->ShortDebugString() : "stream ended");
    } else {
      client_->Close(grpc::Status::OK, /*abort=*/true);  // unblocks the sender
    }
    sender.join();
    EXPECT_EQ(received, items);
    EXPECT_FALSE(send_error) << Describe(send_error);
  }
};

TEST_F(DialogPairTest, ClientMessageReachesTheServerAndItsEchoComesBack) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->Send(StartMsg("cid-1", "ns:echo"));

  auto at_server = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(at_server.has_value());
  ASSERT_TRUE(at_server->has_start());
  EXPECT_EQ(at_server->start().cid(), "cid-1");
  EXPECT_EQ(at_server->start().func(), "ns:echo");

  server_dialog_->Send(*at_server);
  auto back = ReceiveOn(*client_);
  ASSERT_TRUE(back.has_value());
  ASSERT_TRUE(back->has_start());
  EXPECT_EQ(back->start().cid(), "cid-1");
  EXPECT_EQ(back->start().func(), "ns:echo");
  EXPECT_FALSE(client_->broken());
  EXPECT_FALSE(server_dialog_->broken());
}

TEST_F(DialogPairTest, ServerSendAndCloseDeliversTheLastMessageAndEndsReads) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->Send(StartMsg("cid-1", "ns:f"));
  ASSERT_TRUE(ReceiveOn(*server_dialog_).has_value());

  EXPECT_TRUE(server_dialog_->SendAndClose(ReturnMsg("result")));
  // The server wrote its last message: nothing more leaves.
  EXPECT_FALSE(server_dialog_->SendAndClose(ReturnMsg("again")));
  EXPECT_FALSE(server_dialog_->SendNoWait(YieldMsg(1)));

  auto last = ReceiveOn(*client_);
  ASSERT_TRUE(last.has_value());
  ASSERT_TRUE(last->has_returned());
  EXPECT_EQ(last->returned().payload().raw(), "result");

  // Then the client's reads end: Receive returns at once, not by timing out.
  bool timed_out = true;
  EXPECT_FALSE(client_->Receive(Deadline(), &timed_out).has_value());
  EXPECT_FALSE(timed_out);
  EXPECT_FALSE(client_->broken());
}

grpc::ByteBuffer BytesOf(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string StringOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const auto& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// A message that does not decode in the middle of a dialog ends it with the
// reply the undecodable hook makes, also when the server's task, like a
// context endpoint's, sees its reads end at that moment and closes the
// dialog itself: the reply is queued in the step that ends the reads, so
// that close never comes first and the reply is never lost. The task sends
// while the garbage arrives, so a pooled thread drives the stream then.
TEST_F(DialogPairTest, UndecodableMessageEndsTheDialogWithTheHooksReply) {
  Counter thens;
  service_.setup = [&](Dialog& d) {
    d.SetUndecodableHook(
        [](const std::string& why) {
          v1::Msg m;
          m.mutable_error()->set_message("could not decode: " + why);
          return m;
        },
        [&] { thens.Add(); });
  };
  constexpr int kRounds = 100;
  const grpc::internal::RpcMethod open(
      "/tractor.v1.Actor/Open", grpc::internal::RpcMethod::BIDI_STREAMING);
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(Deadline()));
    std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer,
                                             grpc::ByteBuffer>>
        stream(grpc::internal::ClientReaderWriterFactory<
               grpc::ByteBuffer, grpc::ByteBuffer>::Create(channel_.get(),
                                                           open, &ctx));
    // The stream opens with the call (its metadata leaves at once); the
    // server's task runs before anything is written, as a task does: the
    // dialog reads when its task first receives (or sends), and the
    // in-process transport completes a write only when the other side
    // reads it.
    std::shared_ptr<Dialog> d = service_.AwaitOpened(round, Deadline());
    ASSERT_NE(d, nullptr);
    std::thread task([d] {
      // As a context endpoint does: take the item, answer it, take the next
      // message; when its reads end, close the dialog.
      auto first = ReceiveOn(*d);
      EXPECT_TRUE(first.has_value() && first->has_yielded());
      try {
        d->Send(YieldMsg(2));
      } catch (const std::exception&) {
        // The garbage may have ended the dialog first.
      }
      EXPECT_FALSE(ReceiveOn(*d).has_value());
      d->Close(grpc::Status::OK, /*abort=*/false);
    });
    std::string item;
    EXPECT_TRUE(YieldMsg(1).SerializeToString(&item));
    EXPECT_TRUE(stream->Write(BytesOf(item)));
    // Field 1, 16 bytes long, 14 bytes given.
    EXPECT_TRUE(stream->Write(BytesOf(std::string("\x0a\x10not a protobuf"))));
    stream->WritesDone();
    std::vector<v1::Msg> replies;
    grpc::ByteBuffer reply;
    while (stream->Read(&reply)) {
      v1::Msg m;
      EXPECT_TRUE(m.ParseFromString(StringOf(reply)));
      replies.push_back(std::move(m));
    }
    grpc::Status status = stream->Finish();
    task.join();
    EXPECT_TRUE(status.ok()) << status.error_message();
    ASSERT_FALSE(replies.empty());
    EXPECT_TRUE(replies.back().has_error()) << replies.back().ShortDebugString();
    EXPECT_NE(replies.back().error().message().find("could not decode"),
              std::string::npos);
    EXPECT_TRUE(thens.WaitFor(round + 1, Deadline()));
    if (HasFailure()) break;
  }
}

TEST_F(DialogPairTest, OverrunUnderErrorPolicyRunsTheHookAndDropsTheItem) {
  Counter overruns;
  service_.setup = [&](Dialog& d) {
    d.Configure(2, v1::OVERRUN_POLICY_ERROR);
    d.SetOverrunHook([&] { overruns.Add(); });
  };
  ASSERT_NO_FATAL_FAILURE(Connect());
  // The server reads nothing yet: items 0 and 1 fill its queue, 2 to 4 are
  // dropped; a Stop is not a stream item and is queued anyway.
  for (int i = 0; i < 5; ++i) client_->Send(YieldMsg(i));
  client_->Send(StopMsg());
  ASSERT_TRUE(overruns.WaitFor(3, Deadline()))
      << "overrun hook ran " << overruns.value() << " times";

  for (int i = 0; i < 2; ++i) {
    auto m = ReceiveOn(*server_dialog_);
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(m->has_yielded()) << m->ShortDebugString();
    EXPECT_EQ(m->yielded().payload().raw(), std::to_string(i));
  }
  auto stop = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(stop.has_value());
  EXPECT_TRUE(stop->has_stop()) << stop->ShortDebugString();

  bool timed_out = false;
  EXPECT_FALSE(server_dialog_->Receive(absl::Now() + absl::Milliseconds(50),
                                       &timed_out)
                   .has_value());
  EXPECT_TRUE(timed_out);
  EXPECT_EQ(overruns.value(), 3);
  EXPECT_FALSE(server_dialog_->broken());
}

TEST_F(DialogPairTest, BackpressureLosesNothingThroughATinyQueue) {
  constexpr int kItems = 500;
  Counter overruns;
  service_.setup = [&](Dialog& d) {
    d.Configure(1, v1::OVERRUN_POLICY_BACKPRESSURE);
    d.SetOverrunHook([&] { overruns.Add(); });
  };
  ASSERT_NO_FATAL_FAILURE(Connect());

  // The sender outruns a receiver whose queue holds one item, so its Send
  // blocks on flow control; FailAfter bounds each blocked Send.
  StreamInOrder(kItems);
  EXPECT_EQ(overruns.value(), 0);
}

TEST_F(DialogPairTest, YieldsQueuedWithBatchesOnArriveAllInOrder) {
  constexpr int kItems = 300;
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->SetPeerAcceptsBatches(true);
  // SendNoWait never blocks: all but the first queue behind a busy write
  // and leave as Batch messages.
  for (int i = 0; i < kItems; ++i) ASSERT_TRUE(client_->SendNoWait(YieldMsg(i)));
  ASSERT_TRUE(client_->SendNoWait(StopMsg()));

  for (int i = 0; i < kItems; ++i) {
    auto m = ReceiveOn(*server_dialog_);
    ASSERT_TRUE(m.has_value()) << "item " << i;
    // The receiver unpacks a Batch into its items.
    ASSERT_TRUE(m->has_yielded()) << "item " << i << ": " << m->ShortDebugString();
    EXPECT_EQ(m->yielded().payload().raw(), std::to_string(i));
  }
  auto stop = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(stop.has_value());
  EXPECT_TRUE(stop->has_stop()) << stop->ShortDebugString();
}

TEST_F(DialogPairTest, ErrorPolicyDropsEachItemOfABatchBeyondTheQueue) {
  Counter overruns;
  service_.setup = [&](Dialog& d) {
    d.Configure(2, v1::OVERRUN_POLICY_ERROR);
    d.SetOverrunHook([&] { overruns.Add(); });
  };
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->SetPeerAcceptsBatches(true);
  const uint64_t dropped_before = Dialog::OverrunCount();
  // The items queue behind the call's first write and leave batched. The
  // server reads nothing yet, and takes the batch item by item: 0 and 1
  // fill its queue, 2 to 9 are dropped one by one, and the Stop after them
  // is queued (it is not a stream item).
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(client_->SendNoWait(YieldMsg(i)));
  ASSERT_TRUE(client_->SendNoWait(StopMsg()));
  ASSERT_TRUE(overruns.WaitUntil(
      [&] { return Dialog::OverrunCount() - dropped_before >= 8; },
      Deadline()))
      << "dropped " << Dialog::OverrunCount() - dropped_before << " of 8";

  for (int i = 0; i < 2; ++i) {
    auto m = ReceiveOn(*server_dialog_);
    ASSERT_TRUE(m.has_value());
    ASSERT_TRUE(m->has_yielded()) << m->ShortDebugString();
    EXPECT_EQ(m->yielded().payload().raw(), std::to_string(i));
  }
  auto stop = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(stop.has_value());
  EXPECT_TRUE(stop->has_stop()) << stop->ShortDebugString();
  EXPECT_EQ(Dialog::OverrunCount() - dropped_before, 8u);
  EXPECT_GE(overruns.value(), 1);
}

// A fast sender's stream, batched, under each overrun policy of the
// receiver: every item arrives once and in order, past the outbox's and
// the batch's bound (256 items), and nothing overruns.
class DialogPolicyTest
    : public DialogPairTest,
      public testing::WithParamInterface<v1::OverrunPolicy> {};

TEST_P(DialogPolicyTest, BatchedStreamArrivesWholeAndInOrder) {
  constexpr int kItems = 3000;
  const v1::OverrunPolicy policy = GetParam();
  Counter overruns;
  service_.setup = [&](Dialog& d) {
    // kError: a queue that holds the whole stream, so nothing overruns.
    d.Configure(policy == v1::OVERRUN_POLICY_ERROR ? kItems + 1 : 64, policy);
    d.SetOverrunHook([&] { overruns.Add(); });
  };
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->SetPeerAcceptsBatches(true);
  const uint64_t dropped_before = Dialog::OverrunCount();

  StreamInOrder(kItems);
  EXPECT_EQ(overruns.value(), 0);
  EXPECT_EQ(Dialog::OverrunCount() - dropped_before, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    EveryPolicy, DialogPolicyTest,
    testing::Values(v1::OVERRUN_POLICY_BACKPRESSURE, v1::OVERRUN_POLICY_ERROR,
                    v1::OVERRUN_POLICY_UNBOUNDED),
    [](const testing::TestParamInfo<v1::OverrunPolicy>& info) {
      return std::string(v1::OverrunPolicy_Name(info.param));
    });

TEST_F(DialogPairTest, AbortMakesThePeerSeeTheStreamBrokenAndRunsItsHookOnce) {
  Counter broken_hook;
  service_.setup = [&](Dialog& d) { d.SetBrokenHook([&] { broken_hook.Add(); }); };
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->Send(StartMsg("cid-1", "ns:f"));
  ASSERT_TRUE(ReceiveOn(*server_dialog_).has_value());
  EXPECT_FALSE(server_dialog_->broken());

  client_->Close(grpc::Status::OK, /*abort=*/true);

  ASSERT_TRUE(broken_hook.WaitFor(1, Deadline()));
  EXPECT_TRUE(server_dialog_->broken());
  // A broken stream ends the server's reads at once and refuses sends.
  bool timed_out = true;
  EXPECT_FALSE(server_dialog_->Receive(Deadline(), &timed_out).has_value());
  EXPECT_FALSE(timed_out);
  EXPECT_THROW(server_dialog_->Send(YieldMsg(1)), TransportClosed);
  EXPECT_FALSE(server_dialog_->SendNoWait(YieldMsg(2)));
  EXPECT_EQ(server_dialog_->WaitDoneReason(kWait),
            "the caller cancelled the dialog or vanished");
  // The server's RPC is done: the hook ran once, not again at the end.
  EXPECT_EQ(broken_hook.value(), 1);

  client_->WaitDoneReason(kWait);
  EXPECT_TRUE(client_->broken());
}

// --- the accept queue's waiters -------------------------------------------

// Checks `pred` every 5 ms until it holds or `within` passed (the acceptor's
// waiter count is signalled to nobody); returns `pred()`.
bool HoldsWithin(const std::function<bool()>& pred, absl::Duration within) {
  const absl::Time until = absl::Now() + within;
  while (!pred()) {
    if (absl::Now() >= until) return pred();
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST_F(DialogPairTest, TwoThreadsWaitOnTheAcceptQueueOnceAStreamWasServed) {
  // One thread waits from the start; the one that served the first stream
  // then waits as well.
  EXPECT_EQ(acceptor_->waiters(), 1);
  ASSERT_NO_FATAL_FAILURE(Connect());
  EXPECT_TRUE(HoldsWithin([&] { return acceptor_->waiters() == 2; }, kWait))
      << acceptor_->waiters() << " threads wait";

  // Two streams held by the threads that took them: taking the first left
  // the other waiter in place (no thread woken), the second took the last
  // waiter and a pooled thread waits in its place.
  absl::Notification release;
  Counter held;
  service_.setup = [&](Dialog&) {
    held.Add();
    release.WaitForNotificationWithTimeout(kWait);
  };
  std::shared_ptr<Dialog> second = Dialog::Connect(channel_);
  ASSERT_TRUE(held.WaitFor(1, Deadline()));
  EXPECT_EQ(acceptor_->waiters(), 1);
  std::shared_ptr<Dialog> third = Dialog::Connect(channel_);
  ASSERT_TRUE(held.WaitFor(2, Deadline()));
  EXPECT_EQ(acceptor_->waiters(), 1);

  // Both served: one waits again, the other goes back to the pool.
  release.Notify();
  ASSERT_NE(service_.AwaitOpened(2, Deadline()), nullptr);
  EXPECT_TRUE(HoldsWithin([&] { return acceptor_->waiters() == 2; }, kWait))
      << acceptor_->waiters() << " threads wait";
  EXPECT_FALSE(HoldsWithin([&] { return acceptor_->waiters() != 2; },
                           absl::Milliseconds(100)))
      << acceptor_->waiters() << " threads wait";
  for (const auto& c : {second, third}) {
    c->Close(grpc::Status::OK, /*abort=*/true);
    c->WaitDoneReason(kWait);
  }
}

TEST_F(DialogPairTest, AThreadServingWhileTheAcceptorStopsDoesNotWaitAgain) {
  absl::Notification release;
  Counter held;
  service_.setup = [&](Dialog&) {
    held.Add();
    release.WaitForNotificationWithTimeout(kWait);
  };
  client_ = Dialog::Connect(channel_);
  ASSERT_TRUE(held.WaitFor(1, Deadline()));
  ASSERT_EQ(acceptor_->waiters(), 1);  // the replacement
  acceptor_->StopRequesting();
  release.Notify();
  ASSERT_NE(service_.AwaitOpened(0, Deadline()), nullptr);
  EXPECT_FALSE(HoldsWithin([&] { return acceptor_->waiters() != 1; },
                           absl::Milliseconds(100)))
      << acceptor_->waiters() << " threads wait";

  client_->Close(grpc::Status::OK, /*abort=*/true);
  client_->WaitDoneReason(kWait);
  client_ = nullptr;
  for (auto& d : service_.opened()) d->WaitDoneReason(kWait);
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::seconds(5));
  acceptor_->Stop();
  EXPECT_EQ(acceptor_->waiters(), 0);
}

// A caller's dialog built ahead (`Dialog::Prepare`, a portal's spare)
// sends nothing until opened: a stream connected after it reaches the
// server first, and its own first message arrives with its open.
TEST_F(DialogPairTest, APreparedDialogSendsNothingUntilItIsOpened) {
  const auto method = std::make_shared<const OpenMethod>(channel_);
  std::shared_ptr<Dialog> prepared = Dialog::Prepare(method);
  client_ = Dialog::Connect(channel_);
  client_->Send(StartMsg("cid-connected", "ns:f"));
  std::shared_ptr<Dialog> first = service_.AwaitOpened(0, Deadline());
  ASSERT_NE(first, nullptr);
  auto m = ReceiveOn(*first);
  ASSERT_TRUE(m.has_value() && m->has_start());
  EXPECT_EQ(m->start().cid(), "cid-connected");

  std::shared_ptr<Dialog> opened =
      Dialog::Open(std::move(prepared), StartMsg("cid-prepared", "ns:f"));
  std::shared_ptr<Dialog> second = service_.AwaitOpened(1, Deadline());
  ASSERT_NE(second, nullptr);
  m = ReceiveOn(*second);
  ASSERT_TRUE(m.has_value() && m->has_start());
  EXPECT_EQ(m->start().cid(), "cid-prepared");
  second->Send(ReturnMsg("r"));
  m = ReceiveOn(*opened);
  ASSERT_TRUE(m.has_value() && m->has_returned());
  EXPECT_EQ(m->returned().payload().raw(), "r");
  opened->Close(grpc::Status::OK, /*abort=*/true);
  opened->WaitDoneReason(kWait);
}

TEST_F(DialogPairTest, APreparedDialogOpensOnce) {
  const auto method = std::make_shared<const OpenMethod>(channel_);
  std::shared_ptr<Dialog> prepared = Dialog::Prepare(method);
  client_ = Dialog::Open(prepared, StartMsg("cid-1", "ns:f"));
  EXPECT_EQ(client_, prepared);
  EXPECT_THROW(Dialog::Open(prepared, StartMsg("cid-2", "ns:f")),
               UsageError);
  // The first open's stream carries the first open's message only.
  server_dialog_ = service_.AwaitOpened(0, Deadline());
  ASSERT_NE(server_dialog_, nullptr);
  auto m = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(m.has_value() && m->has_start());
  EXPECT_EQ(m->start().cid(), "cid-1");
  client_->Send(StopMsg());
  m = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->has_stop()) << m->ShortDebugString();

  // One built by Connect was never prepared.
  std::shared_ptr<Dialog> connected = Dialog::Connect(channel_);
  EXPECT_THROW(Dialog::Open(connected, StartMsg("cid-3", "ns:f")),
               UsageError);
  EXPECT_THROW(Dialog::Open(nullptr, StartMsg("cid-4", "ns:f")), UsageError);
  // Its stream (its headers leave at once) is served before it is closed,
  // so that TearDown waits for its server side to end.
  ASSERT_NE(service_.AwaitOpened(1, Deadline()), nullptr);
  connected->Close(grpc::Status::OK, /*abort=*/true);
  connected->WaitDoneReason(kWait);
}

TEST_F(DialogPairTest, APreparedDialogDroppedUnopenedLeavesNothingBehind) {
  const size_t live = Dialog::LiveCount();
  {
    const auto method = std::make_shared<const OpenMethod>(channel_);
    std::shared_ptr<Dialog> prepared = Dialog::Prepare(method);
    EXPECT_EQ(Dialog::LiveCount(), live + 1);
  }  // destroyed here: its call is cancelled and its queue drained
  EXPECT_EQ(Dialog::LiveCount(), live);
  // The server never saw it: the next stream is its first.
  ASSERT_NO_FATAL_FAILURE(Connect());
  client_->Send(StartMsg("cid-after", "ns:f"));
  auto m = ReceiveOn(*server_dialog_);
  ASSERT_TRUE(m.has_value() && m->has_start());
  EXPECT_EQ(m->start().cid(), "cid-after");
}

// A dialog built ahead toward a server that is gone by its open: the open
// sends nothing that arrives, and the dialog ends broken with the
// transport's reason (what a portal's `OpenContext` raises as
// TransportClosed), within the wait's bound.
TEST(PreparedDialogTest, OpenedTowardAGoneServerEndsBrokenWithAReason) {
  v1::Actor::Service service;  // answers every method UNIMPLEMENTED
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  // Connected, then the peer goes: as a portal whose actor died.
  ASSERT_TRUE(channel->WaitForConnected(absl::ToChronoTime(Deadline())));
  std::shared_ptr<Dialog> prepared =
      Dialog::Prepare(std::make_shared<const OpenMethod>(channel));
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  server.reset();

  std::shared_ptr<Dialog> d =
      Dialog::Open(std::move(prepared), StartMsg("cid-gone", "ns:f"));
  bool timed_out = false;
  EXPECT_FALSE(d->Receive(Deadline(), &timed_out).has_value());
  EXPECT_FALSE(timed_out);
  // What the caller's protocol then raises TransportClosed with.
  const std::string reason = d->WaitDoneReason(kWait);
  EXPECT_NE(reason.find("RPC ended with status"), std::string::npos)
      << reason;
  EXPECT_TRUE(d->broken());
  EXPECT_THROW(d->Send(YieldMsg(1)), TransportClosed);
}

// A callee whose answer does not decode: the caller's dialog ends its
// reads, says why, and cancels the RPC (the callee sees the cancel), so the
// caller's task is not left waiting on a stream that can carry nothing it
// understands.
class GarbageAnsweringService final
    : public v1::Actor::WithRawCallbackMethod_Open<v1::Actor::Service> {
 public:
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Open(
      grpc::CallbackServerContext*) override {
    return new Reactor(this);
  }
  Counter cancelled;

 private:
  class Reactor final
      : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Reactor(GarbageAnsweringService* service) : service_(service) {
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // the RPC ends by the caller's cancel
      // A key whose varint never ends: no message decodes from it.
      static const char kGarbage[] = "\xff\xff\xff\xff";
      grpc::Slice bytes(kGarbage, 4);
      out_ = grpc::ByteBuffer(&bytes, 1);
      StartWrite(&out_);
    }
    void OnCancel() override {
      service_->cancelled.Add();
      Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    GarbageAnsweringService* const service_;
    grpc::ByteBuffer in_;
    grpc::ByteBuffer out_;
  };
};

TEST(DialogCallerTest, AnAnswerThatDoesNotDecodeEndsTheDialogAndCancelsIt) {
  GarbageAnsweringService service;
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  std::shared_ptr<Dialog> d =
      Dialog::Connect(server->InProcessChannel(grpc::ChannelArguments()));
  d->Send(StartMsg("cid-garbage", "ns:f"));
  bool timed_out = false;
  EXPECT_FALSE(d->Receive(Deadline(), &timed_out).has_value());
  EXPECT_FALSE(timed_out);
  EXPECT_NE(d->undecodable().find("does not decode as tractor.v1.Msg"),
            std::string::npos)
      << d->undecodable();
  EXPECT_TRUE(service.cancelled.WaitFor(1, Deadline()))
      << "the callee never saw the RPC cancelled";
  const std::string reason = d->WaitDoneReason(kWait);
  EXPECT_NE(reason.find("the peer sent a message that does not decode"),
            std::string::npos)
      << reason;
  EXPECT_THROW(d->Send(YieldMsg(1)), TransportClosed);
  d.reset();
  server->Shutdown(absl::ToChronoTime(Deadline()));
}

TEST_F(DialogPairTest, ReceiveUntilTimesOutWithTimedOutSet) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  const absl::Duration wait = absl::Milliseconds(100);
  for (Dialog* d : {client_.get(), server_dialog_.get()}) {
    bool timed_out = false;
    const absl::Time t0 = absl::Now();
    EXPECT_FALSE(d->Receive(t0 + wait, &timed_out).has_value());
    EXPECT_TRUE(timed_out);
    EXPECT_GE(absl::Now() - t0, wait);
    EXPECT_FALSE(d->broken());
  }
  // A message that is there is no timeout.
  server_dialog_->Send(YieldMsg(7));
  bool timed_out = true;
  auto m = client_->Receive(Deadline(), &timed_out);
  EXPECT_FALSE(timed_out);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->yielded().payload().raw(), "7");
}

// ---------------------------------------------------------------------------
// The outbox seen from the transport: a fake that records what Dialog asks
// it to write, and whose writes complete when the test says so.

class RecordingTransport : public DialogTransport {
 public:
  void Read(v1::Msg*) override {}
  void Write(const grpc::ByteBuffer* bytes, grpc::WriteOptions) override {
    v1::Msg msg;
    std::string why;
    EXPECT_TRUE(ParseFromByteBuffer(*bytes, &msg, &why)) << why;
    writes.push_back(std::move(msg));
  }
  void Release(const grpc::Status&, bool) override { released = true; }

  std::vector<v1::Msg> writes;
  bool released = false;
};

std::vector<std::string> Raws(const v1::Batch& b) {
  std::vector<std::string> out;
  for (const auto& y : b.items()) out.push_back(y.payload().raw());
  return out;
}

std::vector<std::string> Range(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(std::to_string(i));
  return out;
}

TEST(DialogOutboxTest, YieldsQueuedBehindABusyWriteLeaveAsBatchesInOrder) {
  auto d = std::make_shared<Dialog>();
  RecordingTransport t;
  d->Attach(&t);
  d->SetPeerAcceptsBatches(true);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(d->SendNoWait(YieldMsg(i)));
  // The first write is busy; the other 299 wait behind it.
  ASSERT_EQ(t.writes.size(), 1u);
  ASSERT_TRUE(t.writes[0].has_yielded());
  EXPECT_EQ(t.writes[0].yielded().payload().raw(), "0");

  d->OnWriteDone(true);  // a Batch holds at most 256 items
  ASSERT_EQ(t.writes.size(), 2u);
  ASSERT_TRUE(t.writes[1].has_batch()) << t.writes[1].ShortDebugString();
  EXPECT_EQ(Raws(t.writes[1].batch()), Range(1, 257));

  d->OnWriteDone(true);
  ASSERT_EQ(t.writes.size(), 3u);
  ASSERT_TRUE(t.writes[2].has_batch()) << t.writes[2].ShortDebugString();
  EXPECT_EQ(Raws(t.writes[2].batch()), Range(257, 300));

  d->OnWriteDone(true);
  EXPECT_EQ(t.writes.size(), 3u);
}

TEST(DialogOutboxTest, ABatchStopsAtTheFirstMessageThatIsNotAYield) {
  auto d = std::make_shared<Dialog>();
  RecordingTransport t;
  d->Attach(&t);
  d->SetPeerAcceptsBatches(true);
  ASSERT_TRUE(d->SendNoWait(YieldMsg(0)));
  ASSERT_TRUE(d->SendNoWait(YieldMsg(1)));
  ASSERT_TRUE(d->SendNoWait(YieldMsg(2)));
  ASSERT_TRUE(d->SendNoWait(StopMsg()));
  ASSERT_TRUE(d->SendNoWait(YieldMsg(3)));
  for (int i = 0; i < 4; ++i) d->OnWriteDone(true);

  ASSERT_EQ(t.writes.size(), 4u);
  EXPECT_EQ(t.writes[0].yielded().payload().raw(), "0");
  ASSERT_TRUE(t.writes[1].has_batch());
  EXPECT_EQ(Raws(t.writes[1].batch()), Range(1, 3));
  EXPECT_TRUE(t.writes[2].has_stop());
  ASSERT_TRUE(t.writes[3].has_yielded());
  EXPECT_EQ(t.writes[3].yielded().payload().raw(), "3");
}

TEST(DialogOutboxTest, WithoutBatchesEveryYieldLeavesAlone) {
  auto d = std::make_shared<Dialog>();
  RecordingTransport t;
  d->Attach(&t);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(d->SendNoWait(YieldMsg(i)));
  for (int i = 0; i < 3; ++i) d->OnWriteDone(true);
  ASSERT_EQ(t.writes.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(t.writes[i].has_yielded()) << t.writes[i].ShortDebugString();
    EXPECT_EQ(t.writes[i].yielded().payload().raw(), std::to_string(i));
  }
}

}  // namespace
}  // namespace tractor::internal
