// SPDX-License-Identifier: AGPL-3.0-or-later
// Actor nurseries: spawning children and the OpenNursery block. The
// supervision of the children (reaping, hang checks, the teardown ladder)
// is in actor/internal/supervision.cc.
#include "actor/nursery.h"

#include <sys/wait.h>

#include <algorithm>
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
#include "actor/internal/nursery_state.h"
#include "actor/internal/portal_state.h"
#include "actor/internal/runtime.h"
#include "actor/internal/scope.h"
#include "actor/internal/spawn.h"
#include "actor/internal/supervision.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "discovery/credentials.h"
#include "discovery/mutex.h"
#include "discovery/uuid.h"
#include "discovery/thread_name.h"

namespace tractor {
namespace internal {
namespace {

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
  {
    // Whole microseconds; under one is off.
    const int64_t us = absl::ToInt64Microseconds(
        std::clamp(options.busy_wait.value_or(rt.config().busy_wait),
                   absl::ZeroDuration(), internal::kMaxBusyWait));
    spec.set_no_busy_wait(us == 0);
    spec.set_busy_wait_us(static_cast<uint32_t>(us));
  }
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
  entry->reaper_hold = std::make_shared<ReaperHold>(*std::move(reaper_hold));
  StartReaper(proc, entry->aid, shared, entry->reaper_hold);
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
          return proc->link_confirmed || proc->link_lost || proc->exited;
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
    } else if (proc->linked && !proc->link_confirmed && !proc->exited) {
      failure = "lost its link to this actor before the link was confirmed";
    } else if (!proc->link_confirmed) {
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
    ps->addr = proc->portal_addr;
  }
  if (ps->addr.empty()) {
    TearDownChild(*entry->proc, Portal(), entry->aid, /*hard_kill=*/true);
    throw RuntimeFailure(absl::StrCat("child actor '", name,
                                      "' linked back without an address"));
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
  // In a child actor, a child that said bye is reaped before this process
  // exits rather than before the block ends (`CancelAll`): its exit, most
  // of it the kernel freeing its memory, overlaps this actor's own work
  // (its error on its way up, its own teardown). A root's block reaps
  // everything before it returns, so once the root's block is over every
  // descendant is gone (each actor reaps its children before it exits).
  auto& rt = internal::Runtime::Require();
  internal::CancelAll(st, /*hard_kill=*/false,
                      /*defer_reaping=*/!rt.config().parent.uuid().empty());
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
  for (auto& c : children) rt.ForgetChild(c->aid.uuid());
  if (errors.size() == 1) std::rethrow_exception(errors[0]);
  if (errors.size() > 1) {
    throw ActorErrorGroup(
        absl::StrCat(errors.size(), " errors in actor nursery"), errors);
  }
  if (outer_cancel) std::rethrow_exception(outer_cancel);
}

}  // namespace tractor
