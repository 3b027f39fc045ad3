// SPDX-License-Identifier: AGPL-3.0-or-later
// Any actor program is a host daemon: tractor::Main's runtime flags, the
// --daemon mode (serving the program's exported functions until SIGTERM or
// SIGINT), its exit statuses, and the well-known registry's takeover when
// the root serving it dies. Every program here inherits the test's own
// TRACTOR_REGISTRY (tests/test_main.cc), or is given one: never 1616.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "actor/errors.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/discovery.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"
#include "tests/thread_census.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using testing::Proc;
using testing::SilentListener;
using testing::TempDir;

std::string DaemonActor() {
  return testing::RunfilePath("tests/discovery/daemon_actor");
}

// Runs the daemon program with its stderr merged into the stdout pipe.
std::unique_ptr<Proc> Start(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1",
                                   DaemonActor()};
  full.insert(full.end(), args.begin(), args.end());
  return Proc::Spawn(full);
}

// Every line the program prints until it exits (bounded).
std::vector<std::string> AllLines(Proc& p) {
  std::vector<std::string> lines;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (auto line = p.ReadLine(deadline - absl::Now())) lines.push_back(*line);
  return lines;
}

// The exit status, or -1 when it did not exit normally within 20 s.
int ExitStatus(Proc& p) {
  std::optional<int> st = p.Wait(absl::Seconds(20));
  if (!st.has_value() || !WIFEXITED(*st)) return -1;
  return WEXITSTATUS(*st);
}

// A daemon that printed "<name> <uuid> listening on <addrs>".
struct Daemon {
  std::unique_ptr<Proc> proc;
  std::string uuid;
  std::vector<std::string> addrs;
};

Daemon StartDaemon(const std::string& name,
                   std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--daemon", "--name=" + name};
  args.insert(args.end(), extra.begin(), extra.end());
  Daemon d;
  d.proc = Start(args);
  if (!d.proc) return d;
  auto line = d.proc->ReadLineStartingWith(name + " ", absl::Seconds(30));
  if (!line) return d;
  std::vector<std::string> parts = absl::StrSplit(*line, ' ');
  if (parts.size() == 5 && parts[2] == "listening" && parts[3] == "on") {
    d.uuid = parts[1];
    d.addrs = absl::StrSplit(parts[4], ',');
  }
  return d;
}

std::vector<std::string> NamesAt(const std::string& registry) {
  std::vector<std::string> out;
  try {
    for (const auto& r : GetRegistry(registry)) out.push_back(r.aid().name());
  } catch (const TransportClosed&) {
    out.push_back("<unreachable>");
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool WaitForNames(const std::string& registry,
                  std::vector<std::string> names, absl::Duration timeout) {
  std::sort(names.begin(), names.end());
  return testing::WaitFor([&] { return NamesAt(registry) == names; },
                          timeout);
}

class DaemonTest : public testing::ProcessTest {
 protected:
  void SetUp() override {
    // The secret the test's root and every daemon it starts share by
    // configuration: its embedded registrar honours Register only from
    // members of the mesh (docs/security.md).
    setenv("TRACTOR_SECRET", "daemon-test-secret", 1);
    ProcessTest::SetUp();
    ASSERT_FALSE(DaemonActor().empty()) << "daemon_actor is not in the runfiles";
  }
};

TEST_F(DaemonTest, ServesItsExportedFunctionsUntilSigtermThenExitsZero) {
  OpenRootActor({.name = "client"}, [] {
    Daemon d = StartDaemon("worker");
    ASSERT_FALSE(d.uuid.empty()) << "no ready line";
    std::optional<Portal> p = FindActor("worker");
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->aid().uuid(), d.uuid);
    // Every namespace the program exports is served by default.
    EXPECT_EQ(p->Run("greet:hello", "ops").AsString(), "hello ops");
    d.proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d.proc), 0);
    // It unregistered on its way out.
    EXPECT_FALSE(FindActor("worker").has_value());
  });
}

