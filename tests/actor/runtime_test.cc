// SPDX-License-Identifier: AGPL-3.0-or-later
// Spawning, calling and cancelling child actors (real processes).
#include <signal.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/process_fixture.h"
#include "tests/raw_unary.h"
#include "tests/thread_census.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor {
namespace {

Payload Echo(const Payload& p) { return p; }
TRACTOR_EXPORT("test:echo", Echo);

int64_t Pid() { return getpid(); }
TRACTOR_EXPORT("test:pid", Pid);

std::string Boom(const std::string& msg) { throw std::runtime_error(msg); }
TRACTOR_EXPORT("test:boom", Boom);

int64_t Twice(int64_t x) { return 2 * x; }
TRACTOR_EXPORT("test:twice", Twice);

int Negate(int x) { return -x; }
TRACTOR_EXPORT("test:negate", Negate);

std::string AidName(const v1::Aid& aid) { return aid.name(); }
TRACTOR_EXPORT("test:aid_name", AidName);

// Sleeps until cancelled; `test:cancels` counts how often it was.
std::atomic<int64_t> g_cancels{0};
void SleepLong() {
  try {
    Sleep(absl::Hours(1));
  } catch (const Cancelled&) {
    ++g_cancels;
    throw;
  }
}
TRACTOR_EXPORT("test:sleep_long", SleepLong);
int64_t Cancels() { return g_cancels; }
TRACTOR_EXPORT("test:cancels", Cancels);

// Asks the actor at `addr` to cancel itself.
bool CancelActorAt(const std::string& addr) {
  return Portal::Connect(addr).CancelActor();
}
TRACTOR_EXPORT("test:cancel_actor_at", CancelActorAt);

int64_t CtxEcho(Context& ctx, int64_t n) {
  ctx.Started(n);
  return n;
}
TRACTOR_EXPORT("test:ctx_echo", CtxEcho);

// Counts the stream items until the caller closes its side.
int64_t CountItems(Context& ctx) {
  ctx.Started();
  MsgStream stream = ctx.OpenStream();
  int64_t n = 0;
  while (stream.Receive()) ++n;
  return n;
}
TRACTOR_EXPORT("test:count_items", CountItems);

std::string Secret() { return "should never run"; }
TRACTOR_EXPORT("secret:peek", Secret);

void Nothing() {}
TRACTOR_EXPORT("test:nothing", Nothing);

// Sleeps `ms` milliseconds in a shielded scope, which no cancel shortens.
std::atomic<bool> g_shielded_running{false};
void ShieldedSleep(int64_t ms) {
  g_shielded_running = true;
  CancelScope shield(absl::InfiniteDuration(), /*shield=*/true);
  shield.Run([&] { Sleep(absl::Milliseconds(ms)); });
}
TRACTOR_EXPORT("test:shielded_sleep", ShieldedSleep);
bool ShieldedRunning() { return g_shielded_running.load(); }
TRACTOR_EXPORT("test:shielded_running", ShieldedRunning);

bool IsRoot() { return IsRootProcess(); }
TRACTOR_EXPORT("test:is_root", IsRoot);
std::string RootUuid() { return GetRoot().aid().uuid(); }
TRACTOR_EXPORT("test:root_uuid", RootUuid);

class RuntimeTest : public testing::ProcessTest {};

const ActorOptions kTestNs = {.enable_modules = {"test"}};

TEST_F(RuntimeTest, SpawnAndCallReturnsTheChildsAnswer) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    EXPECT_EQ(p.aid().name(), "child");
    Payload arg = Payload::Object({{"x", 1}, {"y", "two"}});
    EXPECT_EQ(p.Run("test:echo", arg), arg);
    int64_t child_pid = p.Run("test:pid").AsInt();
    EXPECT_NE(child_pid, getpid());
    EXPECT_EQ(child_pid, p.aid().pid());
    EXPECT_EQ((p.Run<int64_t, int64_t>("test:twice", 21)), 42);
  });
}

// A call sends its arguments without copying them (the request borrows
// them while it is serialized): they are the caller's again afterwards,
// whether the call returned or raised, and tasks of one actor may send the
// same Payload at the same time.
TEST_F(RuntimeTest, ACallLeavesItsArgumentsAsTheyWere) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    const Payload small = Payload::Object({{"x", 1}, {"y", "two"}});
    const Payload big = Payload::Raw(std::string(1 << 20, 'b'));
    const Payload small_copy = small, big_copy = big;
    EXPECT_EQ(p.Run("test:echo", small), small_copy);
    EXPECT_EQ(p.Run("test:echo", big), big_copy);
    EXPECT_THROW(p.Run("test:no_such_function", big), FunctionNotFound);
    EXPECT_THROW(p.Run("test:twice", small), MsgTypeError);
    EXPECT_THROW(p.Run("test:boom", Payload("raised")), RemoteActorError);
    CancelScope cancelled;  // the call raises before it is sent
    cancelled.Cancel();
    cancelled.Run([&] { p.Run("test:echo", big); });
    EXPECT_TRUE(cancelled.cancelled_caught());
    EXPECT_EQ(small, small_copy);
    EXPECT_EQ(big, big_copy);
    EXPECT_EQ(p.Run("test:echo", big), big_copy);
    constexpr int kTasks = 4, kCalls = 20;
    std::atomic<int> right{0};
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int t = 0; t < kTasks; ++t) {
        tg.Spawn([&] {
          for (int i = 0; i < kCalls; ++i) {
            if (p.Run("test:echo", i % 2 ? big : small) ==
                (i % 2 ? big_copy : small_copy)) {
              ++right;
            }
          }
        });
      }
    });
    EXPECT_EQ(right.load(), kTasks * kCalls);
    EXPECT_EQ(small, small_copy);
    EXPECT_EQ(big, big_copy);
  });
}

