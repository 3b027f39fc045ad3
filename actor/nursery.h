// SPDX-License-Identifier: AGPL-3.0-or-later
// Spawning and supervising child actors, one-cancels-all
// (docs/behaviour.md#supervision).
#ifndef TRACTOR_ACTOR_NURSERY_H_
#define TRACTOR_ACTOR_NURSERY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actor/payload.h"
#include "actor/portal.h"

namespace tractor {

namespace internal {
class NurseryState;
}  // namespace internal

// How to start one child actor.
struct ActorOptions {
  // Namespaces the child serves.
  std::vector<std::string> enable_modules;
  // Addresses the child binds ("127.0.0.1:0", "[::1]:0", "unix:/path");
  // empty: one random loopback TCP port.
  std::vector<std::string> bind_addrs;
  // Log level; empty: the parent's.
  std::string loglevel;
  // One user task at a time (default), or free-running threads.
  bool single_task = true;
  // Reach the child over a unix socket private to this user (its
  // `local_addr`) when it runs on this host, as it does unless it moved to
  // another network namespace; false: over its bind addresses.
  bool same_host_socket = true;
  // Most remote tasks the child runs at once; beyond it a `Start` is
  // refused at once with `ActorTooBusy`. 0: the default, 1024.
  size_t max_tasks = 0;
  // How long the child keeps a CPU awake after its own I/O (RootOptions::
  // busy_wait; up to 1 s). Unset: the parent's.
  std::optional<absl::Duration> busy_wait;
  // How long to wait for the child to boot and link back.
  absl::Duration spawn_timeout = absl::Seconds(10);
};

// Supervises the children started inside one `OpenNursery` block. Bound to
// the block's task; `StartActor`/`RunInActor`/`Cancel` may be called from
// any task inside the block.
class ActorNursery {
 public:
  explicit ActorNursery(std::shared_ptr<internal::NurseryState> state)
      : state_(std::move(state)) {}

  // Spawns a daemon child actor `name` (a new process) and returns a portal
  // to it once it has booted and linked back. The child lives until it is
  // cancelled. Throws RuntimeFailure if it fails to boot.
  Portal StartActor(const std::string& name, ActorOptions options = {});

  // Spawns a child that runs `func(args)` once; its result is read with
  // `Portal::Result()` (also after the nursery exits). The function's
  // namespace is enabled in the child automatically.
  Portal RunInActor(const std::string& name, const std::string& func,
                    const Payload& args = Payload(), ActorOptions options = {});

  // Cancels every child: graceful `CancelActor`, then SIGTERM, then SIGKILL;
  // every process is reaped. `hard_kill` skips the graceful step.
  void Cancel(bool hard_kill = false);
  bool cancel_called() const;

 private:
  std::shared_ptr<internal::NurseryState> state_;
};

// Runs `body` with a new nursery. On a normal exit waits for every
// `RunInActor` result and for every daemon to be cancelled. If the body or a
// child fails, cancels all children and throws: the one error, or an
// `ActorErrorGroup` of all of them.
void OpenNursery(const std::function<void(ActorNursery&)>& body);

}  // namespace tractor

#endif  // TRACTOR_ACTOR_NURSERY_H_
