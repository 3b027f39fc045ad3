#include "actor/task_waiter.h"

#include "absl/time/time.h"
#include "actor/cancel.h"

namespace tractor {

bool TaskWaiter::Wait(std::unique_lock<std::mutex>& lk,
                      std::condition_variable_any& cv,
                      absl::FunctionRef<bool()> done) {
  internal::Wait(cv, lk, [&] { return done(); });
  return true;
}

void TaskWaiter::WaitUncancellable(std::unique_lock<std::mutex>& lk,
                                   std::condition_variable_any& cv,
                                   absl::FunctionRef<bool()> done) {
  internal::ScopeBinding shield(
      internal::NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  internal::Wait(cv, lk, [&] { return done(); });
}

}  // namespace tractor
