// SPDX-License-Identifier: AGPL-3.0-or-later
// The registry client's calls run on `DrivenQueue()`, not on gRPC's
// callback API: a process that looks names up (and registers) starts none
// of gRPC's callback threads (`nexting_thread`), and the thread that drives
// the queue is there only while calls are in flight. The registrar here is
// served on gRPC's sync API, so nothing else in the process uses the
// callback API either.

#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/blocking_call.h"
#include "discovery/channel.h"
#include "discovery/registry_client.h"
#include "gmock/gmock.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/thread_census.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

namespace v1 = ::tractor::v1;

using ::tractor::testing::ThreadsNamed;

// Waits up to `bound` for no thread named `name` to be left.
bool NoThreadNamedWithin(const std::string& name, absl::Duration bound) {
  const absl::Time until = absl::Now() + bound;
  for (;;) {
    if (ThreadsNamed(name) == 0) return true;
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// A registrar on the sync API: `Find` and `List` answer one entry named
// "alpha"; `WaitFor` never finds anything and ends when its call is
// cancelled.
class SyncRegistrar final : public v1::Registrar::Service {
 public:
  grpc::Status Find(grpc::ServerContext*, const v1::FindRequest* req,
                    v1::FindReply* reply) override {
    if (req->name() == "alpha") *reply->add_registrations() = Alpha();
    return grpc::Status::OK;
  }
  grpc::Status WaitFor(grpc::ServerContext* ctx, const v1::FindRequest*,
                       v1::FindReply*) override {
    const absl::Time until = absl::Now() + absl::Seconds(20);
    while (!ctx->IsCancelled() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "waited");
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*,
                    v1::ListReply* reply) override {
    *reply->add_registrations() = Alpha();
    return grpc::Status::OK;
  }

 private:
  static v1::Registration Alpha() {
    v1::Registration r;
    r.mutable_aid()->set_name("alpha");
    r.mutable_aid()->set_uuid("alpha-uuid");
    r.add_addrs("127.0.0.1:1");
    return r;
  }
};

class DrivenCallTest : public ::testing::Test {
 protected:
  DrivenCallTest() {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(&service_);
    // Without gRPC's default health service, which is on the callback API
    // (it is on for every server of a process that links discovery).
    b.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(
        nullptr));
    server_ = b.BuildAndStart();
    port_ = port;
  }
  ~DrivenCallTest() override {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  }

  Address addr() const {
    return *Address::Parse(absl::StrCat("127.0.0.1:", port_));
  }

  SyncRegistrar service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(DrivenCallTest, LookupsStartNoCallbackThreadAndTheDriverLeaves) {
  ASSERT_EQ(ThreadsNamed("nexting_thread"), 0);
  ASSERT_EQ(ThreadsNamed("tr-calls"), 0);
  for (int i = 0; i < 3; ++i) {
    std::vector<v1::Registration> all;
    grpc::Status s = ListRegistrations(addr(), &all, absl::Seconds(10));
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].aid().name(), "alpha");

    Lookup lookup({addr()}, "alpha", Lookup::Mode::kFind,
                  absl::Now() + absl::Seconds(10));
    std::optional<LookupResult> r = lookup.Next(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->status.ok()) << r->status.error_message();
    ASSERT_EQ(r->registrations.size(), 1u);
    EXPECT_EQ(r->registrations[0].aid().uuid(), "alpha-uuid");
  }
  EXPECT_EQ(ThreadsNamed("nexting_thread"), 0);
  // The driving thread lingers a few milliseconds after the last call.
  EXPECT_TRUE(NoThreadNamedWithin("tr-calls", absl::Seconds(5)));
}

TEST_F(DrivenCallTest, CancelledLookupEndsPromptly) {
  Lookup lookup({addr()}, "nobody", Lookup::Mode::kWaitFor,
                absl::Now() + absl::Seconds(30));
  EXPECT_FALSE(lookup.Next(absl::Now() + absl::Milliseconds(100)).has_value());
  const absl::Time cancelled = absl::Now();
  lookup.Cancel();
  std::optional<LookupResult> r = lookup.Next(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.error_code(), grpc::StatusCode::CANCELLED)
      << r->status.error_message();
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(1));
  EXPECT_EQ(ThreadsNamed("nexting_thread"), 0);
}

TEST_F(DrivenCallTest, StopRequestCancelsABlockingDrivenCall) {
  auto stub = v1::Registrar::NewStub(
      NewChannel(addr(), ChannelPurpose::kRegistrar));
  std::stop_source stop;
  StopTokenWaiter waiter(stop.get_token());
  grpc::Status status;
  absl::Notification done;
  std::thread caller([&] {
    v1::FindRequest req;
    req.set_name("nobody");
    v1::FindReply reply;
    status = BlockingUnaryCall(
        [&](auto* ctx, auto* request, auto* rep, auto finished) {
          StartDriven(stub->PrepareAsyncWaitFor(ctx, *request, DrivenQueue()),
                      rep, std::move(finished));
        },
        std::move(req), &reply, {.waiter = &waiter});
    done.Notify();
  });
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  const absl::Time cancelled = absl::Now();
  stop.request_stop();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  caller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
      << status.error_message();
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(1));
  EXPECT_EQ(ThreadsNamed("nexting_thread"), 0);
}

}  // namespace
}  // namespace tractor::discovery
