// Dialog semantics shared by both sides: contexts, streams and portals.
#include "actor/context.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/runtime_state.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "glog/logging.h"

namespace tractor {
namespace internal {
namespace {

std::string NewCid() {
  static std::atomic<uint64_t> counter{0};
  return absl::StrCat(CurrentActor().uuid(), "-", counter.fetch_add(1));
}

}  // namespace

v1::OverrunPolicy ToProtoPolicy(OverrunPolicy p) {
  switch (p) {
    case OverrunPolicy::kError: return v1::OVERRUN_POLICY_ERROR;
    case OverrunPolicy::kUnbounded: return v1::OVERRUN_POLICY_UNBOUNDED;
    default: return v1::OVERRUN_POLICY_BACKPRESSURE;
  }
}

namespace {

// True when `error` answers this side's own cancel request (spec 2.5).
bool IsSelfCancel(const ContextState& ctx, const v1::Error& error) {
  return ctx.cancel_called && error.boxed_type() == "ContextCancelled" &&
         error.canceller().uuid() == ctx.self.uuid() &&
         error.src().uuid() == ctx.peer.uuid();
}

[[noreturn]] void ThrowTransportClosed(ContextState& ctx) {
  std::string reason = ctx.dialog->WaitDoneReason(absl::Seconds(1));
  throw TransportClosed(absl::StrCat("dialog '", ctx.func, "' with actor '",
                                     ctx.peer.name(), "' lost its transport: ",
                                     reason));
}

// Receives the next message of the dialog; throws TransportClosed when the
// stream ended without one.
v1::Msg Next(ContextState& ctx) {
  auto msg = ctx.dialog->Receive();
  if (!msg) ThrowTransportClosed(ctx);
  return std::move(*msg);
}

// Records an Error that arrived in-band and returns it as an exception.
[[noreturn]] void RaiseArrived(ContextState& ctx, const v1::Error& error) {
  {
    std::lock_guard<std::mutex> lk(ctx.mu);
    if (!ctx.remote_error) ctx.remote_error = error;
    // A StreamOverrun notice comes from the peer's runtime while its task
    // still runs: the dialog is not finished (leaving aborts it).
    if (ctx.caller && error.boxed_type() != "StreamOverrun") ctx.finished = true;
    ctx.remote_stop = true;
    if (IsSelfCancel(ctx, error)) ctx.cancel_acked = true;
  }
  ThrowError(error);
}

// Checks a received payload against the context's spec; on a mismatch
// records a MsgTypeError as the dialog's error and throws it.
void CheckPayload(ContextState& ctx, const char* kind, const v1::Payload& p) {
  PayloadSpec spec;
  {
    std::lock_guard<std::mutex> lk(ctx.mu);
    spec = ctx.pld_spec;
  }
  if (spec.Matches(p)) return;
  v1::Error e = MakeMsgTypeError(ctx.self, ctx.cid, kind, p, spec.name());
  {
    std::lock_guard<std::mutex> lk(ctx.mu);
    if (!ctx.remote_error) ctx.remote_error = e;
  }
  throw MsgTypeError(e);
}

}  // namespace

void OnErrorArrived(ContextState& ctx, const v1::Error& error) {
  bool interrupt = false;
  {
    std::lock_guard<std::mutex> lk(ctx.mu);
    if (!ctx.remote_error) ctx.remote_error = error;
    v1::Aid who = error.canceller().uuid().empty() ? error.src()
                                                   : error.canceller();
    if (error.boxed_type() == "ContextCancelled" &&
        error.canceller().uuid() == ctx.self.uuid()) {
      who = ctx.self;
    } else if (error.boxed_type() == "ContextCancelled") {
      who = error.src();
    }
    if (ctx.canceller.uuid().empty()) ctx.canceller = who;
    interrupt = !IsSelfCancel(ctx, error);
  }
  // A remote error interrupts the owner at its next checkpoint; the error
  // itself is raised at scope exit.
  if (interrupt) ctx.scope->Cancel();
}

void WatchDialog(const std::shared_ptr<ContextState>& ctx) {
  std::weak_ptr<ContextState> weak = ctx;
  ctx->dialog->SetArrivalHook([weak](const v1::Msg& m) {
    if (!m.has_error()) return;
    if (auto c = weak.lock()) OnErrorArrived(*c, m.error());
  });
  ctx->dialog->SetOverrunHook([weak] {
    auto c = weak.lock();
    if (!c) return;
    v1::Error e = MakeError(
        c->self, "StreamOverrun",
        absl::StrCat("stream overrun: the receive queue of '", c->func,
                     "' in actor '", c->self.name(), "' is full"),
        c->cid);
    *e.mutable_sender() = c->peer;
    v1::Msg m;
    *m.mutable_error() = std::move(e);
    c->dialog->SendNoWait(std::move(m));
  });
}

// Runs one unary RPC with gRPC's callback API and waits for it. The wait is
// a checkpoint unless `shielded`; when it is cancelled the RPC is cancelled
// and awaited before the cancellation propagates. Returns the status and
// fills `*reply`. `start(context, request, reply, done)` issues the call.
template <class Req, class Reply, class StartFn>
grpc::Status CallUnary(const StartFn& start, Req req, Reply* reply,
                       absl::Time deadline, bool shielded) {
  struct Call {
    grpc::ClientContext context;
    Req req;
    Reply reply;
    std::mutex mu;
    std::condition_variable_any cv;
    bool done = false;
    grpc::Status status;
  };
  auto call = std::make_shared<Call>();
  call->req = std::move(req);
  call->context.set_deadline(absl::ToChronoTime(deadline));
  start(&call->context, &call->req, &call->reply, [call](grpc::Status st) {
    std::lock_guard<std::mutex> lk(call->mu);
    call->status = std::move(st);
    call->done = true;
    call->cv.notify_all();
  });
  std::unique_lock<std::mutex> lk(call->mu);
  {
    std::optional<ScopeBinding> shield;
    if (shielded) shield.emplace(NewScope(nullptr, absl::InfiniteFuture(), true));
    try {
      Wait(call->cv, lk, [&] { return call->done; });
    } catch (...) {
      call->context.TryCancel();
      ScopeBinding bind(NewScope(nullptr, absl::InfiniteFuture(), true));
      Wait(call->cv, lk, [&] { return call->done; });
      throw;
    }
  }
  *reply = std::move(call->reply);
  return call->status;
}

void SendCancelTask(ContextState& ctx) {
  if (!ctx.channel) return;
  v1::CancelTaskRequest req;
  req.set_cid(ctx.cid);
  *req.mutable_requester() = ctx.self;
  v1::CancelTaskReply reply;
  auto stub = v1::Actor::NewStub(ctx.channel);
  CallUnary(
      [&](auto* c, auto* r, auto* p, auto done) {
        stub->async()->CancelTask(c, r, p, std::move(done));
      },
      req, &reply, absl::Now() + absl::Milliseconds(616), /*shielded=*/true);
}

namespace {

Runtime& RequireNotSelf(const PortalState& portal) {
  Runtime& rt = Runtime::Require();
  if (portal.aid.uuid() == rt.self().uuid()) {
    throw UsageError(absl::StrCat(
        "Invalid Operation: actor '", rt.self().name(),
        "' cannot open a dialog with itself"));
  }
  return rt;
}

v1::Msg MakeStart(const std::string& cid, const std::string& func,
                  const Payload& args, const v1::Aid& caller,
                  v1::FuncType expect, const StreamOptions& callee_stream) {
  v1::Msg start;
  auto* s = start.mutable_start();
  s->set_cid(cid);
  s->set_func(func);
  *s->mutable_args() = args.proto();
  *s->mutable_caller() = caller;
  s->set_expect(expect);
  s->set_msg_buffer_size(callee_stream.msg_buffer_size);
  s->set_overrun_policy(ToProtoPolicy(callee_stream.overrun));
  s->set_no_ack(true);
  s->set_accept_batches(true);
  return start;
}

}  // namespace

Payload CallFunction(PortalState& portal, const std::string& func,
                     const Payload& args) {
  Runtime& rt = RequireNotSelf(portal);
  v1::Msg reply;
  auto stub = v1::Actor::NewStub(portal.channel);
  grpc::Status st = CallUnary(
      [&](auto* c, auto* r, auto* p, auto done) {
        stub->async()->Call(c, r, p, std::move(done));
      },
      MakeStart(NewCid(), func, args, rt.self(), v1::FUNC_TYPE_FUNCTION, {}),
      &reply, absl::InfiniteFuture(), /*shielded=*/false);
  if (!st.ok()) {
    throw TransportClosed(absl::StrCat(
        "call '", func, "' to actor '", portal.aid.name(),
        "' lost its transport: RPC ended with ", st.error_code(), ": ",
        st.error_message()));
  }
  if (reply.has_returned()) {
    return Payload(std::move(*reply.mutable_returned()->mutable_payload()));
  }
  if (reply.has_error()) ThrowError(reply.error());
  throw MessagingError(absl::StrCat("'", func, "' on actor '",
                                    portal.aid.name(),
                                    "' answered without a result: ",
                                    reply.ShortDebugString()));
}

std::shared_ptr<ContextState> OpenDialog(PortalState& portal,
                                         const std::string& func,
                                         const Payload& args,
                                         const StreamOptions& callee_stream) {
  Runtime& rt = RequireNotSelf(portal);
  auto ctx = std::make_shared<ContextState>();
  ctx->caller = true;
  ctx->is_context = true;
  ctx->cid = NewCid();
  ctx->func = func;
  ctx->self = rt.self();
  ctx->peer = portal.aid;
  ctx->channel = portal.channel;
  ctx->scope = NewScope(nullptr, absl::InfiniteFuture(), false);
  ctx->dialog = Dialog::Connect(portal.channel);
  WatchDialog(ctx);
  ctx->dialog->SendNoWait(
      MakeStart(ctx->cid, func, args, ctx->self, v1::FUNC_TYPE_CONTEXT, callee_stream));
  return ctx;
}

// Aborts the dialog's RPC unless it ended cleanly.
struct DialogGuard {
  ContextState& ctx;
  ~DialogGuard() {
    bool clean;
    {
      std::lock_guard<std::mutex> lk(ctx.mu);
      clean = ctx.finished;
    }
    ctx.dialog->Close(grpc::Status::OK, /*abort=*/!clean);
  }
};

Payload AwaitReturn(ContextState& ctx) {
  for (;;) {
    v1::Msg m = Next(ctx);
    switch (m.kind_case()) {
      case v1::Msg::kReturned: {
        CheckPayload(ctx, "Return", m.returned().payload());
        std::lock_guard<std::mutex> lk(ctx.mu);
        ctx.finished = true;
        ctx.remote_stop = true;
        ctx.result = m.returned().payload();
        return Payload(m.returned().payload());
      }
      case v1::Msg::kError:
        RaiseArrived(ctx, m.error());
      case v1::Msg::kStartAck:
        continue;  // a callee that acknowledges although not asked to
      case v1::Msg::kYielded:
      case v1::Msg::kStop:
        continue;  // stream items not read
      default:
        throw MessagingError(absl::StrCat(
            "unexpected message from '", ctx.peer.name(), "' while waiting for "
            "the result of '", ctx.func, "': ", m.ShortDebugString()));
    }
  }
}

}  // namespace internal

// ---------------------------------------------------------------------------
// Context.

Context::Context(std::shared_ptr<internal::ContextState> state)
    : state_(std::move(state)) {}

const std::string& Context::cid() const { return state_->cid; }
bool Context::is_caller() const { return state_->caller; }
const v1::Aid& Context::peer() const { return state_->peer; }

bool Context::cancel_called() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->cancel_called;
}

