// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime's registration: listing this actor with its registrars (or
// in the registrar it embeds), and a root's takeover of a default registry
// nobody serves.
#include "actor/internal/runtime.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/errors.h"
#include "discovery/address.h"
#include "discovery/listen.h"
#include "discovery/registry_client.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"
#include "registrar/registrar_service.h"

namespace tractor::internal {

std::unique_ptr<registrar::RegistrarService> Runtime::NewRegistrar() const {
  registrar::RegistrarService::Options options;
  options.self = config_.self;
  // Only members of this tree's mesh may change its registry.
  options.members_only = true;
  if (config_.registry_lease > absl::ZeroDuration()) {
    options.default_lease = config_.registry_lease;
  }
  options.store = config_.registry_store;
  return std::make_unique<registrar::RegistrarService>(options);
}

void Runtime::StartRegistration() {
  const std::vector<std::string> accept = accept_addrs();
  if (registrar_) {
    // The embedded registrar: the registry is this actor's own addresses
    // (those bound for the registry addresses, listed first), and it lists
    // itself without a lease.
    const size_t n = config_.registry_addrs.empty()
                         ? accept.size()
                         : std::min(config_.registry_addrs.size(),
                                    accept.size());
    config_.registry_addrs.assign(accept.begin(), accept.begin() + n);
    if (config_.registry_store == nullptr) {
      v1::Registration self;
      *self.mutable_aid() = config_.self;
      for (const auto& a : accept) self.add_addrs(a);
      if (absl::Status st = registrar_->AddPinnedRegistration(self); !st.ok()) {
        LOG(ERROR) << "actor '" << config_.self.name()
                   << "' cannot register itself: " << st;
      }
      return;
    }
    // With a shared store (etcd), the actor's own entry lives there under a
    // lease like any other, registered through its own registrar: every
    // registrar in front of the store lists it, and it expires when this
    // process dies without unregistering.
  }
  if (config_.registry_addrs.empty()) return;
  discovery::Registrant::Options options;
  options.aid = config_.self;
  options.addrs = accept;
  options.lease = config_.registry_lease;
  for (const auto& r : config_.registry_addrs) {
    auto parsed = discovery::Address::Parse(r);
    if (!parsed.ok()) {
      throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                        "': bad registry address: ",
                                        parsed.status().message()));
    }
    options.registrars.push_back(*parsed);
  }
  registrant_ = std::make_unique<discovery::Registrant>(std::move(options));
  registrant_->Start();
  if (config_.registry_takeover && config_.parent.uuid().empty() &&
      !registrar_) {
    takeover_thread_ = std::thread([this] { TakeoverLoop(); });
  }
}

namespace {
// How often a root probes a default registry that stopped answering.
constexpr absl::Duration kTakeoverCheckPeriod = absl::Milliseconds(500);
}  // namespace

void Runtime::TakeoverLoop() {
  discovery::NameThisThread("takeover");
  std::vector<discovery::Address> registry;
  for (const auto& r : config_.registry_addrs) {
    registry.push_back(*discovery::Address::Parse(r));  // parsed at Start
  }
  for (;;) {
    {
      MutexLock lock(&mu_);
      takeover_cv_.WaitWithTimeout(&mu_, kTakeoverCheckPeriod);
      if (shutting_down_) return;
    }
    bool answered = false;
    for (const auto& p : discovery::ProbeRegistryAddrs(registry)) {
      // Held by something else: nothing to take over (and no bind over it).
      if (p.kind != discovery::ProbeKind::kAbsent) answered = true;
    }
    if (answered) continue;
    if (TryServeRegistry()) return;
  }
}

bool Runtime::TryServeRegistry() {
  std::vector<discovery::Address> registry;
  for (const auto& r : config_.registry_addrs) {
    registry.push_back(*discovery::Address::Parse(r));
  }
  // The registry's address serves reflection and channelz itself, as the
  // registrar daemon does: loaded now, unless opted out.
  if (absl::Status st = discovery::LoadStandardServices(); !st.ok()) {
    LOG(WARNING) << "registry takeover: " << st.message();
  }
  grpc::ServerBuilder builder;
  discovery::ApplyServerArgs(builder);
  auto ports = discovery::BindAll(builder, registry);
  if (!ports.ok()) {
    VLOG(1) << "registry takeover: " << ports.status();
    return false;
  }
  std::unique_ptr<registrar::RegistrarService> service = NewRegistrar();
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    // Another root bound it first; it answers at the next probe.
    VLOG(1) << "registry takeover: could not bind "
            << absl::StrJoin(config_.registry_addrs, ",");
    return false;
  }
  // With a shared store the actor's own entry is already there (its
  // Registrant keeps it, now through this registrar).
  if (config_.registry_store == nullptr) {
    v1::Registration self;
    *self.mutable_aid() = config_.self;
    for (const auto& a : accept_addrs()) self.add_addrs(a);
    if (absl::Status st = service->AddPinnedRegistration(self); !st.ok()) {
      LOG(ERROR) << "registry takeover: cannot list actor '"
                 << config_.self.name() << "': " << st;
    }
  }
  LOG(WARNING) << "no registrar answers at "
               << absl::StrJoin(config_.registry_addrs, ",") << ": actor '"
               << config_.self.name() << "' serves the registry there now";
  MutexLock lock(&mu_);
  if (shutting_down_) {
    service->Shutdown();
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    ports->RemoveSocketFiles();
    return true;
  }
  takeover_registrar_ = std::move(service);
  takeover_server_ = std::move(server);
  takeover_ports_ = std::make_unique<discovery::ListeningPorts>(*std::move(ports));
  return true;
}

}  // namespace tractor::internal
