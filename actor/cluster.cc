#include "actor/cluster.h"

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/nursery.h"
#include "actor/runtime.h"

namespace tractor {

std::vector<Payload> GatherContexts(
    const std::vector<ContextCall>& calls,
    const std::function<void(const std::vector<Context*>& contexts,
                             const std::vector<Payload>& firsts)>& body) {
  if (calls.empty()) {
    throw UsageError("GatherContexts needs at least one context to open");
  }
  const size_t n = calls.size();
  std::mutex mu;
  std::condition_variable_any cv;
  std::vector<Context*> contexts(n, nullptr);
  std::vector<Payload> firsts(n);
  std::vector<Payload> results(n);
  size_t entered = 0;  // guarded by mu
  bool done = false;   // guarded by mu
  TaskGroup::Open([&](TaskGroup& group) {
    for (size_t i = 0; i < n; ++i) {
      group.Spawn([&, i] {
        Portal portal = calls[i].portal;  // copies share state
        results[i] = portal.OpenContext(
            calls[i].func, calls[i].args,
            [&, i](Context& ctx, const Payload& first) {
              std::unique_lock<std::mutex> lk(mu);
              contexts[i] = &ctx;
              firsts[i] = first;
              ++entered;
              cv.notify_all();
              // Held open until the body is done; a failure elsewhere
              // cancels this wait, which cancels this context.
              internal::Wait(cv, lk, [&] { return done; });
            },
            calls[i].options);
      });
    }
    {
      std::unique_lock<std::mutex> lk(mu);
      internal::Wait(cv, lk, [&] { return entered == n; });
    }
    body(contexts, firsts);
    {
      std::lock_guard<std::mutex> lk(mu);
      done = true;
    }
    cv.notify_all();
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
    std::map<std::string, Portal> portals;
    std::mutex mu;
    TaskGroup::Open([&](TaskGroup& group) {
      for (int i = 0; i < count; ++i) {
        group.Spawn([&, i] {
          Portal p = an.StartActor(full[i], {.enable_modules = modules});
          std::lock_guard<std::mutex> lk(mu);
          portals[full[i]] = p;
        });
      }
    });
    body(portals);
    an.Cancel(hard_kill);
  });
}

}  // namespace tractor
