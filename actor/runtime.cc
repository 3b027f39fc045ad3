// The process runtime: server, remote tasks, entry point, root and child.
#include "actor/runtime.h"

#include <semaphore.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/internal/runtime_state.h"
#include "discovery/address.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "registrar/registrar_service.h"

extern char** environ;

namespace tractor {
namespace internal {
namespace {

constexpr char kSpawnSpecEnv[] = "TRACTOR_SPAWN_SPEC";
constexpr int kMaxMessageBytes = 64 << 20;

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

// A pool of reusable threads for remote tasks and runtime helpers.
class ThreadPool {
 public:
  void Run(std::function<void()> fn) {
    std::unique_lock<std::mutex> lk(mu_);
    work_.push_back(std::move(fn));
    // Every queued item needs a worker of its own (items may block for
    // long): wake an idle one while there are more idle workers than
    // queued items, else start one.
    const bool spawn = work_.size() > idle_;
    lk.unlock();
    if (spawn) {
      std::thread([this] { Worker(); }).detach();
    } else {
      // Notified after unlocking, so the woken worker does not block on mu_.
      cv_.notify_one();
    }
  }

 private:
  void Worker() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (work_.empty()) {
        ++idle_;
        bool got = cv_.wait_for(lk, std::chrono::seconds(30),
                                [&] { return !work_.empty(); });
        --idle_;
        if (!got) return;
      }
      auto fn = std::move(work_.front());
      work_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> work_;
  size_t idle_ = 0;
};

ThreadPool& Pool() {
  static auto* pool = new ThreadPool;
  return *pool;
}

std::string GrpcTargetFor(const std::string& addr) {
  auto parsed = discovery::Address::Parse(addr);
  if (!parsed.ok()) return addr;
  return parsed->GrpcTarget();
}

v1::Msg ErrorMsg(v1::Error e) {
  v1::Msg m;
  *m.mutable_error() = std::move(e);
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------
// The Actor gRPC service.

namespace {

// Parent side of a child's Link stream.
class LinkReactor : public grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg> {
 public:
  explicit LinkReactor(Runtime* rt) : rt_(rt) { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Lost();
      return;
    }
    if (!child_) {
      if (!in_.has_hello()) {
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first Link message must be hello"));
        return;
      }
      child_ = rt_->OnChildLinked(in_.hello());
      if (!child_) {
        FinishOnce(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                "this actor did not spawn " +
                                    in_.hello().aid().uuid()));
        return;
      }
      out_.mutable_accepted();
      StartWrite(&out_);
    } else if (in_.has_error()) {
      std::lock_guard<std::mutex> lk(child_->mu);
      child_->boot_error = in_.error().message();
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool) override {}
  void OnCancel() override { Lost(); }
  void OnDone() override { delete this; }

 private:
  void Lost() {
    if (child_) {
      {
        std::lock_guard<std::mutex> lk(child_->mu);
        child_->link_lost = true;
      }
      child_->cv.notify_all();
    }
    FinishOnce(grpc::Status::OK);
  }
  void FinishOnce(const grpc::Status& s) {
    if (finished_.exchange(true)) return;
    Finish(s);
  }

  Runtime* rt_;
  std::shared_ptr<ChildProc> child_;
  v1::LinkMsg in_, out_;
  std::atomic<bool> finished_{false};
};

}  // namespace

class Runtime::ActorService final : public v1::Actor::CallbackService {
 public:
  explicit ActorService(Runtime* rt) : rt_(rt) {}