// `Actor/Stats` counts the streams that are open: none in an actor that
// only answered a call (not the dialogs it built ahead for streams to come),
// one per context with it while they run, none again once they ended.
TEST_F(RuntimeTest, StatsCountTheDialogsThatAreOpen) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    auto stub = v1::Actor::NewStub(
        grpc::CreateChannel(p.addr(), grpc::InsecureChannelCredentials()));
    auto open_dialogs = [&]() -> int64_t {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      v1::ActorStats stats;
      const grpc::Status st = stub->Stats(&ctx, v1::StatsRequest(), &stats);
      EXPECT_TRUE(st.ok()) << st.error_message();
      return st.ok() ? stats.open_dialogs() : -1;
    };
    EXPECT_EQ(p.Run("test:pid").AsInt(), p.aid().pid());
    EXPECT_EQ(open_dialogs(), 0);
    const Payload result =
        p.OpenContext("test:count_items", Payload(),
                      [&](Context& ctx, const Payload&) {
                        MsgStream stream = ctx.OpenStream();
                        stream.Send(1);
                        EXPECT_EQ(open_dialogs(), 1);
                        // A second one: the task table lists the
                        // longest-running task first.
                        p.OpenContext(
                            "test:count_items", Payload(),
                            [&](Context& inner, const Payload&) {
                              EXPECT_EQ(open_dialogs(), 2);
                              grpc::ClientContext c;
                              c.set_deadline(absl::ToChronoTime(
                                  absl::Now() + absl::Seconds(10)));
                              v1::ActorStats stats;
                              ASSERT_TRUE(
                                  stub->Stats(&c, v1::StatsRequest(), &stats)
                                      .ok());
                              ASSERT_EQ(stats.tasks_size(), 2);
                              EXPECT_EQ(stats.tasks(0).cid(), ctx.cid());
                              EXPECT_EQ(stats.tasks(1).cid(), inner.cid());
                              inner.OpenStream().Close();
                            });
                        stream.Send(2);
                        stream.Close();
                      });
    EXPECT_EQ(result.AsInt(), 2);
    EXPECT_TRUE(testing::WaitFor([&] { return open_dialogs() == 0; },
                                 absl::Seconds(10)))
        << open_dialogs();
  });
}

TEST_F(RuntimeTest, TwoChildrenAnswerConcurrently) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal a = an.StartActor("a", kTestNs);
      Portal b = an.StartActor("b", kTestNs);
      int64_t pa = 0, pb = 0;
      TaskGroup::Open([&](TaskGroup& tg) {
        tg.Spawn([&] { pa = a.Run("test:pid").AsInt(); });
        tg.Spawn([&] { pb = b.Run("test:pid").AsInt(); });
      });
      EXPECT_EQ(pa, a.aid().pid());
      EXPECT_EQ(pb, b.aid().pid());
      EXPECT_NE(pa, pb);
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, RemoteErrorIsBoxedWithTypeSourceAndTraceback) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("thrower", kTestNs);
      try {
        p.Run("test:boom", "kaboom");
        ADD_FAILURE() << "no error raised";
      } catch (const RemoteActorError& e) {
        EXPECT_EQ(e.TypeName(), "RemoteActorError");
        EXPECT_EQ(e.boxed_type(), "std::runtime_error");
        EXPECT_EQ(e.src_type(), "std::runtime_error");
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
        EXPECT_EQ(e.src().name(), "thrower");
        EXPECT_EQ(e.remote_message(), "kaboom");
        EXPECT_NE(e.traceback().find("kaboom"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("kaboom"), std::string::npos);
        EXPECT_FALSE(e.IsInception());
      }
      // The actor survives its task's error.
      EXPECT_EQ(p.Run("test:echo", 7).AsInt(), 7);
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, NamespaceNotEnabledRaisesModuleNotExposed) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("guarded", kTestNs);
      try {
        p.Run("secret:peek");
        ADD_FAILURE() << "no error raised";
      } catch (const ModuleNotExposed& e) {
        EXPECT_EQ(e.boxed_type(), "ModuleNotExposed");
        EXPECT_EQ(e.src_uid(), p.aid().uuid());
        EXPECT_NE(e.remote_message().find("'secret'"), std::string::npos);
        EXPECT_NE(e.remote_message().find("enable_modules"), std::string::npos);
      }
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, UnknownFunctionRaisesFunctionNotFoundNamingIt) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("plain", kTestNs);
      try {
        p.Run("test:no_such_function");
        ADD_FAILURE() << "no error raised";
      } catch (const FunctionNotFound& e) {
        EXPECT_EQ(e.boxed_type(), "FunctionNotFound");
        EXPECT_NE(e.remote_message().find("test:no_such_function"),
                  std::string::npos);
      }
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, WrongArgumentTypeRaisesMsgTypeError) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("typed", kTestNs);
      try {
        p.Run("test:twice", "not a number");
        ADD_FAILURE() << "no error raised";
      } catch (const MsgTypeError& e) {
        EXPECT_EQ(e.expected_msg_type(), "Start");
        EXPECT_NE(e.remote_message().find("integer"), std::string::npos);
      }
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, IntegerOutsideTheParameterRangeRaisesMsgTypeErrorNamingIt) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    struct Case {
      const char* func;
      double arg;
      const char* range;
    };
    for (const Case& c :
         {Case{"test:twice", 1e300,
               "integer in [-9223372036854775808, 9223372036854775807]"},
          Case{"test:negate", 3e10, "integer in [-2147483648, 2147483647]"},
          Case{"test:negate", -1e300, "integer in [-2147483648, 2147483647]"}}) {
      try {
        p.Run(c.func, Payload(c.arg));
        ADD_FAILURE() << c.func << "(" << c.arg << "): no error raised";
      } catch (const MsgTypeError& e) {
        EXPECT_EQ(e.expected_msg_type(), "Start");
        EXPECT_NE(e.remote_message().find(c.range), std::string::npos)
            << e.remote_message();
      }
    }
    EXPECT_EQ((p.Run<int, int>("test:negate", 2147483647)), -2147483647);
  });
}

