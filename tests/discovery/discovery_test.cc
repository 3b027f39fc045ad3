// SPDX-License-Identifier: AGPL-3.0-or-later
// Discovery inside one actor tree (real processes): the embedded registrar,
// registration and unregistration of children, FindActor / WaitForActor /
// QueryActor / GetRegistry, registrar election at boot, multi-homing and
// address forms. Ports the scenarios of tractor's tests/discovery/
// test_registrar.py, test_tpt_bind_addrs.py, test_multiaddr.py and
// tests/ipc/test_multi_tpt.py (docs/behaviour.md#acceptance-scenarios).
#include "discovery/discovery.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "discovery/registry_client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/discovery/local_registrar.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;
using testing::SilentListener;
using testing::TempDir;

const ActorOptions kDisc = {.enable_modules = {"disc"}};

class DiscoveryTest : public testing::ProcessTest {};

std::vector<std::string> Strings(const Payload& list) {
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) out.push_back(list[i].AsString());
  return out;
}

// Names in the registry, in order.
std::vector<std::string> Names(const std::vector<v1::Registration>& regs) {
  std::vector<std::string> out;
  for (const auto& r : regs) out.push_back(r.aid().name());
  return out;
}

std::vector<std::string> Names(const std::string& registrar = "") {
  return Names(GetRegistry(registrar));
}

const v1::Registration* Entry(const std::vector<v1::Registration>& regs,
                              const std::string& uuid) {
  for (const auto& r : regs) {
    if (r.aid().uuid() == uuid) return &r;
  }
  return nullptr;
}

bool CanBindIpv6Loopback() {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6)) == 0;
  close(fd);
  return ok;
}

// --- The embedded default and registration (test_registrar.py) ----------

TEST_F(DiscoveryTest, RootServesTheRegistryByDefaultAndListsOnlyItself) {
  OpenRootActor({}, [] {
    EXPECT_TRUE(IsRegistrar());
    EXPECT_TRUE(CurrentActor().is_registrar());
    EXPECT_EQ(RegistryAddrs(), AcceptAddrs());
    auto regs = GetRegistry();
    ASSERT_EQ(regs.size(), 1u);
    EXPECT_EQ(regs[0].aid().uuid(), CurrentActor().uuid());
    EXPECT_EQ(regs[0].lease_ms(), 0u);  // the registrar's own entry is pinned
  });
}

TEST_F(DiscoveryTest, ChildRegistersThenUnregistersAtOnceOnCancel) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("daemon", kDisc);
      // Registered before StartActor returned.
      EXPECT_THAT(Names(), UnorderedElementsAre("root", "daemon"));
      auto found = FindActor("daemon");
      ASSERT_TRUE(found.has_value());
      EXPECT_EQ(found->aid().uuid(), p.aid().uuid());
      EXPECT_EQ(found->Run("disc:hi").AsString(), "Hi my name is daemon");
      an.Cancel();
      // The child unregistered in its teardown, before it exited.
      EXPECT_THAT(Names(), ElementsAreArray({"root"}));
      EXPECT_FALSE(FindActor("daemon").has_value());
    });
  });
}

TEST_F(DiscoveryTest, RegThenUnregWithAMultiaddrRegistry) {
  TempDir dir;
  const std::string maddr = absl::StrCat("/unix", dir.path(), "/reg.sock");
  const std::string canonical = dir.Sock("reg.sock");
  OpenRootActor({.registry_addrs = {maddr}}, [&] {
    EXPECT_TRUE(IsRegistrar());
    EXPECT_THAT(RegistryAddrs(), ElementsAreArray({canonical}));
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("daemon", kDisc);
      EXPECT_THAT(Strings(p.Run("disc:registry_addrs")),
                  ElementsAreArray({canonical}));
      EXPECT_THAT(Names(maddr), UnorderedElementsAre("root", "daemon"));
      an.Cancel();
      EXPECT_THAT(Names(maddr), ElementsAreArray({"root"}));
    });
  });
}