  grpc::ServerBidiReactor<v1::Msg, v1::Msg>* Open(
      grpc::CallbackServerContext*) override {
    auto dialog = std::make_shared<Dialog>();
    auto* reactor = new ServerDialogReactor(dialog);
    // The task is dispatched once Start has arrived, so no thread waits
    // for it.
    Runtime* rt = rt_;
    dialog->Start([rt, dialog] { rt->HandleDialog(dialog); });
    return reactor;
  }

  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext*,
                                 const v1::Msg* request,
                                 v1::Msg* reply) override {
    v1::Msg first = *request;
    if (first.has_start()) {
      first.mutable_start()->set_no_ack(true);
      first.mutable_start()->set_expect(v1::FUNC_TYPE_FUNCTION);
    }
    auto dialog = std::make_shared<Dialog>();
    auto* reactor = new UnaryDialogReactor(dialog, std::move(first), reply);
    rt_->HandleDialog(dialog);
    return reactor;
  }

  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* ctx,
                                       const v1::CancelTaskRequest* req,
                                       v1::CancelTaskReply* reply) override {
    reply->set_found(rt_->CancelTask(req->cid(), req->requester()));
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerUnaryReactor* CancelActor(grpc::CallbackServerContext* ctx,
                                        const v1::CancelActorRequest* req,
                                        v1::CancelActorReply* reply) override {
    auto* r = ctx->DefaultReactor();
    v1::Aid requester = req->requester();
    LOG(INFO) << "actor " << rt_->self().name() << " cancelled by '"
              << requester.name() << "' " << requester.uuid();
    Runtime* rt = rt_;
    rt_->CancelAllTasks(requester, absl::Seconds(2), [r, reply, rt] {
      // The exit is under way before the requester hears back (the root's
      // block is cancelled by then).
      rt->RequestExit("cancelled by request");
      reply->set_ok(true);
      r->Finish(grpc::Status::OK);
    });
    return r;
  }

  grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* Link(
      grpc::CallbackServerContext*) override {
    return new LinkReactor(rt_);
  }

  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx,
                                 const v1::InfoRequest*,
                                 v1::ActorInfo* info) override {
    *info->mutable_aid() = rt_->self();
    for (const auto& a : rt_->accept_addrs()) info->add_accept_addrs(a);
    for (const auto& ns : rt_->config().enable_modules) {
      info->add_enable_modules(ns);
      for (const auto& f : EndpointNames(ns)) info->add_functions(f);
    }
    for (const auto& c : rt_->Children()) *info->add_children() = c;
    *info->mutable_parent() = rt_->config().parent;
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

 private:
  Runtime* rt_;
};

// ---------------------------------------------------------------------------
// Runtime.

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

void Runtime::RunDetached(std::function<void()> fn) { Pool().Run(std::move(fn)); }

Runtime::Runtime(Config config) : config_(std::move(config)) {
  config_.self.set_pid(getpid());
  if (config_.self.uuid().empty()) config_.self.set_uuid(NewUuid());
  service_scope_ = NewScope(nullptr, absl::InfiniteFuture(), true);
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
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  CancelAllTasks(self(), absl::Seconds(2), [&] {
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

bool Runtime::IsEnabled(const std::string& ns) const {
  return config_.enable_modules.count(ns) > 0;
}

void Runtime::HandleDialog(std::shared_ptr<Dialog> dialog) {
  RunDetached([this, dialog = std::move(dialog)]() mutable {
    RunDialogTask(std::move(dialog));
  });
}

void Runtime::RunDialogTask(std::shared_ptr<Dialog> dialog) {
  // Dispatched once the first message is queued (or the stream ended
  // without one): this does not block.
  std::optional<v1::Msg> first = dialog->TryReceive();
  if (!first) {
    dialog->Close(grpc::Status(grpc::StatusCode::CANCELLED,
                               "the stream ended before Start"),
                  true);
    return;
  }
  if (!first->has_start()) {
    dialog->SendAndClose(ErrorMsg(MakeError(
        self(), "MessagingError",
        absl::StrCat("a dialog must begin with Start, got ",
                     first->ShortDebugString()))));
    return;
  }
  const v1::Start& start = first->start();
  const std::string& cid = start.cid();
  auto reject = [&](const std::string& type, const std::string& message) {
    dialog->SendAndClose(ErrorMsg(MakeError(self(), type, message, cid)));
  };
  if (cid.empty()) return reject("MessagingError", "Start.cid is empty");
  std::string ns = start.func().substr(0, start.func().find(':'));
  if (start.func().find(':') == std::string::npos) {
    return reject("FunctionNotFound",
                  absl::StrCat("function name '", start.func(),
                               "' is not of the form \"namespace:function\""));
  }
  if (!IsEnabled(ns)) {
    return reject(
        "ModuleNotExposed",
        absl::StrCat("namespace '", ns, "' is not enabled in actor '",
                     self().name(), "'; enabled: [",
                     absl::StrJoin(config_.enable_modules, ", "),
                     "] (see enable_modules)"));
  }
  const Endpoint* ep = FindEndpoint(start.func());
  if (ep == nullptr) {
    return reject("FunctionNotFound",
                  absl::StrCat("actor '", self().name(), "' has no function '",
                               start.func(), "'; namespace '", ns,
                               "' exports: [",
                               absl::StrJoin(EndpointNames(ns), ", "), "]"));
  }
  if (start.expect() != v1::FUNC_TYPE_UNSPECIFIED && start.expect() != ep->type) {
    return reject("MessagingError",
                  absl::StrCat("'", start.func(), "' is a ",
                               ep->type == v1::FUNC_TYPE_CONTEXT
                                   ? "context endpoint (use OpenContext)"
                                   : "plain function (use Run)",
                               ""));
  }
  if (!ep->arg_matches(start.args())) {
    v1::Error e = MakeMsgTypeError(self(), cid, "Start", start.args(),
                                   ep->arg_spec);
    dialog->SendAndClose(ErrorMsg(std::move(e)));
    return;
  }

  auto ctx = std::make_shared<ContextState>();
  ctx->dialog = dialog;
  ctx->caller = false;
  ctx->is_context = ep->type == v1::FUNC_TYPE_CONTEXT;
  ctx->cid = cid;
  ctx->func = start.func();
  ctx->self = self();
  ctx->peer = start.caller();
  ctx->scope = NewScope(service_scope_, absl::InfiniteFuture(), false);
  if (start.msg_buffer_size() > 0) ctx->start_buffer_size = start.msg_buffer_size();
  dialog->Configure(start.msg_buffer_size(), start.overrun_policy());
  if (ep->type == v1::FUNC_TYPE_CONTEXT) dialog->ResumeReads();
  dialog->SetPeerAcceptsBatches(start.accept_batches());
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (tasks_.count(cid)) {
      lk.unlock();
      return reject("MessagingError", absl::StrCat("a dialog with cid ", cid,
                                                   " is already running"));
    }
    if (!actor_canceller_.uuid().empty() || shutting_down_) {
      // The actor was cancelled before this task could start: the caller
      // learns who cancelled it, as if the task had started and been
      // cancelled at once.
      v1::Aid requester = actor_canceller_;
      lk.unlock();
      if (requester.uuid().empty()) {
        return reject("TransportClosed", absl::StrCat("actor '", self().name(),
                                                      "' is shutting down"));
      }
      v1::Error e = MakeError(
          self(), "ContextCancelled",
          absl::StrCat("actor '", self().name(), "' was cancelled by '",
                       requester.name(), "' ", requester.uuid(),
                       " before task '", start.func(), "' could start"),
          cid);
      *e.mutable_canceller() = requester;
      dialog->SendAndClose(ErrorMsg(std::move(e)));
      return;
    }
    tasks_[cid] = ctx;
  }
  WatchDialog(ctx);
  std::weak_ptr<ContextState> weak = ctx;
  dialog->SetBrokenHook([weak] {
    auto c = weak.lock();
    if (!c) return;
    {
      std::lock_guard<std::mutex> lk(c->mu);
      c->transport_lost = true;
      if (c->cancel_requester.uuid().empty()) c->cancel_requester = c->peer;
    }
    c->scope->Cancel();
  });

  v1::Msg ack;
  ack.mutable_start_ack()->set_cid(cid);
  ack.mutable_start_ack()->set_functype(ep->type);
  // The ack is not sent when the caller said it does not need it; a plain
  // function's ack is otherwise held back until its Return (it carries
  // nothing the caller needs before the result).
  bool plain = ep->type == v1::FUNC_TYPE_FUNCTION;
  if (!start.no_ack()) {
    dialog->SendNoWait(std::move(ack),
                       plain ? Dialog::Flush::kCorked : Dialog::Flush::kNow);
  }

  v1::Msg terminal;
  {
    UserTask task;
    ScopeBinding bind(ctx->scope);
    Context context(ctx);
    try {
      v1::Payload result = ep->invoke(&context, start.args());
      if (ctx->is_context) {
        std::lock_guard<std::mutex> lk(ctx->mu);
        if (!ctx->started) {
          // Returning without Started: treated as Started(null) + result.
          ctx->started = true;
        }
      }
      *terminal.mutable_returned()->mutable_payload() = std::move(result);
    } catch (const Cancelled& c) {
      std::lock_guard<std::mutex> lk(ctx->mu);
      if (ctx->remote_error) {
        *terminal.mutable_error() =
            PackError(ToException(*ctx->remote_error), self(), cid);
      } else {
        v1::Aid requester = ctx->cancel_requester;
        std::string why;
        if (requester.uuid() == self().uuid()) {
          why = "cancelled itself";
        } else if (requester.uuid() == ctx->peer.uuid()) {
          why = "was cancelled by its 'parent'-side peer";
        } else {
          why = "was cancelled by a remote peer";
        }
        v1::Error e = MakeError(
            self(), "ContextCancelled",
            absl::StrCat("actor '", self().name(), "' task '", ctx->func, "' ",
                         why, " '", requester.name(), "' ", requester.uuid()),
            cid);
        *e.mutable_canceller() = requester;
        *terminal.mutable_error() = std::move(e);
      }
    } catch (...) {
      auto err = std::current_exception();
      VLOG(1) << "task " << ctx->func << " raised " << Describe(err);
      *terminal.mutable_error() = PackError(err, self(), cid);
    }
  }
  {
    std::lock_guard<std::mutex> lk(ctx->mu);
    ctx->finished = true;
  }
  dialog->SendAndClose(std::move(terminal));
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = tasks_.find(cid);
    if (it != tasks_.end() && it->second == ctx) tasks_.erase(it);
    if (!tasks_.empty()) return;
  }
  tasks_cv_.notify_all();
}

bool Runtime::CancelTask(const std::string& cid, const v1::Aid& requester) {
  std::shared_ptr<ContextState> ctx;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = tasks_.find(cid);
    if (it == tasks_.end()) return false;
    ctx = it->second;
  }
  {
    std::lock_guard<std::mutex> lk(ctx->mu);
    if (ctx->cancel_requester.uuid().empty()) ctx->cancel_requester = requester;
  }
  ctx->scope->Cancel();
  return true;
}

void Runtime::CancelAllTasks(const v1::Aid& requester, absl::Duration bound,
                             std::function<void()> done) {
  std::vector<std::shared_ptr<ContextState>> tasks;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (actor_canceller_.uuid().empty()) actor_canceller_ = requester;
    for (auto& [cid, ctx] : tasks_) tasks.push_back(ctx);
  }
  for (auto& ctx : tasks) {
    std::lock_guard<std::mutex> lk(ctx->mu);
    if (ctx->cancel_requester.uuid().empty()) ctx->cancel_requester = requester;
  }
  service_scope_->Cancel();
  RunDetached([this, bound, done = std::move(done)] {
    {
      std::unique_lock<std::mutex> lk(mu_);
      tasks_cv_.wait_for(lk, absl::ToChronoNanoseconds(bound),
                         [&] { return tasks_.empty(); });
    }
    done();
  });
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
  cv_.notify_all();
  if (hook) hook();
}

void Runtime::SetExitHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lk(mu_);
  exit_hook_ = std::move(hook);
}

