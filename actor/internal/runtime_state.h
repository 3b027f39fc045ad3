// Shared state of the actor runtime of this process. Internal.
#ifndef TRACTOR_ACTOR_INTERNAL_RUNTIME_STATE_H_
#define TRACTOR_ACTOR_INTERNAL_RUNTIME_STATE_H_

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/internal/dialog.h"
#include "actor/payload.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::registrar {
class RegistrarService;
}  // namespace tractor::registrar

namespace tractor::discovery {
class Registrant;
}  // namespace tractor::discovery

namespace tractor::internal {

// One side of one dialog (caller or callee). Guarded by `mu`; `scope` is
// the dialog's cancel scope (callee: the task's).
struct ContextState {
  std::shared_ptr<Dialog> dialog;
  bool caller = true;
  bool is_context = true;  // false: a plain function call
  std::string cid;
  std::string func;
  v1::Aid self;
  v1::Aid peer;
  std::shared_ptr<grpc::Channel> channel;  // caller: for CancelTask
  std::shared_ptr<ScopeState> scope;
  // Callee: the receive queue capacity the caller asked for in Start.
  size_t start_buffer_size = kDefaultQueueCapacity;

  std::mutex mu;
  bool started = false;
  bool stream_opened = false;
  bool local_stop_sent = false;
  bool remote_stop = false;
  bool finished = false;  // terminal message seen (caller) or sent (callee)
  bool cancel_called = false;
  bool cancel_acked = false;
  std::optional<v1::Error> remote_error;
  std::optional<v1::Payload> result;
  v1::Aid canceller;          // attribution (spec 2.5)
  v1::Aid cancel_requester;   // callee: who asked to cancel the task
  bool transport_lost = false;
  PayloadSpec pld_spec;
};

// Process bookkeeping for one spawned child. Guarded by `mu`.
struct ChildProc {
  pid_t pid = -1;
  std::mutex mu;
  std::condition_variable_any cv;
  bool exited = false;
  int wait_status = 0;
  bool linked = false;
  bool link_lost = false;
  std::vector<std::string> accept_addrs;
  std::string boot_error;
};

// What a portal knows. Guarded by `mu`.
struct PortalState {
  v1::Aid aid;
  std::string addr;
  std::shared_ptr<grpc::Channel> channel;
  std::shared_ptr<ChildProc> proc;  // set for children of this actor

  std::mutex mu;
  std::condition_variable_any cv;
  bool has_result_task = false;
  bool result_ready = false;
  std::optional<Payload> result;
  std::exception_ptr error;
};

// The runtime of this process: its identity, server, tasks and children.
class Runtime {
 public:
  struct Config {
    v1::Aid self;
    v1::Aid parent;  // empty for the root
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
    // Lease to ask for (zero: the registrar's default); for an embedded
    // registrar, its default lease.
    absl::Duration registry_lease = absl::ZeroDuration();
  };

  // Returns the runtime of this process, or null.
  static Runtime* Get();
  // Returns the runtime or throws NoRuntime.
  static Runtime& Require();

  explicit Runtime(Config config);
  ~Runtime();

  // Binds and starts the server; throws RuntimeFailure on failure.
  void Start();
  // Cancels every remote task, stops the server. Idempotent.
  void Shutdown();

  const v1::Aid& self() const { return config_.self; }
  const Config& config() const { return config_; }
  std::vector<std::string> accept_addrs() const;
  // The embedded registrar, or null when this actor does not serve one.
  registrar::RegistrarService* embedded_registrar() const {
    return registrar_.get();
  }
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& addr);
  // Records that the actor `uuid` answered Info at `addr`.
  void NoteActorAt(const std::string& addr, const std::string& uuid);
  // True when `uuid` answered Info at `addr` over the channel that is still
  // connected now (so no other process can have taken the address since).
  bool KnowsLiveActorAt(const std::string& addr, const std::string& uuid);

