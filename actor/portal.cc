// SPDX-License-Identifier: AGPL-3.0-or-later
// The caller side of the runtime: a portal's calls, dialogs and cancels.
#include "actor/portal.h"

#include <atomic>
#include <exception>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/dialog.h"
#include "actor/internal/dialog_protocol.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/portal_state.h"
#include "actor/internal/runtime.h"
#include "actor/internal/unary_call.h"
#include "actor/runtime.h"
#include "discovery/address.h"
#include "discovery/log_level.h"
#include "glog/logging.h"
#include "discovery/credentials.h"
#include "discovery/mutex.h"

namespace tractor {
namespace internal {
namespace {

// A dialog's id: the caller's uuid and a counter of this process, into
// `*cid` (whose buffer is reused).
void AssignCid(const v1::Aid& self, std::string* cid) {
  static std::atomic<uint64_t> counter{0};
  cid->assign(self.uuid());
  cid->push_back('-');
  absl::StrAppend(cid, counter.fetch_add(1, std::memory_order_relaxed));
}

std::string NewCid(const v1::Aid& self) {
  std::string cid;
  AssignCid(self, &cid);
  return cid;
}

Runtime& RequireNotSelf(const PortalState& portal) {
  Runtime& rt = Runtime::Require();
  if (portal.aid.uuid() == rt.self().uuid()) {
    throw UsageError(absl::StrCat(
        "Invalid Operation: actor '", rt.self().name(),
        "' cannot open a dialog with itself"));
  }
  return rt;
}

// A plain call: one unary Actor/Call, waited for in the caller's scope.
// Cancelling the wait cancels the RPC and with it the remote task.
Payload CallFunction(PortalState& portal, const std::string& func,
                     const Payload& args) {
  Runtime& rt = RequireNotSelf(portal);
  // The request is built in a message each thread keeps, so that its cid
  // and func strings are reused, and it borrows the caller's Aid and the
  // arguments rather than copying them: they are only read while the
  // request is serialized, inside the call below, and given back
  // (released, not freed) however the call ends.
  thread_local v1::Msg request;
  v1::Start* start = request.mutable_start();
  AssignCid(rt.self(), start->mutable_cid());
  start->set_func(func);
  SetStartOptions(start, v1::FUNC_TYPE_FUNCTION, {});
  start->unsafe_arena_set_allocated_caller(const_cast<v1::Aid*>(&rt.self()));
  start->unsafe_arena_set_allocated_args(
      const_cast<v1::Payload*>(&args.proto()));
  absl::Cleanup give_back = [start] {
    start->unsafe_arena_release_caller();
    start->unsafe_arena_release_args();
  };
  v1::Msg reply;
  v1::Actor::Stub* stub = portal.stub().get();
  grpc::ClientContext context;
  TRACTOR_LOG(transport) << "call stream '" << func << "' to actor '"
                         << portal.aid.name() << "' opened";
  grpc::Status st = CallUnary(
      context,
      [&](grpc::ClientContext* c) { return stub->Call(c, request, &reply); },
      absl::InfiniteFuture(), /*shielded=*/false);
  std::move(give_back).Invoke();
  TRACTOR_LOG(transport) << "call stream '" << func << "' to actor '"
                         << portal.aid.name() << "' closed: "
                         << (st.ok() ? "OK"
                                     : absl::StrCat(st.error_code(), " ",
                                                    st.error_message()));
  if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    // A refusal (ActorTooBusy) carries its Error in the status details.
    v1::Error refusal;
    if (refusal.ParseFromString(st.error_details()) &&
        !refusal.boxed_type().empty()) {
      ThrowError(refusal);
    }
  }
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

// The caller's side of a new context: sends Start (no StartAck asked for).
std::shared_ptr<DialogSession> OpenDialog(PortalState& portal,
                                          const std::string& func,
                                          const Payload& args,
                                          const ContextOptions& options) {
  Runtime& rt = RequireNotSelf(portal);
  auto s = std::make_shared<DialogSession>();
  s->side = Side::kCaller;
  s->is_context = true;
  s->cid = NewCid(rt.self());
  s->func = func;
  s->self_aid = rt.shared_self();
  s->peer = portal.aid;
  s->channel = portal.channel;
  s->scope = NewScope(nullptr, absl::InfiniteFuture(), false);
  s->scope->dialog = s;
  {
    MutexLock lk(&s->mu);  // not shared yet; the lock is for the analysis
    s->pld_spec = options.pld_spec;
  }
  v1::Msg start = MakeStart(s->cid, func, args, s->self(), v1::FUNC_TYPE_CONTEXT,
                            options.callee_stream);
  const std::optional<StreamOptions>& own = options.caller_stream;
  const bool own_strict =
      own && own->strict && own->overrun == OverrunPolicy::kBackpressure;
  const auto capacity_of = [](const StreamOptions& o) -> size_t {
    return o.msg_buffer_size == 0 ? kDefaultQueueCapacity : o.msg_buffer_size;
  };
  if (own_strict) {
    start.mutable_start()->set_caller_credit(
        static_cast<uint32_t>(capacity_of(*own)));
  }
  s->caller_stream = own;
  // Start leaves together with the call's initial metadata, on the dialog
  // the portal built ahead if it has one.
  std::shared_ptr<Dialog> prepared;
  {
    MutexLock lk(&portal.mu);
    prepared.swap(portal.spare_dialog);
  }
  if (prepared == nullptr) prepared = Dialog::Prepare(portal.open_method());
  s->dialog = Dialog::Open(std::move(prepared), start);
  if (own) {
    s->dialog->Configure(own->msg_buffer_size, ToProtoPolicy(own->overrun));
    if (own_strict) s->dialog->GrantCredits(/*announce=*/false);
  }
  if (options.callee_stream.strict &&
      options.callee_stream.overrun == OverrunPolicy::kBackpressure) {
    s->dialog->LimitByCredits(capacity_of(options.callee_stream));
  }
  InstallDialogHooks(s);
  return s;
}

// Builds the portal's next dialog ahead (see PortalState::spare_dialog),
// unless it has one.
void PrepareSpareDialog(PortalState& portal) {
  {
    MutexLock lk(&portal.mu);
    if (portal.spare_dialog != nullptr) return;
  }
  std::shared_ptr<Dialog> dialog = Dialog::Prepare(portal.open_method());
  MutexLock lk(&portal.mu);
  // (Else dropped, after the lock is released: another open built one.)
  if (portal.spare_dialog == nullptr) portal.spare_dialog.swap(dialog);
}

// On its way out of an `OpenContext` that returns (not one that throws:
// its peer may be gone), builds the portal's next dialog, once this one is
// closed.
class SpareOnReturn {
 public:
  explicit SpareOnReturn(PortalState& portal)
      : portal_(portal), exceptions_(std::uncaught_exceptions()) {}
  ~SpareOnReturn() {
    if (std::uncaught_exceptions() != exceptions_) return;
    try {
      PrepareSpareDialog(portal_);
    } catch (...) {
      // Not built: the next open builds its own.
    }
  }

