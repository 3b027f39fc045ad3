// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests registrar/registrar_service.h through a real gRPC server on
// 127.0.0.1:0 and a generated stub.
#include "registrar/registrar_service.h"

#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::registrar {
namespace {

namespace v1 = ::tractor::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

v1::Registration Reg(const std::string& name, const std::string& uuid,
                     std::vector<std::string> addrs, uint32_t lease_ms = 0) {
  v1::Registration reg;
  reg.mutable_aid()->set_name(name);
  reg.mutable_aid()->set_uuid(uuid);
  reg.mutable_aid()->set_pid(4242);
  for (const std::string& addr : addrs) reg.add_addrs(addr);
  reg.set_lease_ms(lease_ms);
  return reg;
}

std::vector<std::string> Uuids(
    const google::protobuf::RepeatedPtrField<v1::Registration>& regs) {
  std::vector<std::string> uuids;
  for (const v1::Registration& reg : regs) uuids.push_back(reg.aid().uuid());
  return uuids;
}

std::vector<std::string> Addrs(const v1::Registration& reg) {
  return {reg.addrs().begin(), reg.addrs().end()};
}

// Polls `condition` until it holds or `timeout` passes; returns whether it
// held.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = absl::Seconds(5)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// A one-shot event, like absl::Notification, on the project's Mutex, which
// ThreadSanitizer sees (the system's Abseil is not instrumented, so TSan
// would take what a notified thread reads for a race).
class Done {
 public:
  void Notify() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    done_ = true;
    cv_.SignalAll();
  }
  bool HasBeenNotified() ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return done_;
  }
  bool WaitForNotificationWithTimeout(absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (!done_ && !cv_.WaitWithDeadline(&mu_, deadline)) {
    }
    return done_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class RegistrarServiceTest : public ::testing::Test {
 protected:
  static RegistrarService::Options DefaultOptions() {
    RegistrarService::Options options;
    options.self.set_name("registrar");
    options.self.set_uuid("reg-uuid");
    options.self.set_pid(1);
    options.default_lease = absl::Seconds(5);
    options.max_lease = absl::Seconds(60);
    return options;
  }

  void Start(RegistrarService::Options options = DefaultOptions()) {
    service_ = std::make_unique<RegistrarService>(std::move(options));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Registrar::NewStub(channel_);
  }

  void TearDown() override {
    if (service_ != nullptr) service_->Shutdown();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(2));
      server_->Wait();
      server_.reset();
    }
    service_.reset();
  }

  // A client context whose deadline bounds every call of a test.
  static std::unique_ptr<grpc::ClientContext> Ctx(
      absl::Duration timeout = absl::Seconds(10)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return ctx;
  }

  grpc::Status Register(const v1::Registration& reg,
                        v1::RegisterReply* reply = nullptr) {
    v1::RegisterRequest request;
    *request.mutable_registration() = reg;
    v1::RegisterReply ignored;
    return stub_->Register(Ctx().get(), request,
                           reply != nullptr ? reply : &ignored);
  }

  // Registers and asserts success.
  void MustRegister(const v1::Registration& reg) {
    grpc::Status status = Register(reg);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  v1::FindReply Find(const std::string& name) {
    v1::FindRequest request;
    request.set_name(name);
    v1::FindReply reply;
    grpc::Status status = stub_->Find(Ctx().get(), request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }

  v1::ListReply List() {
    v1::ListReply reply;
    grpc::Status status = stub_->List(Ctx().get(), v1::ListRequest(), &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }

  bool Unregister(const std::string& uuid) {
    v1::UnregisterRequest request;
    request.set_uuid(uuid);
    v1::UnregisterReply reply;
    grpc::Status status = stub_->Unregister(Ctx().get(), request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply.found();
  }

  v1::DeleteAddrReply DeleteAddr(const std::string& addr,
                                 uint64_t if_revision = 0) {
    v1::DeleteAddrRequest request;
    request.set_addr(addr);
    request.set_if_revision(if_revision);
    v1::DeleteAddrReply reply;
    grpc::Status status = stub_->DeleteAddr(Ctx().get(), request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }

  // An in-flight WaitFor on the callback stub.
  struct PendingWaitFor {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::FindRequest request;
    v1::FindReply reply;
    grpc::Status status;
    Done done;
  };

  std::unique_ptr<PendingWaitFor> StartWaitFor(const std::string& name,
                                               absl::Duration timeout) {
    auto call = std::make_unique<PendingWaitFor>();
    call->ctx = Ctx(timeout);
    call->request.set_name(name);
    PendingWaitFor* raw = call.get();
    stub_->async()->WaitFor(call->ctx.get(), &call->request, &call->reply,
                            [raw](grpc::Status status) {
                              raw->status = std::move(status);
                              raw->done.Notify();
                            });
    return call;
  }

  std::unique_ptr<RegistrarService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Registrar::Stub> stub_;
};

// Reads the next event of a Watch stream; fails the test if there is none.
v1::WatchEvent NextEvent(grpc::ClientReader<v1::WatchEvent>* reader) {
  v1::WatchEvent event;
  EXPECT_TRUE(reader->Read(&event))
      << "the Watch stream ended or timed out before the next event";
  return event;
}

TEST_F(RegistrarServiceTest, HelloReturnsSelfAndDefaultLease) {
  Start();
  v1::HelloReply reply;
  grpc::Status status =
      stub_->Hello(Ctx().get(), v1::HelloRequest(), &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.registrar().name(), "registrar");
  EXPECT_EQ(reply.registrar().uuid(), "reg-uuid");
  EXPECT_TRUE(reply.registrar().is_registrar());
  EXPECT_EQ(reply.default_lease_ms(), 5000u);
}

TEST_F(RegistrarServiceTest, RegisterFindListUnregister) {
  Start();
  v1::RegisterReply reply;
  ASSERT_TRUE(Register(Reg("doggy", "u1", {"127.0.0.1:1000", "unix:/tmp/d"}),
                       &reply)
                  .ok());
  EXPECT_EQ(reply.lease_ms(), 5000u);
  MustRegister(Reg("kitty", "u2", {"127.0.0.1:1001"}));

  v1::FindReply found = Find("doggy");
  ASSERT_EQ(found.registrations_size(), 1);
  EXPECT_EQ(found.registrations(0).aid().uuid(), "u1");
  EXPECT_EQ(found.registrations(0).aid().pid(), 4242);
  EXPECT_THAT(Addrs(found.registrations(0)),
              ElementsAre("127.0.0.1:1000", "unix:/tmp/d"));
  EXPECT_EQ(found.registrations(0).lease_ms(), 5000u);
  EXPECT_THAT(Uuids(Find("nobody").registrations()), IsEmpty());
  // Names match exactly, not by prefix or uuid.
  EXPECT_THAT(Uuids(Find("dog").registrations()), IsEmpty());
  EXPECT_THAT(Uuids(Find("u1").registrations()), IsEmpty());

  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u1", "u2"));

  EXPECT_TRUE(Unregister("u1"));
  EXPECT_FALSE(Unregister("u1"));
  EXPECT_THAT(Uuids(Find("doggy").registrations()), IsEmpty());
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u2"));
}

TEST_F(RegistrarServiceTest, RefreshReplacesAddrsAndKeepsOrder) {
  Start();
  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));
  MustRegister(Reg("a", "u2", {"h:3"}));
  MustRegister(Reg("a", "u1", {"h:4"}));  // refresh with new addresses

  v1::FindReply found = Find("a");
  EXPECT_THAT(Uuids(found.registrations()), ElementsAre("u1", "u2"));
  EXPECT_THAT(Addrs(found.registrations(0)), ElementsAre("h:4"));
  // The old addresses are free: nobody owns them any more.
  EXPECT_FALSE(DeleteAddr("h:1").found());
}

TEST_F(RegistrarServiceTest, FindReturnsOldestRegistrationFirst) {
  Start();
  MustRegister(Reg("doggy", "u3", {"h:3"}));
  MustRegister(Reg("other", "x", {"h:9"}));
  MustRegister(Reg("doggy", "u1", {"h:1"}));
  MustRegister(Reg("doggy", "u2", {"h:2"}));
  EXPECT_THAT(Uuids(Find("doggy").registrations()),
              ElementsAre("u3", "u1", "u2"));
}

TEST_F(RegistrarServiceTest, LeaseZeroMeansDefaultAndLongLeaseIsClamped) {
  Start();
  v1::RegisterReply reply;
  ASSERT_TRUE(Register(Reg("a", "u1", {"h:1"}, 0), &reply).ok());
  EXPECT_EQ(reply.lease_ms(), 5000u);
  ASSERT_TRUE(Register(Reg("a", "u2", {"h:2"}, 1234), &reply).ok());
  EXPECT_EQ(reply.lease_ms(), 1234u);
  ASSERT_TRUE(Register(Reg("a", "u3", {"h:3"}, 3600 * 1000), &reply).ok());
  EXPECT_EQ(reply.lease_ms(), 60000u);
  EXPECT_EQ(Find("a").registrations(2).lease_ms(), 60000u);
}

TEST_F(RegistrarServiceTest, AddressReusedByNewUuidEvictsOldEntry) {
  Start();
  MustRegister(Reg("old", "u-old", {"127.0.0.1:5000"}));
  MustRegister(Reg("new", "u-new", {"127.0.0.1:5000"}));
  EXPECT_THAT(Uuids(Find("old").registrations()), IsEmpty());
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u-new"));
  v1::DeleteAddrReply deleted = DeleteAddr("127.0.0.1:5000");
  EXPECT_TRUE(deleted.found());
  EXPECT_EQ(deleted.owner().uuid(), "u-new");
}

TEST_F(RegistrarServiceTest, AddressReusedByNewUuidKeepsOtherAddrsOfOldEntry) {
  Start();
  MustRegister(Reg("old", "u-old", {"h:1", "h:2"}));
  MustRegister(Reg("new", "u-new", {"h:2"}));
  v1::FindReply old = Find("old");
  ASSERT_EQ(old.registrations_size(), 1);
  EXPECT_THAT(Addrs(old.registrations(0)), ElementsAre("h:1"));
}

TEST_F(RegistrarServiceTest, LeaseExpiryDropsEntry) {
  Start();
  const absl::Time start = absl::Now();
  MustRegister(Reg("short", "u1", {"h:1"}, 300));
  MustRegister(Reg("long", "u2", {"h:2"}, 30000));
  EXPECT_THAT(Uuids(Find("short").registrations()), ElementsAre("u1"));
  ASSERT_TRUE(WaitUntil([&] { return Find("short").registrations().empty(); },
                        absl::Seconds(5)))
      << "the 300 ms lease never expired";
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(elapsed, absl::Milliseconds(300));
  EXPECT_LE(elapsed, absl::Milliseconds(800));
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u2"));
  // The address is free again.
  EXPECT_FALSE(DeleteAddr("h:1").found());
}

TEST_F(RegistrarServiceTest, RefreshKeepsEntryAlive) {
  Start();
  const absl::Time end = absl::Now() + absl::Milliseconds(1500);
  while (absl::Now() < end) {
    MustRegister(Reg("beat", "u1", {"h:1"}, 600));
    ASSERT_THAT(Uuids(Find("beat").registrations()), ElementsAre("u1"));
    absl::SleepFor(absl::Milliseconds(100));  // the heartbeat period
  }
}

TEST_F(RegistrarServiceTest, WaitForReturnsAtOnceWhenRegistered) {
  Start();
  MustRegister(Reg("doggy", "u1", {"h:1"}));
  MustRegister(Reg("doggy", "u2", {"h:2"}));
  v1::FindRequest request;
  request.set_name("doggy");
  v1::FindReply reply;
  grpc::Status status =
      stub_->WaitFor(Ctx(absl::Seconds(5)).get(), request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Uuids(reply.registrations()), ElementsAre("u1", "u2"));
}

TEST_F(RegistrarServiceTest, WaitForCompletesWhenRegistrationAppears) {
  Start();
  auto call = StartWaitFor("late", absl::Seconds(10));
  ASSERT_TRUE(WaitUntil([&] { return service_->PendingWaitForCount() == 1; }))
      << "WaitFor never became pending";
  EXPECT_FALSE(call->done.HasBeenNotified());
  MustRegister(Reg("other", "x", {"h:9"}));
  EXPECT_FALSE(call->done.WaitForNotificationWithTimeout(absl::Milliseconds(50)))
      << "WaitFor completed for a different name";
  MustRegister(Reg("late", "u1", {"h:1"}));
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "WaitFor did not complete after the registration";
  ASSERT_TRUE(call->status.ok()) << call->status.error_message();
  EXPECT_THAT(Uuids(call->reply.registrations()), ElementsAre("u1"));
  EXPECT_EQ(service_->PendingWaitForCount(), 0u);
}

TEST_F(RegistrarServiceTest, WaitForHonoursDeadline) {
  Start();
  const absl::Time start = absl::Now();
  auto call = StartWaitFor("never", absl::Milliseconds(300));
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "WaitFor outlived its deadline";
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_TRUE(WaitUntil([&] { return service_->PendingWaitForCount() == 0; }))
      << "the server kept the expired WaitFor";
}

TEST_F(RegistrarServiceTest, WaitForEndsWhenClientCancels) {
  Start();
  auto call = StartWaitFor("never", absl::Seconds(30));
  ASSERT_TRUE(WaitUntil([&] { return service_->PendingWaitForCount() == 1; }))
      << "WaitFor never became pending";
  call->ctx->TryCancel();
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "cancelled WaitFor did not complete";
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] { return service_->PendingWaitForCount() == 0; }))
      << "the server kept the cancelled WaitFor";
}