TEST_F(DiscoveryTest, TwoChildrenWaitForEachOtherAndSayHi) {
  const absl::Time start = absl::Now();
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal donny = an.RunInActor("donny", "disc:greet_peer", "gretchen");
      Portal gretchen = an.RunInActor("gretchen", "disc:greet_peer", "donny");
      EXPECT_EQ(donny.Result().AsString(), "Hi my name is gretchen");
      EXPECT_EQ(gretchen.Result().AsString(), "Hi my name is donny");
    });
  });
  EXPECT_LT(absl::Now() - start, absl::Seconds(7));
}

TEST_F(DiscoveryTest, SubactorsUnregisterWhenTheNurseryFails) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
                   for (const char* name : {"a", "b", "c"}) {
                     an.StartActor(name, kDisc);
                   }
                   EXPECT_EQ(GetRegistry().size(), 4u);
                   throw std::runtime_error("boom");
                 }),
                 std::runtime_error);
    EXPECT_THAT(Names(), ElementsAreArray({"root"}));
  });
}

TEST_F(DiscoveryTest, StaleEntryIsDeletedFromTheRegistrarThatReturnedIt) {
  TempDir dir;
  OpenRootActor({}, [&] {
    // An entry whose actor is gone: nothing listens at its addresses.
    auto channel = grpc::CreateChannel(
        discovery::Address::Parse(RegistryAddrs()[0])->GrpcTarget(),
        grpc::InsecureChannelCredentials());
    auto stub = v1::Registrar::NewStub(channel);
    grpc::ClientContext ctx;
    v1::RegisterRequest req;
    req.mutable_registration()->mutable_aid()->set_name("ghost");
    req.mutable_registration()->mutable_aid()->set_uuid("ghost-uuid");
    req.mutable_registration()->add_addrs(dir.Sock("ghost.sock"));
    req.mutable_registration()->add_addrs("127.0.0.1:1");
    v1::RegisterReply rep;
    // Registering takes a member of the mesh: this process, the root, has
    // the secret.
    discovery::AttachSecret(&ctx);
    ASSERT_TRUE(stub->Register(&ctx, req, &rep).ok());
    ASSERT_THAT(Names(), UnorderedElementsAre("root", "ghost"));
    const absl::Time start = absl::Now();
    EXPECT_FALSE(FindActor("ghost").has_value());
    EXPECT_LT(absl::Now() - start, absl::Seconds(4));
    EXPECT_THAT(Names(), ElementsAreArray({"root"}));
  });
}

TEST_F(DiscoveryTest, WaitForActorStartedBeforeTheActorExists) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      std::string waited_uuid;
      std::string spawned_uuid;
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] {
          Portal p = WaitForActor("late");
          waited_uuid = p.aid().uuid();
          EXPECT_EQ(p.Run("disc:hi").AsString(), "Hi my name is late");
        });
        Sleep(absl::Milliseconds(300));
        EXPECT_FALSE(FindActor("late").has_value());
        spawned_uuid = an.StartActor("late", kDisc).aid().uuid();
      });
      EXPECT_EQ(waited_uuid, spawned_uuid);
      an.Cancel();
    });
  });
}

TEST_F(DiscoveryTest, WaitForActorIsACancellableCheckpoint) {
  OpenRootActor({}, [] {
    const absl::Time start = absl::Now();
    bool done = MoveOnAfter(absl::Milliseconds(300),
                            [] { WaitForActor("never-spawned"); });
    EXPECT_FALSE(done);
    EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  });
}

TEST_F(DiscoveryTest, ChildrenInheritTheRegistryAndFindTheirSiblings) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal a = an.StartActor("a", kDisc);
      Portal b = an.StartActor("b", kDisc);
      EXPECT_EQ(Strings(a.Run("disc:registry_addrs")), RegistryAddrs());
      EXPECT_EQ(a.Run("disc:find_uuid", "b").AsString(), b.aid().uuid());
      EXPECT_EQ(b.Run("disc:find_uuid", "a").AsString(), a.aid().uuid());
      EXPECT_EQ(a.Run("disc:find_uuid", "nobody").AsString(), "");
      an.Cancel();
    });
  });
}