TEST_F(DaemonTest, SigintAndCancelActorAlsoEndItWithZero) {
  OpenRootActor({.name = "client"}, [] {
    Daemon a = StartDaemon("by-sigint");
    ASSERT_FALSE(a.uuid.empty());
    a.proc->Signal(SIGINT);
    EXPECT_EQ(ExitStatus(*a.proc), 0);

    Daemon b = StartDaemon("by-cancel");
    ASSERT_FALSE(b.uuid.empty());
    std::optional<Portal> p = FindActor("by-cancel");
    ASSERT_TRUE(p.has_value());
    EXPECT_TRUE(p->CancelActor(absl::Seconds(5)));
    EXPECT_EQ(ExitStatus(*b.proc), 0);
  });
}

TEST_F(DaemonTest, EnableModulesLimitsWhatItServes) {
  OpenRootActor({.name = "client"}, [] {
    Daemon d = StartDaemon("limited", {"--enable_modules=other"});
    ASSERT_FALSE(d.uuid.empty());
    std::optional<Portal> p = FindActor("limited");
    ASSERT_TRUE(p.has_value());
    EXPECT_THROW(p->Run("greet:hello", "x"), ActorError);
    d.proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d.proc), 0);
  });
}

TEST_F(DaemonTest, RootMainGetsEveryArgumentThatIsNotARuntimeFlag) {
  auto p = Start({"--name=flagged", "--gtest_filter=x", "pos", "--user=1",
                  "--loglevel", "warning", "--", "--name=after"});
  ASSERT_TRUE(p);
  std::vector<std::string> lines = AllLines(*p);
  EXPECT_EQ(ExitStatus(*p), 0);
  EXPECT_THAT(lines, ::testing::Contains(
                         "args: --gtest_filter=x|pos|--user=1|--|--name=after"));
  // --name overrides the program's RootOptions.
  EXPECT_THAT(lines, ::testing::Contains("name flagged"));
}

TEST_F(DaemonTest, ASpawnedChildGetsNoFlagsOnlyItsSpawnSpec) {
  auto p = Start({"--name=flagged", "--loglevel=warning", "spawn"});
  ASSERT_TRUE(p);
  std::vector<std::string> lines = AllLines(*p);
  EXPECT_EQ(ExitStatus(*p), 0);
  // The child runs the same binary with no argument at all (argv[0] only);
  // its name comes from its spawn spec, and the root's log level is
  // inherited through it.
  std::string cmdline;
  for (const auto& l : lines) {
    if (absl::StartsWith(l, "child cmdline ")) cmdline = l.substr(14);
  }
  ASSERT_FALSE(cmdline.empty()) << absl::StrJoin(lines, "\n");
  EXPECT_EQ(std::count(cmdline.begin(), cmdline.end(), '|'), 1) << cmdline;
  EXPECT_EQ(cmdline.back(), '|') << cmdline;
  EXPECT_THAT(lines, ::testing::Contains("child kid warning"));
  EXPECT_THAT(lines, ::testing::Contains("name flagged"));
}

TEST_F(DaemonTest, ABadRuntimeFlagExitsTwoWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--lease_ms=soon"}, "--lease_ms"},
      {{"--lease_ms=0"}, "--lease_ms"},
      {{"--loglevel=loud"}, "--loglevel"},
      {{"--busy_wait_us=-1"}, "--busy_wait_us"},
      {{"--busy_wait_us=2000000"}, "--busy_wait_us"},
      {{"--busy_wait_us=fast"}, "--busy_wait_us"},
      {{"--bind=1.2.3.4"}, "--bind"},
      {{"--registry"}, "--registry: missing value"},
      {{"--daemon=maybe"}, "--daemon"},
      {{"--daemon", "stray"}, "unexpected argument 'stray'"},
  };
  for (const Case& c : cases) {
    auto p = Start(c.args);
    ASSERT_TRUE(p);
    std::vector<std::string> lines = AllLines(*p);
    EXPECT_EQ(ExitStatus(*p), 2) << c.args[0];
    ASSERT_EQ(lines.size(), 1u) << c.args[0] << ": "
                                << absl::StrJoin(lines, "\n");
    EXPECT_THAT(lines[0], StartsWith("daemon_actor: "));
    EXPECT_THAT(lines[0], HasSubstr(c.says));
  }
}