bool Context::cancel_acked() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->cancel_acked;
}

v1::Aid Context::canceller() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->canceller;
}

void Context::Started(const Payload& value) {
  auto& s = *state_;
  if (s.caller) throw UsageError("Started() is for the callee side only");
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.started) {
      throw UsageError(absl::StrCat("Started() called twice in '", s.func,
                                    "'"));
    }
    if (!s.pld_spec.Matches(value.proto())) {
      throw MsgTypeError(internal::MakeMsgTypeError(
          s.self, s.cid, "Started", value.proto(), s.pld_spec.name()));
    }
    s.started = true;
  }
  v1::Msg m;
  *m.mutable_started()->mutable_payload() = value.proto();
  m.mutable_started()->set_accept_batches(true);
  s.dialog->Send(std::move(m));
}

MsgStream Context::OpenStream() { return OpenStreamImpl(std::nullopt); }

MsgStream Context::OpenStream(StreamOptions options) {
  return OpenStreamImpl(options);
}

MsgStream Context::OpenStreamImpl(std::optional<StreamOptions> requested) {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.cancel_called || s.remote_error) {
      if (s.remote_error) internal::ThrowError(*s.remote_error);
      throw UsageError("cannot open a stream on a cancelled context");
    }
    if (!s.caller && !s.started) {
      throw UsageError(absl::StrCat("'", s.func,
                                    "' must call Started() before OpenStream()"));
    }
    if (s.stream_opened) {
      throw UsageError("a context's stream can be opened only once");
    }
    if (s.finished) {
      throw UsageError("the context already ended");
    }
    s.stream_opened = true;
  }
  // The callee's queue was configured from Start; only explicit options
  // change it.
  if (!s.caller && !requested) return MsgStream(state_, s.start_buffer_size);
  StreamOptions options = requested.value_or(StreamOptions{});
  s.dialog->Configure(options.msg_buffer_size, internal::ToProtoPolicy(options.overrun));
  return MsgStream(state_, options.msg_buffer_size);
}