TEST_F(DiscoveryTest, DuplicateNamesAreAllowedAndLatestRegistrationWins) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal first = an.StartActor("doggy", kDisc);
      Portal second = an.StartActor("doggy", kDisc);
      EXPECT_THAT(Names(), UnorderedElementsAre("root", "doggy", "doggy"));
      auto found = FindActor("doggy");
      ASSERT_TRUE(found.has_value());
      EXPECT_EQ(found->aid().uuid(), second.aid().uuid());
      Portal waited = WaitForActor("doggy");
      EXPECT_THAT(waited.aid().uuid(),
                  ::testing::AnyOf(first.aid().uuid(), second.aid().uuid()));
      an.Cancel();
      EXPECT_THAT(Names(), ElementsAreArray({"root"}));
    });
  });
}

TEST_F(DiscoveryTest, FindActorsReturnsAPortalToEveryActorOfThatName) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal first = an.StartActor("doggy", kDisc);
      Portal second = an.StartActor("doggy", kDisc);
      an.StartActor("cat", kDisc);
      std::vector<Portal> found = FindActors("doggy");
      std::vector<std::string> uuids;
      for (const Portal& p : found) uuids.push_back(p.aid().uuid());
      // The most recent registration first.
      EXPECT_THAT(uuids, ElementsAreArray({second.aid().uuid(),
                                           first.aid().uuid()}));
      EXPECT_TRUE(FindActors("nobody").empty());
      an.Cancel();
    });
  });
}

TEST_F(DiscoveryTest, RaiseOnNoneThrowsWhenNoActorHasThatName) {
  OpenRootActor({}, [] {
    try {
      FindActor("nobody", {}, discovery::kFindTimeout, /*raise_on_none=*/true);
      ADD_FAILURE() << "FindActor(raise_on_none) found nobody and returned";
    } catch (const RuntimeFailure& e) {
      EXPECT_THAT(e.what(), HasSubstr("no actor 'nobody'"));
    }
    EXPECT_THROW(FindActors("nobody", {}, discovery::kFindTimeout, /*raise_on_none=*/true),
                 RuntimeFailure);
    // Found: no error.
    auto root = FindActor("root", {}, discovery::kFindTimeout, /*raise_on_none=*/true);
    ASSERT_TRUE(root.has_value());
    EXPECT_EQ(root->aid().uuid(), CurrentActor().uuid());
    EXPECT_EQ(FindActors("root", {}, discovery::kFindTimeout, true).size(), 1u);
    // A registrar that cannot be asked (nothing listens at its address) is
    // not taken for one that lists nobody: the error says it did not
    // answer, and with no registrar answering, that it cannot tell.
    TempDir dir;
    const std::string down = dir.Sock("down.sock");
    const std::string up = RegistryAddrs().at(0);
    try {
      FindActor("nobody", {up, down}, discovery::kFindTimeout, true);
      ADD_FAILURE() << "FindActor(raise_on_none) found nobody and returned";
    } catch (const RuntimeFailure& e) {
      EXPECT_THAT(e.what(), HasSubstr("no actor 'nobody' is registered with [" +
                                      up + "]; these did not "
                                      "answer: " + down + ": "));
    }
    try {
      FindActor("root", {down}, discovery::kFindTimeout, true);
      ADD_FAILURE() << "FindActor(raise_on_none) asked nobody and returned";
    } catch (const RuntimeFailure& e) {
      EXPECT_THAT(e.what(), HasSubstr("cannot tell whether an actor 'root' is "
                                      "registered: no registrar answered (" +
                                      down + ": "));
    }
    EXPECT_FALSE(FindActor("root", {down}).has_value());
  });
}

