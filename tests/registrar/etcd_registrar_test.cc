// SPDX-License-Identifier: AGPL-3.0-or-later
// Registrar daemons with --store=etcd in front of a real 3-member etcd
// cluster (tests/registrar/etcd_cluster.h): lookups through every
// registrar, registrar and etcd member crashes, lease expiry, Watch resumed
// across a registrar restart, and no lease leaked by refreshes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"
#include "tests/registrar/etcd_cluster.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::testing {
namespace {

namespace v1 = ::tractor::v1;
using ::testing::HasSubstr;

v1::Registration Reg(const std::string& name, const std::string& uuid,
                     int port, uint32_t lease_ms) {
  v1::Registration r;
  r.mutable_aid()->set_name(name);
  r.mutable_aid()->set_uuid(uuid);
  r.add_addrs(absl::StrCat("127.0.0.1:", port));
  r.set_lease_ms(lease_ms);
  return r;
}

std::chrono::system_clock::time_point In(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

class EtcdRegistrarTest : public ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(120); }

  void SetUp() override {
    ProcessTest::SetUp();
    ASSERT_FALSE(RegistrarBinary().empty()) << "registrar binary not found";
    cluster_ = std::make_unique<EtcdCluster>(3);
    absl::Status started = cluster_->Start();
    ASSERT_TRUE(started.ok()) << started;
    absl::BitGen gen;
    prefix_ = absl::StrCat("/tractor-test/", absl::Uniform<uint32_t>(gen), "/");
  }

  void TearDown() override {
    registrars_.clear();
    cluster_.reset();
    ProcessTest::TearDown();
  }

  void StartRegistrars(int n) {
    for (int i = 0; i < n; ++i) {
      registrars_.push_back(
          std::make_unique<RegistrarDaemon>(cluster_->Endpoints(), prefix_));
      absl::Status s = registrars_.back()->Start();
      ASSERT_TRUE(s.ok()) << s;
      auto addr = discovery::Address::Parse(registrars_.back()->addr());
      ASSERT_TRUE(addr.ok());
      stubs_.push_back(v1::Registrar::NewStub(discovery::NewChannel(
          *addr, discovery::ChannelPurpose::kRegistrar)));
    }
  }

  grpc::Status Register(int r, const v1::Registration& reg,
                        v1::RegisterReply* reply = nullptr) {
    v1::RegisterReply ignored;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1::RegisterRequest request;
    *request.mutable_registration() = reg;
    return stubs_[r]->Register(&ctx, request, reply ? reply : &ignored);
  }

  grpc::Status Unregister(int r, const std::string& uuid) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1::UnregisterRequest request;
    request.set_uuid(uuid);
    v1::UnregisterReply reply;
    return stubs_[r]->Unregister(&ctx, request, &reply);
  }

  grpc::Status Find(int r, const std::string& name, v1::FindReply* reply) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1::FindRequest request;
    request.set_name(name);
    return stubs_[r]->Find(&ctx, request, reply);
  }

  // The uuids listed through registrar `r` (its own entry left out).
  std::set<std::string> ListedUuids(int r, grpc::Status* status) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1::ListReply reply;
    *status = stubs_[r]->List(&ctx, v1::ListRequest(), &reply);
    std::set<std::string> out;
    for (const auto& reg : reply.registrations()) {
      if (!reg.aid().is_registrar()) out.insert(reg.aid().uuid());
    }
    return out;
  }

  int LiveLeases() {
    etcdserverpb::LeaseLeasesResponse response;
    absl::Status s = cluster_->client()->LeaseLeases(&response);
    EXPECT_TRUE(s.ok()) << s;
    return response.leases_size();
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::string prefix_;
  std::vector<std::unique_ptr<RegistrarDaemon>> registrars_;
  std::vector<std::unique_ptr<v1::Registrar::Stub>> stubs_;
};

