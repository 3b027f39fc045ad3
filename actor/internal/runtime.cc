// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/actor_service.h"
#include "actor/internal/async_services.h"
#include "actor/internal/control_methods.h"
#include "actor/internal/debugger.h"
#include "actor/internal/health_service.h"
#include "devx/debugger.h"
#include "actor/internal/wire.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "discovery/log_level.h"
#include "discovery/uuid.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"
#include "grpcpp/health_check_service_interface.h"
#include "registrar/registrar_service.h"

namespace tractor::internal {
namespace {

// The process's runtime.
struct Installed {
  Mutex mu;
  Runtime* runtime ABSL_GUARDED_BY(mu) = nullptr;
};

Installed& GetInstalled() {
  static auto* installed = new Installed;
  return *installed;
}

// Fills in the pid, a uuid when none was chosen, the registrar flag and
// the default timeouts: the actor's identity is complete before anything
// shares it.
Runtime::Config WithDefaults(Runtime::Config config) {
  config.self.set_pid(getpid());
  if (config.self.uuid().empty()) config.self.set_uuid(discovery::NewUuid());
  if (config.registrar) config.self.set_is_registrar(true);
  if (config.hang_timeout <= absl::ZeroDuration()) {
    config.hang_timeout = discovery::kDefaultHangTimeout;
  }
  return config;
}

}  // namespace

Runtime* Runtime::Get() {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  return installed.runtime;
}

Runtime& Runtime::Require() {
  Runtime* rt = Get();
  if (rt == nullptr) {
    throw NoRuntime(
        "no actor runtime in this process: call tractor::OpenRootActor "
        "(or run inside a spawned actor) first");
  }
  return *rt;
}

bool Runtime::SetCurrent(Runtime* rt) {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  if (rt != nullptr && installed.runtime != nullptr) return false;
  installed.runtime = rt;
  return true;
}

namespace {

// The server's health service as the builder option wants it (owned by
// the server): forwards to the runtime's `HealthService`.
class HealthForwarder final : public grpc::HealthCheckServiceInterface {
 public:
  explicit HealthForwarder(HealthService* health) : health_(health) {}
  void SetServingStatus(const std::string& service_name,
                        bool serving) override {
    health_->SetServingStatus(service_name, serving);
  }
  void SetServingStatus(bool serving) override {
    health_->SetServingStatus(serving);
  }
  void Shutdown() override { health_->Shutdown(); }

