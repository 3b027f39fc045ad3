// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/cluster.h"

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/scope.h"
#include "actor/nursery.h"
#include "actor/runtime.h"
#include "discovery/mutex.h"

namespace tractor {

std::vector<Payload> GatherContexts(
    const std::vector<ContextCall>& calls,
    const std::function<void(const std::vector<Context*>& contexts,
                             const std::vector<Payload>& firsts)>& body) {
  if (calls.empty()) {
    throw UsageError("GatherContexts needs at least one context to open");
  }
  const size_t n = calls.size();
  struct Entry {
    Mutex mu;
    CondVar cv;  // signalled when `entered` grows and when `done` is set
    size_t entered ABSL_GUARDED_BY(mu) = 0;
    bool done ABSL_GUARDED_BY(mu) = false;
  } entry;
  // Each task fills its slot under `entry.mu` before counting itself in
  // `entered`; the body reads them once all have.
  std::vector<Context*> contexts(n, nullptr);
  std::vector<Payload> firsts(n);
  std::vector<Payload> results(n);
  TaskGroup::Open([&](TaskGroup& group) {
    for (size_t i = 0; i < n; ++i) {
      group.Spawn([&, i] {
        Portal portal = calls[i].portal;  // copies share state
        results[i] = portal.OpenContext(
            calls[i].func, calls[i].args,
            [&, i](Context& ctx, const Payload& first) {
              MutexLock lock(&entry.mu);
              contexts[i] = &ctx;
              firsts[i] = first;
              ++entry.entered;
              entry.cv.SignalAll();
              // Held open until the body is done; a failure elsewhere
              // cancels this wait, which cancels this context.
              internal::Wait(entry.cv, entry.mu,
                             [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu) {
                               return entry.done;
                             });
            },
            calls[i].options);
      });
    }
    {
      MutexLock lock(&entry.mu);
      internal::Wait(entry.cv, entry.mu,
                     [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(entry.mu) {
                       return entry.entered == n;
                     });
    }
    body(contexts, firsts);
    {
      MutexLock lock(&entry.mu);
      entry.done = true;
    }
    entry.cv.SignalAll();
  });
  return results;
}

void OpenActorCluster(
    const std::vector<std::string>& modules, int count,
    const std::function<void(std::map<std::string, Portal>& portals)>& body,
    const std::vector<std::string>& names, bool hard_kill) {
  if (count < 1) {
    throw UsageError(absl::StrCat("OpenActorCluster: count must be at least 1, got ",
                                  count));
  }
  if (!names.empty() && names.size() != static_cast<size_t>(count)) {
    throw UsageError(absl::StrCat("OpenActorCluster: ", names.size(),
                                  " names for ", count, " actors"));
  }
  const std::string prefix = CurrentActor().name();
  std::vector<std::string> full(count);
  for (int i = 0; i < count; ++i) {
    full[i] = absl::StrCat(prefix, ".",
                           names.empty() ? absl::StrCat("worker_", i) : names[i]);
  }
  OpenNursery([&](ActorNursery& an) {
    std::map<std::string, Portal> portals;  // filled under `mu`
    Mutex mu;
    TaskGroup::Open([&](TaskGroup& group) {
      for (int i = 0; i < count; ++i) {
        group.Spawn([&, i] {
          Portal p = an.StartActor(full[i], {.enable_modules = modules});
          MutexLock lock(&mu);
          portals[full[i]] = p;
        });
      }
    });
    body(portals);
    an.Cancel(hard_kill);
  });
}

}  // namespace tractor