// FindActor is a hedged lookup (docs/design.md#hedged-lookups): the
// registrar of the last positive answer (else the first in the list) is
// asked alone; another only after a miss, an error, a refused connection
// or the hedge delay.
TEST_F(DiscoveryTest, FindActorAsksASecondRegistrarOnlyWhenTheFirstFails) {
  TempDir dir;
  testing::FindRegistrar a(testing::FindRegistrar::Mode::kAnswer);
  testing::FindRegistrar b(testing::FindRegistrar::Mode::kAnswer);
  testing::FindRegistrar held(testing::FindRegistrar::Mode::kHold);
  testing::FindRegistrar empty(testing::FindRegistrar::Mode::kAnswer);
  const std::string down = dir.Sock("down.sock");  // nothing listens there
  OpenRootActor({}, [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      const std::string uuid = an.StartActor("kid", kDisc).aid().uuid();
      // The checks, in a function of their own so that a failed ASSERT
      // still reaches the nursery's cancel.
      [&] {
        // Registered at boot, or on the next retry on a loaded machine.
        std::vector<v1::Registration> registry;
        ASSERT_TRUE(testing::WaitFor(
            [&] {
              registry = GetRegistry();
              return Entry(registry, uuid) != nullptr;
            },
            absl::Seconds(5)));
        const v1::Registration* kid = Entry(registry, uuid);
        for (const std::string& addr : kid->addrs()) {
          a.Add("kid", uuid, addr);
          b.Add("kid", uuid, addr);
        }
        auto find = [&](const std::vector<std::string>& registrars) {
          const absl::Time start = absl::Now();
          auto p = FindActor("kid", registrars);
          const absl::Duration took = absl::Now() - start;
          EXPECT_TRUE(p.has_value());
          if (p) {
            EXPECT_EQ(p->aid().uuid(), uuid);
          }
          return took;
        };
        // Connections up (a first connection takes longer than the hedge
        // delay), `a` last: it gave the last positive answer.
        EXPECT_TRUE(QueryActor("kid", b.addr).has_value());
        EXPECT_FALSE(QueryActor("kid", empty.addr).has_value());
        EXPECT_TRUE(QueryActor("kid", a.addr).has_value());
        // A miss on the first (neither `empty` nor `b` answered last): the
        // other is asked at once.
        const int empty0 = empty.finds(), a0 = a.finds(), b0 = b.finds();
        EXPECT_LT(find({empty.addr, b.addr}), absl::Seconds(1));
        EXPECT_EQ(empty.finds() - empty0, 1);
        EXPECT_EQ(b.finds() - b0, 1);
        EXPECT_EQ(a.finds() - a0, 0);
        // Six lookups over {a, b} and {b, a}: `b` answered last, so it is
        // asked first, alone. (A loaded machine may answer a lookup later
        // than the hedge delay, which asks the other too: two such in six
        // are allowed; asking both every time makes 12. Which registrar is
        // asked first, and that the other is never asked when it answers,
        // is asserted in process, by HedgedLookupTest.)
        const int a1 = a.finds(), b1 = b.finds();
        for (int i = 0; i < 6; ++i) {
          find(i % 2 == 0 ? std::vector<std::string>{a.addr, b.addr}
                          : std::vector<std::string>{b.addr, a.addr});
        }
        printf("Find requests for 6 lookups over two registrars: %d\n",
               a.finds() - a1 + b.finds() - b1);
        EXPECT_LE(a.finds() - a1 + b.finds() - b1, 6 + 2);
        // A registrar that is down and asked first: no delay.
        EXPECT_LT(find({down, a.addr}), absl::Seconds(1));
        // One that holds the call (`a` answered last; it is not in the list):
        // the hedge delay, and no more. Its connection is made first, as the
        // others' were, so that the call reaches it before the lookup ends.
        ASSERT_TRUE(discovery::RegistrarChannel(
                        *discovery::Address::Parse(held.addr))
                        ->WaitForConnected(absl::ToChronoTime(
                            absl::Now() + absl::Seconds(5))));
        const int held0 = held.finds();
        const absl::Duration took = find({held.addr, b.addr});
        printf("FindActor with the first registrar holding the call: %.2f ms "
               "(hedge delay now %.2f ms)\n",
               absl::ToDoubleMilliseconds(took),
               absl::ToDoubleMilliseconds(discovery::HedgeDelay()));
        EXPECT_LT(took, discovery::kHedgeCeiling + absl::Milliseconds(500));
        // It was asked (its server may count the call after the lookup,
        // which has cancelled it by then, returned).
        EXPECT_TRUE(testing::WaitFor(
            [&] { return held.finds() - held0 == 1; }, absl::Seconds(2)))
            << held.finds() - held0 << " Find requests at the holding registrar";
      }();
    });
  });
}

