// SPDX-License-Identifier: AGPL-3.0-or-later
// A resource shared by the tasks of one actor: tractor's
// `maybe_open_context` (docs/behaviour.md#shared-resources-and-clusters).
#ifndef TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_
#define TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_

#include <functional>
#include <string>

#include "actor/payload.h"

namespace tractor {

// Sets a resource up, calls `serve(value)` (which returns once the last
// user has left), then tears the resource down. Runs in a task of its own.
using ResourceFn =
    std::function<void(const std::function<void(const Payload& value)>& serve)>;

// Runs `body(cache_hit, value)` with the resource named `key`, shared by
// every task of this process that uses the same key meanwhile:
// - the first user (a miss, `cache_hit` false) starts `open` in a task of
//   its own and waits for its value; later users (hits) get the same value;
// - the last user to leave waits until `open` has torn the resource down
//   and gets the error `open` ended with, if any (it replaces a pending
//   cancellation; a body's own error is raised in preference to it);
// - entering and the teardown hold a per-key lock, so a user arriving
//   during a teardown waits for it and then gets a fresh miss;
// - a first user cancelled before the value arrived stops the resource;
//   the key is free again for the next user.
// `key` names the resource for the whole process: include what identifies
// it (e.g. the function and its arguments). An `open` that fails before
// serving raises its error in the users that waited for it.
void MaybeOpenContext(
    const std::string& key, const ResourceFn& open,
    const std::function<void(bool cache_hit, const Payload& value)>& body);

}  // namespace tractor

#endif  // TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_
