// SPDX-License-Identifier: AGPL-3.0-or-later
// Actor nurseries: spawning, supervision and the teardown ladder.
#include "actor/nursery.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>
#include <string>
#include <optional>
#include <thread>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/child_proc.h"
#include "actor/internal/gate.h"
#include "actor/internal/portal_state.h"
#include "actor/internal/runtime.h"
#include "actor/internal/scope.h"
#include "actor/internal/spawn.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "discovery/log_level.h"
#include "discovery/credentials.h"
#include "discovery/mutex.h"
#include "discovery/uuid.h"
#include "glog/logging.h"
#include "discovery/thread_name.h"

namespace tractor {
namespace internal {
namespace {

constexpr absl::Duration kCancelAckWindow = absl::Milliseconds(500);
constexpr absl::Duration kExitAfterAck = absl::Seconds(3);
constexpr absl::Duration kTermGrace = absl::Milliseconds(1600);
// How long a child whose link was dropped gets to turn out to have died (a
// crash, a kill) before it is declared unresponsive; a dead child is a
// zombie by the time its connection drops, so this is short.
constexpr absl::Duration kExitAfterLinkLoss = discovery::kHangVerdictTime;

// The state letter of `pid` in /proc (R, S, D, T, t, Z, ...); 'X' when it
// is gone.
char ProcState(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return 'X';
  // "<pid> (<comm>) <state> ...": the state follows the last ')'.
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return '?';
  return line[paren + 2];
}

// True when `pid` is gone or a zombie (it died; the reaper reports how).
bool Died(pid_t pid) {
  const char state = ProcState(pid);
  return state == 'Z' || state == 'X';
}

// True when `pid` is stopped (SIGSTOP, a debugger's stop).
bool Stopped(pid_t pid) {
  const char state = ProcState(pid);
  return state == 'T' || state == 't';
}
// How long a broken transport waits for its child's exit to be reaped, to
// report the exit (a signal, a crash report) rather than the transport.
constexpr absl::Duration kDeathWindow = absl::Seconds(2);

// Waits for the child process to exit, up to `until`. Returns true if it
// exited. A checkpoint unless called shielded.
bool WaitExited(ChildProc& proc, absl::Time until) {
  MutexLock lk(&proc.mu);
  return Wait(
      proc.cv, proc.mu,
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(proc.mu) { return proc.exited; },
      until);
}

}  // namespace

// One child of a nursery, filled in by `Spawn`: `portal`, `portal_state` and
// the final `aid` once the child linked back (it is listed in the nursery's
// `children` before that, so `Spawn` writes them, and `CancelAll` reads
// them, under the nursery's `mu`); `one_shot` by `RunInActor`.
struct ChildEntry {
  v1::Aid aid;
  Portal portal;
  std::shared_ptr<PortalState> portal_state;  // `portal`'s
  std::shared_ptr<ChildProc> proc;
  bool one_shot = false;
};

// State of one OpenNursery block.
class NurseryState {
 public:
  // Records a child's error; `cancel_siblings` also cancels the block (and
  // through it every other child).
  void RecordError(std::exception_ptr e, bool cancel_siblings)
      ABSL_LOCKS_EXCLUDED(mu) {
    {
      MutexLock lock(&mu);
      errors.push_back(std::move(e));
    }
    if (cancel_siblings && scope) scope->Cancel();
  }