Payload Context::Result() {
  auto& s = *state_;
  if (!s.caller) throw UsageError("Result() is for the caller side only");
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.result) return Payload(*s.result);
    if (s.remote_error) {
      if (internal::IsSelfCancel(s, *s.remote_error)) {
        s.cancel_acked = true;
        return Payload();
      }
      internal::ThrowError(*s.remote_error);
    }
  }
  try {
    return internal::AwaitReturn(s);
  } catch (const ContextCancelled& c) {
    std::lock_guard<std::mutex> lk(s.mu);
    if (internal::IsSelfCancel(s, c.msgdata())) return Payload();
    throw;
  }
}

void Context::SetPayloadSpec(PayloadSpec spec) {
  std::lock_guard<std::mutex> lk(state_->mu);
  state_->pld_spec = std::move(spec);
}

void Context::Cancel() {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.cancel_called) return;
    s.cancel_called = true;
    if (!s.caller) {
      s.cancel_requester = s.self;
      if (s.canceller.uuid().empty()) s.canceller = s.self;
    }
  }
  if (s.caller) {
    internal::SendCancelTask(s);
  } else {
    s.scope->Cancel();
  }
}

// ---------------------------------------------------------------------------
// MsgStream.

// The broadcast made by the first `Subscribe`, shared by the stream's
// copies.
struct MsgStream::Fanout {
  size_t window;
  std::mutex mu;
  std::optional<BroadcastReceiver> own;  // set once; guarded by mu
};