TEST_F(RuntimeTest, MessageArgumentWhoseBytesDoNotParseRaisesMsgTypeError) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    v1::Payload bad;
    bad.mutable_message()->set_type_url("type.googleapis.com/tractor.v1.Aid");
    bad.mutable_message()->set_value(std::string("\x0a\xff\xff\xff", 4));
    try {
      Payload got = p.Run("test:aid_name", Payload(bad));
      ADD_FAILURE() << "no error raised; the function saw " << got;
    } catch (const MsgTypeError& e) {
      EXPECT_EQ(e.expected_msg_type(), "Start");
      EXPECT_NE(e.remote_message().find("tractor.v1.Aid"), std::string::npos)
          << e.remote_message();
    }
    v1::Aid aid;
    aid.set_name("fine");
    EXPECT_EQ(p.Run("test:aid_name", Payload::Message(aid)).AsString(), "fine");
  });
}

// The number of threads of process `pid`.
int ThreadsOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// A foreign client opens far more dialogs than the child's max_tasks (8):
// the first 8 run, every other Start is refused at once with ActorTooBusy,
// the child's threads stay bounded, a unary call is refused with
// RESOURCE_EXHAUSTED, and the slots come back when the tasks end.
TEST_F(RuntimeTest, DialogsBeyondMaxTasksAreRefusedAtOnceWithBoundedThreads) {
  constexpr int kMax = 8;
  constexpr int kOpened = 400;
  ActorOptions opts = kTestNs;
  opts.max_tasks = kMax;
  opts.single_task = false;
  testing::WithChild(opts, [&](Portal& p) {
    const pid_t pid = p.aid().pid();
    const int threads_before = ThreadsOf(pid);
    auto channel = grpc::CreateChannel(p.addr(), grpc::InsecureChannelCredentials());
    auto stub = v1::Actor::NewStub(channel);
    struct Open {
      std::unique_ptr<grpc::ClientContext> ctx;
      std::unique_ptr<grpc::ClientReaderWriter<v1::Msg, v1::Msg>> stream;
    };
    std::vector<Open> running;
    int refused = 0;
    int other = 0;
    const absl::Time start = absl::Now();
    for (int i = 0; i < kOpened; ++i) {
      Open o;
      o.ctx = std::make_unique<grpc::ClientContext>();
      o.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      o.stream = stub->Open(o.ctx.get());
      v1::Msg m;
      m.mutable_start()->set_cid(absl::StrCat("cid-", i));
      m.mutable_start()->set_func("test:sleep_long");
      ASSERT_TRUE(o.stream->Write(m));
      v1::Msg first;
      ASSERT_TRUE(o.stream->Read(&first)) << "dialog " << i << " got nothing";
      if (first.has_start_ack()) {
        running.push_back(std::move(o));
      } else if (first.has_error() && first.error().boxed_type() == "ActorTooBusy") {
        EXPECT_EQ(first.error().cid(), absl::StrCat("cid-", i));
        ++refused;
        o.stream->WritesDone();
        EXPECT_TRUE(o.stream->Finish().ok());
      } else {
        ++other;
        ADD_FAILURE() << "dialog " << i << ": " << first.ShortDebugString();
      }
    }
    const absl::Duration took = absl::Now() - start;
    const int threads_during = ThreadsOf(pid);
    printf("%d dialogs opened in %.0f ms: %zu running, %d refused "
           "(ActorTooBusy); child threads %d before, %d with them open\n",
           kOpened, absl::ToDoubleMilliseconds(took), running.size(), refused,
           threads_before, threads_during);
    EXPECT_EQ(running.size(), static_cast<size_t>(kMax));
    EXPECT_EQ(refused, kOpened - kMax);
    EXPECT_EQ(other, 0);
    // One pooled thread per running task, nothing per refusal; gRPC may
    // start a few threads of its own under the burst. Refusals are served on
    // pooled threads too, each for a moment: on a loaded machine a thread
    // that has just refused one has not yet gone back to the pool when the
    // next dialog arrives, so the burst's peak depends on scheduling (never
    // on the number refused), and the pool's idle workers leave after a
    // second. Once they have, what is left is the running tasks' threads.
    EXPECT_LE(threads_during, threads_before + kMax + 64);
    int threads_settled = 0;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          threads_settled = ThreadsOf(pid);
          return threads_settled <= threads_before + kMax + 16;
        },
        absl::Seconds(5)))
        << threads_settled << " threads with " << kMax
        << " tasks running, " << threads_before << " before";

    // Unary: refused with RESOURCE_EXHAUSTED carrying the Error; the C++
    // portal raises it as ActorTooBusy.
    grpc::ClientContext unary;
    v1::Msg call;
    call.mutable_start()->set_cid("unary-1");
    call.mutable_start()->set_func("test:pid");
    v1::Msg reply;
    grpc::Status st = stub->Call(&unary, call, &reply);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(st.error_message().find("max_tasks"), std::string::npos)
        << st.error_message();
    try {
      p.Run("test:pid");
      ADD_FAILURE() << "a call beyond max_tasks ran";
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(e.boxed_type(), "ActorTooBusy");
    }

    // The running tasks end (their callers go away): the slots come back.
    for (auto& o : running) o.ctx->TryCancel();
    for (auto& o : running) o.stream->Finish();
    running.clear();
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          try {
            return p.Run("test:pid").AsInt() == pid;
          } catch (const RemoteActorError&) {
            return false;
          }
        },
        absl::Seconds(5)))
        << "the slots of the ended tasks never came back";
  });
}

