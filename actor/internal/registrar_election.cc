// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/registrar_election.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/errors.h"
#include "discovery/address.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

std::vector<discovery::Address> ParseRootOption(
    const std::vector<std::string>& texts, const char* option) {
  std::vector<discovery::Address> out;
  for (const auto& text : texts) {
    auto parsed = discovery::Address::Parse(text);
    if (!parsed.ok()) {
      throw UsageError(
          absl::StrCat("RootOptions.", option, ": ", parsed.status().message()));
    }
    out.push_back(*std::move(parsed));
  }
  return out;
}

std::vector<std::string> AddrStrings(
    const std::vector<discovery::Address>& addrs) {
  std::vector<std::string> out;
  for (const auto& a : addrs) out.push_back(a.ToString());
  return out;
}

void AddUnique(std::vector<discovery::Address>& to,
               const discovery::Address& addr) {
  if (std::find(to.begin(), to.end(), addr) == to.end()) to.push_back(addr);
}

}  // namespace

void ElectRegistrar(const ElectionInput& options, Runtime::Config* config) {
  std::vector<discovery::Address> binds =
      ParseRootOption(options.bind_addrs, "bind_addrs");
  const std::vector<discovery::Address> registry =
      ParseRootOption(options.registry_addrs, "registry_addrs");
  config->registry_lease = options.registry_lease;
  if (registry.empty()) {
    // The embedded default: this root serves the registrar on its own
    // addresses.
    config->registrar = true;
    config->bind_addrs = AddrStrings(binds);
    config->registry_addrs.clear();
    return;
  }
  const std::vector<discovery::ProbeResult> probes =
      discovery::ProbeRegistryAddrs(registry);
  std::vector<discovery::Address> answered;
  const discovery::ProbeResult* occupied = nullptr;
  for (const auto& p : probes) {
    if (p.kind == discovery::ProbeKind::kRegistrar) answered.push_back(p.addr);
    if (p.kind == discovery::ProbeKind::kOccupied && occupied == nullptr) {
      occupied = &p;
    }
    VLOG(1) << "registry probe " << p.addr << ": "
            << (p.kind == discovery::ProbeKind::kRegistrar  ? "registrar"
                : p.kind == discovery::ProbeKind::kOccupied ? "occupied"
                                                            : "absent")
            << (p.detail.empty() ? "" : " (" + p.detail + ")");
  }
  if (!answered.empty()) {
    config->registry_addrs = AddrStrings(answered);
    if (binds.empty()) {
      // Loopback, plus the interface that reaches each remote registrar, so
      // the addresses registered there are reachable from its host.
      binds.push_back(discovery::Address::Tcp("127.0.0.1", 0));
      for (const auto& r : answered) {
        if (r.kind() == discovery::Address::Kind::kUnix || r.IsLoopback()) {
          continue;
        }
        if (auto ip = discovery::LocalIpToward(r)) {
          auto a = discovery::Address::Tcp(*ip, 0);
          if (!a.IsLoopback()) AddUnique(binds, a);
        }
      }
    }
    config->bind_addrs = AddrStrings(binds);
    return;
  }
  if (occupied != nullptr) {
    throw RuntimeFailure(absl::StrCat(
        "root actor '", options.name, "' cannot boot: no registrar answers at ",
        absl::StrJoin(AddrStrings(registry), ","), ", and ",
        occupied->addr.ToString(), " is held by ", occupied->detail,
        "; refusing to bind over a listener that is not a registrar"));
  }
  // Nobody there: become the registrar on the registry addresses (listed
  // first, see Runtime::Config::registrar) plus the bind addresses.
  config->registrar = true;
  std::vector<discovery::Address> all = registry;
  for (const auto& b : binds) AddUnique(all, b);
  config->bind_addrs = AddrStrings(all);
  config->registry_addrs = AddrStrings(registry);
}

}  // namespace tractor::internal