MsgStream::MsgStream(std::shared_ptr<internal::ContextState> state,
                     size_t msg_buffer_size)
    : state_(std::move(state)), fanout_(std::make_shared<Fanout>()) {
  fanout_->window = msg_buffer_size;
}

void MsgStream::Send(const Payload& value) {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.remote_error) internal::ThrowError(*s.remote_error);
    if (s.local_stop_sent) throw UsageError("send on a closed stream");
  }
  v1::Msg m;
  *m.mutable_yielded()->mutable_payload() = value.proto();
  s.dialog->Send(std::move(m));
}

std::optional<Payload> MsgStream::Receive() {
  if (fanout_) {
    BroadcastReceiver* own = nullptr;
    {
      std::lock_guard<std::mutex> lk(fanout_->mu);
      if (fanout_->own) own = &*fanout_->own;
    }
    if (own) return own->Receive();
  }
  return ReceiveRaw();
}

MsgStream::Subscription MsgStream::Subscribe(bool raise_on_lag) {
  std::lock_guard<std::mutex> lk(fanout_->mu);
  if (!fanout_->own) {
    // The broadcast's source is a copy without the fan-out, so the
    // broadcast does not keep itself alive.
    MsgStream raw = *this;
    raw.fanout_ = nullptr;
    fanout_->own.emplace([raw]() mutable { return raw.ReceiveRaw(); },
                         BroadcastOptions{.capacity = fanout_->window});
  }
  return Subscription(*this, fanout_->own->Subscribe(raise_on_lag));
}