TEST_F(EtcdRegistrarTest, RegisteredThroughOneIsFoundThroughEveryOther) {
  StartRegistrars(3);
  v1::RegisterReply reply;
  ASSERT_TRUE(Register(0, Reg("worker", "u-1", 4001, 5000), &reply).ok());
  EXPECT_EQ(reply.lease_ms(), 5000u);
  uint64_t revision = 0;
  for (int r = 0; r < 3; ++r) {
    v1::FindReply found;
    grpc::Status s = Find(r, "worker", &found);
    ASSERT_TRUE(s.ok()) << r << ": " << s.error_message();
    ASSERT_EQ(found.registrations_size(), 1) << r;
    EXPECT_EQ(found.registrations(0).aid().uuid(), "u-1");
    EXPECT_EQ(found.registrations(0).addrs(0), "127.0.0.1:4001");
    EXPECT_GT(found.registrations(0).revision(), 0u);
    // One store: the same revision through every registrar.
    if (r == 0) revision = found.registrations(0).revision();
    EXPECT_EQ(found.registrations(0).revision(), revision) << r;
  }
  // A refresh through another registrar keeps the entry (and its revision);
  // a lease below etcd's 2 s minimum is rounded up and reported.
  ASSERT_TRUE(Register(2, Reg("worker", "u-1", 4001, 5000)).ok());
  ASSERT_TRUE(Register(1, Reg("short", "u-2", 4002, 300), &reply).ok());
  EXPECT_EQ(reply.lease_ms(), 2000u);
  v1::FindReply found;
  ASSERT_TRUE(Find(0, "worker", &found).ok());
  ASSERT_EQ(found.registrations_size(), 1);
  EXPECT_EQ(found.registrations(0).revision(), revision);
  grpc::Status s;
  EXPECT_EQ(ListedUuids(2, &s), (std::set<std::string>{"u-1", "u-2"}));
  EXPECT_TRUE(s.ok()) << s.error_message();
  // Unregister through one, gone through all.
  ASSERT_TRUE(Unregister(1, "u-1").ok());
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(Find(r, "worker", &found).ok());
    EXPECT_EQ(found.registrations_size(), 0) << r;
  }
}

TEST_F(EtcdRegistrarTest, KilledRegistrarsActorsStayFoundAndReRegister) {
  StartRegistrars(3);
  ASSERT_TRUE(Register(0, Reg("svc", "u-a", 4101, 10000)).ok());
  registrars_[0]->Kill();
  for (int r : {1, 2}) {
    v1::FindReply found;
    ASSERT_TRUE(Find(r, "svc", &found).ok());
    ASSERT_EQ(found.registrations_size(), 1) << r;
  }
  // Back on the same address: the actor's next refresh goes through it.
  absl::Status restarted = registrars_[0]->Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_TRUE(WaitFor(
      [&] { return Register(0, Reg("svc", "u-a", 4101, 10000)).ok(); },
      absl::Seconds(10)));
  v1::FindReply found;
  ASSERT_TRUE(Find(0, "svc", &found).ok());
  ASSERT_EQ(found.registrations_size(), 1);
  EXPECT_EQ(LiveLeases(), 1);
}

TEST_F(EtcdRegistrarTest, OneMemberDownLosesNothingTwoDownIsUnavailable) {
  StartRegistrars(3);
  constexpr int kActors = 20;
  std::set<std::string> uuids;
  for (int i = 0; i < kActors; ++i) {
    const std::string uuid = absl::StrCat("u-", i);
    ASSERT_TRUE(Register(i % 3, Reg(absl::StrCat("a", i), uuid, 5000 + i,
                                    60000))
                    .ok());
    uuids.insert(uuid);
  }
  cluster_->Kill(0);
  // Lookups keep answering (after at most an election when the leader was
  // the one killed), with every entry.
  const absl::Time killed = absl::Now();
  for (int r = 0; r < 3; ++r) {
    grpc::Status s;
    ASSERT_TRUE(WaitFor([&] { return ListedUuids(r, &s) == uuids; },
                        absl::Seconds(10)))
        << r << ": " << s.error_message();
  }
  std::cout << "[measured] all entries listed through 3 registrars "
            << absl::FormatDuration(absl::Now() - killed)
            << " after one etcd member was killed\n";
  for (int i = 0; i < kActors; ++i) {
    v1::FindReply found;
    grpc::Status s = Find(i % 3, absl::StrCat("a", i), &found);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(found.registrations_size(), 1);
  }

  cluster_->Kill(1);
  v1::FindReply found;
  const absl::Time asked = absl::Now();
  grpc::Status s = Find(0, "a0", &found);
  const absl::Duration took = absl::Now() - asked;
  std::cout << "[measured] UNAVAILABLE without quorum after "
            << absl::FormatDuration(took) << "\n";
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("no quorum"));
  for (const std::string& endpoint : cluster_->EndpointList()) {
    EXPECT_THAT(s.error_message(), HasSubstr(endpoint));
  }
  EXPECT_LE(took, absl::Seconds(2));
  // A registration cannot be written either.
  grpc::Status late = Register(1, Reg("late", "u-late", 4999, 60000));
  EXPECT_EQ(late.error_code(), grpc::StatusCode::UNAVAILABLE)
      << late.error_message();
  EXPECT_THAT(late.error_message(), HasSubstr("no quorum"));

  ASSERT_TRUE(cluster_->Restart(1));
  const absl::Time returned = absl::Now();
  for (int r = 0; r < 3; ++r) {
    grpc::Status list_status;
    ASSERT_TRUE(WaitFor([&] { return ListedUuids(r, &list_status) == uuids; },
                        absl::Seconds(15)))
        << r << ": " << list_status.error_message();
  }
  std::cout << "[measured] answering again "
            << absl::FormatDuration(absl::Now() - returned)
            << " after a second member returned\n";
}

