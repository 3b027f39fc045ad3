// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/registry_client.h against in-process registrars: probing
// registry addresses, the Registrant's lease upkeep, concurrent lookups.
#include "discovery/registry_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "grpcpp/grpcpp.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/registrar_service.h"
#include "tests/discovery/local_registrar.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::discovery {
namespace {

using ::testing::HasSubstr;
using tractor::testing::BlackholeListener;
using tractor::testing::LocalRegistrar;
using tractor::testing::SilentListener;
using tractor::testing::TempDir;
using tractor::testing::WaitFor;

Address Parse(const std::string& text) {
  auto a = Address::Parse(text);
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}


// A loopback TCP port nobody listens on.
int ClosedPort() {
  SilentListener l;
  return l.port;  // closed when `l` goes
}

v1::Aid MakeAid(const std::string& name) {
  v1::Aid aid;
  aid.set_name(name);
  aid.set_uuid(absl::StrCat(name, "-uuid"));
  aid.set_pid(getpid());
  return aid;
}

TEST(ProbeRegistryAddrsTest, ClassifiesRegistrarAbsentAndOccupiedConcurrently) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  // A gRPC server without the Registrar service (an Actor service that
  // implements nothing).
  v1::Actor::CallbackService not_a_registrar;
  grpc::ServerBuilder b;
  b.RegisterService(&not_a_registrar);
  int other_port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                     &other_port);
  std::unique_ptr<grpc::Server> other = b.BuildAndStart();
  ASSERT_NE(other, nullptr);
  SilentListener silent;

  std::vector<Address> addrs = {
      Parse(reg.addr),
      Parse(dir.Sock("nobody.sock")),
      Parse(absl::StrCat("127.0.0.1:", ClosedPort())),
      Parse(absl::StrCat("127.0.0.1:", other_port)),
      Parse(silent.addr()),
  };
  const absl::Duration budget = absl::Milliseconds(1500);
  const absl::Time start = absl::Now();
  std::vector<ProbeResult> r = ProbeRegistryAddrs(addrs, budget);
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(r.size(), addrs.size());
  EXPECT_EQ(r[0].kind, ProbeKind::kRegistrar) << r[0].detail;
  EXPECT_TRUE(r[0].registrar.is_registrar());
  EXPECT_EQ(r[1].kind, ProbeKind::kAbsent) << r[1].detail;
  EXPECT_EQ(r[2].kind, ProbeKind::kAbsent) << r[2].detail;
  EXPECT_EQ(r[3].kind, ProbeKind::kOccupied);
  EXPECT_THAT(r[3].detail, HasSubstr("without the tractor.v1.Registrar"));
  EXPECT_EQ(r[4].kind, ProbeKind::kOccupied);
  EXPECT_THAT(r[4].detail, HasSubstr("did not answer Registrar.Hello"));
  // Concurrent: the whole probe is bounded by the budget, not by the sum.
  // The budget is scaled under the sanitizer configurations.
  EXPECT_LT(took, ScaleTimeout(budget) + absl::Milliseconds(700));
  other->Shutdown();
}

TEST(ProbeRegistryAddrsTest, ASilentAddressCostsAtMost200Ms) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  BlackholeListener hole;
  if (!hole.silent()) GTEST_SKIP() << "this kernel answers a full backlog";
  const absl::Time start = absl::Now();
  std::vector<ProbeResult> r =
      ProbeRegistryAddrs({Parse(reg.addr), Parse(hole.addr())});
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].kind, ProbeKind::kRegistrar) << r[0].detail;
  EXPECT_EQ(r[1].kind, ProbeKind::kAbsent) << r[1].detail;
  EXPECT_THAT(r[1].detail, HasSubstr("timed out"));
  printf("probe of a registrar and a silent address: %.0f ms\n",
         absl::ToDoubleMilliseconds(took));
  EXPECT_GE(took, kProbeConnectTimeout - absl::Milliseconds(20));
  EXPECT_LT(took, kProbeConnectTimeout + absl::Milliseconds(250));
}

TEST(ProbeRegistryAddrsTest, PortZeroIsAbsent) {
  auto r = ProbeRegistryAddrs({Parse("127.0.0.1:0")});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ProbeKind::kAbsent);
}