TEST_F(RegistrarServiceTest, ShutdownEndsPendingWaitForAndWatch) {
  Start();
  auto call = StartWaitFor("never", absl::Seconds(30));
  auto watch_ctx = Ctx(absl::Seconds(30));
  auto reader = stub_->Watch(watch_ctx.get(), v1::WatchRequest());
  ASSERT_TRUE(WaitUntil([&] {
    return service_->PendingWaitForCount() == 1 &&
           service_->WatcherCount() == 1;
  })) << "WaitFor and Watch never became pending";

  const absl::Time start = absl::Now();
  service_->Shutdown();
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "Shutdown did not end the pending WaitFor";
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::WatchEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status watch_status = reader->Finish();
  EXPECT_EQ(watch_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));

  // New long-lived calls are refused the same way.
  auto late = StartWaitFor("never", absl::Seconds(30));
  ASSERT_TRUE(late->done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(late->status.error_code(), grpc::StatusCode::UNAVAILABLE);

  // The server now shuts down without waiting for its deadline.
  const absl::Time shutdown_start = absl::Now();
  server_->Shutdown(std::chrono::system_clock::now() +
                    std::chrono::seconds(10));
  server_->Wait();
  EXPECT_LT(absl::Now() - shutdown_start, absl::Seconds(2));
  EXPECT_EQ(service_->WatcherCount(), 0u);
}