TEST_F(DaemonTest, AnAddressItCannotBindExitsOneWithOneLine) {
  SilentListener taken;
  auto p = Start({"--daemon", "--bind=" + taken.addr()});
  ASSERT_TRUE(p);
  std::vector<std::string> lines = AllLines(*p);
  EXPECT_EQ(ExitStatus(*p), 1);
  ASSERT_EQ(lines.size(), 1u) << absl::StrJoin(lines, "\n");
  EXPECT_THAT(lines[0], StartsWith("daemon_actor: "));
  EXPECT_THAT(lines[0], HasSubstr(taken.addr()));
}

TEST_F(DaemonTest, HelpfullListsTheRuntimeFlagsAndGlogs) {
  auto p = Start({"--helpfull"});
  ASSERT_TRUE(p);
  const std::string text = absl::StrJoin(AllLines(*p), "\n");
  EXPECT_EQ(ExitStatus(*p), 0);
  for (const char* flag : {"--name", "--bind", "--registry", "--enable_modules",
                           "--loglevel", "--lease_ms", "--busy_wait_us",
                           "--daemon", "--v ",
                           "--vmodule"}) {
    EXPECT_THAT(text, HasSubstr(flag));
  }
}

// The busy wait's spinner (one "tr-busy-wait" thread) runs by default and
// not with --busy_wait_us=0.
TEST_F(DaemonTest, BusyWaitFlagTurnsTheSpinnerOff) {
  auto spinners_of = [](pid_t pid) {
    const auto names = testing::ThreadNamesOf(pid);
    const auto it = names.find("tr-busy-wait");
    return it == names.end() ? 0 : it->second;
  };
  for (const std::string& flag : {std::string("--busy_wait_us=300"),
                                   std::string("--busy_wait_us=0")}) {
    Daemon d = StartDaemon("spinner", {flag});
    ASSERT_TRUE(d.proc && !d.uuid.empty()) << flag;
    const int want = flag == "--busy_wait_us=0" ? 0 : 1;
    // A thread names itself once it runs.
    EXPECT_TRUE(testing::WaitFor(
        [&] { return spinners_of(d.proc->pid()) == want; }, absl::Seconds(10)))
        << flag << ": " << spinners_of(d.proc->pid());
    d.proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d.proc), 0) << flag;
  }
}

TEST_F(DaemonTest, GlogsVerbosityFlagsStillWork) {
  // VLOG(1) of the registrar election, shown only with --v or --vmodule.
  for (const char* flag : {"--v=1", "--vmodule=registrar_election=1"}) {
    Daemon d;
    d.proc = Start({"--daemon", "--name=verbose", flag});
    ASSERT_TRUE(d.proc);
    EXPECT_TRUE(d.proc->ReadLineStartingWith("I", absl::Seconds(30)) &&
                d.proc->ReadLineStartingWith("verbose ", absl::Seconds(30)))
        << flag;
    d.proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d.proc), 0) << flag;
  }
}

TEST_F(DaemonTest, StaysRegisteredAcrossRegistrarRestarts) {
  const std::string registrar = testing::RunfilePath("registrar/registrar");
  ASSERT_FALSE(registrar.empty());
  TempDir dir;
  const std::string reg = dir.Sock("reg.sock");
  auto start_registrar = [&] {
    auto r = Proc::Spawn({registrar, "--listen", reg, "--lease_ms", "1500",
                          "--loglevel", "error"});
    EXPECT_TRUE(r && r->ReadLineStartingWith("registrar ", absl::Seconds(30)));
    return r;
  };
  auto first = start_registrar();
  Daemon d = StartDaemon("steady", {"--registry=" + reg, "--lease_ms=1500"});
  ASSERT_FALSE(d.uuid.empty());
  OpenRootActor({.name = "observer", .registry_addrs = {reg}}, [&] {
    EXPECT_TRUE(WaitForNames(reg, {"registrar", "observer", "steady"},
                             absl::Seconds(10)));
    first->Signal(SIGKILL);
    ASSERT_TRUE(first->Wait(absl::Seconds(10)).has_value());
    auto second = start_registrar();
    const absl::Time restarted = absl::Now();
    EXPECT_TRUE(WaitForNames(reg, {"registrar", "observer", "steady"},
                             absl::Seconds(10)))
        << absl::StrJoin(NamesAt(reg), ",");
    printf("re-registered %.0f ms after the registrar restarted\n",
           absl::ToDoubleMilliseconds(absl::Now() - restarted));
    d.proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d.proc), 0);
    second->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*second), 0);
  });
}