TEST(RegistrantTest, RegistersRefreshesBeyondTheLeaseAndUnregistersOnStop) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  Registrant::Options o;
  o.aid = MakeAid("worker");
  o.addrs = {"127.0.0.1:5555", dir.Sock("worker.sock")};
  o.registrars = {Parse(reg.addr)};
  // Refreshed every third of the lease: a lease of 1.2 s leaves a refresh
  // 800 ms of scheduling delay on a loaded machine before the entry lapses
  // (times TRACTOR_TIMEOUT_SCALE: the sanitized builds run slower).
  const absl::Duration lease = ScaleTimeout(absl::Milliseconds(1200));
  o.lease = lease;
  Registrant r(o);
  ASSERT_EQ(r.Start(), 1u);
  auto found = reg.service->Lookup("worker");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].addrs_size(), 2);  // the registrar is local: unix too
  EXPECT_EQ(found[0].lease_ms(),
            static_cast<uint32_t>(absl::ToInt64Milliseconds(lease)));
  // Three leases later the entry is still there: it was refreshed.
  const absl::Time until = absl::Now() + 3 * lease;
  while (absl::Now() < until) {
    ASSERT_TRUE(reg.Has("worker")) << "the lease ran out: no refresh";
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(r.good_rounds(), 3u);
  const absl::Time stop = absl::Now();
  r.Stop();
  EXPECT_LT(absl::Now() - stop, absl::Milliseconds(300));
  EXPECT_FALSE(reg.Has("worker"));
}

TEST(RegistrantTest, ReRegistersWithinTheLeaseAfterARegistrarRestart) {
  TempDir dir;
  const std::string listen = dir.Sock("reg.sock");
  auto reg = std::make_unique<LocalRegistrar>(listen, absl::Seconds(5));
  Registrant::Options o;
  o.aid = MakeAid("survivor");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(listen)};
  o.lease = absl::Milliseconds(1500);
  Registrant r(o);
  ASSERT_EQ(r.Start(), 1u);
  ASSERT_TRUE(reg->Has("survivor"));
  reg.reset();  // the registrar goes away with its table
  absl::SleepFor(absl::Milliseconds(300));  // let a refresh fail meanwhile
  reg = std::make_unique<LocalRegistrar>(listen, absl::Seconds(5));
  const absl::Time restarted = absl::Now();
  EXPECT_FALSE(reg->Has("survivor"));
  ASSERT_TRUE(WaitFor([&] { return reg->Has("survivor"); },
                      absl::Milliseconds(1500)))
      << "not re-registered within the lease";
  printf("re-registered %.0f ms after the registrar restart (lease 1500 ms)\n",
         absl::ToDoubleMilliseconds(absl::Now() - restarted));
  r.Stop();
}

TEST(RegistrantTest, ARegistrarThatIsDownDoesNotDelayTheOthers) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  Registrant::Options o;
  o.aid = MakeAid("w");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(dir.Sock("down.sock")), Parse(reg.addr)};
  Registrant r(o);
  const absl::Time start = absl::Now();
  EXPECT_EQ(r.Start(), 1u);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_TRUE(reg.Has("w"));
  const absl::Time stop = absl::Now();
  r.Stop();
  EXPECT_LT(absl::Now() - stop, absl::Milliseconds(700));
  EXPECT_FALSE(reg.Has("w"));
}

// One registrar host drops connection attempts, another accepts them and
// never answers: neither holds up the actor's first registration by more
// than a registrar channel's connection timeout (100 ms, scaled by
// TRACTOR_TIMEOUT_SCALE as the channel's is).
TEST(RegistrantTest, ASilentRegistrarDelaysStartBriefly) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  BlackholeListener hole;
  SilentListener hung;
  Registrant::Options o;
  o.aid = MakeAid("w");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(hole.addr()), Parse(hung.addr()), Parse(reg.addr)};
  Registrant r(o);
  const absl::Time start = absl::Now();
  EXPECT_EQ(r.Start(), 1u);
  const absl::Duration took = absl::Now() - start;
  printf("first registration with one registrar silent: %.0f ms\n",
         absl::ToDoubleMilliseconds(took));
  EXPECT_LT(took, ScaleTimeout(absl::Milliseconds(450)));
  EXPECT_TRUE(reg.Has("w"));
  r.Stop();
}