TEST_F(RegistrarServiceTest, WatchStreamsSnapshotThenChanges) {
  RegistrarService::Options options = DefaultOptions();
  Start(options);
  MustRegister(Reg("seed", "u-seed", {"h:0"}));

  auto ctx = Ctx(absl::Seconds(20));
  auto reader = stub_->Watch(ctx.get(), v1::WatchRequest());
  v1::WatchEvent event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::ADDED);
  EXPECT_EQ(event.registration().aid().uuid(), "u-seed");

  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::ADDED);
  EXPECT_EQ(event.registration().aid().uuid(), "u1");
  EXPECT_THAT(Addrs(event.registration()), ElementsAre("h:1", "h:2"));

  // A refresh that changes nothing is not an event; the next one is.
  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));
  ASSERT_TRUE(Unregister("u-seed"));
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::REMOVED);
  EXPECT_EQ(event.registration().aid().uuid(), "u-seed");

  // DeleteAddr of one of two addresses changes the entry.
  ASSERT_TRUE(DeleteAddr("h:2").found());
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::ADDED);
  EXPECT_THAT(Addrs(event.registration()), ElementsAre("h:1"));

  // Another uuid takes the last address: the old entry is removed.
  MustRegister(Reg("b", "u2", {"h:1"}, 300));
  const absl::Time registered = absl::Now();
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::REMOVED);
  EXPECT_EQ(event.registration().aid().uuid(), "u1");
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::ADDED);
  EXPECT_EQ(event.registration().aid().uuid(), "u2");

  // Its 300 ms lease runs out.
  event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::EXPIRED);
  EXPECT_EQ(event.registration().aid().uuid(), "u2");
  EXPECT_LE(absl::Now() - registered, absl::Milliseconds(800))
      << "expiry was observed later than lease + 0.5 s";

  ctx->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] { return service_->WatcherCount() == 0; }))
      << "the server kept the cancelled Watch";
}

