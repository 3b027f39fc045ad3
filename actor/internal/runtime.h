// SPDX-License-Identifier: AGPL-3.0-or-later
// The actor runtime of this process: its identity, gRPC server, remote
// tasks, children, channels and registration.
#ifndef TRACTOR_ACTOR_INTERNAL_RUNTIME_H_
#define TRACTOR_ACTOR_INTERNAL_RUNTIME_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "actor/internal/busy_wait.h"
#include "actor/internal/child_proc.h"
#include "actor/internal/dialog_acceptor.h"
#include "actor/internal/dialog_transport.h"
#include "actor/internal/task_server.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::registrar {
class RegistrarService;
class Store;
}  // namespace tractor::registrar

namespace tractor::discovery {
class ListeningPorts;
class Registrant;
}  // namespace tractor::discovery

namespace grpc {
class AsyncGenericService;
}  // namespace grpc

namespace tractor::internal {

using UnknownMethodService = grpc::AsyncGenericService;
class ActorService;
class DebugLockService;
class HealthService;
class LinkService;
class ServiceThread;
class StacksGatherings;

// One per actor process, reached through `Runtime::Get()`. Thread-safe.
// Lives from `OpenRootActor` (root) or `ChildMain` (child) until `Shutdown`
// returns and the owner destroys it; it is installed as the process's
// runtime for that whole time (`SetCurrent`).
class Runtime {
 public:
  struct Config {
    v1::Aid self;
    v1::Aid parent;  // empty for the root
    // Where the parent accepts (`SpawnSpec.parent_addr`); empty for the root.
    std::string parent_addr;
    std::vector<std::string> bind_addrs;
    std::vector<std::string> registry_addrs;
    std::set<std::string> enable_modules;
    std::string loglevel;
    std::string root_addr;
    bool single_task = true;
    // Serve the registrar embedded in this actor's server. Its registry
    // list then becomes its own accept addresses: the first
    // `registry_addrs.size()` of them, or all when `registry_addrs` is empty.
    bool registrar = false;
    // Also listen on a unix socket private to this user, for peers on the
    // same host (`local_addr`); skipped when a bind address is already a
    // unix socket.
    bool same_host_socket = true;
    // Lease to ask for (zero: the registrar's default); for an embedded
    // registrar, its default lease.
    absl::Duration registry_lease = absl::ZeroDuration();
    // Where a registrar this actor serves keeps its registrations (null: its
    // own memory).
    std::shared_ptr<registrar::Store> registry_store;
    // Most remote tasks at once (0: `TaskServer::kDefaultMaxTasks`).
    size_t max_tasks = 0;
    // A root that registers with the default registry (not one it was
    // given): while no registrar answers at any registry address, it tries
    // to bind them and serve the registrar there itself (TakeoverLoop).
    bool registry_takeover = false;
    // How long a child's `Link` connection may leave the link server's pings
    // unanswered before it is dropped (`discovery::ApplyServerKeepalive`), so
    // a hung child is noticed. Zero: `discovery::kDefaultHangTimeout`.
    absl::Duration hang_timeout = absl::ZeroDuration();
    // Debug mode (actor/internal/debugger.h): the link server pings no
    // child (children send `LinkMsg.heartbeat` instead), actor channels
    // send no keepalive pings, and an error escaping a task stops the actor
    // in the debugger.
    bool debug_mode = false;
    // How long a CPU is kept awake after the runtime's I/O (busy_wait.h);
    // zero: not at all.
    absl::Duration busy_wait = kDefaultBusyWait;
  };

  // Returns the runtime of this process, or null.
  static Runtime* Get();
  // Returns the runtime or throws NoRuntime.
  static Runtime& Require();
  // Installs `rt` as this process's runtime (null: none). Returns false,
  // leaving the current one, when another runtime is installed.
  static bool SetCurrent(Runtime* rt);

  explicit Runtime(Config config);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Binds and starts the server; throws RuntimeFailure on failure.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every remote task, runs the lifetime callbacks, unregisters,
  // stops the server, and waits for the children kept by `KeepUnreaped` to
  // be reaped. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);
  // A child that a nursery of this actor went on without once it said bye
  // (`CancelAll` with `defer_reaping`; the process's reaper escalates its
  // exit when overdue): `Shutdown` returns only once it is reaped, so no
  // process outlives this one.
  void KeepUnreaped(std::shared_ptr<ChildProc> proc)
      ABSL_LOCKS_EXCLUDED(unreaped_mu_);