// The well-known registry, with TRACTOR_REGISTRY standing in for
// 127.0.0.1:1616: the first program serves it; when it is SIGKILLed, one of
// the others binds it within the takeover probe period, and the rest
// re-register there within one refresh period (a third of the 5 s default
// lease) of it serving again. The registrar it serves from then on, like
// the embedded one, honours Register from members of the mesh only.
TEST_F(DaemonTest, WhenTheRootServingTheDefaultRegistryDiesAnotherTakesOver) {
  const absl::Duration kRefreshPeriod = absl::Seconds(5) / 3;
  // The takeover probe runs every 0.5 s; a probe of a dead port is
  // refused at once.
  const absl::Duration kTakeoverBound = absl::Seconds(1);
  const std::string registry =
      absl::StrCat("127.0.0.1:", SilentListener().port);  // a free port
  setenv("TRACTOR_REGISTRY", registry.c_str(), 1);
  Daemon first = StartDaemon("first");
  ASSERT_FALSE(first.uuid.empty());
  EXPECT_EQ(first.addrs.at(0), registry);  // it serves the registry
  Daemon b = StartDaemon("second");
  Daemon c = StartDaemon("third");
  ASSERT_FALSE(b.uuid.empty());
  ASSERT_FALSE(c.uuid.empty());
  OpenRootActor({.name = "observer", .registry_addrs = {registry}}, [&] {
    ASSERT_TRUE(WaitForNames(registry, {"first", "observer", "second", "third"},
                             absl::Seconds(10)));
    first.proc->Signal(SIGKILL);
    ASSERT_TRUE(first.proc->Wait(absl::Seconds(10)).has_value());
    const absl::Time killed = absl::Now();
    auto serving = [&] {
      std::vector<std::string> names = NamesAt(registry);
      return names.empty() || names[0] != "<unreachable>";
    };
    ASSERT_TRUE(testing::WaitFor(serving, absl::Seconds(10)))
        << "nobody took the registry over";
    const absl::Time served = absl::Now();
    EXPECT_TRUE(WaitForNames(registry, {"observer", "second", "third"},
                             absl::Seconds(10)))
        << absl::StrJoin(NamesAt(registry), ",");
    const absl::Time listed = absl::Now();
    printf("registry served again %.0f ms after the SIGKILL; everyone "
           "re-registered %.0f ms after that (refresh period %.0f ms)\n",
           absl::ToDoubleMilliseconds(served - killed),
           absl::ToDoubleMilliseconds(listed - served),
           absl::ToDoubleMilliseconds(kRefreshPeriod));
    EXPECT_LE(served - killed, kTakeoverBound);
    EXPECT_LE(listed - served, kRefreshPeriod);
    std::optional<Portal> p = FindActor("third", {registry});
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->Run("greet:hello", "again").AsString(), "hello again");

    // A client without the mesh secret may not register there.
    auto channel =
        grpc::CreateChannel(registry, grpc::InsecureChannelCredentials());
    auto stub = v1::Registrar::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::RegisterRequest request;
    request.mutable_registration()->mutable_aid()->set_name("intruder");
    request.mutable_registration()->mutable_aid()->set_uuid("intruder-uuid");
    request.mutable_registration()->add_addrs("127.0.0.1:9");
    v1::RegisterReply reply;
    grpc::Status refused = stub->Register(&ctx, request, &reply);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << refused.error_message();
  });
  for (Daemon* d : {&b, &c}) {
    d->proc->Signal(SIGTERM);
    EXPECT_EQ(ExitStatus(*d->proc), 0);
  }
}

TEST_F(DaemonTest, ADefaultRegistryHeldByAnotherServiceIsABootError) {
  SilentListener other;
  setenv("TRACTOR_REGISTRY", other.addr().c_str(), 1);
  auto p = Start({"--daemon"});
  ASSERT_TRUE(p);
  std::vector<std::string> lines = AllLines(*p);
  EXPECT_EQ(ExitStatus(*p), 1);
  ASSERT_EQ(lines.size(), 1u) << absl::StrJoin(lines, "\n");
  EXPECT_THAT(lines[0], HasSubstr(other.addr()));
  EXPECT_THAT(lines[0], HasSubstr("not a registrar"));
}

}  // namespace
}  // namespace tractor