TEST_F(RegistrarServiceTest, WatchEventsCarryGrowingRevisions) {
  Start();
  MustRegister(Reg("seed", "u-seed", {"h:0"}));
  auto ctx = Ctx(absl::Seconds(20));
  auto reader = stub_->Watch(ctx.get(), v1::WatchRequest());
  v1::WatchEvent snapshot = NextEvent(reader.get());
  EXPECT_EQ(snapshot.kind(), v1::WatchEvent::ADDED);
  EXPECT_GT(snapshot.revision(), 0u);
  MustRegister(Reg("a", "u1", {"h:1"}));
  v1::WatchEvent added = NextEvent(reader.get());
  EXPECT_EQ(added.kind(), v1::WatchEvent::ADDED);
  EXPECT_GT(added.revision(), snapshot.revision());
  EXPECT_EQ(added.revision(), added.registration().revision());
  ASSERT_TRUE(Unregister("u1"));
  v1::WatchEvent removed = NextEvent(reader.get());
  EXPECT_EQ(removed.kind(), v1::WatchEvent::REMOVED);
  EXPECT_GT(removed.revision(), added.revision());
  ctx->TryCancel();
}

TEST_F(RegistrarServiceTest, WatchFromARevisionStartsOverWithReset) {
  // The in-memory table keeps no history: a client resuming from a revision
  // (of this registrar or of one that restarted) is told to start over.
  Start();
  MustRegister(Reg("a", "u1", {"h:1"}));
  MustRegister(Reg("b", "u2", {"h:2"}));
  auto ctx = Ctx(absl::Seconds(20));
  v1::WatchRequest request;
  request.set_start_revision(12345);
  auto reader = stub_->Watch(ctx.get(), request);
  v1::WatchEvent event = NextEvent(reader.get());
  EXPECT_EQ(event.kind(), v1::WatchEvent::RESET);
  EXPECT_FALSE(event.has_registration());
  std::vector<std::string> uuids;
  for (int i = 0; i < 2; ++i) {
    event = NextEvent(reader.get());
    EXPECT_EQ(event.kind(), v1::WatchEvent::ADDED);
    uuids.push_back(event.registration().aid().uuid());
  }
  EXPECT_THAT(uuids, ElementsAre("u1", "u2"));
  ctx->TryCancel();
}