  const v1::Aid& self() const { return *self_; }
  // The same, shared: a dialog's session holds it instead of a copy.
  const std::shared_ptr<const v1::Aid>& shared_self() const { return self_; }
  const Config& config() const { return config_; }
  std::vector<std::string> accept_addrs() const ABSL_LOCKS_EXCLUDED(mu_);
  // The same-host socket ("unix:/tmp/tractor-<uid>/<uuid>.sock"), or empty.
  // Not among `accept_addrs`: handed only to peers with this host's id.
  std::string local_addr() const ABSL_LOCKS_EXCLUDED(mu_);
  // Where this actor's children open `Link` (its link server, loopback).
  // The server starts on the first call, so an actor that never spawns
  // never runs one. Throws RuntimeFailure if it cannot start, or once
  // Shutdown has begun.
  std::string link_addr() ABSL_LOCKS_EXCLUDED(link_mu_, mu_);
  // The embedded registrar, or null when this actor does not serve one.
  registrar::RegistrarService* embedded_registrar() const {
    return registrar_.get();
  }
  TaskServer& tasks() { return tasks_; }

  // The shared channel to `addr` (one per address, kept for the runtime's
  // life).
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& addr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Records that the actor `uuid` answered Info at `addr`.
  void NoteActorAt(const std::string& addr, const std::string& uuid)
      ABSL_LOCKS_EXCLUDED(mu_);
  // True when `uuid` answered Info at `addr` over the channel that is still
  // connected now (so no other process can have taken the address since).
  bool KnowsLiveActorAt(const std::string& addr, const std::string& uuid)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Children.
  // Expects the child `uuid` to link, presenting `link_secret`.
  std::shared_ptr<ChildProc> ExpectChild(const std::string& uuid,
                                         std::string link_secret)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Accepts the link of an expected child. Returns null, with `*refused`
  // saying why, for a child this actor did not spawn (FAILED_PRECONDITION)
  // or one that did not present its per-spawn secret (PERMISSION_DENIED,
  // logged).
  std::shared_ptr<ChildProc> OnChildLinked(const v1::LinkHello& hello,
                                           grpc::Status* refused)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetChild(const std::string& uuid) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<v1::Aid> Children() const ABSL_LOCKS_EXCLUDED(mu_);
  // The live children with the addresses each accepts on.
  std::vector<v1::ChildAddrs> ChildAddrs() const ABSL_LOCKS_EXCLUDED(mu_);
  // Every linked child and the address to reach it by (its same-host
  // socket when it has one, else an accept address).
  std::vector<std::pair<v1::Aid, std::string>> ChildLinks() const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Exit requests: set once, wakes WaitForExitRequest.
  void RequestExit(const std::string& why) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs (once, outside the runtime's lock) when an exit is requested; the
  // root actor cancels its block with it.
  void SetExitHook(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks (not a checkpoint: for a child's main thread) until an exit is
  // requested; returns why.
  std::string WaitForExitRequest() ABSL_LOCKS_EXCLUDED(mu_);

  // The accept queue, for other async calls whose completions its waiting
  // thread may deliver (`ServiceCall`: a child's link to its parent, see
  // actor/internal/parent_link.h). Set by Start; shut down by Shutdown,
  // after the lifetime callbacks.
  ServiceQueue* accept_queue() { return acceptor_.get(); }

  // How many `Actor/Stacks` calls this actor is gathering (for tests and
  // diagnostics).
  size_t stacks_in_progress() const;

  // How long Shutdown waits for the `Stacks` calls being gathered before it
  // cuts their children's calls short, and then again for them to end.
  static constexpr absl::Duration kStacksBound = absl::Milliseconds(500);

  // Actor-lifetime callbacks, run (last first) at the start of Shutdown.
  void AddLifetimeCallback(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Starts the link server children open `Link` on (see LinkService).
  void StartLinkServer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_mu_);
  // The standard health service answers NOT_SERVING from now on (the exit
  // has started: RequestExit or Shutdown).
  void SetNotServing();
  void RunLifetimeCallbacks() ABSL_LOCKS_EXCLUDED(mu_);
  // Called by Start() once bound: lists an embedded registrar's own entry
  // and sets the registry list to its addresses, or registers this actor
  // with every registrar of its registry list (a Registrant that Shutdown()
  // stops, unregistering, before the server stops).
  void StartRegistration();
  // A registrar service for this actor to serve (embedded, or in a registry
  // it took over): its default lease and store are the runtime's, and only
  // members of this tree's mesh may change the registry.
  std::unique_ptr<registrar::RegistrarService> NewRegistrar() const;
  // The registry takeover (Config::registry_takeover): every
  // kTakeoverCheckPeriod, probes the registry addresses; when none answers
  // and none is held by something else, binds them all in a second server
  // serving the registrar, lists this actor there, and stops.
  void TakeoverLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool TryServeRegistry() ABSL_LOCKS_EXCLUDED(mu_);

  Config config_;
  // config_.self, complete from construction on.
  const std::shared_ptr<const v1::Aid> self_;
  TaskServer tasks_;
  // Declared before server_: the registrar service must outlive the server.
  std::unique_ptr<registrar::RegistrarService> registrar_;
  std::unique_ptr<discovery::Registrant> registrant_;
  std::unique_ptr<ActorService> service_;
  // Children's `Link` streams, on a server of their own (see LinkService),
  // started by the first link_addr() and stopped by Shutdown.
  Mutex link_mu_;
  bool link_closed_ ABSL_GUARDED_BY(link_mu_) = false;
  std::unique_ptr<LinkService> link_service_ ABSL_GUARDED_BY(link_mu_);
  std::unique_ptr<UnknownMethodService> link_unknown_methods_
      ABSL_GUARDED_BY(link_mu_);
  // The link server's queue and the one thread serving it; stopped after
  // the link server, destroyed after it.
  std::unique_ptr<ServiceThread> link_queue_ ABSL_GUARDED_BY(link_mu_);
  std::unique_ptr<grpc::Server> link_server_ ABSL_GUARDED_BY(link_mu_);
  std::string link_addr_ ABSL_GUARDED_BY(link_mu_);
  // The `Stacks` calls being gathered (see ServeControlMethods); shared
  // with them, as a gathering may outlive the runtime's wait for it.
  std::shared_ptr<StacksGatherings> stacks_;
  std::unique_ptr<DebugLockService> debug_lock_service_;  // debug mode only
  std::unique_ptr<UnknownMethodService> unknown_methods_;
  // The server's grpc.health.v1.Health (owned here, not by the server).
  std::unique_ptr<HealthService> health_;
  // Accepts `Actor/Open` calls, and serves `Call`, the control methods,
  // `Link`, the health service and the unknown methods from the same queue
  // (DialogAcceptor); the queue is shut down after the server.
  std::unique_ptr<grpc::ServerCompletionQueue> accept_cq_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<DialogAcceptor> acceptor_;
  // The registry this actor took over (TakeoverLoop), declared service
  // first; set once by the takeover thread under mu_, stopped by Shutdown
  // after the thread is joined.
  std::unique_ptr<registrar::RegistrarService> takeover_registrar_;
  std::unique_ptr<grpc::Server> takeover_server_;
  std::unique_ptr<discovery::ListeningPorts> takeover_ports_;
  std::thread takeover_thread_;
  CondVar takeover_cv_;  // signalled when shutting_down_ is set
  // Set by Start() once bound (under mu_), read by Shutdown().
  std::unique_ptr<discovery::ListeningPorts> ports_ ABSL_GUARDED_BY(mu_);

  mutable Mutex mu_;
  CondVar exit_cv_;  // signalled when an exit is requested
  std::vector<std::string> accept_addrs_ ABSL_GUARDED_BY(mu_);
  std::string local_addr_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ChildProc>> children_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Aid> child_aids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  // The uuid that answered Info at an address, while its channel is up.
  std::map<std::string, std::string> known_uuids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> lifetime_callbacks_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool exit_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::string exit_reason_ ABSL_GUARDED_BY(mu_);
  std::function<void()> exit_hook_ ABSL_GUARDED_BY(mu_);
  // `KeepUnreaped`'s children not yet seen reaped. Taken before a child's
  // `mu`, never after.
  Mutex unreaped_mu_;
  std::vector<std::shared_ptr<ChildProc>> unreaped_
      ABSL_GUARDED_BY(unreaped_mu_);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_RUNTIME_H_