std::optional<Payload> MsgStream::ReceiveRaw() {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.remote_stop) {
      if (s.remote_error) internal::ThrowError(*s.remote_error);
      return std::nullopt;
    }
  }
  v1::Msg m = internal::Next(s);
  switch (m.kind_case()) {
    case v1::Msg::kYielded:
      internal::CheckPayload(s, "Yield", m.yielded().payload());
      return Payload(std::move(*m.mutable_yielded()->mutable_payload()));
    case v1::Msg::kStop: {
      {
        std::lock_guard<std::mutex> lk(s.mu);
        s.remote_stop = true;
      }
      Close();
      return std::nullopt;
    }
    case v1::Msg::kReturned: {
      if (s.caller) internal::CheckPayload(s, "Return", m.returned().payload());
      std::lock_guard<std::mutex> lk(s.mu);
      s.finished = true;
      s.remote_stop = true;
      s.result = m.returned().payload();
      return std::nullopt;
    }
    case v1::Msg::kError:
      internal::RaiseArrived(s, m.error());
    default:
      throw MessagingError(absl::StrCat("unexpected message in stream of '",
                                        s.func, "': ", m.ShortDebugString()));
  }
}

void MsgStream::Close() {
  auto& s = *state_;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.local_stop_sent) return;
    s.local_stop_sent = true;
    if (!s.caller && s.finished) return;
  }
  v1::Msg m;
  m.mutable_stop();
  s.dialog->SendNoWait(std::move(m));
}

bool MsgStream::closed() const {
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->local_stop_sent || state_->remote_stop;
}

// ---------------------------------------------------------------------------
// Portal.

v1::Aid CurrentActorOrEmpty() {
  auto* rt = internal::Runtime::Get();
  return rt ? rt->self() : v1::Aid();
}

Portal::Portal(std::shared_ptr<internal::PortalState> state)
    : state_(std::move(state)) {}

Portal Portal::Connect(const std::string& addr, const v1::Aid& aid,
                       absl::Duration timeout) {
  auto& rt = internal::Runtime::Require();
  auto parsed = discovery::Address::Parse(addr);
  if (!parsed.ok()) throw UsageError(std::string(parsed.status().message()));
  auto ps = std::make_shared<internal::PortalState>();
  ps->addr = parsed->ToString();
  ps->channel = rt.ChannelTo(ps->addr);
  ps->aid = aid;
  if (aid.uuid().empty()) {
    v1::ActorInfo info;
    auto stub = v1::Actor::NewStub(ps->channel);
    grpc::Status status = internal::CallUnary(
        [&](auto* c, auto* r, auto* p, auto done) {
          stub->async()->Info(c, r, p, std::move(done));
        },
        v1::InfoRequest(), &info, absl::Now() + timeout, /*shielded=*/false);
    if (!status.ok()) {
      throw TransportClosed(absl::StrCat("no actor answers at ", ps->addr,
                                         ": ", status.error_message()));
    }
    ps->aid = info.aid();
    rt.NoteActorAt(ps->addr, ps->aid.uuid());
  }
  return Portal(ps);
}