 private:
  HealthService* const health_;
};

}  // namespace

Runtime::Runtime(Config config)
    : config_(WithDefaults(std::move(config))),
      self_(std::make_shared<const v1::Aid>(config_.self)),
      tasks_(self_, config_.enable_modules, config_.max_tasks) {
  SetSingleTaskMode(config_.single_task);
  if (config_.debug_mode) {
    discovery::SetActorKeepalive(false);
    InstallPostMortem();
  }
}

Runtime::~Runtime() {
  Shutdown();
  if (config_.debug_mode) {
    devx::SetPostMortemHook(nullptr);
    discovery::SetActorKeepalive(true);
  }
}

void Runtime::Start() {
  BusyWait::Process().Start(config_.busy_wait);
  // Reflection and channelz are loaded when first called
  // (discovery::LazyStandardServices); a bad value stops the actor now.
  if (absl::StatusOr<discovery::StandardServices> st =
          discovery::RequestedStandardServices();
      !st.ok()) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(), "': ",
                                      st.status().message()));
  }
  grpc::ServerBuilder builder;
  discovery::ApplyServerArgs(builder);
  std::shared_ptr<discovery::LazyStandardServices> standard =
      discovery::LazyStandardServices::AttachTo(builder);
  std::vector<std::string> binds = config_.bind_addrs;
  if (binds.empty()) binds.push_back("127.0.0.1:0");
  std::vector<discovery::Address> addrs;
  for (const auto& b : binds) {
    auto parsed = discovery::Address::Parse(b);
    if (!parsed.ok()) {
      throw RuntimeFailure(absl::StrCat("bad bind address: ",
                                        parsed.status().message()));
    }
    addrs.push_back(*std::move(parsed));
  }
  const bool has_unix = std::any_of(
      addrs.begin(), addrs.end(), [](const discovery::Address& a) {
        return a.kind() == discovery::Address::Kind::kUnix;
      });
  std::optional<discovery::Address> local;
  if (config_.same_host_socket && !has_unix) {
    local = discovery::PrivateSocketAddress(config_.self.uuid());
    if (local) addrs.push_back(*local);
  }
  auto ports = discovery::BindAll(builder, std::move(addrs));
  if (!ports.ok()) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(), "' ",
                                      ports.status().message()));
  }
  // No callback API outside debug mode (actor/internal/async_services.h).
  service_ = std::make_unique<ActorService>();
  builder.RegisterService(service_.get());
  if (config_.debug_mode) {
    debug_lock_service_ = std::make_unique<DebugLockService>(this);
    builder.RegisterService(debug_lock_service_.get());
  }
  unknown_methods_ = std::make_unique<UnknownMethodService>();
  builder.RegisterAsyncGenericService(unknown_methods_.get());
  // The server's health service is this one, not gRPC's default, which is
  // on the callback API. The option takes a non-owning stand-in.
  health_ = std::make_unique<HealthService>();
  builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(
      std::make_unique<HealthForwarder>(health_.get())));
  builder.RegisterService(health_->service());
  if (config_.registrar) {
    registrar_ = NewRegistrar();
    builder.RegisterService(registrar_.get());
  }
  accept_cq_ = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  if (!server_) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' could not bind ",
                                      absl::StrJoin(binds, ",")));
  }
  auto accept = ports->Resolve(server_.get());
  if (!accept.ok()) {
    {
      // Kept for Shutdown, which removes the socket files bound so far.
      MutexLock lock(&mu_);
      ports_ = std::make_unique<discovery::ListeningPorts>(*std::move(ports));
    }
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(), "' ",
                                      accept.status().message()));
  }
  {
    MutexLock lock(&mu_);
    for (const auto& a : *accept) accept_addrs_.push_back(a.ToString());
    if (local) {
      local_addr_ = accept_addrs_.back();
      accept_addrs_.pop_back();
    }
    ports_ = std::make_unique<discovery::ListeningPorts>(*std::move(ports));
  }
  ActorService* service = service_.get();
  TaskServer* tasks = &tasks_;
  acceptor_ = std::make_unique<DialogAcceptor>(
      [service](grpc::ServerContext* ctx,
                grpc::ServerAsyncReaderWriter<grpc::ByteBuffer,
                                              grpc::ByteBuffer>* stream,
                grpc::CompletionQueue* call_cq,
                grpc::ServerCompletionQueue* cq, void* tag) {
        service->RequestOpen(ctx, stream, call_cq, cq, tag);
      },
      accept_cq_.get(),
      [tasks](std::shared_ptr<Dialog> dialog) {
        tasks->ServeDialog(std::move(dialog));
      });
  ServeUnaryCalls(this, service, acceptor_.get());
  acceptor_->Start();
  ServeLinksOf(this, acceptor_.get(), service);
  ServeCancelActor(this, service, acceptor_.get());
  stacks_ = std::make_shared<StacksGatherings>();
  ServeControlMethods(this, service, acceptor_.get(), stacks_);
  ServeUnknownMethods(config_.self.name(), unknown_methods_.get(),
                      acceptor_.get(), std::move(standard));
  health_->Serve(acceptor_.get());
  StartRegistration();
}

void Runtime::AddLifetimeCallback(std::function<void()> fn) {
  MutexLock lock(&mu_);
  lifetime_callbacks_.push_back(std::move(fn));
}

void Runtime::RunLifetimeCallbacks() {
  std::vector<std::function<void()>> callbacks;
  {
    MutexLock lock(&mu_);
    callbacks.swap(lifetime_callbacks_);
  }
  for (auto it = callbacks.rbegin(); it != callbacks.rend(); ++it) {
    try {
      (*it)();
    } catch (const std::exception& e) {
      LOG(ERROR) << "actor-lifetime callback raised: " << e.what();
    } catch (...) {
      LOG(ERROR) << "actor-lifetime callback raised a non-standard exception";
    }
  }
}