// With no registrar accepting, one that accepts connections but never
// completes a handshake (as one whose handshake is slow would look at
// first) is waited for, at most `slow_connect_timeout` more; `Start` then
// returns and the registration is retried in the background. (That a slow
// handshake is waited out, and the actor listed, is
// //tests/actor:security_test's AChildIsFoundAtOnceThoughTheRegistrarsHandshakeIsSlow.)
TEST(RegistrantTest, AHungRegistrarAloneIsWaitedForAtMostTheSlowConnectTimeout) {
  SilentListener hung;
  Registrant::Options o;
  o.aid = MakeAid("w");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(hung.addr())};
  o.slow_connect_timeout = absl::Milliseconds(300);
  Registrant r(o);
  const absl::Time start = absl::Now();
  EXPECT_EQ(r.Start(), 0u);
  const absl::Duration took = absl::Now() - start;
  printf("first registration with the only registrar hung: %.0f ms\n",
         absl::ToDoubleMilliseconds(took));
  EXPECT_GE(took, ScaleTimeout(absl::Milliseconds(300)));
  EXPECT_LT(took, ScaleTimeout(absl::Milliseconds(300 + 1000 + 500)));
  r.Stop();
}

// A gRPC server whose connections come up and whose calls are never
// answered (nobody asks for them): a registrar hung in the middle of its
// work. Each call ends at its deadline.
struct HungServer {
  grpc::AsyncGenericService generic;
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  HungServer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterAsyncGenericService(&generic);
    cq = b.AddCompletionQueue();
    server = b.BuildAndStart();
  }
  ~HungServer() {
    server->Shutdown(std::chrono::system_clock::now());
    cq->Shutdown();
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
    }
  }
  std::string addr() const { return absl::StrCat("127.0.0.1:", port); }
};

// An actor on its way out sends its unregistrations (BeginStop) and goes on
// with its teardown: BeginStop waits for no answer, a hung registrar's
// included; Stop then collects the answers, bounded by the unregister
// timeout, and the registrar that answers no longer lists the actor.
TEST(RegistrantTest, BeginStopSendsWithoutWaitingAndStopCollects) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  HungServer hung;
  ASSERT_GT(hung.port, 0);
  Registrant::Options o;
  o.aid = MakeAid("w");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(hung.addr()), Parse(reg.addr)};
  o.first_timeout = absl::Milliseconds(300);
  o.unregister_timeout = absl::Seconds(1);
  Registrant r(o);
  EXPECT_EQ(r.Start(), 1u);
  ASSERT_TRUE(reg.Has("w"));
  const absl::Duration timeout = ScaleTimeout(o.unregister_timeout);
  const absl::Time begin = absl::Now();
  r.BeginStop();
  const absl::Duration began = absl::Now() - begin;
  r.BeginStop();  // idempotent
  r.Stop();
  const absl::Duration stopped = absl::Now() - begin;
  printf("BeginStop %.1f ms, Stop %.0f ms (unregister timeout %.0f ms)\n",
         absl::ToDoubleMilliseconds(began),
         absl::ToDoubleMilliseconds(stopped),
         absl::ToDoubleMilliseconds(timeout));
  // The hung registrar holds Stop until the calls' deadline, not
  // BeginStop.
  EXPECT_LT(began, timeout / 4);
  EXPECT_GE(stopped, timeout - absl::Milliseconds(50));
  EXPECT_LT(stopped, timeout + absl::Milliseconds(700));
  EXPECT_FALSE(reg.Has("w"));
  const absl::Time again = absl::Now();
  r.Stop();  // idempotent: nothing left to wait for
  EXPECT_LT(absl::Now() - again, absl::Milliseconds(100));
}

TEST(RegistrantTest, ARegistrarThatStartsLaterIsRegisteredWith) {
  TempDir dir;
  LocalRegistrar early(dir.Sock("early.sock"), absl::Seconds(5));
  const std::string late_addr = dir.Sock("late.sock");
  Registrant::Options o;
  o.aid = MakeAid("w");
  o.addrs = {"127.0.0.1:5555"};
  o.registrars = {Parse(early.addr), Parse(late_addr)};
  Registrant r(o);
  EXPECT_EQ(r.Start(), 1u);
  LocalRegistrar late(late_addr, absl::Seconds(5));
  EXPECT_TRUE(WaitFor([&] { return late.Has("w"); }, absl::Seconds(3)))
      << "never registered with the registrar that came up late";
  r.Stop();
}