const v1::Aid& Portal::aid() const { return state_->aid; }
const std::string& Portal::addr() const { return state_->addr; }

Payload Portal::Run(const std::string& func, const Payload& args) {
  if (!state_) throw UsageError("Run on an empty portal");
  // One unary Actor/Call, waited for in the caller's scope: cancelling it
  // cancels the RPC and with it the remote task.
  return internal::CallFunction(*state_, func, args);
}

Payload Portal::OpenContext(
    const std::string& func, const Payload& args,
    const std::function<void(Context&, const Payload&)>& body,
    ContextOptions options) {
  if (!state_) throw UsageError("OpenContext on an empty portal");
  auto ctx = internal::OpenDialog(*state_, func, args, options.callee_stream);
  ctx->pld_spec = options.pld_spec;
  internal::DialogGuard guard{*ctx};
  auto& s = *ctx;
  Context context(ctx);
  Payload first;
  bool body_done = false;
  try {
    internal::ScopeBinding bind(ctx->scope);
    // No StartAck (Start.no_ack): the first message is Started, Return or
    // Error. A callee that acknowledges anyway is tolerated.
    v1::Msg m = internal::Next(s);
    if (m.has_start_ack()) m = internal::Next(s);
    if (m.has_error()) internal::RaiseArrived(s, m.error());
    if (m.has_returned()) {
      // The callee returned without Started: Started(null) + its result.
      internal::CheckPayload(s, "Return", m.returned().payload());
      std::lock_guard<std::mutex> lk(s.mu);
      s.finished = true;
      s.remote_stop = true;
      s.result = m.returned().payload();
    } else if (!m.has_started()) {
      throw MessagingError(absl::StrCat("expected Started from '", func,
                                        "', got ", m.ShortDebugString()));
    } else {
      if (m.started().accept_batches()) s.dialog->SetPeerAcceptsBatches(true);
      internal::CheckPayload(s, "Started", m.started().payload());
      first = Payload(m.started().payload());
    }
    {
      std::lock_guard<std::mutex> lk(s.mu);
      s.started = true;
    }
    body(context, first);
    body_done = true;
    return context.Result();
  } catch (const Cancelled& c) {
    if (c.scope() != ctx->scope) {
      // An enclosing scope was cancelled: cancel the remote task too.
      context.Cancel();
      throw;
    }
    // Interrupted by a remote error: raise it.
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.remote_error) internal::ThrowError(*s.remote_error);
    throw;
  } catch (const ContextCancelled& c) {
    bool ours;
    {
      std::lock_guard<std::mutex> lk(s.mu);
      ours = internal::IsSelfCancel(s, c.msgdata());
      if (ours) s.cancel_acked = true;
    }
    if (ours) return Payload();
    throw;
  } catch (const RemoteActorError&) {
    throw;
  } catch (...) {
    if (!body_done) context.Cancel();
    throw;
  }
}

bool Portal::CancelActor(absl::Duration timeout) {
  if (!state_) return false;
  auto& rt = internal::Runtime::Require();
  v1::CancelActorRequest req;
  *req.mutable_requester() = rt.self();
  v1::CancelActorReply reply;
  auto stub = v1::Actor::NewStub(state_->channel);
  grpc::Status status = internal::CallUnary(
      [&](auto* c, auto* r, auto* p, auto done) {
        stub->async()->CancelActor(c, r, p, std::move(done));
      },
      req, &reply, absl::Now() + timeout, /*shielded=*/true);
  return status.ok() && reply.ok();
}

Payload Portal::Result() {
  if (!state_) throw UsageError("Result on an empty portal");
  auto& s = *state_;
  std::unique_lock<std::mutex> lk(s.mu);
  if (!s.has_result_task) {
    throw UsageError(absl::StrCat("actor '", s.aid.name(),
                                  "' was not started with RunInActor: no "
                                  "result to wait for"));
  }
  internal::Wait(s.cv, lk, [&] { return s.result_ready; });
  if (s.error) std::rethrow_exception(s.error);
  return *s.result;
}

}  // namespace tractor