using testing::ThreadNamesOf;

// Every thread the runtime starts in a child is named after its role
// ("tr-..."); the others are the main thread (the actor's name) and gRPC's
// own (its names: "grpcpp_sync_ser", "nexting_thread", ...). A pool worker
// used to keep the name of the gRPC thread that started it.
TEST_F(RuntimeTest, EveryThreadOfAChildIsNamedAfterItsRole) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    // A dialog's task and a unary call's run on pooled threads.
    p.OpenContext("test:ctx_echo", int64_t{1}, [](Context&, const Payload&) {});
    EXPECT_EQ(p.Run("test:pid").AsInt(), p.aid().pid());
    // A thread names itself when it starts, so on a loaded machine one may
    // not have run yet.
    std::map<std::string, int> names;
    testing::WaitFor(
        [&] {
          names = ThreadNamesOf(p.aid().pid());
          return names.count("tr-task") && names.count("tr-call-watcher") &&
                 names.count("tr-registrant");
        },
        absl::Seconds(5));
    std::string all;
    for (const auto& [name, n] : names) absl::StrAppend(&all, name, " x", n, ", ");
    printf("threads of the child: %s\n", all.c_str());
    EXPECT_TRUE(names.count("tr-task")) << all;
    // The link to the parent has no thread: its completions come on the
    // accept queue (actor/internal/parent_link.h).
    EXPECT_FALSE(names.count("tr-parent-link")) << all;
    EXPECT_TRUE(names.count("tr-call-watcher")) << all;
    EXPECT_TRUE(names.count("tr-registrant")) << all;
    // No gRPC sync server: every method is served from the accept queue
    // (the control methods were on the sync API, which kept a thread).
    EXPECT_FALSE(names.count("grpcpp_sync_ser")) << all;
  });
}

// Every process of a tree keeps a CPU awake after its I/O with one spinning
// thread (actor/internal/busy_wait.h); a child inherits the window, and a
// zero window, for the tree or for one child, starts no such thread.
TEST_F(RuntimeTest, TheBusyWaitIsInheritedAndCanBeTurnedOff) {
  auto spinners_of = [](pid_t pid) {
    auto names = ThreadNamesOf(pid);
    auto it = names.find("tr-busy-wait");
    return it == names.end() ? 0 : it->second;
  };
  ActorOptions off = kTestNs;
  off.busy_wait = absl::ZeroDuration();
  RootOptions root;
  root.busy_wait = absl::Microseconds(150);
  OpenRootActor(root, [&] {
    EXPECT_TRUE(testing::WaitFor([&] { return spinners_of(getpid()) == 1; },
                                 absl::Seconds(5)))
        << spinners_of(getpid());
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal a = an.StartActor("a", kTestNs);
      Portal b = an.StartActor("b", off);
      EXPECT_EQ(a.Run("test:pid").AsInt(), a.aid().pid());
      EXPECT_EQ(b.Run("test:pid").AsInt(), b.aid().pid());
      EXPECT_TRUE(testing::WaitFor(
          [&] { return spinners_of(a.aid().pid()) == 1; }, absl::Seconds(5)))
          << spinners_of(a.aid().pid());
      EXPECT_EQ(spinners_of(b.aid().pid()), 0);
    });
  });
  // Stopped with the runtime (which does not wait for the thread to end).
  EXPECT_TRUE(testing::WaitFor([&] { return spinners_of(getpid()) == 0; },
                               absl::Seconds(5)));
  root.busy_wait = absl::ZeroDuration();
  OpenRootActor(root, [&] {
    EXPECT_EQ(spinners_of(getpid()), 0);
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal a = an.StartActor("a", kTestNs);
      EXPECT_EQ(a.Run("test:pid").AsInt(), a.aid().pid());
      EXPECT_EQ(spinners_of(a.aid().pid()), 0);
    });
  });
}