TEST_F(RegistrarServiceTest, DeleteAddrRemovesAddressAndEmptyEntry) {
  Start();
  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));
  v1::DeleteAddrReply reply = DeleteAddr("h:1");
  EXPECT_TRUE(reply.found());
  EXPECT_EQ(reply.owner().uuid(), "u1");
  EXPECT_EQ(reply.owner().name(), "a");
  EXPECT_THAT(Addrs(Find("a").registrations(0)), ElementsAre("h:2"));

  reply = DeleteAddr("h:2");
  EXPECT_TRUE(reply.found());
  EXPECT_THAT(Uuids(Find("a").registrations()), IsEmpty());

  reply = DeleteAddr("h:2");
  EXPECT_FALSE(reply.found());
  EXPECT_FALSE(reply.has_owner());
}

TEST_F(RegistrarServiceTest, EveryChangeIsANewRevisionAndDeleteAddrHonoursIt) {
  Start();
  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));
  const uint64_t first = Find("a").registrations(0).revision();
  EXPECT_GT(first, 0u);
  MustRegister(Reg("a", "u1", {"h:1", "h:2"}));  // a refresh
  const uint64_t refreshed = Find("a").registrations(0).revision();
  EXPECT_GT(refreshed, first);
  MustRegister(Reg("b", "u2", {"h:3"}));
  EXPECT_GT(Find("b").registrations(0).revision(), refreshed);

  // A deletion decided on the revision before the refresh loses.
  v1::DeleteAddrReply kept = DeleteAddr("h:1", first);
  EXPECT_FALSE(kept.found());
  EXPECT_EQ(kept.owner().uuid(), "u1");
  EXPECT_THAT(kept.kept_because(), HasSubstr("revision"));
  EXPECT_THAT(Addrs(Find("a").registrations(0)), ElementsAre("h:1", "h:2"));

  v1::DeleteAddrReply deleted = DeleteAddr("h:1", refreshed);
  EXPECT_TRUE(deleted.found()) << deleted.kept_because();
  EXPECT_TRUE(deleted.kept_because().empty());
  EXPECT_THAT(Addrs(Find("a").registrations(0)), ElementsAre("h:2"));
  EXPECT_GT(Find("a").registrations(0).revision(), refreshed);
  EXPECT_EQ(deleted.revision(), Find("a").registrations(0).revision());
}

