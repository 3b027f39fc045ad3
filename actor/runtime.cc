// SPDX-License-Identifier: AGPL-3.0-or-later
// The public entry points: the program's Main, the root actor, and what a
// task may ask about the actor it runs in.
#include "actor/runtime.h"

#include <signal.h>

#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_join.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/child_main.h"
#include "actor/internal/registrar_election.h"
#include "actor/internal/runtime.h"
#include "actor/internal/signals.h"
#include "actor/internal/spawn.h"
#include "glog/logging.h"

namespace tractor {

int Main(int argc, char** argv, const std::function<int()>& root_main) {
  // Debian's Abseil checks every absl::Mutex acquisition for lock-order
  // cycles (a debugging aid that gRPC's own locks pay for on every call);
  // an actor process runs without it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (std::optional<v1::SpawnSpec> spec = internal::TakeSpawnSpec()) {
    google::InitGoogleLogging(argc > 0 ? argv[0] : "tractor");
    _exit(internal::ChildMain(*spec));
  }
  static bool glog_ready = false;
  if (!glog_ready) {
    glog_ready = true;
    google::InitGoogleLogging(argc > 0 ? argv[0] : "tractor");
    internal::ApplyLogLevel("");
  }
  try {
    return root_main();
  } catch (const KeyboardInterrupt&) {
    // Exit the way an interrupted program does: by SIGINT.
    fprintf(stderr, "KeyboardInterrupt\n");
    fflush(stderr);
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return 130;
  }
}

namespace {

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

}  // namespace

void OpenRootActor(const RootOptions& options, const std::function<void()>& fn) {
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
  config.same_host_socket = options.same_host_socket;
  internal::ApplyLogLevel(options.loglevel);
  InstallRootSecurity(options);
  internal::ElectRegistrar({options.name, options.bind_addrs,
                            options.registry_addrs, options.registry_lease},
                           &config);
  auto rt = std::make_unique<internal::Runtime>(config);
  if (!internal::Runtime::SetCurrent(rt.get())) throw RuntimeFailure(kOnlyOne);
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
    internal::SigintWatch watch(root_scope.state());
    // `Portal::CancelActor` on the root cancels its block, as it ends a
    // child's process: its nursery tears the tree down and OpenRootActor
    // returns.
    rt->SetExitHook([scope = root_scope.state()] { scope->Cancel(); });
    struct Unhook {
      internal::Runtime& rt;
      ~Unhook() { rt.SetExitHook(nullptr); }
    } unhook{*rt};
    root_scope.Run(fn);
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

bool KnowsLiveActorAt(const std::string& addr, const std::string& uuid) {
  internal::Runtime* rt = internal::Runtime::Get();
  return rt != nullptr && rt->KnowsLiveActorAt(addr, uuid);
}

}  // namespace tractor
