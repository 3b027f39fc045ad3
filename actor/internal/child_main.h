// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime of a spawned child actor, from boot to exit.
#ifndef TRACTOR_ACTOR_INTERNAL_CHILD_MAIN_H_
#define TRACTOR_ACTOR_INTERNAL_CHILD_MAIN_H_

#include "tractor/v1/actor.pb.h"

namespace tractor::internal {

// Runs the child runtime described by `spec`: binds the server, links to
// the parent, serves until an exit is requested (CancelActor, SIGTERM, or
// the parent link lost), shuts down and exits the process: with status 0,
// or `kLinkLostExitStatus` (spawn.h) when the parent link was lost first.
// Returns (status 1) only when the actor cannot boot or link.
int ChildMain(const v1::SpawnSpec& spec);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_CHILD_MAIN_H_