TEST_F(DiscoveryTest, QueryActorReturnsThePreferredAddressWithoutConnecting) {
  TempDir dir;
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      ActorOptions opts = kDisc;
      opts.bind_addrs = {"127.0.0.1:0", dir.Sock("q.sock")};
      an.StartActor("q", opts);
      // A unix socket on the same host is preferred.
      EXPECT_EQ(QueryActor("q"), dir.Sock("q.sock"));
      EXPECT_EQ(QueryActor("nobody"), std::nullopt);
      an.Cancel();
    });
  });
}

// --- Multi-homing (test_multi_tpt.py, test_tpt_bind_addrs.py) ------------

TEST_F(DiscoveryTest, MultiHomedChildRegistersAndAnswersOnEveryAddress) {
  TempDir dir;
  std::vector<std::string> binds = {"127.0.0.1:0", dir.Sock("child.sock")};
  if (CanBindIpv6Loopback()) binds.push_back("[::1]:0");
  OpenRootActor({}, [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      ActorOptions opts = kDisc;
      opts.bind_addrs = binds;
      Portal p = an.StartActor("multi", opts);
      std::vector<std::string> accept = Strings(p.Run("disc:accept_addrs"));
      ASSERT_EQ(accept.size(), binds.size());
      EXPECT_EQ(accept[1], dir.Sock("child.sock"));
      const std::vector<v1::Registration> registry = GetRegistry();
      const v1::Registration* entry = Entry(registry, p.aid().uuid());
      ASSERT_NE(entry, nullptr);
      EXPECT_THAT(std::vector<std::string>(entry->addrs().begin(),
                                           entry->addrs().end()),
                  UnorderedElementsAreArray(accept));
      for (const auto& addr : accept) {
        Portal direct = Portal::Connect(addr);
        EXPECT_EQ(direct.aid().uuid(), p.aid().uuid()) << addr;
        EXPECT_EQ(direct.Run("disc:hi").AsString(), "Hi my name is multi")
            << addr;
      }
    });
  });
}

TEST_F(DiscoveryTest, RegistrarRootBindsTheUnionOfRegistryAndBindAddrs) {
  TempDir dir;
  RootOptions opts;
  opts.registry_addrs = {dir.Sock("reg.sock"), "/ip4/127.0.0.1/tcp/0"};
  opts.bind_addrs = {dir.Sock("extra.sock"), dir.Sock("reg.sock")};
  OpenRootActor(opts, [&] {
    EXPECT_TRUE(IsRegistrar());
    std::vector<std::string> accept = AcceptAddrs();
    ASSERT_EQ(accept.size(), 3u);  // reg.sock once
    EXPECT_EQ(accept[0], dir.Sock("reg.sock"));
    EXPECT_THAT(accept[1], ::testing::StartsWith("127.0.0.1:"));
    EXPECT_NE(accept[1], "127.0.0.1:0");
    EXPECT_EQ(accept[2], dir.Sock("extra.sock"));
    EXPECT_THAT(RegistryAddrs(), ElementsAreArray({accept[0], accept[1]}));
    // Every registry address answers as a registrar.
    std::vector<discovery::Address> reg;
    for (const auto& a : RegistryAddrs()) reg.push_back(*discovery::Address::Parse(a));
    for (const auto& r : discovery::ProbeRegistryAddrs(reg)) {
      EXPECT_EQ(r.kind, discovery::ProbeKind::kRegistrar) << r.addr;
      EXPECT_EQ(r.registrar.uuid(), CurrentActor().uuid());
    }
  });
}

