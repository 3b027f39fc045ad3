#include "actor/internal/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/actor_service.h"
#include "actor/internal/wire.h"
#include "discovery/address.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "registrar/registrar_service.h"

namespace tractor::internal {
namespace {

std::mutex g_runtime_mu;
Runtime* g_runtime = nullptr;  // guarded by g_runtime_mu

std::string NewUuid() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          (uint64_t)getpid() << 32);
  uint64_t a = rng(), b = rng();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char buf[37];
  snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx",
           (unsigned)(a >> 32), (unsigned)((a >> 16) & 0xffff),
           (unsigned)(a & 0xffff), (unsigned)(b >> 48),
           (unsigned long long)(b & 0xffffffffffffULL));
  return buf;
}

std::string GrpcTargetFor(const std::string& addr) {
  auto parsed = discovery::Address::Parse(addr);
  if (!parsed.ok()) return addr;
  return parsed->GrpcTarget();
}

Runtime::Config WithIdentity(Runtime::Config config) {
  config.self.set_pid(getpid());
  if (config.self.uuid().empty()) config.self.set_uuid(NewUuid());
  return config;
}

}  // namespace

Runtime* Runtime::Get() {
  std::lock_guard<std::mutex> lk(g_runtime_mu);
  return g_runtime;
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
  std::lock_guard<std::mutex> lk(g_runtime_mu);
  if (rt != nullptr && g_runtime != nullptr) return false;
  g_runtime = rt;
  return true;
}

Runtime::Runtime(Config config)
    : config_(WithIdentity(std::move(config))),
      tasks_(config_.self, config_.enable_modules) {
  SetSingleTaskMode(config_.single_task);
}

Runtime::~Runtime() { Shutdown(); }

void Runtime::Start() {
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC binds TCP with SO_REUSEPORT by default: a second server on a port
  // in use would start silently and split the traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<std::string> binds = config_.bind_addrs;
  if (binds.empty()) binds.push_back("127.0.0.1:0");
  std::vector<discovery::Address> addrs;
  std::vector<std::unique_ptr<int>> ports;
  for (const auto& b : binds) {
    auto parsed = discovery::Address::Parse(b);
    if (!parsed.ok()) {
      throw RuntimeFailure(absl::StrCat("bad bind address: ",
                                        parsed.status().message()));
    }
    // gRPC unlinks an existing socket file before binding: never take over
    // a live socket, only a stale one.
    if (absl::Status st = discovery::PrepareUnixListenPath(*parsed);
        !st.ok()) {
      throw RuntimeFailure(
          absl::StrCat("actor '", config_.self.name(), "' ", st.message()));
    }
    addrs.push_back(*parsed);
    ports.push_back(std::make_unique<int>(0));
    builder.AddListeningPort(parsed->ListenString(),
                             grpc::InsecureServerCredentials(),
                             ports.back().get());
  }
  service_ = std::make_unique<ActorService>(this);
  builder.RegisterService(service_.get());
  if (config_.registrar) {
    config_.self.set_is_registrar(true);
    registrar::RegistrarService::Options options;
    options.self = config_.self;
    if (config_.registry_lease > absl::ZeroDuration()) {
      options.default_lease = config_.registry_lease;
    }
    registrar_ = std::make_unique<registrar::RegistrarService>(options);
    builder.RegisterService(registrar_.get());
  }
  server_ = builder.BuildAndStart();
  if (!server_) {
    throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                      "' could not bind ",
                                      absl::StrJoin(binds, ",")));
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < addrs.size(); ++i) {
      if (addrs[i].kind() == discovery::Address::Kind::kUnix) {
        accept_addrs_.push_back(addrs[i].ToString());
      } else {
        if (*ports[i] == 0) {
          throw RuntimeFailure(absl::StrCat("actor '", config_.self.name(),
                                            "' could not bind ", binds[i]));
        }
        accept_addrs_.push_back(addrs[i].WithPort(*ports[i]).ToString());
      }
    }
  }
  StartRegistration();
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
    v1::Registration self;
    *self.mutable_aid() = config_.self;
    for (const auto& a : accept) self.add_addrs(a);
    if (absl::Status st = registrar_->AddPinnedRegistration(self); !st.ok()) {
      LOG(ERROR) << "actor '" << config_.self.name()
                 << "' cannot register itself: " << st;
    }
    return;
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
}

void Runtime::AddLifetimeCallback(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  lifetime_callbacks_.push_back(std::move(fn));
}