  // Serving side.
  void HandleDialog(std::shared_ptr<Dialog> dialog);
  bool CancelTask(const std::string& cid, const v1::Aid& requester);
  // Cancels every task; calls `done` (on another thread) once they ended
  // or `bound` passed.
  void CancelAllTasks(const v1::Aid& requester, absl::Duration bound,
                      std::function<void()> done);
  bool IsEnabled(const std::string& ns) const;

  // Children.
  std::shared_ptr<ChildProc> ExpectChild(const std::string& uuid);
  std::shared_ptr<ChildProc> OnChildLinked(const v1::LinkHello& hello);
  void ForgetChild(const std::string& uuid);
  std::vector<v1::Aid> Children() const;

  // Exit requests (child runtime): set once, wakes WaitForExitRequest.
  void RequestExit(const std::string& why);
  // Runs (once, outside the runtime's lock) when an exit is requested; the
  // root actor cancels its block with it.
  void SetExitHook(std::function<void()> hook);
  std::string WaitForExitRequest();

  // Actor-lifetime callbacks, run (last first) at the start of Shutdown.
  void AddLifetimeCallback(std::function<void()> fn);
  void RunLifetimeCallbacks();

  // Runs `fn` on a pooled thread.
  static void RunDetached(std::function<void()> fn);

 private:
  void RunDialogTask(std::shared_ptr<Dialog> dialog);

  // Called by Start() once bound: lists an embedded registrar's own entry
  // and sets the registry list to its addresses, or registers this actor
  // with every registrar of its registry list (a Registrant that Shutdown()
  // stops, unregistering, before the server stops).
  void StartRegistration();

  Config config_;
  // Declared before server_: the registrar service must outlive the server.
  std::unique_ptr<registrar::RegistrarService> registrar_;
  std::unique_ptr<discovery::Registrant> registrant_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::CallbackGenericService> unused_;
  class ActorService;
  std::unique_ptr<ActorService> service_;
  std::shared_ptr<ScopeState> service_scope_;

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::vector<std::string> accept_addrs_;
  std::map<std::string, std::shared_ptr<ContextState>> tasks_;
  // Notified when `tasks_` becomes empty.
  std::condition_variable_any tasks_cv_;
  std::map<std::string, std::shared_ptr<ChildProc>> children_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
  // The uuid that answered Info at an address, while its channel is up.
  std::map<std::string, std::string> known_uuids_;
  std::map<std::string, v1::Aid> child_aids_;
  std::vector<std::function<void()>> lifetime_callbacks_;
  bool shutting_down_ = false;
  // Who cancelled this actor (CancelActor, or itself at shutdown); empty
  // while it runs. Dialogs that arrive afterwards are refused with a
  // ContextCancelled naming this requester.
  v1::Aid actor_canceller_;
  bool exit_requested_ = false;
  std::string exit_reason_;
  std::function<void()> exit_hook_;
};

// Caller side of a context, used by Portal (a plain call is one unary
// Actor.Call instead).
std::shared_ptr<ContextState> OpenDialog(PortalState& portal,
                                         const std::string& func,
                                         const Payload& args,
                                         const StreamOptions& callee_stream);

// Applies an arriving Error to the context (records it, interrupts the
// owner unless it is the answer to this side's own cancel).
void OnErrorArrived(ContextState& ctx, const v1::Error& error);

// Hooks `ctx` to its dialog, on either side: an arriving Error goes to
// OnErrorArrived; an item dropped under OVERRUN_POLICY_ERROR is answered
// with a StreamOverrun Error naming the peer as the sender.
void WatchDialog(const std::shared_ptr<ContextState>& ctx);

// Sends CancelTask for the caller's context; waits briefly for the reply.
void SendCancelTask(ContextState& ctx);

// Parses a log level name into glog settings.
void ApplyLogLevel(const std::string& level);

// Runs the child runtime described by `spec` and returns the exit code.
int ChildMain(const v1::SpawnSpec& spec);

// Spawns `/proc/self/exe` as a child actor with `spec`; returns its pid or
// throws RuntimeFailure.
pid_t SpawnProcess(const v1::SpawnSpec& spec);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_RUNTIME_STATE_H_