void Runtime::Shutdown() {
  {
    MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    takeover_cv_.SignalAll();
  }
  // The spinner ends while the rest shuts down; joined below.
  BusyWait::Process().RequestStop();
  if (takeover_thread_.joinable()) takeover_thread_.join();
  SetNotServing();
  // Unregistering is a round trip to every registrar (bounded by the
  // registrant's unregister timeout). When no registrar of this process
  // takes it, the calls are sent now and answered while the tasks are
  // cancelled and the servers shut down, instead of before them: the
  // actor's exit then takes the longest of the steps rather than their sum.
  // A registrar this actor serves itself (embedded, or taken over) must
  // still answer, so that unregistration comes first, below. (Should this
  // function leave by an exception, the registrant's destructor collects
  // the calls.)
  const bool unregister_early =
      registrant_ && !registrar_ && !takeover_registrar_;
  if (unregister_early) registrant_->BeginStop();
  tasks_.Close();
  tasks_.CancelAllTasks(self(), absl::Seconds(2));
  RunLifetimeCallbacks();
  // Unregister at once (bounded), while the server still answers; then end
  // the embedded registrar's pending WaitFor/Watch calls so the server's
  // shutdown does not wait for them.
  if (registrant_ && !unregister_early) registrant_->Stop();
  if (registrar_) registrar_->Shutdown();
  if (takeover_registrar_) {
    takeover_registrar_->Shutdown();
    takeover_server_->Shutdown(std::chrono::system_clock::now() +
                               std::chrono::milliseconds(500));
    takeover_server_->Wait();
    takeover_ports_->RemoveSocketFiles();
  }
  {
    MutexLock lock(&link_mu_);
    link_closed_ = true;
    if (link_server_) {
      link_server_->Shutdown(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(500));
      link_server_->Wait();
    }
    if (link_queue_) link_queue_->Stop();
  }
  // A `Stacks` still gathering is answered before the server goes, unless
  // its children keep it past the bound: their calls are then cut short.
  // One that still has not ended holds its call, and so the server's Wait,
  // until it does; its answer then goes to nobody.
  if (stacks_ && !stacks_->Stop(kStacksBound)) {
    LOG(WARNING) << "actor '" << config_.self.name() << "': "
                 << stacks_->in_progress()
                 << " Stacks call(s) still gathering at the exit";
  }
  if (acceptor_) acceptor_->StopRequesting();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(500));
    server_->Wait();
  }
  if (acceptor_) acceptor_->Stop();
  if (unregister_early) registrant_->Stop();
  BusyWait::Process().Stop();
  // Children that said bye to a nursery which went on without them are
  // reaped by now, or soon: no process outlives this one. The wait is
  // bounded by their ladder, which the reaper runs (SIGTERM when overdue,
  // then SIGKILL).
  std::vector<std::shared_ptr<ChildProc>> unreaped;
  {
    MutexLock lock(&unreaped_mu_);
    unreaped.swap(unreaped_);
  }
  for (const auto& proc : unreaped) {
    MutexLock lk(&proc->mu);
    while (!proc->exited) proc->cv.Wait(&proc->mu);
  }
  MutexLock lock(&mu_);
  if (ports_) ports_->RemoveSocketFiles();
  TRACTOR_LOG(transport) << "closing the connections to " << channels_.size()
                         << " peer address(es)";
}

size_t Runtime::stacks_in_progress() const {
  return stacks_ ? stacks_->in_progress() : 0;
}

void Runtime::KeepUnreaped(std::shared_ptr<ChildProc> proc) {
  MutexLock lock(&unreaped_mu_);
  // Those reaped since are let go.
  unreaped_.erase(std::remove_if(unreaped_.begin(), unreaped_.end(),
                                 [](const std::shared_ptr<ChildProc>& p) {
                                   MutexLock lk(&p->mu);
                                   return p->exited;
                                 }),
                  unreaped_.end());
  unreaped_.push_back(std::move(proc));
}

std::string Runtime::local_addr() const {
  MutexLock lk(&mu_);
  return local_addr_;
}

std::vector<std::string> Runtime::accept_addrs() const {
  MutexLock lock(&mu_);
  return accept_addrs_;
}

std::shared_ptr<grpc::Channel> Runtime::ChannelTo(const std::string& addr) {
  MutexLock lock(&mu_);
  auto& ch = channels_[addr];
  if (!ch) {
    auto parsed = discovery::Address::Parse(addr);
    ch = parsed.ok()
             ? discovery::NewChannel(*parsed, discovery::ChannelPurpose::kActor)
             : grpc::CreateCustomChannel(
                   addr, discovery::ProcessChannelCredentials(),
                   discovery::ClientChannelArgs(
                       discovery::ChannelPurpose::kActor));
    TRACTOR_LOG(transport) << "connection to " << addr
                           << " opened (a channel of this actor's)";
  }
  return ch;
}

void Runtime::NoteActorAt(const std::string& addr, const std::string& uuid) {
  MutexLock lock(&mu_);
  known_uuids_[addr] = uuid;
}

bool Runtime::KnowsLiveActorAt(const std::string& addr,
                               const std::string& uuid) {
  std::shared_ptr<grpc::Channel> channel;
  {
    MutexLock lock(&mu_);
    auto it = known_uuids_.find(addr);
    if (it == known_uuids_.end() || it->second != uuid) return false;
    auto ch = channels_.find(addr);
    if (ch == channels_.end()) return false;
    channel = ch->second;
  }
  return channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

void Runtime::RequestExit(const std::string& why) {
  std::function<void()> hook;
  {
    MutexLock lock(&mu_);
    if (exit_requested_) return;
    exit_requested_ = true;
    exit_reason_ = why;
    hook = exit_hook_;
  }
  SetNotServing();
  exit_cv_.SignalAll();
  if (hook) hook();
}

void Runtime::SetNotServing() {
  // server_ is set once in Start, before any RPC can ask for the exit.
  if (!server_) return;
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
}

void Runtime::SetExitHook(std::function<void()> hook) {
  MutexLock lock(&mu_);
  exit_hook_ = std::move(hook);
}

std::string Runtime::WaitForExitRequest() {
  MutexLock lock(&mu_);
  while (!exit_requested_) exit_cv_.Wait(&mu_);
  return exit_reason_;
}

}  // namespace tractor::internal