  Mutex mu;
  std::vector<std::shared_ptr<ChildEntry>> children ABSL_GUARDED_BY(mu);
  std::vector<std::exception_ptr> errors ABSL_GUARDED_BY(mu);
  bool cancel_called ABSL_GUARDED_BY(mu) = false;
  // The block's scope: set before the body runs, then read-only.
  std::shared_ptr<ScopeState> scope;
  // Held by every child's reaper and every RunInActor result waiter, the
  // helper threads of the block; the block's exit closes it (no child is
  // started after that) and waits for them all to leave.
  Gate helpers;
};

namespace {

std::string DescribeStatus(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return absl::StrCat("was killed by signal ", sig, " (",
                        abbrev ? absl::StrCat("SIG", abbrev, ", ") : "",
                        strsignal(sig), ")");
  }
  if (WEXITSTATUS(status) == kLinkLostExitStatus) {
    return absl::StrCat("exited with status ", kLinkLostExitStatus,
                        " after its link to this parent broke (the link "
                        "stopped answering keepalive pings)");
  }
  return absl::StrCat("exited with status ", WEXITSTATUS(status));
}

}  // namespace

std::exception_ptr ExitFailure(const v1::Aid& aid, pid_t pid, int status,
                               const std::string& crash) {
  return std::make_exception_ptr(ActorFailure(absl::StrCat(
      "child actor '", aid.name(), "' (pid ", pid, ") ", DescribeStatus(status),
      crash.empty() ? "" : "; its crash report:\n", crash)));
}

std::exception_ptr TakeExitFailure(ChildProc& proc, const v1::Aid& aid,
                                   bool* reported_elsewhere) {
  *reported_elsewhere = false;
  {
    auto shielded = NewScope(nullptr, absl::InfiniteFuture(), true);
    ScopeBinding bind(shielded);
    if (!WaitExited(proc, absl::Now() + kDeathWindow)) return nullptr;
  }
  MutexLock lk(&proc.mu);
  if (WIFEXITED(proc.wait_status) && WEXITSTATUS(proc.wait_status) == 0) {
    return nullptr;
  }
  if (proc.exit_reported) {
    *reported_elsewhere = true;
    return nullptr;
  }
  proc.exit_reported = true;
  return ExitFailure(aid, proc.pid, proc.wait_status, proc.crash_report);
}

namespace {

// Reaps the child on a helper thread and wakes waiters. A child that dies
// abnormally while its nursery is not cancelling is a failure of the tree:
// it is recorded and its siblings are cancelled. The thread holds the
// nursery's gate (`hold`) until it is done, instead of being joined.
void StartReaper(std::shared_ptr<ChildProc> proc, v1::Aid aid,
                 std::weak_ptr<NurseryState> nursery, Gate::Holder hold) {
  std::thread([proc, aid, nursery, hold = std::move(hold)]() mutable {
    discovery::NameThisThread("reaper");
    int status = 0;
    while (waitpid(proc->pid, &status, 0) < 0 && errno == EINTR) {
    }
    // The child is gone: whatever its crash handler wrote is in the pipe.
    const std::string crash = ReadCrashReport(proc->crash_fd);
    bool linked;
    {
      MutexLock lk(&proc->mu);
      linked = proc->linked;
    }
    // The failure is recorded before the exit is announced, so a block that
    // wakes on the exit always sees it.
    bool abnormal = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    bool reported = false;
    if (abnormal && linked) {
      if (auto st = nursery.lock()) {
        bool cancelling;
        {
          MutexLock lock(&st->mu);
          cancelling = st->cancel_called;
        }
        if (!cancelling) {
          st->RecordError(ExitFailure(aid, proc->pid, status, crash),
                          /*cancel_siblings=*/true);
          reported = true;
        }
      }
    }
    {
      MutexLock lk(&proc->mu);
      proc->exited = true;
      proc->in_debugger = false;
      proc->wait_status = status;
      proc->crash_report = crash;
      proc->exit_reported = reported;
    }
    proc->cv.SignalAll();
    hold.Leave();  // the last thing this thread does with the nursery
  }).detach();
}

// Called when the child's link was dropped while it neither exited nor said
// bye: its connection stopped answering the server's keepalive pings (see
// `RootOptions::hang_timeout`). Unless the child turns out to have exited
// (reaped within `kExitAfterLinkLoss`), it is a failure of the tree, like a
// crash: recorded as ActorFailure, and its siblings are cancelled; the
// teardown ladder then stops it (SIGTERM, SIGKILL). Runs on its own thread,
// holding the nursery's gate.
void SuspectHang(std::weak_ptr<ChildProc> weak_proc, v1::Aid aid,
                 std::weak_ptr<NurseryState> nursery,
                 absl::Duration hang_timeout) {
  std::thread([weak_proc, aid, nursery, hang_timeout] {
    discovery::NameThisThread("hang-check");
    std::shared_ptr<NurseryState> st = nursery.lock();
    std::shared_ptr<ChildProc> proc = weak_proc.lock();
    if (!st || !proc) return;
    std::optional<Gate::Holder> hold = st->helpers.TryEnter();
    if (!hold) return;
    if (WaitExited(*proc, absl::Now() + kExitAfterLinkLoss)) return;
    if (Died(proc->pid)) return;  // the reaper reports the death
    if (!Stopped(proc->pid)) {
      // A running child whose link ended may be on its way out (its own
      // side of the link broke, and it exits for that): it gets the hang
      // timeout again to do so before it counts as wedged.
      if (WaitExited(*proc, absl::Now() + hang_timeout)) return;
      if (Died(proc->pid)) return;
    }
    {
      MutexLock lock(&st->mu);
      if (st->cancel_called) return;
    }
    const std::string what = absl::StrCat(
        "child actor '", aid.name(), "' (pid ", proc->pid,
        ") is unresponsive: its connection stopped answering keepalive pings");
    LOG(WARNING) << what << "; cancelling its nursery";
    st->RecordError(std::make_exception_ptr(ActorFailure(what)),
                    /*cancel_siblings=*/true);
  }).detach();
}

// Debug mode: the child's link server pings nobody, and the child sends
// heartbeats on its link instead (actor/internal/child_main.cc). A child
// not in the debugger that sends none for `hang_timeout` is suspected of a
// hang as if its link had been dropped (`on_link_lost`); one in the
// debugger is not, however long it stays there, and the count starts again
// from zero when it leaves. Runs on its own thread until the child exits,
// says bye or loses its link.
void WatchHeartbeats(std::weak_ptr<ChildProc> weak_proc,
                     absl::Duration hang_timeout) {
  std::thread([weak_proc, hang_timeout] {
    discovery::NameThisThread("heartbeat-check");
    std::shared_ptr<ChildProc> proc = weak_proc.lock();
    if (!proc) return;
    std::function<void()> suspect;
    {
      MutexLock lk(&proc->mu);
      while (!proc->exited && !proc->link_lost && !proc->said_bye) {
        const absl::Time now = absl::Now();
        if (proc->linked && proc->last_heard == absl::InfinitePast()) {
          proc->last_heard = now;
        }
        if (proc->linked && !proc->in_debugger &&
            now - proc->last_heard > hang_timeout) {
          suspect = std::exchange(proc->on_link_lost, nullptr);
          TRACTOR_LOG(transport) << "keepalive failure: child pid "
                                 << proc->pid << " sent no heartbeat for "
                               << absl::FormatDuration(now - proc->last_heard);
          break;
        }
        proc->cv.WaitWithTimeout(&proc->mu, hang_timeout / 4);
      }
    }
    if (suspect) suspect();
  }).detach();
}

// Graceful cancel, then SIGTERM, then SIGKILL; returns once reaped.
// `portal` and `aid` are the entry's, read by the caller (an empty portal:
// the child has not linked back yet, so it is not asked, only signalled).
void TearDownChild(ChildProc& proc, Portal portal, const v1::Aid& aid,
                   bool hard_kill) {
  auto shielded = NewScope(nullptr, absl::InfiniteFuture(), true);
  ScopeBinding bind(shielded);
  {
    // A child in the debugger (it holds or waits for the tree's terminal
    // lock) is let finish there first: stopped under ptrace, it could
    // neither answer a cancel nor handle a signal.
    MutexLock lk(&proc.mu);
    if (proc.in_debugger && !proc.exited) {
      TRACTOR_LOG(cancel) << "teardown of child '" << aid.name() << "' "
                          << aid.uuid() << " waits for it to leave the "
                          << "debugger";
      while (proc.in_debugger && !proc.exited) proc.cv.Wait(&proc.mu);
    }
  }
  if (!hard_kill) {
    bool acked = false;
    {
      MutexLock lk(&proc.mu);
      acked = proc.exited;
    }
    if (!acked) acked = portal.CancelActor(kCancelAckWindow);
    if (acked && WaitExited(proc, absl::Now() + kExitAfterAck)) return;
    if (!acked) {
      TRACTOR_LOG(cancel) << "child '" << aid.name() << "' " << aid.uuid()
                          << " did not acknowledge cancel within "
                          << absl::FormatDuration(kCancelAckWindow)
                          << "; SIGTERM";
    }
  }
  if (WaitExited(proc, absl::Now())) return;
  kill(proc.pid, SIGTERM);
  // A stopped child (SIGSTOP, a hang detected as such) handles SIGTERM only
  // once continued.
  kill(proc.pid, SIGCONT);
  if (WaitExited(proc, absl::Now() + kTermGrace)) return;
  LOG(WARNING) << "child '" << aid.name() << "' (pid " << proc.pid
               << ") ignored SIGTERM; SIGKILL";
  kill(proc.pid, SIGKILL);
  WaitExited(proc, absl::InfiniteFuture());
}

void CancelAll(NurseryState& st, bool hard_kill) ABSL_LOCKS_EXCLUDED(st.mu) {
  struct Child {
    std::shared_ptr<ChildProc> proc;
    Portal portal;
    v1::Aid aid;
  };
  std::vector<Child> children;
  {
    MutexLock lock(&st.mu);
    st.cancel_called = true;
    for (const auto& c : st.children) {
      children.push_back({c->proc, c->portal, c->aid});
    }
  }
  for (const auto& c : children) {
    TRACTOR_LOG(cancel) << "nursery of actor '" << CurrentActor().name()
                        << "' " << CurrentActor().uuid()
                        << " cancels child '" << c.aid.name() << "' "
                        << c.aid.uuid() << " (pid " << c.proc->pid << ")"
                        << (hard_kill ? " by signal" : "");
  }
  std::vector<std::thread> threads;
  for (auto& c : children) {
    threads.emplace_back([c, hard_kill] {
      discovery::NameThisThread("teardown");
      TearDownChild(*c.proc, c.portal, c.aid, hard_kill);
    });
  }
  for (auto& t : threads) t.join();
}

std::shared_ptr<ChildEntry> Spawn(const std::shared_ptr<NurseryState>& shared,
                                  const std::string& name,
                                  const ActorOptions& options) {
  NurseryState& st = *shared;
  Runtime& rt = Runtime::Require();
  // The reaper's entry into the gate, taken before there is a child to reap.
  std::optional<Gate::Holder> reaper_hold = st.helpers.TryEnter();
  if (!reaper_hold) {
    throw UsageError(absl::StrCat("cannot start child actor '", name,
                                  "': its nursery has exited"));
  }
  auto entry = std::make_shared<ChildEntry>();
  entry->aid.set_name(name);
  entry->aid.set_uuid(discovery::NewUuid());
  v1::SpawnSpec spec;
  *spec.mutable_aid() = entry->aid;
  *spec.mutable_parent() = rt.self();
  auto addrs = rt.accept_addrs();
  std::vector<discovery::Address> parsed;
  for (const auto& a : addrs) {
    if (auto p = discovery::Address::Parse(a); p.ok()) parsed.push_back(*p);
  }
  auto best = discovery::PreferAddress(parsed);
  spec.set_parent_addr(best ? best->ToString() : addrs.at(0));
  for (const auto& b : options.bind_addrs) {
    auto p = discovery::Address::Parse(b);
    if (!p.ok()) {
      throw RuntimeFailure(absl::StrCat("bad bind address for '", name,
                                        "': ", p.status().message()));
    }
    spec.add_bind_addrs(p->ToString());
  }
  for (const auto& r : rt.config().registry_addrs) spec.add_registry_addrs(r);
  // Children register with the same lease as their parent.
  spec.set_lease_ms(absl::ToInt64Milliseconds(rt.config().registry_lease));
  for (const auto& m : options.enable_modules) spec.add_enable_modules(m);
  spec.set_free_threads(!options.single_task);
  spec.set_max_tasks(static_cast<uint32_t>(options.max_tasks));
  spec.set_link_addr(rt.link_addr());
  spec.set_hang_timeout_ms(static_cast<uint32_t>(
      absl::ToInt64Milliseconds(rt.config().hang_timeout)));
  spec.set_no_same_host_socket(!options.same_host_socket);
  spec.set_debug_mode(rt.config().debug_mode);
  spec.set_loglevel(options.loglevel.empty() ? rt.config().loglevel
                                             : options.loglevel);
  spec.set_root_addr(rt.config().root_addr.empty() ? spec.parent_addr()
                                                   : rt.config().root_addr);

  {
    const discovery::Security security = discovery::CurrentSecurity();
    SetInheritedSecurity(security.tls.config, security.secret, &spec);
  }
  spec.set_link_secret(discovery::NewSecret());
  auto proc = rt.ExpectChild(entry->aid.uuid(), spec.link_secret());
  {
    MutexLock lk(&proc->mu);
    const absl::Duration hang_timeout =
        discovery::ScaleTimeout(rt.config().hang_timeout);
    proc->on_link_lost = [hang_timeout,
                          weak_proc = std::weak_ptr<ChildProc>(proc),
                          aid = entry->aid,
                          nursery = std::weak_ptr<NurseryState>(shared)] {
      SuspectHang(weak_proc, aid, nursery, hang_timeout);
    };
  }
  const SpawnedProcess spawned = SpawnProcess(spec);
  proc->pid = spawned.pid;
  proc->crash_fd = spawned.crash_fd;
  entry->proc = proc;
  StartReaper(proc, entry->aid, shared, *std::move(reaper_hold));
  if (rt.config().debug_mode) {
    WatchHeartbeats(proc, discovery::ScaleTimeout(rt.config().hang_timeout));
  }
  bool closing;
  {
    MutexLock lock(&st.mu);
    st.children.push_back(entry);
    // The block's exit closes the gate, and `Cancel` sets `cancel_called`,
    // before either lists the children to cancel: a child listed after
    // that is this call's to stop.
    closing = st.helpers.close_reason().has_value() || st.cancel_called;
  }
  if (closing) {
    TearDownChild(*entry->proc, Portal(), entry->aid, /*hard_kill=*/true);
    throw UsageError(absl::StrCat("child actor '", name,
                                  "' was started while its nursery was "
                                  "cancelled or exited"));
  }
  // Wait until it linked back, exited, or the spawn timeout passed (scaled
  // like the runtime's other timeouts under the sanitizer configurations).
  const absl::Duration spawn_timeout =
      discovery::ScaleTimeout(options.spawn_timeout);
  bool ok;
  try {
    MutexLock lk(&proc->mu);
    ok = Wait(
        proc->cv, proc->mu,
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(proc->mu) {
          return proc->linked || proc->exited;
        },
        absl::Now() + spawn_timeout);
  } catch (...) {
    TearDownChild(*entry->proc, Portal(), entry->aid, /*hard_kill=*/true);
    throw;
  }
  std::string failure;
  {
    MutexLock lk(&proc->mu);
    if (!ok) {
      failure = absl::StrCat("did not link back within ",
                             absl::FormatDuration(spawn_timeout));
    } else if (!proc->linked) {
      failure = absl::StrCat("exited during boot with status ",
                             WIFEXITED(proc->wait_status)
                                 ? WEXITSTATUS(proc->wait_status)
                                 : 128 + WTERMSIG(proc->wait_status));
      if (!proc->crash_report.empty()) {
        absl::StrAppend(&failure, "; its crash report:\n", proc->crash_report);
      }
    }
  }
  if (!failure.empty()) {
    TearDownChild(*entry->proc, Portal(), entry->aid, /*hard_kill=*/true);
    throw RuntimeFailure(absl::StrCat("child actor '", name, "' ", failure));
  }
  auto ps = std::make_shared<PortalState>();
  ps->aid = entry->aid;
  {
    MutexLock lk(&proc->mu);
    std::vector<discovery::Address> child_addrs;
    for (const auto& a : proc->accept_addrs) {
      if (auto p = discovery::Address::Parse(a); p.ok()) child_addrs.push_back(*p);
    }
    auto pick = discovery::PreferAddress(child_addrs);
    ps->addr = !proc->local_addr.empty() ? proc->local_addr
               : pick                    ? pick->ToString()
                                         : proc->accept_addrs.at(0);
  }
  ps->aid.set_pid(proc->pid);
  ps->channel = rt.ChannelTo(ps->addr);
  ps->proc = proc;
  {
    MutexLock lock(&st.mu);
    entry->portal_state = ps;
    entry->portal = Portal(ps);
    entry->aid = ps->aid;
  }
  return entry;
}

}  // namespace
}  // namespace internal