TEST(LookupTest, AFastAnswerArrivesWithoutWaitingForASilentRegistrar) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  v1::Registration e;
  *e.mutable_aid() = MakeAid("x");
  e.add_addrs("127.0.0.1:7777");
  ASSERT_TRUE(reg.service->AddRegistration(e).ok());
  SilentListener silent;
  const absl::Time start = absl::Now();
  Lookup lookup({Parse(silent.addr()), Parse(reg.addr)}, "x",
                Lookup::Mode::kFind, absl::Now() + absl::Seconds(5));
  auto first = lookup.Next(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(first.has_value());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(first->index, 1u);
  ASSERT_TRUE(first->status.ok()) << first->status.error_message();
  ASSERT_EQ(first->registrations.size(), 1u);
  EXPECT_EQ(first->registrations[0].aid().uuid(), "x-uuid");
}

TEST(LookupTest, WaitForAnswersWhenTheEntryAppears) {
  TempDir dir;
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  Lookup lookup({Parse(reg.addr)}, "late", Lookup::Mode::kWaitFor);
  EXPECT_FALSE(lookup.Next(absl::Now() + absl::Milliseconds(200)).has_value());
  v1::Registration e;
  *e.mutable_aid() = MakeAid("late");
  e.add_addrs("127.0.0.1:7777");
  ASSERT_TRUE(reg.service->AddRegistration(e).ok());
  auto r = lookup.Next(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->status.ok());
  EXPECT_EQ(r->registrations.size(), 1u);
}

// --- Hedged lookups ---------------------------------------------------------

using tractor::testing::FindRegistrar;

// Long enough that a lookup which waited for it would miss every bound
// below: the hedge must not be what lets these lookups finish.
constexpr absl::Duration kNeverHedge = absl::Seconds(30);

// Pops answers until a positive one, or nullopt when every registrar
// answered without an entry.
std::optional<LookupResult> FirstPositive(Lookup& lookup, absl::Time until) {
  for (;;) {
    std::optional<LookupResult> r = lookup.Next(until);
    if (!r.has_value()) return r;
    if (r->status.ok() && !r->registrations.empty()) return r;
  }
}

// Connects this process's channels to the registrars at `addrs` before a
// test that counts whom a lookup asks: on a loaded machine a first
// connection can outlast the registrar channel's connection timeout, and a
// lookup then answers for that registrar without asking it (its channel is
// failing), which is right, but not what such a test is about.
void ConnectFirst(const std::vector<Address>& addrs) {
  for (const Address& addr : addrs) {
    EXPECT_TRUE(RegistrarChannel(addr)->WaitForConnected(
        absl::ToChronoTime(absl::Now() + absl::Seconds(10))))
        << addr.ToString();
  }
}