// The voluntary context switches of process `pid`'s threads named `name`
// (/proc/<pid>/task/*/status), summed; nullopt when it has no such thread.
std::optional<int64_t> SwitchesOf(pid_t pid, const std::string& name) {
  std::optional<int64_t> total;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream comm(absl::StrCat(dir, "/", e->d_name, "/comm"));
      std::string thread;
      if (!std::getline(comm, thread) || thread != name) continue;
      std::ifstream status(absl::StrCat(dir, "/", e->d_name, "/status"));
      std::string line;
      while (std::getline(status, line)) {
        int64_t n;
        if (absl::StartsWith(line, "voluntary_ctxt_switches:") &&
            absl::SimpleAtoi(line.substr(line.find(':') + 1), &n)) {
          total = total.value_or(0) + n;
        }
      }
    }
    closedir(d);
  }
  return total;
}

// An idle actor's dialog watcher sleeps. It looks at the live dialogs every
// few milliseconds while there are any, and a call the acceptor requested
// is not watched until it arrives; it used to be, so the watcher of every
// idle actor woke about 900 times a second, which on 2 cores slowed the
// teardown of 25 idle children several times over (bench row 7a).
TEST_F(RuntimeTest, AnIdleChildsDialogWatcherSleeps) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    // One dialog, so that the child's watcher runs and has had work.
    p.OpenContext("test:ctx_echo", int64_t{1}, [](Context&, const Payload&) {});
    const pid_t pid = p.aid().pid();
    // It lingers a second after the last dialog, then sleeps: no switch of
    // its thread for 200 ms.
    std::optional<int64_t> last = SwitchesOf(pid, "tractor-dwatch");
    absl::Time unchanged_since = absl::Now();
    const bool asleep = testing::WaitFor(
        [&] {
          const std::optional<int64_t> now = SwitchesOf(pid, "tractor-dwatch");
          if (now != last) {
            last = now;
            unchanged_since = absl::Now();
            return false;
          }
          return absl::Now() - unchanged_since >= absl::Milliseconds(200);
        },
        absl::Seconds(6));
    EXPECT_TRUE(asleep) << "the idle child's dialog watcher kept waking ("
                        << last.value_or(-1) << " switches)";
  });
}

TEST_F(RuntimeTest, CancelIdleChildEndsItsProcess) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("idle", kTestNs);
      pid_t pid = p.aid().pid();
      EXPECT_TRUE(p.CancelActor());
      // The nursery's exit waits for the daemon to exit and reaps it.
      (void)pid;
    });
  });
  EXPECT_TRUE(testing::Descendants(getpid()).empty());
}

TEST_F(RuntimeTest, CancellingACallCancelsTheRemoteTask) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("sleeper", kTestNs);
      absl::Time t0 = absl::Now();
      EXPECT_FALSE(MoveOnAfter(absl::Milliseconds(200),
                               [&] { p.Run("test:sleep_long"); }));
      EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
      // The remote task was cancelled.
      EXPECT_TRUE(testing::WaitFor(
          [&] { return p.Run("test:cancels").AsInt() == 1; }, absl::Seconds(2)));
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, CancelActorOnTheRootCancelsItsBlockAndTearsDownTheTree) {
  absl::Time t0 = absl::Now();
  bool after_call = false;
  OpenRootActor({}, [&] {
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("canceller", kTestNs);
      an.StartActor("bystander", kTestNs);
      // The child cancels the root while the root waits for its answer.
      p.Run("test:cancel_actor_at", AcceptAddrs().at(0));
      after_call = true;
      Sleep(absl::Seconds(10));
    });
    ADD_FAILURE() << "the root's block went on after it was cancelled";
  });
  EXPECT_FALSE(after_call);
  EXPECT_LT(absl::Now() - t0, discovery::ScaleTimeout(absl::Seconds(3)));
  // The fixture checks that no child outlived the root.
}

TEST_F(RuntimeTest, AChildOnThisHostIsReachedOverItsSameHostSocket) {
  const std::string dir = absl::StrCat("/tmp/tractor-", geteuid(), "/");
  // A TCP registry (the per-test default is a unix socket, which the root
  // would also advertise).
  OpenRootActor({.registry_addrs = {"127.0.0.1:0"}}, [&] {
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("local", kTestNs);
      ASSERT_EQ(p.addr().rfind("unix:" + dir, 0), 0u) << p.addr();
      EXPECT_EQ(p.Run("test:twice", 21).AsInt(), 42);
      // The socket's directory is private to this user.
      struct stat st;
      ASSERT_EQ(stat(dir.c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 077, 0u);
      EXPECT_EQ(st.st_uid, geteuid());
      // A portal made from a TCP address moves to the socket once the
      // actor's Info names this host.
      Portal self = Portal::Connect(AcceptAddrs().at(0));
      EXPECT_EQ(self.addr().rfind("unix:" + dir, 0), 0u) << self.addr();
      // The socket is not one of the addresses the actor advertises.
      for (const auto& a : AcceptAddrs()) EXPECT_EQ(a.rfind("unix:", 0), std::string::npos) << a;
      const std::string path = p.addr().substr(5);
      an.Cancel();
      EXPECT_NE(access(path.c_str(), F_OK), 0)
          << "the child left its socket file behind";
    });
  });
}

