// SPDX-License-Identifier: AGPL-3.0-or-later
// The root actor, and what a task may ask about the actor it runs in. The
// program's entry point, tractor::Main, is in actor/main.cc.
#include "actor/runtime.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "actor/internal/flags.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/control_methods.h"
#include "actor/internal/debugger.h"
#include "actor/internal/log_setup.h"
#include "actor/internal/registrar_election.h"
#include "actor/internal/runtime.h"
#include "actor/internal/signals.h"
#include "devx/crash_handler.h"
#include "discovery/log_level.h"
#include "glog/logging.h"
#include "registrar/etcd_store.h"

namespace tractor {

namespace {

// The registry list of a root whose options name none.
std::vector<std::string> DefaultRegistryAddrs() {
  const char* env = std::getenv("TRACTOR_REGISTRY");
  if (env == nullptr || *env == '\0') return {kDefaultRegistry};
  absl::StatusOr<std::vector<discovery::Address>> addrs =
      discovery::ParseAddressList(env);
  if (!addrs.ok()) {
    throw UsageError(
        absl::StrCat("TRACTOR_REGISTRY: ", addrs.status().message()));
  }
  std::vector<std::string> out;
  for (const auto& a : *addrs) out.push_back(a.ToString());
  return out;
}

// Installs the tree's transport security and mesh secret: `options`, else
// the environment, else plaintext and a random secret. Throws
// RuntimeFailure naming the file and the problem on a bad configuration.
void InstallRootSecurity(const RootOptions& options) {
  discovery::TlsConfig tls = options.tls;
  if (tls.empty()) {
    absl::StatusOr<discovery::TlsConfig> env = discovery::TlsConfigFromEnv();
    if (!env.ok()) {
      throw RuntimeFailure(absl::StrCat("root actor '", options.name,
                                        "': ", env.status().message()));
    }
    tls = *std::move(env);
  }
  absl::StatusOr<discovery::TlsMaterial> material = discovery::LoadTls(tls);
  if (!material.ok()) {
    throw RuntimeFailure(absl::StrCat("root actor '", options.name,
                                      "': ", material.status().message()));
  }
  std::string secret = options.secret;
  if (secret.empty()) {
    absl::StatusOr<std::string> env = discovery::SecretFromEnv();
    if (!env.ok()) {
      throw RuntimeFailure(absl::StrCat("root actor '", options.name,
                                        "': ", env.status().message()));
    }
    secret = env->empty() ? discovery::NewSecret() : *std::move(env);
  }
  discovery::InstallSecurity({*std::move(material), std::move(secret)});
}

std::string EnvOr(const std::string& value, const char* name) {
  if (!value.empty()) return value;
  const char* env = std::getenv(name);
  return env != nullptr ? env : "";
}

// The store of a registrar the root serves: an etcd cluster when
// `options.registry_etcd`, else the TRACTOR_REGISTRY_ETCD* environment
// variables, name one; else null (memory). Throws RuntimeFailure on a
// configuration that does not load.
std::shared_ptr<registrar::Store> RegistryStore(const RootOptions& options) {
  const RegistryEtcd& given = options.registry_etcd;
  registrar::EtcdStore::Options store;
  store.etcd.endpoints = given.endpoints;
  if (store.etcd.endpoints.empty()) {
    const std::string env = EnvOr("", "TRACTOR_REGISTRY_ETCD");
    if (env.empty()) return nullptr;
    absl::StatusOr<std::vector<discovery::Address>> addrs =
        discovery::ParseAddressList(env);
    if (!addrs.ok()) {
      throw RuntimeFailure(absl::StrCat("root actor '", options.name,
                                        "': TRACTOR_REGISTRY_ETCD: ",
                                        addrs.status().message()));
    }
    for (const auto& a : *addrs) store.etcd.endpoints.push_back(a.ToString());
  }
  const std::string prefix =
      EnvOr(given.prefix, "TRACTOR_REGISTRY_ETCD_PREFIX");
  if (!prefix.empty()) store.prefix = prefix;
  store.etcd.ca_file = EnvOr(given.ca_file, "TRACTOR_REGISTRY_ETCD_CA");
  store.etcd.cert_file = EnvOr(given.cert_file, "TRACTOR_REGISTRY_ETCD_CERT");
  store.etcd.key_file = EnvOr(given.key_file, "TRACTOR_REGISTRY_ETCD_KEY");
  absl::StatusOr<std::unique_ptr<registrar::EtcdStore>> etcd =
      registrar::EtcdStore::Create(std::move(store));
  if (!etcd.ok()) {
    throw RuntimeFailure(absl::StrCat("root actor '", options.name,
                                      "': registry_etcd: ",
                                      etcd.status().message()));
  }
  return *std::move(etcd);
}

// TRACTOR_DEBUG=1 (any value but "" and "0") turns debug mode on.
// `RootOptions::busy_wait` resolved: the option, else TRACTOR_BUSY_WAIT_US,
// else the default; at most 1 s.
absl::Duration BusyWaitWindow(const std::optional<absl::Duration>& option) {
  absl::Duration window = internal::kDefaultBusyWait;
  if (option) {
    window = *option;
  } else if (const char* v = std::getenv("TRACTOR_BUSY_WAIT_US");
             v != nullptr && *v != '\0') {
    int64_t us = 0;
    if (!absl::SimpleAtoi(v, &us) || us < 0) {
      throw RuntimeFailure(absl::StrCat(
          "TRACTOR_BUSY_WAIT_US must be a number of microseconds, got '", v,
          "'"));
    }
    window = absl::Microseconds(us);
  }
  return std::clamp(window, absl::ZeroDuration(), internal::kMaxBusyWait);
}

bool DebugModeFromEnv() {
  const char* v = std::getenv("TRACTOR_DEBUG");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

}  // namespace

void OpenRootActor(const RootOptions& given, const std::function<void()>& fn) {
  // The command line's runtime flags win over the program's options.
  RootOptions options = given;
  const internal::RuntimeFlags& flags = internal::GivenRuntimeFlags();
  if (flags.name) options.name = *flags.name;
  if (flags.bind_addrs) options.bind_addrs = *flags.bind_addrs;
  if (flags.registry_addrs) options.registry_addrs = *flags.registry_addrs;
  if (flags.enable_modules) options.enable_modules = *flags.enable_modules;
  if (flags.loglevel) options.loglevel = *flags.loglevel;
  if (flags.lease) options.registry_lease = *flags.lease;
  if (flags.busy_wait) options.busy_wait = *flags.busy_wait;
  if (flags.registry_etcd) {
    options.registry_etcd.endpoints = *flags.registry_etcd;
  }
  if (flags.registry_etcd_prefix) {
    options.registry_etcd.prefix = *flags.registry_etcd_prefix;
  }
  const bool default_registry = options.registry_addrs.empty();
  if (default_registry) options.registry_addrs = DefaultRegistryAddrs();
  constexpr char kOnlyOne[] =
      "an actor runtime already exists in this process (only one root actor "
      "per process)";
  if (internal::Runtime::Get() != nullptr) throw RuntimeFailure(kOnlyOne);
  internal::Runtime::Config config;
  config.self.set_name(options.name);
  config.enable_modules.insert(options.enable_modules.begin(),
                               options.enable_modules.end());
  config.loglevel = options.loglevel;
  config.single_task = options.single_task;
  config.max_tasks = options.max_tasks;
  config.hang_timeout = options.hang_timeout;
  config.same_host_socket = options.same_host_socket;
  config.debug_mode = options.debug_mode || DebugModeFromEnv();
  config.busy_wait = BusyWaitWindow(options.busy_wait);
  internal::ApplyLogLevel(options.loglevel);
  internal::ApplyVerbosityFlags();
  devx::InstallCrashHandler();
  devx::InstallStackDumpOnSignal();
  InstallRootSecurity(options);
  internal::ElectRegistrar({options.name, options.bind_addrs,
                            options.registry_addrs, options.registry_lease},
                           &config);
  config.registry_takeover = default_registry;
  config.registry_store = RegistryStore(options);
  auto rt = std::make_unique<internal::Runtime>(config);
  if (!internal::Runtime::SetCurrent(rt.get())) throw RuntimeFailure(kOnlyOne);
  discovery::SetLogActor(rt->self().name(), rt->self().uuid());
  devx::SetProcessLabel(absl::StrCat("actor '", rt->self().name(), "' ",
                                     rt->self().uuid().substr(0, 8)));
  struct Reset {
    std::unique_ptr<internal::Runtime>& rt;
    ~Reset() {
      rt->Shutdown();
      internal::Runtime::SetCurrent(nullptr);
    }
  } reset{rt};
  try {
    rt->Start();
  } catch (const RuntimeFailure& e) {
    if (!config.registrar || options.registry_addrs.empty()) throw;
    throw RuntimeFailure(absl::StrCat(
        "no registrar answers at ", absl::StrJoin(options.registry_addrs, ","),
        " and root actor '", options.name, "' could not become it: ",
        e.what()));
  }
  internal::UserTask task;
  CancelScope root_scope;
  bool interrupted = false;
  {
    internal::SigintWatch watch(root_scope.state(), [] {
      return internal::TtyLock::Process().Held();
    });
    // `Portal::CancelActor` on the root cancels its block, as it ends a
    // child's process: its nursery tears the tree down and OpenRootActor
    // returns.
    rt->SetExitHook([scope = root_scope.state()] { scope->Cancel(); });
    struct Unhook {
      internal::Runtime& rt;
      ~Unhook() { rt.SetExitHook(nullptr); }
    } unhook{*rt};
    root_scope.Run([&fn] { internal::RunRootBlock(fn); });
    interrupted = watch.fired();
  }
  if (interrupted) throw KeyboardInterrupt();
}

const v1::Aid& CurrentActor() { return internal::Runtime::Require().self(); }

std::vector<std::string> AcceptAddrs() {
  return internal::Runtime::Require().accept_addrs();
}

bool HasRuntime() { return internal::Runtime::Get() != nullptr; }

bool IsRootProcess() {
  internal::Runtime* rt = internal::Runtime::Get();
  return rt != nullptr && rt->config().parent.uuid().empty();
}

std::vector<std::string> RegistryAddrs() {
  return internal::Runtime::Require().config().registry_addrs;
}

bool IsRegistrar() {
  return internal::Runtime::Require().embedded_registrar() != nullptr;
}

std::string CurrentLogLevel() {
  const std::string& level = internal::Runtime::Require().config().loglevel;
  return level.empty() ? "error" : level;
}

void AddLifetimeCallback(std::function<void()> fn) {
  internal::Runtime::Require().AddLifetimeCallback(std::move(fn));
}

std::vector<ActorStacks> DumpTreeStacks(absl::Duration per_child) {
  const v1::StacksReply reply = internal::GatherStacks(
      internal::Runtime::Require(), /*tree=*/true, per_child);
  std::vector<ActorStacks> out;
  for (const auto& a : reply.actors()) {
    out.push_back({a.aid(), a.text(), a.error()});
  }
  return out;
}

bool DebugMode() {
  internal::Runtime* rt = internal::Runtime::Get();
  return rt != nullptr && rt->config().debug_mode;
}

// Not inlined, and not a tail call: gdb selects the frame that called it.
__attribute__((noinline)) void Pause() {
  internal::Runtime& rt = internal::Runtime::Require();
  if (!rt.config().debug_mode) {
    throw UsageError(
        "tractor::Pause() needs debug mode: set RootOptions.debug_mode or "
        "TRACTOR_DEBUG=1 in the root's environment");
  }
  internal::EnterDebugger("Pause()", "tractor::Pause");
  asm volatile("" ::: "memory");
}

bool KnowsLiveActorAt(const std::string& addr, const std::string& uuid) {
  internal::Runtime* rt = internal::Runtime::Get();
  return rt != nullptr && rt->KnowsLiveActorAt(addr, uuid);
}

}  // namespace tractor
