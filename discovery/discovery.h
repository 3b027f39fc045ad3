// SPDX-License-Identifier: AGPL-3.0-or-later
// Finding actors by name through the registrars
// (docs/design.md#discovery-and-addresses, docs/behaviour.md#lookups):
// tractor's find_actor, wait_for_actor, query_actor and get_registry.
//
//   std::optional<tractor::Portal> p = tractor::FindActor("worker");
//   if (p) p->Run("work:do", args);
//
//   tractor::Portal q = tractor::WaitForActor("late");  // blocks until it
//                                                        // registers
//
// Every call needs an actor runtime in this process (NoRuntime otherwise).
// `registry_addrs` (or `registry_addr`) accepts every address form of
// discovery/address.h; empty means the current actor's registry list
// (`tractor::RegistryAddrs()`), which every actor of a tree inherits from
// its root. A malformed address throws UsageError.
//
// Names are not unique: several actors may register the same name (their
// uuids differ). A lookup then answers with the most recent registration
// that still accepts connections ("latest registration wins"); `GetRegistry`
// lists them all.
//
// Thread-safe: any task may call these concurrently. Every call is a
// cancellation checkpoint (it throws `Cancelled` when its scope is
// cancelled, and cancels its registrar calls).
#ifndef TRACTOR_DISCOVERY_DISCOVERY_H_
#define TRACTOR_DISCOVERY_DISCOVERY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actor/portal.h"
#include "tractor/v1/registrar.pb.h"

namespace tractor::discovery {

// How long `FindActor` waits for registrars to answer by default.
inline constexpr absl::Duration kFindTimeout = absl::Seconds(1);
// How long connecting to one registered address may take before the entry
// counts as stale.
inline constexpr absl::Duration kConnectTimeout = absl::Seconds(1);

// Returns a portal to an actor named `name`, or nullopt when no registrar
// knows a live one. A hedged lookup (docs/design.md#hedged-lookups): asks
// the registrar that gave this process's last positive answer (else the
// first), and the others at once when it answers with no entry or an error
// or is known unreachable, or after the hedge delay (1-5 ms,
// `discovery::HedgeDelay`) when it has not answered; the first positive
// answer whose actor accepts a connection wins, without waiting for the
// others. A registrar that is down costs no delay (as absent); one that is
// silent costs at most the hedge delay when asked first, and is given up
// after `timeout`. An entry whose address
// refuses a fresh connection (or is now served by another actor) is stale:
// it is deleted from the registrar that returned it (`DeleteAddr` with the
// revision the lookup saw; the registrar checks the evidence again) and the
// next candidate is tried. An address that cannot be reached without such
// evidence (this process's channel still backing off after a partition, a
// silent host) is skipped but never deleted. The address dialled is chosen by `PreferAddress`
// (unix socket, then same-host TCP, then remote); unix and loopback
// addresses returned by a registrar on another host are ignored. With
// `raise_on_none` (tractor's `raise_on_none=True`), finding none throws
// RuntimeFailure naming the actor and the registrars that answered, and
// saying which did not answer (unreachable, or silent past `timeout`) and
// why: when none answered, that it cannot tell whether the actor is
// registered. Without it, that case returns nullopt and logs a warning.
std::optional<Portal> FindActor(const std::string& name,
                                const std::vector<std::string>& registry_addrs = {},
                                absl::Duration timeout = kFindTimeout,
                                bool raise_on_none = false);

// Returns portals to every live actor named `name` (tractor's `find_actor`
// with `only_first=False`), one per actor however many registrars list it:
// registrars in the order they answered, each one's most recent
// registration first. Waits for every registrar to answer
// (a silent one is given up after `timeout`); connects to each entry as
// `FindActor` does, deleting stale ones. Empty when there is none, or, with
// `raise_on_none`, throws RuntimeFailure.
std::vector<Portal> FindActors(const std::string& name,
                               const std::vector<std::string>& registry_addrs = {},
                               absl::Duration timeout = kFindTimeout,
                               bool raise_on_none = false);

// Returns a portal to an actor named `name`, blocking until one registers
// with any of the registrars (`Registrar.WaitFor` on all of them at once).
// Waits for registrars that are down to come up. Never times out by itself:
// bound it with `FailAfter`/`MoveOnAfter` or a cancel scope.
Portal WaitForActor(const std::string& name,
                    const std::vector<std::string>& registry_addrs = {});

// Asks one registrar (`registry_addr`, default the first of the registry
// list) where `name` is and returns the preferred address of its most
// recent registration, or nullopt. Does not connect to the actor. Throws
// TransportClosed when the registrar does not answer within 1 s.
std::optional<std::string> QueryActor(const std::string& name,
                                      const std::string& registry_addr = "");

// Returns every live entry of one registrar (`registry_addr`, default the
// first of the registry list), oldest first. Throws TransportClosed when the registrar does
// not answer within 1 s.
std::vector<v1::Registration> GetRegistry(const std::string& registry_addr = "");

}  // namespace tractor::discovery

namespace tractor {
using discovery::FindActor;
using discovery::FindActors;
using discovery::GetRegistry;
using discovery::QueryActor;
using discovery::WaitForActor;
}  // namespace tractor

#endif  // TRACTOR_DISCOVERY_DISCOVERY_H_