TEST_F(RuntimeTest, WithoutTheSameHostSocketAChildIsReachedOverTcp) {
  OpenRootActor({.same_host_socket = false}, [] {
    OpenNursery([](ActorNursery& an) {
      ActorOptions options = kTestNs;
      options.same_host_socket = false;
      Portal p = an.StartActor("tcp-only", options);
      EXPECT_EQ(p.addr().rfind("127.0.0.1:", 0), 0u) << p.addr();
      EXPECT_EQ(p.Run("test:twice", 2).AsInt(), 4);
      Portal self = Portal::Connect(AcceptAddrs().at(0));
      EXPECT_EQ(self.addr(), AcceptAddrs().at(0));
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, AChildProcessIsNamedAfterItsActor) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("a-long-actor-name", kTestNs);
      std::ifstream comm(absl::StrCat("/proc/", p.aid().pid(), "/comm"));
      std::string name;
      std::getline(comm, name);
      EXPECT_EQ(name, "a-long-actor-na");  // the kernel keeps 15 bytes
      an.Cancel();
    });
  });
}

// TRACTOR_CHILD_WRAPPER: a child is exec'd through the wrapper, with this
// program's path as its argument, and runs as usual.
TEST_F(RuntimeTest, AChildStartsThroughTheWrapperProgram) {
  char dir_template[] = "/tmp/tr_wrap.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string wrapper = dir + "/wrap", ran = dir + "/ran";
  {
    std::ofstream w(wrapper);
    w << "#!/bin/sh\necho \"$1\" > " << ran << "\nexec \"$1\"\n";
  }
  ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
  ASSERT_EQ(setenv("TRACTOR_CHILD_WRAPPER", wrapper.c_str(), 1), 0);
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("wrapped", kTestNs);
      EXPECT_EQ(p.Run("test:pid").AsInt(), p.aid().pid());
      an.Cancel();
    });
  });
  unsetenv("TRACTOR_CHILD_WRAPPER");
  std::string path;
  std::getline(std::ifstream(ran), path);
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  EXPECT_EQ(path, std::string(self, n));
  unlink(ran.c_str());
  unlink(wrapper.c_str());
  rmdir(dir.c_str());
}

TEST_F(RuntimeTest, RunInActorResultIsReadableAfterTheNurseryExits) {
  OpenRootActor({}, [] {
    Portal p;
    OpenNursery([&](ActorNursery& an) {
      p = an.RunInActor("worker", "test:twice", 50);
      EXPECT_EQ(p.Result().AsInt(), 100);
    });
    EXPECT_EQ(p.Result().AsInt(), 100);
  });
}

TEST_F(RuntimeTest, FailingRunInActorCancelsSiblingsAndRaises) {
  OpenRootActor({}, [] {
    try {
      OpenNursery([&](ActorNursery& an) {
        an.StartActor("daemon", kTestNs);
        an.RunInActor("failer", "test:boom", "child failed");
      });
      ADD_FAILURE() << "nursery did not raise";
    } catch (const RemoteActorError& e) {
      EXPECT_EQ(e.boxed_type(), "std::runtime_error");
      EXPECT_EQ(e.src().name(), "failer");
    }
  });
}

TEST_F(RuntimeTest, ErrorInNurseryBodyCancelsChildren) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenNursery([&](ActorNursery& an) {
                   an.StartActor("a", kTestNs);
                   an.StartActor("b", kTestNs);
                   throw std::logic_error("body failed");
                 }),
                 std::logic_error);
  });
}

TEST_F(RuntimeTest, MalformedDialogGetsAnErrorAndTheActorSurvives) {
  OpenRootActor({}, [] {
    testing::OpenNurseryThenCancel([](ActorNursery& an) {
      Portal p = an.StartActor("robust", kTestNs);
      auto stub = v1::Actor::NewStub(grpc::CreateChannel(
          p.addr(), grpc::InsecureChannelCredentials()));
      {
        // A dialog must begin with Start.
        grpc::ClientContext ctx;
        auto stream = stub->Open(&ctx);
        v1::Msg bad;
        bad.mutable_yielded()->mutable_payload()->set_raw("junk");
        ASSERT_TRUE(stream->Write(bad));
        v1::Msg reply;
        ASSERT_TRUE(stream->Read(&reply));
        ASSERT_TRUE(reply.has_error());
        EXPECT_EQ(reply.error().boxed_type(), "MessagingError");
        stream->WritesDone();
        EXPECT_TRUE(stream->Finish().ok());
      }
      {
        // A Start without a cid.
        grpc::ClientContext ctx;
        auto stream = stub->Open(&ctx);
        v1::Msg start;
        start.mutable_start()->set_func("test:echo");
        ASSERT_TRUE(stream->Write(start));
        v1::Msg reply;
        ASSERT_TRUE(stream->Read(&reply));
        ASSERT_TRUE(reply.has_error());
        EXPECT_NE(reply.error().message().find("cid"), std::string::npos);
        stream->WritesDone();
        stream->Finish();
      }
      EXPECT_EQ(p.Run("test:echo", "still alive").AsString(), "still alive");
    });
  });
}