TEST(HedgedLookupTest, ThePreferredRegistrarAnswersAloneAndIsRemembered) {
  FindRegistrar a(FindRegistrar::Mode::kAnswer);
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  a.Add("x", "x-uuid", "127.0.0.1:7777");
  b.Add("x", "x-uuid", "127.0.0.1:7777");
  const std::vector<Address> ab = {Parse(a.addr), Parse(b.addr)};
  ConnectFirst(ab);
  const absl::Time start = absl::Now();
  {
    Lookup lookup(ab, "x", Lookup::Mode::kFind,
                  absl::Now() + absl::Seconds(5),
                  Lookup::Hedge{.first = 0, .delay = kNeverHedge});
    auto r = FirstPositive(lookup, absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->index, 0u);
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(a.finds(), 1);
  EXPECT_EQ(b.finds(), 0) << "the second registrar was asked although the "
                             "first answered with an entry";
  // `a` gave this process's last positive answer: it is asked first
  // wherever it is in the list.
  const std::vector<Address> ba = {Parse(b.addr), Parse(a.addr)};
  EXPECT_EQ(PreferredRegistrar(ba), 1u);
  EXPECT_EQ(PreferredRegistrar({Parse(b.addr)}), 0u);
  {
    Lookup lookup(ba, "x", Lookup::Mode::kFind,
                  absl::Now() + absl::Seconds(5),
                  Lookup::Hedge{.first = PreferredRegistrar(ba),
                                .delay = kNeverHedge});
    auto r = FirstPositive(lookup, absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->index, 1u);
  }
  EXPECT_EQ(a.finds(), 2);
  EXPECT_EQ(b.finds(), 0);
}

TEST(HedgedLookupTest, AMissOnTheFirstAsksTheOthersAtOnce) {
  FindRegistrar a(FindRegistrar::Mode::kAnswer);  // no entry
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  FindRegistrar c(FindRegistrar::Mode::kAnswer);
  c.Add("x", "x-uuid", "127.0.0.1:7777");
  ConnectFirst({Parse(a.addr), Parse(b.addr), Parse(c.addr)});
  const absl::Time start = absl::Now();
  Lookup lookup({Parse(a.addr), Parse(b.addr), Parse(c.addr)}, "x",
                Lookup::Mode::kFind, absl::Now() + absl::Seconds(5),
                Lookup::Hedge{.first = 0, .delay = kNeverHedge});
  auto r = FirstPositive(lookup, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->index, 2u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(a.finds(), 1);
  EXPECT_EQ(c.finds(), 1);
  // Both others were asked together: `b` answers too (a miss).
  EXPECT_TRUE(b.WaitForFinds(1, absl::Seconds(5)));
}

TEST(HedgedLookupTest, ADownFirstRegistrarCostsNoHedgeDelay) {
  TempDir dir;
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  b.Add("x", "x-uuid", "127.0.0.1:7777");
  // Nothing listens at either address: a unix socket without its file, a
  // refused TCP port.
  for (const std::string& down :
       {dir.Sock("down.sock"), absl::StrCat("127.0.0.1:", ClosedPort())}) {
    // Twice: with the channel idle, then with the channel known to be
    // failing (answered without an RPC).
    for (int round = 0; round < 2; ++round) {
      const absl::Time start = absl::Now();
      Lookup lookup({Parse(down), Parse(b.addr)}, "x", Lookup::Mode::kFind,
                    absl::Now() + absl::Seconds(5),
                    Lookup::Hedge{.first = 0, .delay = kNeverHedge});
      auto first = lookup.Next(absl::Now() + absl::Seconds(5));
      ASSERT_TRUE(first.has_value()) << down;
      // The down registrar's answer (queued first) or the entry.
      std::optional<LookupResult> r = first;
      if (r->registrations.empty()) {
        EXPECT_FALSE(r->status.ok()) << down;
        r = FirstPositive(lookup, absl::Now() + absl::Seconds(5));
      }
      ASSERT_TRUE(r.has_value()) << down;
      EXPECT_EQ(r->index, 1u);
      EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << down;
    }
  }
}

TEST(HedgedLookupTest, ASilentFirstRegistrarDelaysTheLookupByTheHedgeDelay) {
  FindRegistrar held(FindRegistrar::Mode::kHold);
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  b.Add("x", "x-uuid", "127.0.0.1:7777");
  // Connections ready, so that the hedge delay is all the lookup waits for.
  {
    Lookup warm({Parse(b.addr)}, "x", Lookup::Mode::kFind,
                absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(FirstPositive(warm, absl::Now() + absl::Seconds(5)));
  }
  const std::vector<Address> list = {Parse(held.addr), Parse(b.addr)};
  // An explicit delay, long enough to see, and the delay FindActor uses.
  for (const absl::Duration delay : {absl::Milliseconds(300), HedgeDelay()}) {
    const absl::Time start = absl::Now();
    Lookup lookup(list, "x", Lookup::Mode::kFind,
                  absl::Now() + absl::Seconds(5),
                  Lookup::Hedge{.first = 0, .delay = delay});
    auto r = FirstPositive(lookup, absl::Now() + absl::Seconds(5));
    const absl::Duration took = absl::Now() - start;
    printf("hedge delay %.2f ms: lookup with the first registrar silent "
           "took %.2f ms\n",
           absl::ToDoubleMilliseconds(delay), absl::ToDoubleMilliseconds(took));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->index, 1u);
    EXPECT_GE(took, delay);
    EXPECT_LT(took, delay + absl::Milliseconds(500));
  }
  EXPECT_EQ(held.finds(), 2);
  EXPECT_GE(HedgeDelay(), kHedgeFloor);
  EXPECT_LE(HedgeDelay(), kHedgeCeiling);
}

TEST(HedgedLookupTest, ThePositiveFirstAnswerIsNotTheLastWhenTheCallerWantsMore) {
  FindRegistrar a(FindRegistrar::Mode::kAnswer);
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  a.Add("x", "x-uuid", "127.0.0.1:7777");
  b.Add("x", "x-uuid-2", "127.0.0.1:7778");
  ConnectFirst({Parse(a.addr), Parse(b.addr)});
  const absl::Time start = absl::Now();
  Lookup lookup({Parse(a.addr), Parse(b.addr)}, "x", Lookup::Mode::kFind,
                absl::Now() + absl::Seconds(5),
                Lookup::Hedge{.first = 0, .delay = kNeverHedge});
  auto first = lookup.Next(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->index, 0u);
  // The entry turned out stale, say: the held registrar is asked now.
  auto second = lookup.Next(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->index, 1u);
  ASSERT_EQ(second->registrations.size(), 1u)
      << second->status.error_code() << " " << second->status.error_message();
  EXPECT_EQ(second->registrations[0].aid().uuid(), "x-uuid-2");
  EXPECT_FALSE(lookup.Next(absl::Now() + absl::Seconds(5)).has_value());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(HedgedLookupTest, HeldRegistrarsAreNeverAskedOnceTheLookupIsGone) {
  FindRegistrar held(FindRegistrar::Mode::kHold);
  FindRegistrar b(FindRegistrar::Mode::kAnswer);
  {
    Lookup lookup({Parse(held.addr), Parse(b.addr)}, "x", Lookup::Mode::kFind,
                  absl::Now() + absl::Seconds(5),
                  Lookup::Hedge{.first = 0, .delay = absl::Milliseconds(50)});
    ASSERT_TRUE(held.WaitForFinds(1, absl::Seconds(5)));
  }
  // The destructor cancelled the held call; its CANCELLED answer, a
  // negative one, must not release the held registrar either.
  EXPECT_FALSE(b.WaitForFinds(1, absl::Milliseconds(500)))
      << "a registrar was asked after its lookup was destroyed";
}

TEST(CheckActorAtTest, OnlyRefusalOrAnotherServerIsEvidenceOfAGoneActor) {
  TempDir dir;
  EXPECT_EQ(CheckActorAt(Parse(absl::StrCat("127.0.0.1:", ClosedPort())), "u")
                .liveness,
            Liveness::kGone);
  EXPECT_EQ(CheckActorAt(Parse(dir.Sock("none.sock")), "u").liveness,
            Liveness::kGone);
  // A registrar is not an actor: Actor.Info is unimplemented there.
  LocalRegistrar reg(dir.Sock("reg.sock"), absl::Seconds(5));
  AddrCheck other = CheckActorAt(Parse(reg.addr), "u");
  EXPECT_EQ(other.liveness, Liveness::kGone) << other.detail;
  // Silence is no evidence: a listener that never answers, a host that
  // drops connection attempts.
  SilentListener hung;
  const absl::Time start = absl::Now();
  AddrCheck silent = CheckActorAt(Parse(hung.addr()), "u");
  EXPECT_EQ(silent.liveness, Liveness::kUnknown) << silent.detail;
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  BlackholeListener hole;
  if (hole.silent()) {
    AddrCheck dropped = CheckActorAt(Parse(hole.addr()), "u");
    EXPECT_EQ(dropped.liveness, Liveness::kUnknown) << dropped.detail;
  }
}

TEST(LocalIpTowardTest, LoopbackRoutesFromLoopback) {
  auto ip = LocalIpToward(Parse("127.0.0.1:9"));
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(*ip, "127.0.0.1");
  EXPECT_FALSE(LocalIpToward(Parse("unix:/tmp/x.sock")).has_value());
}

}  // namespace
}  // namespace tractor::discovery