// An in-process stand-in for an actor: answers Actor.Info as `uuid`.
class InfoOnly final : public v1::Actor::CallbackService {
 public:
  explicit InfoOnly(std::string uuid) : uuid_(std::move(uuid)) {}
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* context,
                                 const v1::InfoRequest*,
                                 v1::ActorInfo* reply) override {
    reply->mutable_aid()->set_name("live");
    reply->mutable_aid()->set_uuid(uuid_);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const std::string uuid_;
};

TEST_F(RegistrarServiceTest, DeleteAddrKeepsTheAddressOfAnActorThatAnswers) {
  Start();
  char tmpl[] = "/tmp/tr.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string sock = absl::StrCat("unix:", tmpl, "/live.sock");
  InfoOnly live("u-live");
  grpc::ServerBuilder b;
  b.AddListeningPort(sock, grpc::InsecureServerCredentials());
  b.RegisterService(&live);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);

  MustRegister(Reg("live", "u-live", {sock}));
  v1::DeleteAddrReply kept = DeleteAddr(sock);
  EXPECT_FALSE(kept.found());
  EXPECT_EQ(kept.owner().uuid(), "u-live");
  EXPECT_THAT(kept.kept_because(), HasSubstr("answers"));
  EXPECT_THAT(Uuids(Find("live").registrations()), ElementsAre("u-live"));

  // Another uuid registered at the same address: the actor there is not it.
  MustRegister(Reg("impostor", "u-other", {sock}));
  v1::DeleteAddrReply deleted = DeleteAddr(sock);
  EXPECT_TRUE(deleted.found()) << deleted.kept_because();
  EXPECT_EQ(deleted.owner().uuid(), "u-other");

  // Nothing listens any more: the address refuses connections.
  MustRegister(Reg("live", "u-live", {sock}));
  server->Shutdown();
  server->Wait();
  unlink(absl::StrCat(tmpl, "/live.sock").c_str());
  deleted = DeleteAddr(sock);
  EXPECT_TRUE(deleted.found()) << deleted.kept_because();
  rmdir(tmpl);
}