TEST_F(RuntimeTest, OversizedPayloadGetsAClearErrorAndTheActorSurvives) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("big", kTestNs);
      try {
        p.Run("test:echo", Payload::Raw(std::string(65 << 20, 'x')));
        ADD_FAILURE() << "an oversized payload went through";
      } catch (const TransportClosed& e) {
        EXPECT_NE(std::string(e.what()).find("larger than max"), std::string::npos)
            << e.what();
      }
      EXPECT_EQ(p.Run("test:echo", "fine").AsString(), "fine");
      an.Cancel();
    });
  });
}

TEST_F(RuntimeTest, ApiWithoutRuntimeRaisesNoRuntime) {
  EXPECT_THROW(CurrentActor(), NoRuntime);
  EXPECT_THROW(OpenNursery([](ActorNursery&) {}), NoRuntime);
}

TEST_F(RuntimeTest, SecondRootInOneProcessRaisesRuntimeFailure) {
  OpenRootActor({}, [] {
    EXPECT_THROW(OpenRootActor({}, [] {}), RuntimeFailure);
  });
  // After the first root exits, a new one may open.
  OpenRootActor({}, [] { EXPECT_EQ(CurrentActor().name(), "root"); });
}

TEST_F(RuntimeTest, CallToAKilledActorRaisesTransportClosed) {
  OpenRootActor({}, [] {
    // The killed daemon also fails its nursery (ActorFailure).
    EXPECT_THROW(OpenNursery([](ActorNursery& an) {
                   Portal p = an.StartActor("victim", kTestNs);
                   kill(p.aid().pid(), SIGKILL);
                   try {
                     p.Run("test:echo", 1);
                     ADD_FAILURE() << "call to a killed actor succeeded";
                   } catch (const TransportClosed& e) {
                     EXPECT_NE(std::string(e.what()).find("victim"),
                               std::string::npos);
                   }
                 }),
                 ActorFailure);
  });
}

}  // namespace
}  // namespace tractor

namespace tractor {
namespace {

TEST_F(RuntimeTest, ResultOfAFunctionThatReturnedNullIsNullEveryTime) {
  OpenRootActor({}, [] {
    Portal p;
    OpenNursery([&](ActorNursery& an) {
      p = an.RunInActor("worker", "test:nothing");
      EXPECT_TRUE(p.Result().IsNull());
      EXPECT_TRUE(p.Result().IsNull());
    });
    EXPECT_TRUE(p.Result().IsNull());
  });
}

TEST_F(RuntimeTest, CancelActorRaisesActorTooSlowErrorOnTimeoutWhenAsked) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        try {
          p.Run("test:shielded_sleep", 1500);
        } catch (const ActorError&) {
          // Ended by the cancel once the shielded sleep is over.
        }
      });
      ASSERT_TRUE(testing::WaitFor(
          [&] { return p.Run("test:shielded_running").AsBool(); },
          absl::Seconds(5)));
      EXPECT_FALSE(p.CancelActor(absl::Milliseconds(100)));
      try {
        p.CancelActor(absl::Milliseconds(100), /*raise_on_timeout=*/true);
        ADD_FAILURE() << "no ActorTooSlowError";
      } catch (const ActorTooSlowError& e) {
        EXPECT_NE(std::string(e.what()).find("child"), std::string::npos)
            << e.what();
      }
    });
  });
}

// One unary call of `method` on the actor at `addr`, its request the raw
// bytes `request`, sent with `deadline`; returns its status, the reply's
// bytes in `*reply`. On a completion queue of its own (no callback API in
// the test's root actor).
grpc::Status RawUnary(const std::string& addr, const std::string& method,
                      const std::string& request, absl::Duration deadline,
                      std::string* reply = nullptr) {
  return testing::RawUnary(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()), method,
      request, deadline, reply);
}

std::string CancelActorBytes(const std::string& requester) {
  v1::CancelActorRequest req;
  req.mutable_requester()->set_name(requester);
  req.mutable_requester()->set_uuid(requester + "-uuid");
  return req.SerializeAsString();
}

constexpr char kCancelActorMethod[] = "/tractor.v1.Actor/CancelActor";

TEST_F(RuntimeTest, MalformedCancelActorIsRefusedAndTheActorServesOn) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    // A length-delimited field 1 that claims 5 bytes and has 2.
    grpc::Status status = RawUnary(p.addr(), kCancelActorMethod,
                                   std::string("\x0a\x05" "ab", 4),
                                   absl::Seconds(10));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_NE(status.error_message().find("Actor.CancelActor request"),
              std::string::npos)
        << status.error_message();
    // Not cancelled: it still serves, and a well-formed request after it is
    // answered.
    EXPECT_EQ(p.Run("test:twice", 21).AsInt(), 42);
    std::string bytes;
    status = RawUnary(p.addr(), kCancelActorMethod, CancelActorBytes("tester"),
                      absl::Seconds(10), &bytes);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::CancelActorReply reply;
    ASSERT_TRUE(reply.ParseFromString(bytes));
    EXPECT_TRUE(reply.ok());
  });
}

