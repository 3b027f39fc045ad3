// SPDX-License-Identifier: AGPL-3.0-or-later
// Several dialogs or actors at once: tractor's `gather_contexts` and
// `open_actor_cluster` (docs/behaviour.md#shared-resources-and-clusters).
#ifndef TRACTOR_ACTOR_CLUSTER_H_
#define TRACTOR_ACTOR_CLUSTER_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "actor/context.h"
#include "actor/payload.h"
#include "actor/portal.h"

namespace tractor {

// One context for GatherContexts to open.
struct ContextCall {
  Portal portal;
  std::string func;
  Payload args;
  ContextOptions options;
};

// Opens every context concurrently, one task each, and once all have
// started runs `body` with their contexts and first values, in the order of
// `calls`. When `body` returns, every context ends as `OpenContext` ends
// (waiting for its result) and the results are returned in order. An error
// or cancellation in `body` or in any context cancels the others and is
// raised, as in a TaskGroup. Empty `calls`: UsageError.
std::vector<Payload> GatherContexts(
    const std::vector<ContextCall>& calls,
    const std::function<void(const std::vector<Context*>& contexts,
                             const std::vector<Payload>& firsts)>& body);

// Starts `count` daemon actors serving `modules`, concurrently, in a nursery
// of their own; each is named "<this actor's name>.<name>" with `names[i]`
// (default "worker_<i>"). Runs `body` with their portals by full name, then
// cancels them (`hard_kill`: without the graceful step). `names` given with
// a size other than `count`: UsageError.
void OpenActorCluster(
    const std::vector<std::string>& modules, int count,
    const std::function<void(std::map<std::string, Portal>& portals)>& body,
    const std::vector<std::string>& names = {}, bool hard_kill = false);

}  // namespace tractor

#endif  // TRACTOR_ACTOR_CLUSTER_H_