void Runtime::RunLifetimeCallbacks() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lk(mu_);
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
    std::lock_guard<std::mutex> lk(mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  tasks_.Close();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  tasks_.CancelAllTasks(self(), absl::Seconds(2), [&] {
    std::lock_guard<std::mutex> lk(mu);
    done = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
  }
  RunLifetimeCallbacks();
  // Unregister at once (bounded), while the server still answers; then end
  // the embedded registrar's pending WaitFor/Watch calls so the server's
  // shutdown does not wait for them.
  if (registrant_) registrant_->Stop();
  if (registrar_) registrar_->Shutdown();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(500));
    server_->Wait();
  }
  for (const auto& a : accept_addrs()) {
    if (a.rfind("unix:", 0) == 0) ::unlink(a.substr(5).c_str());
  }
}

std::vector<std::string> Runtime::accept_addrs() const {
  std::lock_guard<std::mutex> lk(mu_);
  return accept_addrs_;
}

std::shared_ptr<grpc::Channel> Runtime::ChannelTo(const std::string& addr) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& ch = channels_[addr];
  if (!ch) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    ch = grpc::CreateCustomChannel(GrpcTargetFor(addr),
                                   grpc::InsecureChannelCredentials(), args);
  }
  return ch;
}

void Runtime::NoteActorAt(const std::string& addr, const std::string& uuid) {
  std::lock_guard<std::mutex> lk(mu_);
  known_uuids_[addr] = uuid;
}

bool Runtime::KnowsLiveActorAt(const std::string& addr,
                               const std::string& uuid) {
  std::shared_ptr<grpc::Channel> channel;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = known_uuids_.find(addr);
    if (it == known_uuids_.end() || it->second != uuid) return false;
    auto ch = channels_.find(addr);
    if (ch == channels_.end()) return false;
    channel = ch->second;
  }
  return channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

std::shared_ptr<ChildProc> Runtime::ExpectChild(const std::string& uuid) {
  auto proc = std::make_shared<ChildProc>();
  std::lock_guard<std::mutex> lk(mu_);
  children_[uuid] = proc;
  return proc;
}

std::shared_ptr<ChildProc> Runtime::OnChildLinked(const v1::LinkHello& hello) {
  std::shared_ptr<ChildProc> proc;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = children_.find(hello.aid().uuid());
    if (it == children_.end()) return nullptr;
    proc = it->second;
    child_aids_[hello.aid().uuid()] = hello.aid();
  }
  {
    std::lock_guard<std::mutex> lk(proc->mu);
    proc->linked = true;
    proc->accept_addrs.assign(hello.accept_addrs().begin(),
                              hello.accept_addrs().end());
  }
  proc->cv.notify_all();
  return proc;
}

void Runtime::ForgetChild(const std::string& uuid) {
  std::lock_guard<std::mutex> lk(mu_);
  children_.erase(uuid);
  child_aids_.erase(uuid);
}

std::vector<v1::Aid> Runtime::Children() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<v1::Aid> out;
  for (const auto& [uuid, aid] : child_aids_) out.push_back(aid);
  return out;
}

void Runtime::RequestExit(const std::string& why) {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (exit_requested_) return;
    exit_requested_ = true;
    exit_reason_ = why;
    hook = exit_hook_;
  }
  exit_cv_.notify_all();
  if (hook) hook();
}

void Runtime::SetExitHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lk(mu_);
  exit_hook_ = std::move(hook);
}

std::string Runtime::WaitForExitRequest() {
  std::unique_lock<std::mutex> lk(mu_);
  exit_cv_.wait(lk, [&] { return exit_requested_; });
  return exit_reason_;
}

void ApplyLogLevel(const std::string& level_in) {
  std::string level = level_in;
  if (const char* env = getenv("TRACTOR_LOGLEVEL"); env && *env) level = env;
  for (auto& ch : level) ch = static_cast<char>(tolower(ch));
  FLAGS_logtostderr = true;
  int min = 2, v = 0;
  if (level == "critical") min = 3;
  else if (level == "error" || level.empty()) min = 2;
  else if (level == "warning") min = 1;
  else if (level == "info" || level == "cancel" || level == "io") min = 0;
  else if (level == "runtime" || level == "devx") { min = 0; v = 1; }
  else if (level == "debug") { min = 0; v = 2; }
  else if (level == "transport") { min = 0; v = 3; }
  FLAGS_minloglevel = min;
  FLAGS_v = v;
}

}  // namespace tractor::internal