Portal ActorNursery::StartActor(const std::string& name, ActorOptions options) {
  return internal::Spawn(state_, name, options)->portal;
}

Portal ActorNursery::RunInActor(const std::string& name, const std::string& func,
                                const Payload& args, ActorOptions options) {
  std::string ns = func.substr(0, func.find(':'));
  if (std::find(options.enable_modules.begin(), options.enable_modules.end(),
                ns) == options.enable_modules.end()) {
    options.enable_modules.push_back(ns);
  }
  // The result waiter's entry into the gate, taken before the child exists.
  std::optional<internal::Gate::Holder> hold = state_->helpers.TryEnter();
  if (!hold) {
    throw UsageError(absl::StrCat("cannot start child actor '", name,
                                  "': its nursery has exited"));
  }
  auto entry = internal::Spawn(state_, name, options);
  entry->one_shot = true;
  auto ps = entry->portal_state;
  {
    MutexLock lk(&ps->mu);
    ps->has_result_task = true;
  }
  std::shared_ptr<internal::NurseryState> st = state_;
  auto scope = state_->scope;
  // The result waiter runs as a task of this actor inside the nursery. It
  // holds the nursery's gate until it is done, instead of being joined.
  std::thread([st, ps, func, args, scope, entry,
               hold = *std::move(hold)]() mutable {
    discovery::NameThisThread("run-in-actor");
    {
      internal::UserTask task;
      internal::ScopeBinding bind(
          internal::NewScope(scope, absl::InfiniteFuture(), false));
      std::optional<Payload> result;
      std::exception_ptr error;
      bool cancelled = false;
      try {
        result = entry->portal.Run(func, args);
      } catch (const Cancelled&) {
        cancelled = true;
      } catch (...) {
        error = std::current_exception();
      }
      // Like tractor, a one-shot child's error is collected at block exit;
      // children this nursery cancelled are not failures. It is recorded
      // before the result is announced, so a block that waited for the
      // result sees it.
      if (error) {
        bool cancelling;
        {
          MutexLock lock(&st->mu);
          cancelling = st->cancel_called;
        }
        bool ours = false;
        try {
          std::rethrow_exception(error);
        } catch (const ContextCancelled& c) {
          // Cancelled by this nursery's teardown (gracefully, or by the
          // child's own exit after a SIGTERM), or by this actor.
          ours = cancelling || c.canceller().uuid() == CurrentActor().uuid();
        } catch (const TransportClosed&) {
          ours = cancelling;  // escalated to a kill
          if (!ours) {
            // The child died: its exit status and crash report say more
            // than the broken transport. Reported once, here or by the
            // reaper.
            bool reported_elsewhere = false;
            if (std::exception_ptr exit = internal::TakeExitFailure(
                    *entry->proc, entry->aid, &reported_elsewhere)) {
              error = exit;
            }
            ours = reported_elsewhere;
          }
        } catch (...) {
        }
        if (!ours) st->RecordError(error, /*cancel_siblings=*/false);
      }
      {
        MutexLock lk(&ps->mu);
        ps->result_ready = true;
        ps->result = std::move(result);
        ps->error = error;
        if (cancelled && !error) {
          ps->error = std::make_exception_ptr(ContextCancelled([&] {
            v1::Error e;
            e.set_boxed_type("ContextCancelled");
            e.set_src_type("ContextCancelled");
            e.set_message(
                "the nursery was cancelled before the result arrived");
            return e;
          }()));
        }
      }
      ps->cv.SignalAll();
    }
    hold.Leave();  // the last thing this thread does with the nursery
  }).detach();
  return entry->portal;
}