TEST_F(EtcdRegistrarTest, CrashedActorsEntryExpiresWithinLeasePlusOneSecond) {
  StartRegistrars(2);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  auto reader = stubs_[1]->Watch(&ctx, v1::WatchRequest());
  // The watch is open once its (empty) snapshot read is done; a register
  // event proves it.
  v1::RegisterReply reply;
  ASSERT_TRUE(Register(0, Reg("probe", "u-probe", 4200, 5000)).ok());
  v1::WatchEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_EQ(event.registration().aid().uuid(), "u-probe");

  // The crashed actor registers once and never refreshes.
  ASSERT_TRUE(Register(0, Reg("crash", "u-crash", 4201, 2000), &reply).ok());
  const absl::Time registered = absl::Now();
  const absl::Duration lease = absl::Milliseconds(reply.lease_ms());
  EXPECT_EQ(lease, absl::Seconds(2));
  bool expired = false;
  while (reader->Read(&event)) {
    if (event.registration().aid().uuid() != "u-crash") continue;
    if (event.kind() == v1::WatchEvent::EXPIRED) {
      expired = true;
      break;
    }
    ASSERT_EQ(event.kind(), v1::WatchEvent::ADDED);
  }
  ASSERT_TRUE(expired);
  const absl::Duration took = absl::Now() - registered;
  std::cout << "[measured] a " << absl::FormatDuration(lease)
            << " lease expired (EXPIRED event) after "
            << absl::FormatDuration(took) << "\n";
  EXPECT_LE(took, lease + absl::Seconds(1));
  EXPECT_GE(took, lease - absl::Milliseconds(100));
  v1::FindReply found;
  ASSERT_TRUE(Find(0, "crash", &found).ok());
  EXPECT_EQ(found.registrations_size(), 0);
  ctx.TryCancel();
}

// Across a leader change, etcd's new leader renews every lease it takes
// over by a full TTL plus its election timeout (docs/registry.md). An entry
// whose actor stopped refreshing just before the leader was lost therefore
// lives on for the election, then the election timeout, then its whole
// lease, then up to etcd's 500 ms expiry check. The bound the registry
// states: lease + 3 election timeouts (the election itself takes one to two)
// + 1 s; for leases of at least 4 s on this cluster that is within twice the
// lease. One leader change, two entries: etcd's 2 s floor and a 4 s lease.
TEST_F(EtcdRegistrarTest, CrashedActorsEntryExpiresWithinBoundAcrossLeaderChange) {
  StartRegistrars(2);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  auto reader = stubs_[1]->Watch(&ctx, v1::WatchRequest());
  ASSERT_TRUE(Register(0, Reg("probe", "u-probe", 4250, 5000)).ok());
  v1::WatchEvent event;
  ASSERT_TRUE(reader->Read(&event));
  const int leader = cluster_->LeaderIndex();
  ASSERT_GE(leader, 0) << "no etcd member is the leader";

  struct Entry {
    std::string uuid;
    absl::Duration lease;
    absl::Time registered;
    std::optional<absl::Duration> took;
  };
  std::vector<Entry> entries = {{"u-crash-2", absl::Seconds(2)},
                                {"u-crash-4", absl::Seconds(4)}};
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry& e = entries[i];
    v1::RegisterReply reply;
    ASSERT_TRUE(Register(0,
                         Reg("crash", e.uuid, 4251 + static_cast<int>(i),
                             static_cast<uint32_t>(
                                 absl::ToInt64Milliseconds(e.lease))),
                         &reply)
                    .ok());
    e.registered = absl::Now();
    ASSERT_EQ(absl::Milliseconds(reply.lease_ms()), e.lease);
  }
  // Neither entry is refreshed again: both actors "crashed". The new leader
  // renews every lease it takes over.
  cluster_->Kill(leader);
  size_t expired = 0;
  while (expired < entries.size() && reader->Read(&event)) {
    if (event.kind() != v1::WatchEvent::EXPIRED) continue;
    for (Entry& e : entries) {
      if (event.registration().aid().uuid() == e.uuid && !e.took) {
        e.took = absl::Now() - e.registered;
        ++expired;
      }
    }
  }
  ASSERT_EQ(expired, entries.size()) << "the watch ended before both expired";
  const absl::Duration election = EtcdCluster::kElectionTimeout;
  for (const Entry& e : entries) {
    std::cout << "[measured] a " << absl::FormatDuration(e.lease)
              << " lease expired after " << absl::FormatDuration(*e.took)
              << " across a leader change (leader m" << leader
              << " killed)\n";
    EXPECT_GE(*e.took, e.lease - absl::Milliseconds(100)) << e.uuid;
    EXPECT_LE(*e.took, e.lease + 3 * election + absl::Seconds(1)) << e.uuid;
  }
  // From 4 s up, the bound is within twice the lease.
  EXPECT_LE(*entries[1].took, 2 * entries[1].lease);
  ctx.TryCancel();
}

