// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/task_waiter.h"

#include "absl/time/time.h"
#include "actor/cancel.h"

namespace tractor {

bool TaskWaiter::Wait(Mutex& mu, CondVar& cv,
                      absl::FunctionRef<bool()> done) {
  internal::Wait(cv, mu, [&] { return done(); });
  return true;
}

void TaskWaiter::WaitUncancellable(Mutex& mu, CondVar& cv,
                                   absl::FunctionRef<bool()> done) {
  internal::ScopeBinding shield(
      internal::NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  internal::Wait(cv, mu, [&] { return done(); });
}

}  // namespace tractor