TEST_F(DiscoveryTest, RootWithARunningRegistrarBindsExactlyItsBindAddrs) {
  TempDir dir;
  // The first root becomes the registrar at reg.sock; a second, in a child
  // actor's place, cannot be made in this process, so the registrar root
  // spawns a child that sees the registrar answer.
  OpenRootActor({.registry_addrs = {dir.Sock("reg.sock")}}, [&] {
    auto probes = discovery::ProbeRegistryAddrs(
        {*discovery::Address::Parse(dir.Sock("reg.sock"))});
    ASSERT_EQ(probes[0].kind, discovery::ProbeKind::kRegistrar);
    OpenNursery([&](ActorNursery& an) {
      ActorOptions opts = kDisc;
      opts.bind_addrs = {dir.Sock("mine.sock")};
      Portal p = an.StartActor("child", opts);
      EXPECT_THAT(Strings(p.Run("disc:accept_addrs")),
                  ElementsAreArray({dir.Sock("mine.sock")}));
      an.Cancel();
    });
  });
}

// --- Election failures and address errors ---------------------------------

TEST_F(DiscoveryTest, BootFailsWhenARegistryAddrIsHeldByANonGrpcListener) {
  SilentListener silent;
  const absl::Time start = absl::Now();
  try {
    OpenRootActor({.registry_addrs = {silent.addr()}},
                  [] { ADD_FAILURE() << "booted over a foreign listener"; });
    ADD_FAILURE() << "no error";
  } catch (const RuntimeFailure& e) {
    EXPECT_THAT(e.what(), HasSubstr(silent.addr()));
    EXPECT_THAT(e.what(), HasSubstr("not a registrar"));
  }
  // The boot probe's budget is scaled under the sanitizer configurations.
  EXPECT_LT(absl::Now() - start, discovery::ScaleTimeout(absl::Seconds(3)));
  EXPECT_FALSE(HasRuntime());
}

TEST_F(DiscoveryTest, BootFailsWhenARegistryAddrIsAGrpcServerWithoutRegistrar) {
  v1::Actor::CallbackService not_a_registrar;
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&not_a_registrar);
  auto server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const std::string addr = absl::StrCat("127.0.0.1:", port);
  try {
    OpenRootActor({.registry_addrs = {addr}}, [] {});
    ADD_FAILURE() << "no error";
  } catch (const RuntimeFailure& e) {
    EXPECT_THAT(e.what(), HasSubstr(addr));
    EXPECT_THAT(e.what(), HasSubstr("without the tractor.v1.Registrar"));
  }
  server->Shutdown();
}

TEST_F(DiscoveryTest, UnsupportedAddressFormsAreClearErrors) {
  try {
    OpenRootActor({.bind_addrs = {"/udp/127.0.0.1/1616"}}, [] {});
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("RootOptions.bind_addrs"));
    EXPECT_THAT(e.what(), HasSubstr("unsupported multiaddr protocol"));
  }
  try {
    OpenRootActor({.registry_addrs = {"::1:1616"}}, [] {});
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("RootOptions.registry_addrs"));
    EXPECT_THAT(e.what(), HasSubstr("must be bracketed"));
  }
  OpenRootActor({}, [] {
    EXPECT_THROW(FindActor("x", {"unix:relative/path"}), UsageError);
    OpenNursery([](ActorNursery& an) {
      ActorOptions opts;
      opts.bind_addrs = {"localhost"};
      EXPECT_THROW(an.StartActor("bad", opts), RuntimeFailure);
    });
  });
}

TEST_F(DiscoveryTest, BindingNeverTakesOverALiveUnixSocket) {
  TempDir dir;
  OpenRootActor({.bind_addrs = {dir.Sock("taken.sock")}}, [&] {
    OpenNursery([&](ActorNursery& an) {
      ActorOptions opts = kDisc;
      opts.bind_addrs = {dir.Sock("taken.sock")};
      try {
        an.StartActor("thief", opts);
        ADD_FAILURE() << "the child took over a live socket";
      } catch (const RuntimeFailure& e) {
        EXPECT_THAT(e.what(), HasSubstr("thief"));
      }
      // The root still answers there.
      EXPECT_EQ(Portal::Connect(dir.Sock("taken.sock")).aid().uuid(),
                CurrentActor().uuid());
    });
  });
}