TEST_F(RuntimeTest, TwoConcurrentCancelActorsAreBothAnsweredOnceTheTasksEnd) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    std::atomic<bool> task_ended{false};
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        try {
          p.Run("test:shielded_sleep", 400);
        } catch (const std::exception&) {
          // Cancelled once the shielded sleep is over.
        }
        task_ended = true;
      });
      ASSERT_TRUE(testing::WaitFor(
          [&] { return p.Run("test:shielded_running").AsBool(); },
          absl::Seconds(5)));
      // Both sent before either can be answered: the task still sleeps.
      auto channel =
          grpc::CreateChannel(p.addr(), grpc::InsecureChannelCredentials());
      auto stub = v1::Actor::NewStub(channel);
      grpc::CompletionQueue cq;
      struct Ask {
        grpc::ClientContext ctx;
        v1::CancelActorReply reply;
        grpc::Status status;
        std::unique_ptr<grpc::ClientAsyncResponseReader<v1::CancelActorReply>>
            call;
      } asks[2];
      for (int i = 0; i < 2; ++i) {
        asks[i].ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        discovery::AttachSecret(&asks[i].ctx);
        v1::CancelActorRequest req;
        req.mutable_requester()->set_name(absl::StrCat("canceller-", i));
        req.mutable_requester()->set_uuid(absl::StrCat("uuid-", i));
        asks[i].call = stub->AsyncCancelActor(&asks[i].ctx, req, &cq);
        asks[i].call->Finish(&asks[i].reply, &asks[i].status, &asks[i]);
      }
      for (int n = 0; n < 2; ++n) {
        void* tag = nullptr;
        bool ok = false;
        ASSERT_TRUE(cq.Next(&tag, &ok));
        EXPECT_TRUE(ok);
      }
      for (auto& a : asks) {
        EXPECT_TRUE(a.status.ok()) << a.status.error_message();
        EXPECT_TRUE(a.reply.ok());
      }
      cq.Shutdown();
      void* tag;
      bool ok;
      while (cq.Next(&tag, &ok)) {
      }
    });
    EXPECT_TRUE(task_ended);
  });
}

TEST_F(RuntimeTest, CancelActorWhoseCallerWentAwayDoesNotHoldUpTheExit) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    const pid_t pid = p.aid().pid();
    TaskGroup::Open([&](TaskGroup& tg) {
      tg.Spawn([&] {
        try {
          p.Run("test:shielded_sleep", 1500);
        } catch (const std::exception&) {
          // Cancelled once the shielded sleep is over, or the child is gone.
        }
      });
      ASSERT_TRUE(testing::WaitFor(
          [&] { return p.Run("test:shielded_running").AsBool(); },
          absl::Seconds(5)));
      // The caller goes away once the child took its request (its health
      // turns NOT_SERVING as its exit starts), long before the task ends,
      // so it is gone when the reply is sent.
      auto channel =
          grpc::CreateChannel(p.addr(), grpc::InsecureChannelCredentials());
      auto stub = v1::Actor::NewStub(channel);
      grpc::CompletionQueue cq;
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      discovery::AttachSecret(&ctx);
      v1::CancelActorRequest req;
      req.mutable_requester()->set_name("hasty");
      req.mutable_requester()->set_uuid("hasty-uuid");
      v1::CancelActorReply reply;
      grpc::Status status;
      auto call = stub->AsyncCancelActor(&ctx, req, &cq);
      call->Finish(&reply, &status, &status);
      EXPECT_TRUE(testing::WaitFor(
          [&] {
            std::string health;
            return RawUnary(p.addr(), "/grpc.health.v1.Health/Check", "",
                            absl::Seconds(5), &health)
                       .ok() &&
                   health == std::string("\x08\x02", 2);  // NOT_SERVING
          },
          discovery::ScaleTimeout(absl::Seconds(5))));
      ctx.TryCancel();
      void* tag = nullptr;
      bool ok = false;
      ASSERT_TRUE(cq.Next(&tag, &ok));
      EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED)
          << status.error_message();
      cq.Shutdown();
      while (cq.Next(&tag, &ok)) {
      }
      // The child exits on its own once the task ended, and is reaped.
      EXPECT_TRUE(testing::WaitFor(
          [&] { return testing::Descendants(getpid()).count(pid) == 0; },
          discovery::ScaleTimeout(absl::Seconds(5))));
    });
  });
}

TEST_F(RuntimeTest, IsRootProcessIsTrueOnlyInTheRoot) {
  EXPECT_FALSE(IsRootProcess());
  testing::WithChild(kTestNs, [&](Portal& p) {
    EXPECT_TRUE(IsRootProcess());
    EXPECT_FALSE(p.Run("test:is_root").AsBool());
  });
  EXPECT_FALSE(IsRootProcess());
}

TEST_F(RuntimeTest, GetRootReachesTheRootFromAChildAndFromTheRoot) {
  testing::WithChild(kTestNs, [&](Portal& p) {
    EXPECT_EQ(p.Run("test:root_uuid").AsString(), CurrentActor().uuid());
    Portal root = GetRoot();
    EXPECT_EQ(root.aid().uuid(), CurrentActor().uuid());
    EXPECT_EQ(root.aid().name(), "root");
  });
}

}  // namespace
}  // namespace tractor