std::string Runtime::WaitForExitRequest() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return exit_requested_; });
  return exit_reason_;
}

// ---------------------------------------------------------------------------
// Log levels: tractor's names mapped onto glog.

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

// ---------------------------------------------------------------------------
// Spawning.

namespace {

// fork+exec runs on one long-lived thread: PR_SET_PDEATHSIG fires when the
// forking *thread* exits, so it must not be a short-lived task thread.
class Spawner {
 public:
  Spawner() : thread_([this] { Loop(); }) { thread_.detach(); }

  pid_t Spawn(std::vector<std::string> env) {
    auto req = std::make_shared<Request>();
    req->env = std::move(env);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(req);
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return req->done; });
    if (req->pid < 0) {
      throw RuntimeFailure(absl::StrCat("fork failed: ", strerror(req->err)));
    }
    return req->pid;
  }

 private:
  struct Request {
    std::vector<std::string> env;
    pid_t pid = -1;
    int err = 0;
    bool done = false;
  };

  void Loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return !queue_.empty(); });
      auto req = queue_.front();
      queue_.pop_front();
      lk.unlock();
      DoSpawn(*req);
      lk.lock();
      req->done = true;
      cv_.notify_all();
    }
  }

  static void DoSpawn(Request& req) {
    std::vector<char*> envp;
    for (auto& e : req.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    char exe[] = "/proc/self/exe";
    std::string self_path = "tractor-actor";
    char* argv[] = {self_path.data(), nullptr};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      // Async-signal-safe calls only until exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      sigset_t all;
      sigemptyset(&all);
      sigprocmask(SIG_SETMASK, &all, nullptr);
      execve(exe, argv, envp.data());
      _exit(127);
    }
    req.pid = pid;
    req.err = pid < 0 ? errno : 0;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  std::thread thread_;
};