void ActorNursery::Cancel(bool hard_kill) {
  internal::CancelAll(*state_, hard_kill);
}

bool ActorNursery::cancel_called() const {
  MutexLock lock(&state_->mu);
  return state_->cancel_called;
}

void OpenNursery(const std::function<void(ActorNursery&)>& body) {
  internal::Runtime::Require();
  auto shared = std::make_shared<internal::NurseryState>();
  internal::NurseryState& st = *shared;
  ActorNursery nursery(shared);
  CancelScope scope;
  st.scope = scope.state();
  std::exception_ptr body_error;
  std::exception_ptr outer_cancel;
  scope.Run([&] {
    try {
      body(nursery);
      // Normal exit: wait for one-shot results, then for daemons to exit.
      std::vector<std::shared_ptr<internal::ChildEntry>> children;
      {
        MutexLock lock(&st.mu);
        children = st.children;
      }
      for (auto& c : children) {
        if (!c->one_shot) continue;
        internal::PortalState& ps = *c->portal_state;
        MutexLock lk(&ps.mu);
        internal::Wait(ps.cv, ps.mu,
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ps.mu) {
                         return ps.result_ready;
                       });
      }
      bool errors;
      {
        MutexLock lock(&st.mu);
        errors = !st.errors.empty();
      }
      if (errors) return;  // cancel the rest below
      for (auto& c : children) {
        if (c->one_shot) c->portal.CancelActor();
      }
      for (auto& c : children) {
        internal::ChildProc& proc = *c->proc;
        MutexLock plk(&proc.mu);
        internal::Wait(proc.cv, proc.mu,
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(proc.mu) {
                         return proc.exited;
                       });
      }
    } catch (const Cancelled& c) {
      if (c.scope() != st.scope) outer_cancel = std::current_exception();
    } catch (...) {
      body_error = std::current_exception();
    }
  });
  bool failed;
  {
    MutexLock lock(&st.mu);
    failed = body_error || outer_cancel || !st.errors.empty() ||
             scope.cancel_called();
  }
  // No child starts from now on. Any failure or cancel: one-cancels-all.
  // Always: reap everything, and wait for the helper threads (reapers end
  // with their child, result waiters once their child is gone).
  st.helpers.Close(failed ? internal::CloseReason::kCancel
                          : internal::CloseReason::kExit);
  internal::CancelAll(st, /*hard_kill=*/false);
  {
    auto shielded = internal::NewScope(nullptr, absl::InfiniteFuture(), true);
    internal::ScopeBinding bind(shielded);
    st.helpers.WaitDrained();
  }
  std::vector<std::shared_ptr<internal::ChildEntry>> children;
  std::vector<std::exception_ptr> errors;
  if (body_error) errors.push_back(body_error);
  {
    MutexLock lock(&st.mu);
    children = st.children;
    errors.insert(errors.end(), st.errors.begin(), st.errors.end());
  }
  auto& rt = internal::Runtime::Require();
  for (auto& c : children) rt.ForgetChild(c->aid.uuid());
  if (errors.size() == 1) std::rethrow_exception(errors[0]);
  if (errors.size() > 1) {
    throw ActorErrorGroup(
        absl::StrCat(errors.size(), " errors in actor nursery"), errors);
  }
  if (outer_cancel) std::rethrow_exception(outer_cancel);
}

}  // namespace tractor
