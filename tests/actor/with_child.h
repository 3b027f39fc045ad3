// SPDX-License-Identifier: AGPL-3.0-or-later
// The preambles most multi-process actor tests share.
#ifndef TRACTOR_TESTS_ACTOR_WITH_CHILD_H_
#define TRACTOR_TESTS_ACTOR_WITH_CHILD_H_

#include <functional>
#include <string>

#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"

namespace tractor::testing {

// Runs `body` in a new nursery, then cancels every child and waits until
// each is reaped, also when `body` returns early on a failed ASSERT: a plain
// `OpenNursery` would then wait for daemons that nobody cancels, and the
// test would hang to its time limit instead of failing. Exceptions from
// `body` propagate as from the nursery.
inline void OpenNurseryThenCancel(
    const std::function<void(ActorNursery&)>& body) {
  OpenNursery([&](ActorNursery& an) {
    body(an);
    an.Cancel();
  });
}

// Opens a root actor and a nursery, starts one child actor `name` with
// `options`, runs `body` with a portal to it, then cancels the child (also
// when `body` returns early, e.g. on a failed ASSERT) and waits until it is
// reaped. Exceptions from `body` propagate as from the nursery.
inline void WithChild(const ActorOptions& options,
                      const std::function<void(Portal&)>& body,
                      const std::string& name = "child") {
  OpenRootActor({}, [&] {
    OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal p = an.StartActor(name, options);
      body(p);
    });
  });
}

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_ACTOR_WITH_CHILD_H_