Spawner& GetSpawner() {
  static auto* s = new Spawner;
  return *s;
}

}  // namespace

pid_t SpawnProcess(const v1::SpawnSpec& spec) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, kSpawnSpecEnv, strlen(kSpawnSpecEnv)) == 0) continue;
    env.emplace_back(*e);
  }
  env.push_back(absl::StrCat(kSpawnSpecEnv, "=",
                             absl::WebSafeBase64Escape(spec.SerializeAsString())));
  return GetSpawner().Spawn(std::move(env));
}

// ---------------------------------------------------------------------------
// Signals: one thread owns SIGTERM (and SIGINT in children).

namespace {

void BlockSignals(std::initializer_list<int> sigs) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : sigs) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

// ---------------------------------------------------------------------------
// Child runtime.

int ChildMain(const v1::SpawnSpec& spec) {
  // `ps`, `top` and `perf` show the actor's name (first 15 bytes); threads
  // started from here on inherit it.
  prctl(PR_SET_NAME, spec.aid().name().substr(0, 15).c_str());
  ApplyLogLevel(spec.loglevel());
  // SIGINT goes to the whole foreground process group on ctrl-c; the root
  // handles it and cancels the tree, so children ignore it.
  signal(SIGINT, SIG_IGN);
  BlockSignals({SIGTERM});

  Runtime::Config config;
  config.self = spec.aid();
  config.parent = spec.parent();
  config.bind_addrs.assign(spec.bind_addrs().begin(), spec.bind_addrs().end());
  config.registry_addrs.assign(spec.registry_addrs().begin(),
                               spec.registry_addrs().end());
  config.enable_modules.insert(spec.enable_modules().begin(),
                               spec.enable_modules().end());
  config.loglevel = spec.loglevel();
  config.root_addr = spec.root_addr();
  config.single_task = !spec.free_threads();
  config.registry_lease = absl::Milliseconds(spec.lease_ms());
  auto rt = std::make_unique<Runtime>(config);
  {
    std::lock_guard<std::mutex> lk(g_runtime_mu);
    g_runtime = rt.get();
  }
  try {
    rt->Start();
  } catch (const std::exception& e) {
    LOG(ERROR) << "actor '" << spec.aid().name() << "' failed to boot: "
               << e.what();
    return 1;
  }

  std::thread sig_thread([r = rt.get()] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    if (sigwait(&set, &sig) == 0) r->RequestExit("SIGTERM");
  });
  sig_thread.detach();

  // Link to the parent.
  auto channel = rt->ChannelTo(spec.parent_addr());
  auto stub = v1::Actor::NewStub(channel);
  grpc::ClientContext link_ctx;
  auto link = stub->Link(&link_ctx);
  v1::LinkMsg hello;
  *hello.mutable_hello()->mutable_aid() = rt->self();
  for (const auto& a : rt->accept_addrs()) hello.mutable_hello()->add_accept_addrs(a);
  v1::LinkMsg reply;
  if (!link->Write(hello) || !link->Read(&reply) || !reply.has_accepted()) {
    LOG(ERROR) << "actor '" << spec.aid().name()
               << "' could not link to its parent at " << spec.parent_addr();
    return 1;
  }
  std::thread link_thread([&link, r = rt.get()] {
    v1::LinkMsg m;
    while (link->Read(&m)) {
    }
    r->RequestExit("parent link lost");
  });

  std::string why = rt->WaitForExitRequest();
  VLOG(1) << "actor '" << spec.aid().name() << "' exiting: " << why;
  rt->Shutdown();
  link_ctx.TryCancel();
  link_thread.join();
  google::FlushLogFiles(google::GLOG_INFO);
  fflush(stdout);
  fflush(stderr);
  _exit(0);
}

