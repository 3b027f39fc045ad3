// SPDX-License-Identifier: AGPL-3.0-or-later
// The root's tree-wide terminal lock: first come, first served, and
// released when its holder's `Actor.DebugLock` stream ends without a
// release (the holder died or was cancelled); `Pause()` waiting for it is a
// checkpoint; which errors the post-mortem skips.
#include "actor/internal/debugger.h"

#include <atomic>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/runtime.h"
#include "discovery/credentials.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {
namespace {

using testing::WaitFor;

TEST(TtyLockTest, GrantsInOrderAndSkipsWithdrawnRequests) {
  TtyLock lock;
  std::vector<std::string> granted;
  const auto a = lock.Request("a", [&] { granted.push_back("a"); });
  const auto b = lock.Request("b", [&] { granted.push_back("b"); });
  const auto c = lock.Request("c", [&] { granted.push_back("c"); });
  const auto d = lock.Request("d", [&] { granted.push_back("d"); });
  EXPECT_EQ(granted, std::vector<std::string>({"a"}));
  EXPECT_EQ(lock.Holder(), "a");
  lock.Release(c);  // withdrawn while waiting: never granted
  lock.Release(a);
  EXPECT_EQ(granted, std::vector<std::string>({"a", "b"}));
  lock.Release(b);
  EXPECT_EQ(granted, std::vector<std::string>({"a", "b", "d"}));
  EXPECT_TRUE(lock.Held());
  lock.Release(d);
  EXPECT_FALSE(lock.Held());
  lock.Release(d);  // unknown now: ignored
  EXPECT_EQ(lock.Holder(), "");
}

class DebugLockRpcTest : public testing::ProcessTest {};

v1::DebugLockMsg Request(const std::string& name) {
  v1::DebugLockMsg m;
  m.mutable_request()->mutable_requester()->set_name(name);
  m.mutable_request()->set_pid(1);
  m.mutable_request()->set_reason("test");
  return m;
}

TEST_F(DebugLockRpcTest, TheNextWaitsAndGetsTheLockWhenTheHolderStreamEnds) {
  RootOptions options;
  options.debug_mode = true;
  OpenRootActor(options, [] {
    auto stub = v1::Actor::NewStub(
        grpc::CreateChannel(AcceptAddrs().at(0),
                            grpc::InsecureChannelCredentials()));
    // The holder.
    grpc::ClientContext holder_ctx;
    discovery::AttachSecret(&holder_ctx);
    holder_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto holder = stub->DebugLock(&holder_ctx);
    ASSERT_TRUE(holder->Write(Request("first")));
    v1::DebugLockMsg reply;
    ASSERT_TRUE(holder->Read(&reply));
    ASSERT_TRUE(reply.has_granted());
    EXPECT_TRUE(TtyLock::Process().Held());

    // The next one waits.
    grpc::ClientContext next_ctx;
    discovery::AttachSecret(&next_ctx);
    next_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto next = stub->DebugLock(&next_ctx);
    ASSERT_TRUE(next->Write(Request("second")));
    std::atomic<bool> next_granted{false};
    std::thread reader([&] {
      v1::DebugLockMsg m;
      if (next->Read(&m) && m.has_granted()) next_granted.store(true);
    });
    EXPECT_FALSE(WaitFor([&] { return next_granted.load(); },
                         absl::Milliseconds(500)))
        << "granted while another holds the lock";

    // The holder's stream ends without a release (as when its process is
    // killed): the lock passes on.
    holder_ctx.TryCancel();
    holder->Finish();
    EXPECT_TRUE(WaitFor([&] { return next_granted.load(); },
                        absl::Seconds(10)));
    reader.join();

    // An explicit release frees it; the root then ends the stream.
    v1::DebugLockMsg release;
    release.mutable_release();
    ASSERT_TRUE(next->Write(release));
    next->WritesDone();
    v1::DebugLockMsg none;
    EXPECT_FALSE(next->Read(&none));
    EXPECT_TRUE(next->Finish().ok());
    EXPECT_TRUE(WaitFor([] { return !TtyLock::Process().Held(); },
                        absl::Seconds(10)));
  });
}

TEST_F(DebugLockRpcTest, RefusesCallersOutsideTheMesh) {
  RootOptions options;
  options.debug_mode = true;
  OpenRootActor(options, [] {
    auto stub = v1::Actor::NewStub(
        grpc::CreateChannel(AcceptAddrs().at(0),
                            grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;  // no mesh secret
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto stream = stub->DebugLock(&ctx);
    stream->Write(Request("stranger"));
    v1::DebugLockMsg m;
    EXPECT_FALSE(stream->Read(&m));
    EXPECT_EQ(stream->Finish().error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_FALSE(TtyLock::Process().Held());
  });
}

TEST_F(DebugLockRpcTest, PauseWaitingBehindAHolderIsCancelledAndLeavesTheQueue) {
  RootOptions options;
  options.debug_mode = true;
  OpenRootActor(options, [] {
    // Another actor holds the terminal.
    const TtyLock::Ticket holder = TtyLock::Process().Request("holder", [] {});
    const absl::Time start = absl::Now();
    bool returned = false;
    const bool finished = MoveOnAfter(absl::Milliseconds(300), [&] {
      Pause();
      returned = true;
    });
    EXPECT_FALSE(finished) << "Pause() returned without the lock";
    EXPECT_FALSE(returned);
    EXPECT_LT(absl::Now() - start, absl::Seconds(20));
    EXPECT_EQ(TtyLock::Process().Holder(), "holder");
    // The cancelled request was withdrawn: once the holder releases, nobody
    // holds the lock.
    TtyLock::Process().Release(holder);
    EXPECT_FALSE(TtyLock::Process().Held());
  });
}

TEST_F(DebugLockRpcTest, PauseInACancelledScopeDoesNotQueue) {
  RootOptions options;
  options.debug_mode = true;
  OpenRootActor(options, [] {
    const TtyLock::Ticket holder = TtyLock::Process().Request("holder", [] {});
    CancelScope scope;
    scope.Cancel();
    bool returned = false;
    scope.Run([&] {
      Pause();
      returned = true;
    });
    EXPECT_FALSE(returned);
    EXPECT_TRUE(scope.cancelled_caught());
    TtyLock::Process().Release(holder);
    EXPECT_FALSE(TtyLock::Process().Held());
  });
}

template <class E>
std::exception_ptr Raised(const std::string& what) {
  try {
    throw E(what);
  } catch (...) {
    return std::current_exception();
  }
}

TEST(PostMortemTest, SkipsErrorsRaisedElsewhereAndStopsForOwnOnes) {
  const std::exception_ptr own = Raised<std::out_of_range>("own");
  v1::Error boxed;
  boxed.set_src_type("std::out_of_range");
  boxed.set_boxed_type("std::out_of_range");
  const std::exception_ptr relayed =
      std::make_exception_ptr(RemoteActorError(boxed));
  const std::exception_ptr died = Raised<ActorFailure>("child died");
  EXPECT_FALSE(ExaminedWhereRaised(own));
  EXPECT_FALSE(ExaminedWhereRaised(Raised<UsageError>("own usage error")));
  EXPECT_TRUE(ExaminedWhereRaised(relayed));
  EXPECT_TRUE(ExaminedWhereRaised(died));
  EXPECT_TRUE(ExaminedWhereRaised(
      std::make_exception_ptr(ActorErrorGroup("2 errors", {relayed, died}))));
  EXPECT_FALSE(ExaminedWhereRaised(
      std::make_exception_ptr(ActorErrorGroup("2 errors", {relayed, own}))));
}

}  // namespace
}  // namespace tractor::internal