TEST_F(RegistrarServiceTest, RegisterRejectsInvalidArguments) {
  Start();
  struct Case {
    v1::Registration reg;
    std::string field;
  };
  std::vector<Case> cases = {
      {Reg("a", "", {"h:1"}), "uuid"},
      {Reg("", "u1", {"h:1"}), "name"},
      {Reg("a", "u1", {}), "addrs"},
      {Reg("a", "u1", {"h:1", ""}), "empty address"},
  };
  for (const Case& c : cases) {
    grpc::Status status = Register(c.reg);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.field;
    EXPECT_THAT(status.error_message(), HasSubstr(c.field));
  }
  EXPECT_THAT(Uuids(List().registrations()), IsEmpty());
}

TEST_F(RegistrarServiceTest, RegisterRejectsTextThatIsNotAnAddress) {
  Start();
  for (const std::string bad :
       {"not an address!!", "/udp/1.2.3.4/9", "1.2.3.4", "unix:relative.sock",
        "h:99999"}) {
    grpc::Status status = Register(Reg("a", "u1", {"h:1", bad}));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_THAT(status.error_message(), HasSubstr("'" + bad + "'"));
    EXPECT_FALSE(service_->AddRegistration(Reg("a", "u1", {bad})).ok()) << bad;
  }
  EXPECT_THAT(Uuids(List().registrations()), IsEmpty());
}

// A hostile Register (30,000 addresses took 20 s to check, a 1 MiB address
// 3.4 s and came back quoted whole, past the client's metadata limit) is
// refused at once with a short INVALID_ARGUMENT.
TEST_F(RegistrarServiceTest, RegisterRefusesOversizedRegistrationsAtOnce) {
  Start();
  std::vector<std::string> many;
  for (int i = 0; i < 30000; ++i) many.push_back(absl::StrCat("h:", i % 60000 + 1));
  const std::vector<std::pair<std::string, v1::Registration>> cases = {
      {"holds 30000 addresses", Reg("a", "u1", many)},
      {"an address of 1048576 bytes", Reg("a", "u1", {std::string(1 << 20, 'x')})},
      {"a name of 1048576 bytes", Reg(std::string(1 << 20, 'n'), "u1", {"h:1"})},
      {"a uuid of 4096 bytes", Reg("a", std::string(4096, 'u'), {"h:1"})},
  };
  for (const auto& [words, reg] : cases) {
    const absl::Time start = absl::Now();
    grpc::Status status = Register(reg);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << words;
    EXPECT_THAT(status.error_message(), HasSubstr(words));
    EXPECT_LT(status.error_message().size(), 2048u) << words;
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(500)) << words;
  }
  // 64 addresses, each up to 1024 bytes, are still a registration.
  std::vector<std::string> most;
  for (int i = 0; i < 64; ++i) most.push_back(absl::StrCat("h:", i + 1));
  most.back() = "unix:/" + std::string(100, 'p');
  EXPECT_TRUE(Register(Reg("a", "u1", most)).ok());
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u1"));
}