// ---------------------------------------------------------------------------
// SIGINT in the root: cancel the root task's scope; OpenRootActor then
// raises KeyboardInterrupt once the tree is torn down.

namespace {

sem_t g_sigint_sem;
std::atomic<bool> g_sigint_ready{false};

void OnSigint(int) { sem_post(&g_sigint_sem); }

struct SigintWatch {
  std::shared_ptr<ScopeState> scope;
  std::atomic<bool> fired{false};
  std::atomic<bool> stop{false};
  std::thread thread;
  struct sigaction previous;

  explicit SigintWatch(std::shared_ptr<ScopeState> s) : scope(std::move(s)) {
    if (!g_sigint_ready.exchange(true)) sem_init(&g_sigint_sem, 0, 0);
    struct sigaction sa {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous);
    thread = std::thread([this] {
      while (sem_wait(&g_sigint_sem) != 0 && errno == EINTR) {
      }
      if (stop.load()) return;
      LOG(WARNING) << "SIGINT: cancelling the actor tree";
      fired.store(true);
      scope->Cancel();
    });
  }
  ~SigintWatch() {
    stop.store(true);
    sem_post(&g_sigint_sem);
    thread.join();
    sigaction(SIGINT, &previous, nullptr);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Registrar election at boot (spec section 3.1, step 4).

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

// Fills the bind, registry and registrar fields of the root's `config`:
// probes the registry addresses and decides whether the root uses the
// registrars that answer or becomes the registrar itself. Throws UsageError
// for an address that does not parse, RuntimeFailure when an address is
// held by something that is not a registrar.
void ElectRegistrar(const RootOptions& options, Runtime::Config* config) {
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

}  // namespace

}  // namespace internal

// ---------------------------------------------------------------------------
// Public entry points.

int Main(int argc, char** argv, const std::function<int()>& root_main) {
  if (const char* encoded = getenv(internal::kSpawnSpecEnv)) {
    std::string raw;
    v1::SpawnSpec spec;
    if (!absl::WebSafeBase64Unescape(encoded, &raw) ||
        !spec.ParseFromString(raw)) {
      fprintf(stderr, "tractor: malformed %s\n", internal::kSpawnSpecEnv);
      _exit(2);
    }
    unsetenv(internal::kSpawnSpecEnv);
    google::InitGoogleLogging(argc > 0 ? argv[0] : "tractor");
    _exit(internal::ChildMain(spec));
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

void OpenRootActor(const RootOptions& options, const std::function<void()>& fn) {
  if (internal::Runtime::Get() != nullptr) {
    throw RuntimeFailure(
        "an actor runtime already exists in this process (only one root "
        "actor per process)");
  }
  internal::Runtime::Config config;
  config.self.set_name(options.name);
  config.enable_modules.insert(options.enable_modules.begin(),
                               options.enable_modules.end());
  config.loglevel = options.loglevel;
  config.single_task = options.single_task;
  internal::ApplyLogLevel(options.loglevel);
  internal::ElectRegistrar(options, &config);
  auto rt = std::make_unique<internal::Runtime>(config);
  {
    std::lock_guard<std::mutex> lk(internal::g_runtime_mu);
    if (internal::g_runtime != nullptr) {
      throw RuntimeFailure(
          "an actor runtime already exists in this process (only one root "
          "actor per process)");
    }
    internal::g_runtime = rt.get();
  }
  struct Reset {
    std::unique_ptr<internal::Runtime>& rt;
    ~Reset() {
      rt->Shutdown();
      std::lock_guard<std::mutex> lk(internal::g_runtime_mu);
      internal::g_runtime = nullptr;
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
    interrupted = watch.fired.load();
  }
  if (interrupted) throw KeyboardInterrupt();
}

const v1::Aid& CurrentActor() { return internal::Runtime::Require().self(); }

std::vector<std::string> AcceptAddrs() {
  return internal::Runtime::Require().accept_addrs();
}

bool HasRuntime() { return internal::Runtime::Get() != nullptr; }

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

}  // namespace tractor