 private:
  PortalState& portal_;
  const int exceptions_;
};

// Waits for the callee's first answer: Started (returned as the first
// value), or Return without Started (Started(null) + the result, recorded),
// or Error (raised).
Payload AwaitStarted(DialogSession& s) {
  v1::Msg m = NextMsg(s);
  // No StartAck was asked for (Start.no_ack); one that comes anyway is
  // tolerated.
  if (m.has_start_ack()) m = NextMsg(s);
  if (m.has_error()) RaiseArrived(s, m.error());
  if (m.has_returned()) {
    AcceptReturn(s, m.returned().payload());
    return Payload();
  }
  if (!m.has_started()) {
    throw MessagingError(absl::StrCat("expected Started from '", s.func,
                                      "', got ", m.ShortDebugString()));
  }
  if (m.started().accept_batches()) s.dialog->SetPeerAcceptsBatches(true);
  CheckPayload(s, "Started", m.started().payload());
  s.Advance(Event::kRecvStarted, "Started");
  return Payload(m.started().payload());
}

}  // namespace
}  // namespace internal

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
    grpc::ClientContext context;
    grpc::Status status = internal::CallUnary(
        context,
        [&](grpc::ClientContext* c) {
          return stub->Info(c, v1::InfoRequest(), &info);
        },
        absl::Now() + timeout, /*shielded=*/false);
    if (!status.ok()) {
      throw TransportClosed(absl::StrCat("no actor answers at ", ps->addr,
                                         ": ", status.error_message()));
    }
    ps->aid = info.aid();
    rt.NoteActorAt(ps->addr, ps->aid.uuid());
    // An actor on this host is reached over its same-host socket.
    if (!info.local_addr().empty() && info.host_id() == discovery::HostId()) {
      ps->addr = info.local_addr();
      ps->channel = rt.ChannelTo(ps->addr);
      rt.NoteActorAt(ps->addr, ps->aid.uuid());
    }
  }
  return Portal(ps);
}

