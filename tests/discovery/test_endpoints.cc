// SPDX-License-Identifier: AGPL-3.0-or-later
// Functions the discovery tests call in their actors ("disc:*"). Linked
// (alwayslink) into the test binaries and the discovery_actor helper.
#include <string>
#include <vector>

#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/export.h"
#include "actor/payload.h"
#include "actor/runtime.h"
#include "discovery/discovery.h"

namespace tractor {
namespace {

Payload StringList(const std::vector<std::string>& items) {
  std::vector<Payload> out;
  for (const auto& s : items) out.emplace_back(s);
  return Payload::List(std::move(out));
}

std::string Hi() { return "Hi my name is " + CurrentActor().name(); }
TRACTOR_EXPORT("disc:hi", Hi);

Payload AcceptAddrsOf() { return StringList(AcceptAddrs()); }
TRACTOR_EXPORT("disc:accept_addrs", AcceptAddrsOf);

Payload RegistryAddrsOf() { return StringList(RegistryAddrs()); }
TRACTOR_EXPORT("disc:registry_addrs", RegistryAddrsOf);

// Waits for the actor `peer` to register, then returns its greeting.
std::string GreetPeer(const std::string& peer) {
  Portal p = WaitForActor(peer);
  return p.Run("disc:hi").AsString();
}
TRACTOR_EXPORT("disc:greet_peer", GreetPeer);

// Returns the uuid of the actor FindActor finds for `name`, or "".
std::string FindUuid(const std::string& name) {
  auto p = FindActor(name);
  return p ? p->aid().uuid() : "";
}
TRACTOR_EXPORT("disc:find_uuid", FindUuid);

// Streams 0, 1, 2, ... every `period_ms` until cancelled.
int64_t Ticker(Context& ctx, int64_t period_ms) {
  ctx.Started(CurrentActor().uuid());
  auto stream = ctx.OpenStream();
  for (int64_t i = 0;; ++i) {
    stream.Send(i);
    Sleep(absl::Milliseconds(period_ms));
  }
}
TRACTOR_EXPORT("disc:ticker", Ticker);

}  // namespace
}  // namespace tractor