TEST_F(DiscoveryTest, BindingATcpPortInUseFailsInsteadOfSharingIt) {
  OpenRootActor({}, [] {
    const std::string taken = AcceptAddrs()[0];
    OpenNursery([&](ActorNursery& an) {
      ActorOptions opts = kDisc;
      opts.bind_addrs = {taken};
      EXPECT_THROW(an.StartActor("squatter", opts), RuntimeFailure);
    });
    EXPECT_EQ(Portal::Connect(taken).aid().uuid(), CurrentActor().uuid());
  });
}

// Starts a child under a root with `opts` (registry_lease 1234 ms) and
// checks the child's registration carries that lease.
void ExpectChildRegisteredWithTheRootsLease(RootOptions opts, bool registrar) {
  opts.registry_lease = absl::Milliseconds(1234);
  OpenRootActor(opts, [&] {
    EXPECT_EQ(IsRegistrar(), registrar);
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal p = an.StartActor("leased", kDisc);
      const std::vector<v1::Registration> registry = GetRegistry();
      const v1::Registration* entry = Entry(registry, p.aid().uuid());
      ASSERT_NE(entry, nullptr);
      EXPECT_EQ(entry->lease_ms(), 1234u);
    });
  });
}

TEST_F(DiscoveryTest, TheRootsLeaseIsTheEmbeddedRegistrarsDefaultForChildren) {
  ExpectChildRegisteredWithTheRootsLease({}, /*registrar=*/true);
}

TEST_F(DiscoveryTest, ChildrenRegisterWithTheRootsLeaseOnAnExternalRegistrar) {
  TempDir dir;
  testing::LocalRegistrar registrar(dir.Sock("ext.sock"), absl::Seconds(5));
  ExpectChildRegisteredWithTheRootsLease({.registry_addrs = {registrar.addr}},
                                         /*registrar=*/false);
}

// A registrar that is down (nothing listens yet) or silent (its host drops
// connection attempts) when the root boots stays in the tree's registry
// list: boot waits at most about 200 ms for the silent one, and once the
// late registrar comes up the root and its child register there.
TEST_F(DiscoveryTest, ARegistrarDownOrSilentAtBootIsKeptAndUsedOnceItAnswers) {
  TempDir dir;
  testing::LocalRegistrar early(dir.Sock("early.sock"), absl::Seconds(5));
  const std::string late_addr = dir.Sock("late.sock");
  testing::BlackholeListener hole;
  const bool silent = hole.silent();
  std::vector<std::string> registry = {early.addr, late_addr};
  if (silent) registry.push_back(hole.addr());
  RootOptions opts;
  opts.name = "boot";
  opts.registry_addrs = registry;
  const absl::Time start = absl::Now();
  OpenRootActor(opts, [&] {
    const absl::Duration boot = absl::Now() - start;
    printf("root booted in %.0f ms with registries: up, down%s\n",
           absl::ToDoubleMilliseconds(boot), silent ? ", silent" : "");
    EXPECT_FALSE(IsRegistrar());
    EXPECT_THAT(RegistryAddrs(), ElementsAreArray(registry));
    // (How long the boot probe waits for a silent address is asserted by
    // ProbeRegistryAddrsTest, in process: a wall-clock bound on a whole
    // boot is at the mercy of the machine's load.)
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("kid", kDisc);
      EXPECT_THAT(Strings(p.Run("disc:registry_addrs")),
                  ElementsAreArray(registry));
      EXPECT_TRUE(early.Has("boot"));
      EXPECT_TRUE(early.Has("kid"));
      testing::LocalRegistrar late(late_addr, absl::Seconds(5));
      const absl::Time up = absl::Now();
      EXPECT_TRUE(testing::WaitFor(
          [&] { return late.Has("boot") && late.Has("kid"); },
          absl::Seconds(3)))
          << "the root and its child never registered with the registrar "
             "that came up after boot";
      printf("registered with the late registrar %.0f ms after it came up\n",
             absl::ToDoubleMilliseconds(absl::Now() - up));
      an.Cancel();
    });
  });
}

}  // namespace
}  // namespace tractor
