// SPDX-License-Identifier: AGPL-3.0-or-later
// Registrar election at boot: does the root use the registrars at its
// registry addresses, or become the registrar itself?
// (docs/behaviour.md#registrar-election).
#ifndef TRACTOR_ACTOR_INTERNAL_REGISTRAR_ELECTION_H_
#define TRACTOR_ACTOR_INTERNAL_REGISTRAR_ELECTION_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actor/internal/runtime.h"

namespace tractor::internal {

// Fills the bind, registry and registrar fields of the root's `config`:
// probes the registry addresses and decides whether the root uses the
// registrars that answer or becomes the registrar itself. With no registry
// addresses the root serves the registrar on its own addresses. Throws
// UsageError for an address that does not parse, RuntimeFailure when an
// address is held by something that is not a registrar.
// `name`, `bind_addrs`, `registry_addrs` and `registry_lease` are the
// root's `RootOptions` fields of those names.
struct ElectionInput {
  std::string name;
  std::vector<std::string> bind_addrs;
  std::vector<std::string> registry_addrs;
  absl::Duration registry_lease;
};
void ElectRegistrar(const ElectionInput& options, Runtime::Config* config);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_REGISTRAR_ELECTION_H_