// Reads `n` events, failing on a stream that ends first.
std::vector<v1::WatchEvent> ReadEvents(
    grpc::ClientReader<v1::WatchEvent>* reader, int n) {
  std::vector<v1::WatchEvent> events;
  v1::WatchEvent event;
  while (static_cast<int>(events.size()) < n && reader->Read(&event)) {
    events.push_back(event);
  }
  EXPECT_EQ(static_cast<int>(events.size()), n);
  return events;
}

TEST_F(EtcdRegistrarTest, WatchSeesEveryChangeOnceInOrderAcrossRestart) {
  StartRegistrars(2);
  std::vector<std::pair<v1::WatchEvent::Kind, std::string>> expected;
  std::vector<v1::WatchEvent> seen;

  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(In(absl::Seconds(30)));
  auto reader = stubs_[0]->Watch(ctx.get(), v1::WatchRequest());
  // Phase 1, watched live through registrar 0.
  ASSERT_TRUE(Register(1, Reg("w", "u-0", 4300, 30000)).ok());
  for (int i = 1; i < 5; ++i) {
    ASSERT_TRUE(Register(1, Reg("w", absl::StrCat("u-", i), 4300 + i, 30000))
                    .ok());
  }
  ASSERT_TRUE(Unregister(1, "u-0").ok());
  for (int i = 0; i < 5; ++i) {
    expected.push_back({v1::WatchEvent::ADDED, absl::StrCat("u-", i)});
  }
  expected.push_back({v1::WatchEvent::REMOVED, "u-0"});
  for (auto& e : ReadEvents(reader.get(), 6)) seen.push_back(e);
  ASSERT_EQ(seen.size(), 6u);

  // Registrar 0 crashes; changes go on through registrar 1.
  registrars_[0]->Kill();
  v1::WatchEvent extra;
  EXPECT_FALSE(reader->Read(&extra));
  reader->Finish();
  ASSERT_TRUE(Register(1, Reg("w", "u-5", 4305, 30000)).ok());
  ASSERT_TRUE(Register(1, Reg("w", "u-6", 4306, 30000)).ok());
  ASSERT_TRUE(Unregister(1, "u-1").ok());
  expected.push_back({v1::WatchEvent::ADDED, "u-5"});
  expected.push_back({v1::WatchEvent::ADDED, "u-6"});
  expected.push_back({v1::WatchEvent::REMOVED, "u-1"});

  // It returns; the client resumes from the last revision it saw.
  absl::Status restarted = registrars_[0]->Start();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(In(absl::Seconds(30)));
  ctx->set_wait_for_ready(true);
  v1::WatchRequest resume;
  resume.set_start_revision(seen.back().revision());
  reader = stubs_[0]->Watch(ctx.get(), resume);
  ASSERT_TRUE(Register(1, Reg("w", "u-7", 4307, 30000)).ok());
  ASSERT_TRUE(Unregister(1, "u-2").ok());
  expected.push_back({v1::WatchEvent::ADDED, "u-7"});
  expected.push_back({v1::WatchEvent::REMOVED, "u-2"});
  for (auto& e : ReadEvents(reader.get(), 5)) seen.push_back(e);
  ctx->TryCancel();

  ASSERT_EQ(seen.size(), expected.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].kind(), expected[i].first) << i;
    EXPECT_EQ(seen[i].registration().aid().uuid(), expected[i].second) << i;
    if (i > 0) {
      EXPECT_GT(seen[i].revision(), seen[i - 1].revision()) << i;
    }
  }
}

TEST_F(EtcdRegistrarTest, RefreshesThroughThreeRegistrarsLeakNoLease) {
  StartRegistrars(3);
  constexpr int kActors = 10;
  constexpr int kRounds = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  // Each actor registers with every registrar every round, the three
  // registrars at once: the first rounds race for the same keys.
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      for (int round = 0; round < kRounds; ++round) {
        for (int a = 0; a < kActors; ++a) {
          if (!Register(r, Reg(absl::StrCat("leak", a), absl::StrCat("u-", a),
                               4400 + a, 10000))
                   .ok()) {
            ++failures;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::cout << "[measured] " << 3 * kRounds * kActors << " registrations in "
            << absl::FormatDuration(absl::Now() - start) << "\n";
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(LiveLeases(), kActors);
  grpc::Status s;
  EXPECT_EQ(ListedUuids(0, &s).size(), static_cast<size_t>(kActors));
}

}  // namespace
}  // namespace tractor::testing
