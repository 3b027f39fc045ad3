// SPDX-License-Identifier: AGPL-3.0-or-later
// A nursery's supervision of its children: reaping, hang checks, the
// teardown ladder.
#include "actor/internal/supervision.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <optional>
#include <thread>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/portal_state.h"
#include "actor/internal/reaper.h"
#include "actor/internal/runtime.h"
#include "actor/internal/scope.h"
#include "actor/internal/spawn.h"
#include "actor/runtime.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "discovery/log_level.h"
#include "discovery/mutex.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "discovery/thread_name.h"

namespace tractor::internal {
namespace {

constexpr absl::Duration kCancelAckWindow = absl::Milliseconds(500);
// The teardown ladder's waits for a child's exit: after it acknowledged
// the cancel, and after SIGTERM. Scaled by TRACTOR_TIMEOUT_SCALE
// (`discovery::ScaleTimeout`, 1 in the plain build) like the runtime's
// other bounds: a sanitizer build's child takes several times longer to
// exit (under TSan it symbolizes its exit-time report), and a child killed
// mid-exit loses the rest of that report.
absl::Duration ExitAfterAck() {
  return discovery::ScaleTimeout(absl::Seconds(3));
}
absl::Duration TermGrace() {
  return discovery::ScaleTimeout(absl::Milliseconds(1600));
}
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

// What the reaper does once the child is reaped: records an abnormal exit
// as a failure of the tree (cancelling the siblings) unless the nursery is
// cancelling, then announces the exit and leaves the nursery's gate.
void OnReaped(const std::shared_ptr<ChildProc>& proc, const v1::Aid& aid,
              const std::weak_ptr<NurseryState>& nursery, int status,
              ReaperHold& hold) {
  // The child is gone: whatever its crash handler wrote is in the pipe.
  const std::string crash = ReadCrashReport(proc->crash_fd);
  bool linked;
  std::string local_addr;
  {
    MutexLock lk(&proc->mu);
    linked = proc->linked;
    local_addr = proc->local_addr;
  }
  // A child that could not remove its same-host socket file (killed, or
  // crashed) leaves it behind: removed here, before the exit is announced,
  // so that no file of a reaped child outlives its nursery. A no-op when
  // the child removed it itself.
  discovery::RemoveSocketFileOfEndedActor(local_addr, aid.uuid());
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
  hold.Leave();  // the last thing done with the nursery (if not let go)
}

}  // namespace

// Reaps the child (on the process's reaper thread, or on a helper thread of
// its own where pidfds are missing) and wakes waiters. A child that dies
// abnormally while its nursery is not cancelling is a failure of the tree:
// it is recorded and its siblings are cancelled. The nursery's gate
// (`hold`) is held until that is done.
void StartReaper(std::shared_ptr<ChildProc> proc, v1::Aid aid,
                 std::weak_ptr<NurseryState> nursery,
                 std::shared_ptr<ReaperHold> shared_hold) {
  const bool watched = WatchChildExit(
      proc->pid, [proc, aid, nursery, shared_hold](int status) {
        OnReaped(proc, aid, nursery, status, *shared_hold);
      });
  if (watched) return;
  std::thread([proc, aid, nursery, shared_hold] {
    discovery::NameThisThread("reaper");
    int status = 0;
    while (waitpid(proc->pid, &status, 0) < 0 && errno == EINTR) {
    }
    OnReaped(proc, aid, nursery, status, *shared_hold);
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
    if (acked && WaitExited(proc, absl::Now() + ExitAfterAck())) return;
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
  if (WaitExited(proc, absl::Now() + TermGrace())) return;
  LOG(WARNING) << "child '" << aid.name() << "' (pid " << proc.pid
               << ") ignored SIGTERM; SIGKILL";
  kill(proc.pid, SIGKILL);
  WaitExited(proc, absl::InfiniteFuture());
}

namespace {

bool HasExited(ChildProc& proc) {
  MutexLock lk(&proc.mu);
  return proc.exited;
}

// One child on the ladder run by `TearDownChildren`.
struct Rung {
  std::shared_ptr<ChildProc> proc;
  std::shared_ptr<PortalState> portal;  // null: not linked back yet
  v1::Aid aid;
  std::shared_ptr<ReaperHold> reaper_hold;
  // Reaped later (`defer_reaping`): it said bye, and the process's reaper
  // took over the rest of its ladder.
  bool deferred = false;
  // The reaper could not take it over: wait for its exit here.
  bool no_defer = false;
  enum class Step { kAsked, kAcked, kTermed, kKilled } step = Step::kAsked;
  absl::Time deadline = absl::InfiniteFuture();  // of the current step
  // The CancelActor call (while `step` is kAsked and it was sent).
  grpc::ClientContext ctx;
  v1::CancelActorReply reply;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::CancelActorReply>> call;
};

void Signal(Rung& r) {
  kill(r.proc->pid, SIGTERM);
  // A stopped child (SIGSTOP, a hang detected as such) handles SIGTERM only
  // once continued.
  kill(r.proc->pid, SIGCONT);
  r.step = Rung::Step::kTermed;
  r.deadline = absl::Now() + TermGrace();
}

// The next step of a child whose step's deadline passed and that has not
// exited.
void Escalate(Rung& r) {
  switch (r.step) {
    case Rung::Step::kAsked:
    case Rung::Step::kAcked:
      Signal(r);
      break;
    case Rung::Step::kTermed:
      LOG(WARNING) << "child '" << r.aid.name() << "' (pid " << r.proc->pid
                   << ") ignored SIGTERM; SIGKILL";
      kill(r.proc->pid, SIGKILL);
      r.step = Rung::Step::kKilled;
      r.deadline = absl::InfiniteFuture();
      break;
    case Rung::Step::kKilled:
      break;
  }
}

// True once the rung needs nothing more from this thread: the child was
// reaped, or (`defer_reaping`) it acknowledged the cancel and said bye, so
// its tasks are over and it has nothing left to tell its parent.
bool Finished(Rung& r, bool defer_reaping) {
  MutexLock lk(&r.proc->mu);
  return r.proc->exited ||
         (defer_reaping && !r.no_defer && r.step == Rung::Step::kAcked &&
          r.proc->said_bye);
}

// Waits, without a checkpoint and without handing over the task lock (as
// the join of a helper thread would), until `Finished(r)` or `until`.
bool WaitFinishedPlain(Rung& r, bool defer_reaping, absl::Time until) {
  ChildProc& proc = *r.proc;
  MutexLock lk(&proc.mu);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(proc.mu) {
    return proc.exited ||
           (defer_reaping && !r.no_defer && r.step == Rung::Step::kAcked &&
            proc.said_bye);
  };
  while (!done()) {
    if (proc.cv.WaitWithDeadline(&proc.mu, until) && !done()) return false;
  }
  return true;
}

// Hands a child that said bye to the process's reaper: the rest of its
// ladder (SIGTERM at its deadline, then SIGKILL) is the reaper's, the
// runtime reaps it before this process exits, and its reaper leaves the
// nursery's gate now. False when the reaper cannot take it (no pidfd, or
// it was reaped meanwhile): then it is waited for here.
bool Defer(Rung& r) {
  if (HasExited(*r.proc)) return false;
  Runtime* rt = Runtime::Get();
  if (rt == nullptr ||
      !EscalateChildExit(r.proc->pid, r.deadline, TermGrace())) {
    return false;
  }
  rt->KeepUnreaped(r.proc);
  TRACTOR_LOG(cancel) << "child '" << r.aid.name() << "' " << r.aid.uuid()
                      << " (pid " << r.proc->pid
                      << ") said bye; reaped before this actor exits";
  if (r.reaper_hold) r.reaper_hold->Leave();
  return true;
}

// The teardown ladder of `TearDownChild` for many children at once, on the
// calling thread: every CancelActor is sent before any answer is awaited
// (on one completion queue), and each child then climbs its own ladder on
// its own deadlines (acknowledged: `ExitAfterAck()` to exit; not, or not in
// time: SIGTERM, `TermGrace()`, SIGKILL), as if each had a thread of its
// own. Returns once every child is reaped, or with `defer_reaping`, once
// every child is reaped or acknowledged the cancel and said bye (`Defer`).
void TearDownChildren(std::vector<std::unique_ptr<Rung>>& rungs,
                      bool hard_kill, bool defer_reaping) {
  if (rungs.empty()) return;
  Runtime* rt = Runtime::Get();
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<v1::Actor::Stub>> stubs;
  size_t pending = 0;
  for (size_t i = 0; i < rungs.size(); ++i) {
    Rung& r = *rungs[i];
    if (HasExited(*r.proc)) {
      r.step = Rung::Step::kAcked;
      r.deadline = absl::Now();
      continue;
    }
    if (hard_kill || r.portal == nullptr || rt == nullptr) {
      Signal(r);
      continue;
    }
    TRACTOR_LOG(cancel) << "actor '" << rt->self().name() << "' "
                        << rt->self().uuid() << " cancels actor '"
                        << r.aid.name() << "' " << r.aid.uuid();
    v1::CancelActorRequest req;
    *req.mutable_requester() = rt->self();
    r.ctx.set_deadline(absl::ToChronoTime(absl::Now() + kCancelAckWindow));
    discovery::AttachSecret(&r.ctx);
    stubs.push_back(v1::Actor::NewStub(r.portal->channel));
    r.call = stubs.back()->AsyncCancelActor(&r.ctx, req, &cq);
    r.call->Finish(&r.reply, &r.status, reinterpret_cast<void*>(i));
    ++pending;
  }
  // Each answer (or its deadline) moves its child on at once: an
  // acknowledged child gets `ExitAfterAck()` to exit, the others SIGTERM.
  for (; pending > 0; --pending) {
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok)) break;
    Rung& r = *rungs[reinterpret_cast<uintptr_t>(tag)];
    r.call.reset();
    if (ok && r.status.ok() && r.reply.ok()) {
      r.step = Rung::Step::kAcked;
      r.deadline = absl::Now() + ExitAfterAck();
      continue;
    }
    if (HasExited(*r.proc)) continue;
    TRACTOR_LOG(cancel) << "child '" << r.aid.name() << "' " << r.aid.uuid()
                        << " did not acknowledge cancel within "
                        << absl::FormatDuration(kCancelAckWindow)
                        << "; SIGTERM";
    Signal(r);
  }
  cq.Shutdown();
  {
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
  }
  // Wait for the child whose deadline comes first; when it passes, move on
  // every child whose deadline passed.
  for (;;) {
    const absl::Time now = absl::Now();
    Rung* first = nullptr;
    for (auto& r : rungs) {
      if (r->deferred || HasExited(*r->proc)) continue;
      if (defer_reaping && Finished(*r, defer_reaping)) {
        if (Defer(*r)) {
          r->deferred = true;
          continue;
        }
        r->no_defer = true;
        if (HasExited(*r->proc)) continue;
      }
      if (r->deadline <= now) Escalate(*r);
      if (first == nullptr || r->deadline < first->deadline) first = r.get();
    }
    if (first == nullptr) return;
    WaitFinishedPlain(*first, defer_reaping, first->deadline);
  }
}

}  // namespace

void CancelAll(NurseryState& st, bool hard_kill, bool defer_reaping)
    ABSL_LOCKS_EXCLUDED(st.mu) {
  struct Child {
    std::shared_ptr<ChildProc> proc;
    Portal portal;
    std::shared_ptr<PortalState> portal_state;
    v1::Aid aid;
    std::shared_ptr<ReaperHold> reaper_hold;
  };
  std::vector<Child> children;
  {
    MutexLock lock(&st.mu);
    st.cancel_called = true;
    for (const auto& c : st.children) {
      children.push_back(
          {c->proc, c->portal, c->portal_state, c->aid, c->reaper_hold});
    }
  }
  for (const auto& c : children) {
    TRACTOR_LOG(cancel) << "nursery of actor '" << CurrentActor().name()
                        << "' " << CurrentActor().uuid()
                        << " cancels child '" << c.aid.name() << "' "
                        << c.aid.uuid() << " (pid " << c.proc->pid << ")"
                        << (hard_kill ? " by signal" : "");
  }
  // A child in the debugger is let finish there before it is asked
  // (`TearDownChild` waits for it), on a thread of its own; all the others
  // go down together on this thread.
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Rung>> rungs;
  for (auto& c : children) {
    bool in_debugger;
    {
      MutexLock lk(&c.proc->mu);
      in_debugger = c.proc->in_debugger && !c.proc->exited;
    }
    if (in_debugger) {
      threads.emplace_back([c, hard_kill] {
        discovery::NameThisThread("teardown");
        TearDownChild(*c.proc, c.portal, c.aid, hard_kill);
      });
      continue;
    }
    auto r = std::make_unique<Rung>();
    r->proc = c.proc;
    r->portal = c.portal_state;
    r->aid = c.aid;
    r->reaper_hold = c.reaper_hold;
    rungs.push_back(std::move(r));
  }
  TearDownChildren(rungs, hard_kill, defer_reaping);
  for (auto& t : threads) t.join();
}

}  // namespace tractor::internal