const v1::Aid& Portal::aid() const { return state_->aid; }
const std::string& Portal::addr() const { return state_->addr; }

Payload Portal::Run(const std::string& func, const Payload& args) {
  if (!state_) throw UsageError("Run on an empty portal");
  return internal::CallFunction(*state_, func, args);
}

Payload Portal::OpenContext(
    const std::string& func, const Payload& args,
    const std::function<void(Context&, const Payload&)>& body,
    ContextOptions options) {
  if (!state_) throw UsageError("OpenContext on an empty portal");
  // Destroyed last, after the dialog's guard closed it.
  internal::SpareOnReturn spare(*state_);
  auto session = internal::OpenDialog(*state_, func, args, options);
  internal::DialogGuard guard{*session};
  auto& s = *session;
  Context context(session);
  bool body_done = false;
  try {
    internal::ScopeBinding bind(s.scope);
    Payload first = internal::AwaitStarted(s);
    body(context, first);
    body_done = true;
    if (options.cancel_on_exit) context.Cancel();
    return context.Result();
  } catch (const Cancelled& c) {
    if (c.scope() != s.scope) {
      // An enclosing scope was cancelled: cancel the remote task too.
      context.Cancel();
      throw;
    }
    // Interrupted by a remote error: raise it.
    MutexLock lk(&s.mu);
    if (s.remote_error) internal::ThrowError(*s.remote_error);
    throw;
  } catch (const ContextCancelled& c) {
    bool ours;
    {
      MutexLock lk(&s.mu);
      ours = internal::IsSelfCancel(s, c.msgdata());
      if (ours) s.cancel = internal::CancelState::kAcked;
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

bool Portal::CancelActor(absl::Duration timeout, bool raise_on_timeout) {
  if (!state_) return false;
  auto& rt = internal::Runtime::Require();
  TRACTOR_LOG(cancel) << "actor '" << rt.self().name() << "' "
                      << rt.self().uuid() << " cancels actor '"
                      << state_->aid.name() << "' " << state_->aid.uuid();
  v1::CancelActorRequest req;
  *req.mutable_requester() = rt.self();
  v1::CancelActorReply reply;
  v1::Actor::Stub* stub = state_->stub().get();
  grpc::ClientContext context;
  grpc::Status status = internal::CallUnary(
      context,
      [&](grpc::ClientContext* c) {
        discovery::AttachSecret(c);
        return stub->CancelActor(c, req, &reply);
      },
      absl::Now() + timeout, /*shielded=*/true);
  if (raise_on_timeout &&
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    throw ActorTooSlowError(absl::StrCat(
        "actor '", state_->aid.name(), "' did not acknowledge CancelActor ",
        "within ", absl::FormatDuration(timeout)));
  }
  return status.ok() && reply.ok();
}

Portal GetRoot(absl::Duration timeout) {
  auto& rt = internal::Runtime::Require();
  const std::string& root_addr = rt.config().root_addr;
  if (!root_addr.empty()) return Portal::Connect(root_addr, {}, timeout);
  // This actor is the root.
  const std::string self_addr =
      rt.local_addr().empty() ? rt.accept_addrs().front() : rt.local_addr();
  return Portal::Connect(self_addr, rt.self(), timeout);
}

Payload Portal::Result() {
  if (!state_) throw UsageError("Result on an empty portal");
  auto& s = *state_;
  MutexLock lk(&s.mu);
  if (!s.has_result_task) {
    throw UsageError(absl::StrCat("actor '", s.aid.name(),
                                  "' was not started with RunInActor: no "
                                  "result to wait for"));
  }
  internal::Wait(s.cv, s.mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    return s.result_ready;
  });
  if (s.error) std::rethrow_exception(s.error);
  return *s.result;
}

}  // namespace tractor
