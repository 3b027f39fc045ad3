// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/blocking_call.h against an in-process registrar: replies,
// deadlines, and cancellation by the caller (a stop token, a waiter that
// throws), which must end the wait promptly and never leave the RPC behind.
#include "discovery/blocking_call.h"

#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "discovery/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/discovery/local_registrar.h"
#include "tests/discovery/test_procs.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

namespace v1 = ::tractor::v1;
using tractor::testing::LocalRegistrar;
using tractor::testing::TempDir;

class BlockingCallTest : public ::testing::Test {
 protected:
  BlockingCallTest()
      : registrar_(dir_.Sock("reg.sock"), absl::Seconds(5)),
        stub_(v1::Registrar::NewStub(NewChannel(
            *Address::Parse(registrar_.addr), ChannelPurpose::kRegistrar))) {}

  // Registrar.WaitFor a name nobody registers: pending until cancelled.
  grpc::Status WaitForNobody(const CallOptions& options) {
    v1::FindRequest req;
    req.set_name("nobody");
    v1::FindReply reply;
    return BlockingUnaryCall(
        [&](auto* ctx, auto* request, auto* rep, auto done) {
          stub_->async()->WaitFor(ctx, request, rep, std::move(done));
        },
        std::move(req), &reply, options);
  }

  TempDir dir_;
  LocalRegistrar registrar_;
  std::unique_ptr<v1::Registrar::Stub> stub_;
};

TEST_F(BlockingCallTest, ReturnsTheReply) {
  v1::HelloReply reply;
  grpc::Status s = BlockingUnaryCall(
      [&](auto* ctx, auto* request, auto* rep, auto done) {
        stub_->async()->Hello(ctx, request, rep, std::move(done));
      },
      v1::HelloRequest(), &reply, {.deadline = absl::Now() + absl::Seconds(5)});
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.registrar().name(), "registrar");
  EXPECT_EQ(reply.default_lease_ms(), 5000u);
}

TEST_F(BlockingCallTest, DeadlineEndsTheCall) {
  const absl::Time start = absl::Now();
  grpc::Status s =
      WaitForNobody({.deadline = absl::Now() + absl::Milliseconds(200)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(BlockingCallTest, StopRequestCancelsPromptly) {
  std::stop_source stop;
  StopTokenWaiter waiter(stop.get_token());
  grpc::Status status;
  absl::Time returned;
  absl::Notification done;
  std::thread caller([&] {
    status = WaitForNobody({.waiter = &waiter});
    returned = absl::Now();
    done.Notify();
  });
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(200)))
      << "the call ended before it was cancelled: " << status.error_message();
  const absl::Time cancelled = absl::Now();
  stop.request_stop();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
      << status.error_message();
  EXPECT_LT(returned - cancelled, absl::Milliseconds(500));
}

TEST_F(BlockingCallTest, StopRequestedBeforeTheCallCancelsAtOnce) {
  std::stop_source stop;
  stop.request_stop();
  StopTokenWaiter waiter(stop.get_token());
  const absl::Time start = absl::Now();
  grpc::Status s = WaitForNobody({.waiter = &waiter});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST_F(BlockingCallTest, CompletedCallKeepsItsStatusWithAWaiter) {
  std::stop_source stop;
  StopTokenWaiter waiter(stop.get_token());
  v1::HelloReply reply;
  grpc::Status s = BlockingUnaryCall(
      [&](auto* ctx, auto* request, auto* rep, auto done) {
        stub_->async()->Hello(ctx, request, rep, std::move(done));
      },
      v1::HelloRequest(), &reply, {.waiter = &waiter});
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(reply.registrar().is_registrar());
}

struct CallerCancelled {};

// A waiter like the actor runtime's: a cancellation is an exception thrown
// from the wait; the uncancellable wait is its own.
class ThrowingWaiter final : public CallWaiter {
 public:
  explicit ThrowingWaiter(absl::Duration after) : after_(after) {}
  bool Wait(Mutex& mu, CondVar& cv, absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override {
    const absl::Time deadline = absl::Now() + after_;
    while (!done()) {
      if (cv.WaitWithDeadline(&mu, deadline) && !done()) {
        throw CallerCancelled();
      }
    }
    return true;
  }
  void WaitUncancellable(Mutex& mu, CondVar& cv,
                         absl::FunctionRef<bool()> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override {
    ++uncancellable_waits;
    while (!done()) cv.Wait(&mu);
  }
  int uncancellable_waits = 0;

 private:
  const absl::Duration after_;
};

TEST_F(BlockingCallTest, ThrowingWaiterCancelsAndAwaitsTheRpcBeforeRethrowing) {
  ThrowingWaiter waiter(absl::Milliseconds(100));
  v1::FindRequest req;
  req.set_name("nobody");
  auto call = UnaryCall<v1::FindRequest, v1::FindReply>::Start(
      [&](auto* ctx, auto* request, auto* rep, auto done) {
        stub_->async()->WaitFor(ctx, request, rep, std::move(done));
      },
      std::move(req), {.waiter = &waiter});
  const absl::Time start = absl::Now();
  EXPECT_THROW(call->Await(), CallerCancelled);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(600));
  EXPECT_TRUE(call->done()) << "the RPC outlived the call";
  EXPECT_EQ(waiter.uncancellable_waits, 1);
}

TEST_F(BlockingCallTest, ConcurrentCallsAwaitedInTurn) {
  using Call = UnaryCall<v1::HelloRequest, v1::HelloReply>;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(Call::Start(
        [&](auto* ctx, auto* request, auto* rep, auto done) {
          stub_->async()->Hello(ctx, request, rep, std::move(done));
        },
        v1::HelloRequest(), {.deadline = absl::Now() + absl::Seconds(5)}));
  }
  for (auto& call : calls) {
    grpc::Status s = call->Await();
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(call->reply().registrar().is_registrar());
    // Awaiting again returns the same status at once.
    EXPECT_TRUE(call->Await().ok());
  }
}

TEST_F(BlockingCallTest, TryCancelEndsAnUnwaitedCall) {
  v1::FindRequest req;
  req.set_name("nobody");
  auto call = UnaryCall<v1::FindRequest, v1::FindReply>::Start(
      [&](auto* ctx, auto* request, auto* rep, auto done) {
        stub_->async()->WaitFor(ctx, request, rep, std::move(done));
      },
      std::move(req));
  call->TryCancel();
  EXPECT_EQ(call->Await().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(BlockingCallTest, DestroyingAPendingCallCancelsItAndWaits) {
  v1::FindRequest req;
  req.set_name("nobody");
  auto call = UnaryCall<v1::FindRequest, v1::FindReply>::Start(
      [&](auto* ctx, auto* request, auto* rep, auto done) {
        stub_->async()->WaitFor(ctx, request, rep, std::move(done));
      },
      std::move(req));
  const absl::Time start = absl::Now();
  call.reset();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

// The caller, not gRPC's callback thread, releases the ClientContext and
// with it what may be the last reference to the channel.
TEST_F(BlockingCallTest, ChannelDroppedRightAfterEachCall) {
  const Address addr = *Address::Parse(registrar_.addr);
  for (int i = 0; i < 50; ++i) {
    auto stub = v1::Registrar::NewStub(NewChannel(addr));
    v1::HelloReply reply;
    grpc::Status s = BlockingUnaryCall(
        [&](auto* ctx, auto* request, auto* rep, auto done) {
          stub->async()->Hello(ctx, request, rep, std::move(done));
        },
        v1::HelloRequest(), &reply,
        {.deadline = absl::Now() + absl::Seconds(5)});
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
}

}  // namespace
}  // namespace tractor::discovery