TEST_F(RegistrarServiceTest, FindAndWaitForRejectEmptyName) {
  Start();
  v1::FindRequest request;
  v1::FindReply reply;
  EXPECT_EQ(stub_->Find(Ctx().get(), request, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stub_->WaitFor(Ctx().get(), request, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RegistrarServiceTest, InProcessApiSharesStateWithRpcs) {
  Start();
  absl::StatusOr<absl::Duration> lease =
      service_->AddRegistration(Reg("local", "u-local", {"h:1"}, 2000));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(*lease, absl::Seconds(2));
  EXPECT_EQ(service_->AddRegistration(Reg("", "u", {"h:1"})).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(service_->AddPinnedRegistration(Reg("self", "u-self", {"h:0"})).ok());
  MustRegister(Reg("remote", "u-remote", {"h:2"}));

  std::vector<v1::Registration> snapshot = service_->Snapshot();
  ASSERT_EQ(snapshot.size(), 3u);
  EXPECT_EQ(snapshot[0].aid().uuid(), "u-local");
  EXPECT_EQ(snapshot[1].aid().uuid(), "u-self");
  EXPECT_EQ(snapshot[1].lease_ms(), 0u);
  EXPECT_EQ(snapshot[2].aid().uuid(), "u-remote");
  EXPECT_THAT(Uuids(List().registrations()),
              ElementsAre("u-local", "u-self", "u-remote"));

  ASSERT_EQ(service_->Lookup("remote").size(), 1u);
  std::optional<v1::Aid> owner = service_->RemoveAddr("h:2");
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->uuid(), "u-remote");
  EXPECT_TRUE(service_->RemoveRegistration("u-local"));
  EXPECT_FALSE(service_->RemoveRegistration("u-local"));
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u-self"));
}

TEST_F(RegistrarServiceTest, PinnedEntryOutlivesTheDefaultLease) {
  RegistrarService::Options options = DefaultOptions();
  options.default_lease = absl::Milliseconds(200);
  Start(options);
  ASSERT_TRUE(service_->AddPinnedRegistration(Reg("self", "u-self", {"h:0"})).ok());
  MustRegister(Reg("leased", "u1", {"h:1"}));
  ASSERT_TRUE(WaitUntil([&] { return Find("leased").registrations().empty(); }))
      << "the 200 ms default lease never expired";
  // Give the sweeper time past the default lease + 0.5 s.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_THAT(Uuids(List().registrations()), ElementsAre("u-self"));
}

TEST_F(RegistrarServiceTest, ConcurrentChangesKeepWatchersConsistent) {
  Start();
  auto ctx = Ctx(absl::Seconds(30));
  auto reader = stub_->Watch(ctx.get(), v1::WatchRequest());
  ASSERT_TRUE(WaitUntil([&] { return service_->WatcherCount() == 1; }));

  // Four writers fight over a shared pool of addresses.
  constexpr int kWriters = 4;
  constexpr int kOps = 150;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([this, w] {
      auto stub = v1::Registrar::NewStub(channel_);
      for (int i = 0; i < kOps; ++i) {
        const std::string uuid = absl::StrCat("w", w, "-", i % 10);
        if (i % 7 == 6) {
          v1::UnregisterRequest request;
          request.set_uuid(uuid);
          v1::UnregisterReply reply;
          stub->Unregister(Ctx().get(), request, &reply);
          continue;
        }
        v1::RegisterRequest request;
        *request.mutable_registration() =
            Reg(absl::StrCat("n", i % 3), uuid,
                {absl::StrCat("h:", (w * 7 + i) % 13),
                 absl::StrCat("h:", (w + i) % 17 + 100)});
        v1::RegisterReply reply;
        stub->Register(Ctx().get(), request, &reply);
      }
    });
  }
  for (std::thread& t : writers) t.join();
  MustRegister(Reg("sentinel", "u-sentinel", {"sentinel:1"}));

  // Replaying the events reproduces the final table.
  std::map<std::string, std::string> replayed;  // uuid -> serialized entry
  while (true) {
    v1::WatchEvent event;
    ASSERT_TRUE(reader->Read(&event)) << "the sentinel event never arrived";
    const v1::Registration& reg = event.registration();
    if (event.kind() == v1::WatchEvent::ADDED) {
      replayed[reg.aid().uuid()] = reg.SerializeAsString();
    } else {
      ASSERT_EQ(replayed.erase(reg.aid().uuid()), 1u)
          << "removal of an entry never added: " << reg.aid().uuid();
    }
    if (reg.aid().uuid() == "u-sentinel") break;
  }
  std::map<std::string, std::string> listed;
  const v1::ListReply list = List();
  for (const v1::Registration& reg : list.registrations()) {
    listed[reg.aid().uuid()] = reg.SerializeAsString();
  }
  EXPECT_EQ(replayed, listed);
  ctx->TryCancel();
  reader->Finish();
}

}  // namespace
}  // namespace tractor::registrar
