// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/control_methods.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actor/export.h"
#include "absl/strings/str_cat.h"
#include "actor/internal/debugger.h"
#include "actor/internal/dialog.h"
#include "actor/internal/scope.h"
#include "actor/internal/thread_pool.h"
#include "actor/internal/task_server.h"
#include "actor/internal/wire.h"
#include "absl/time/time.h"
#include "devx/crash_handler.h"
#include "discovery/address.h"
#include "discovery/log_level.h"
#include "discovery/process_usage.h"
#include "discovery/credentials.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// Decodes a unary request; on failure returns INVALID_ARGUMENT saying why.
grpc::Status DecodeRequest(const char* method, const grpc::ByteBuffer& bytes,
                           google::protobuf::Message* request) {
  std::string why;
  if (ParseFromByteBuffer(bytes, request, &why)) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(method, " request: ", why));
}

}  // namespace

namespace {

grpc::Status CancelTask(Runtime* rt, grpc::ServerContext* ctx,
                        const grpc::ByteBuffer& request,
                        grpc::ByteBuffer* response) {
  v1::CancelTaskRequest req;
  if (grpc::Status s = DecodeRequest("Actor.CancelTask", request, &req);
      !s.ok()) {
    return s;
  }
  if (grpc::Status member = discovery::CheckMember(*ctx, "CancelTask");
      !member.ok()) {
    return member;
  }
  v1::CancelTaskReply reply;
  reply.set_found(rt->tasks().CancelTask(req.cid(), req.requester()));
  TRACTOR_LOG(cancel) << "task cid " << req.cid() << " of actor '"
                      << rt->self().name() << "' " << rt->self().uuid()
                      << " cancelled by '" << req.requester().name() << "' "
                      << req.requester().uuid()
                      << (reply.found() ? "" : " (no such task running)");
  SerializeToByteBuffer(reply, response);
  return grpc::Status::OK;
}

grpc::Status Info(Runtime* rt, grpc::ServerContext*,
                  const grpc::ByteBuffer& request,
                  grpc::ByteBuffer* response) {
  v1::InfoRequest req;
  if (grpc::Status s = DecodeRequest("Actor.Info", request, &req); !s.ok()) {
    return s;
  }
  v1::ActorInfo info;
  *info.mutable_aid() = rt->self();
  for (const auto& a : rt->accept_addrs()) info.add_accept_addrs(a);
  for (const auto& ns : rt->tasks().enable_modules()) {
    info.add_enable_modules(ns);
    for (const auto& f : EndpointNames(ns)) {
      info.add_functions(f);
      const Endpoint* ep = FindEndpoint(f);
      if (ep == nullptr) continue;
      v1::FunctionSignature* sig = info.add_signatures();
      sig->set_name(f);
      sig->set_kind(ep->type);
      sig->set_named(!ep->params.empty());
      for (const EndpointParam& p : ep->params) {
        v1::FunctionParameter* param = sig->add_params();
        param->set_name(p.name);
        param->set_type(p.spec);
      }
      if (ep->params.empty() && ep->takes_arg) {
        sig->add_params()->set_type(ep->arg_spec);
      }
      sig->set_result_type(ep->result_spec);
    }
  }
  for (v1::ChildAddrs& c : rt->ChildAddrs()) {
    *info.add_children() = c.aid();
    *info.add_child_addrs() = std::move(c);
  }
  *info.mutable_parent() = rt->config().parent;
  if (!rt->config().parent_addr.empty()) {
    info.add_parent_addrs(rt->config().parent_addr);
  }
  info.set_protocol_version(kProtocolVersion);
  info.set_local_addr(rt->local_addr());
  info.set_host_id(discovery::HostId());
  SerializeToByteBuffer(info, response);
  return grpc::Status::OK;
}

grpc::Status Stats(Runtime* rt, grpc::ServerContext*,
                   const grpc::ByteBuffer& request,
                   grpc::ByteBuffer* response) {
  v1::StatsRequest req;
  if (grpc::Status s = DecodeRequest("Actor.Stats", request, &req); !s.ok()) {
    return s;
  }
  v1::ActorStats stats;
  *stats.mutable_aid() = rt->self();
  rt->tasks().FillStats(&stats);
  stats.set_open_dialogs(static_cast<uint32_t>(Dialog::OpenCount()));
  stats.set_overruns(Dialog::OverrunCount());
  stats.set_children(static_cast<uint32_t>(rt->Children().size()));
  discovery::ProcessUsage usage = discovery::ReadProcessUsage();
  stats.set_threads(usage.threads);
  stats.set_rss_bytes(usage.rss_bytes);
  stats.set_heap_bytes(usage.heap_bytes);
  SerializeToByteBuffer(stats, response);
  return grpc::Status::OK;
}

}  // namespace

StacksPlan PlanStacks(Runtime& rt, bool tree) {
  StacksPlan plan;
  plan.self = rt.self();
  if (!tree) return plan;
  for (auto& [aid, addr] : rt.ChildLinks()) {
    plan.children.push_back({std::move(aid), addr, rt.ChannelTo(addr)});
  }
  return plan;
}

v1::StacksReply GatherStacks(const StacksPlan& plan, absl::Duration per_child,
                             StacksGatherings* gatherings) {
  v1::StacksReply reply;
  v1::ActorStacks* own = reply.add_actors();
  *own->mutable_aid() = plan.self;
  own->set_text(devx::StackReport());
  for (const StacksPlan::Child& child : plan.children) {
    v1::StacksRequest req;
    req.set_tree(true);
    req.set_timeout_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(per_child)));
    v1::StacksReply sub;
    grpc::ClientContext ctx;
    // A grandchild's wait is inside the child's: give each level a bit
    // more than the one below.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + per_child * 2));
    grpc::Status st;
    auto call = [&] {
      st = v1::Actor::NewStub(child.channel)->Stacks(&ctx, req, &sub);
    };
    if (gatherings == nullptr) {
      call();
    } else if (!gatherings->Track(&ctx, call)) {
      st = grpc::Status(grpc::StatusCode::CANCELLED,
                        "the actor is shutting down");
    }
    if (!st.ok()) {
      v1::ActorStacks* missing = reply.add_actors();
      *missing->mutable_aid() = child.aid;
      missing->set_error(absl::StrCat("no answer from ", child.addr, ": ",
                                      st.error_message()));
      continue;
    }
    for (auto& a : *sub.mutable_actors()) *reply.add_actors() = std::move(a);
  }
  return reply;
}

v1::StacksReply GatherStacks(Runtime& rt, bool tree,
                             absl::Duration per_child) {
  return GatherStacks(PlanStacks(rt, tree), per_child);
}

bool StacksGatherings::Stop(absl::Duration bound) {
  gate_.Close(CloseReason::kExit);
  // Nothing gathering (every exit but a few): no scope, no wait.
  if (gate_.holders() == 0) return true;
  // Waited for shielded: the shutdown must not be cut short here.
  auto shielded = NewScope(nullptr, absl::InfiniteFuture(), true);
  ScopeBinding bind(shielded);
  if (gate_.WaitDrained(absl::Now() + bound)) return true;
  {
    MutexLock lk(&mu_);
    cancelled_ = true;
    for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
  }
  return gate_.WaitDrained(absl::Now() + bound).has_value();
}

bool StacksGatherings::Track(grpc::ClientContext* ctx,
                             absl::FunctionRef<void()> call) {
  {
    MutexLock lk(&mu_);
    if (cancelled_) return false;
    calls_.push_back(ctx);
  }
  call();
  MutexLock lk(&mu_);
  calls_.erase(std::find(calls_.begin(), calls_.end(), ctx));
  return true;
}

namespace {

// One `Actor/CancelActor`, from its request to its reply's completion (see
// ServeCancelActor). Its operations complete on the acceptor's queue, whose
// waiting thread runs `Proceed`; between the arrival and the reply only the
// thread that posts the reply touches it.
class CancelActorCall final : public ServiceCall {
 public:
  CancelActorCall(Runtime* rt, ActorService* service, ServiceQueue* queue)
      : rt_(rt), service_(service), queue_(queue) {}

  // Requests one call on the queue, unless it is shutting down.
  static void Request(Runtime* rt, ActorService* service,
                      ServiceQueue* queue) {
    auto* call = new CancelActorCall(rt, service, queue);
    if (!queue->Post([call] {
          call->service_->RequestCancelActor(
              &call->ctx_, &call->request_, &call->responder_,
              call->queue_->cq(), call->queue_->cq(),
              static_cast<CqTransport::Tag*>(&call->accept_tag_));
        })) {
      delete call;
    }
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    if (tag == &finish_tag_ || !ok) {
      // The reply went (or the caller was gone), or the request was
      // cancelled by the shutdown.
      delete this;
      return;
    }
    Request(rt_, service_, queue_);
    v1::CancelActorRequest req;
    grpc::Status status =
        DecodeRequest("Actor.CancelActor", request_, &req);
    request_.Clear();
    if (status.ok()) status = discovery::CheckMember(ctx_, "CancelActor");
    if (!status.ok()) {
      Reply(status);
      return;
    }
    const v1::Aid& requester = req.requester();
    TRACTOR_LOG(cancel) << "actor '" << rt_->self().name() << "' "
                        << rt_->self().uuid() << " cancelled by '"
                        << requester.name() << "' " << requester.uuid();
    Runtime* const rt = rt_;
    // The exit is under way before the requester hears back (a root's
    // block is cancelled by then): when no task runs, the reply is sent
    // from inside this call, after the exit was requested.
    rt->tasks().CancelAllTasksThen(requester, [this, rt] {
      rt->RequestExit(kCancelledByRequest);
      Reply(grpc::Status::OK);
    });
    // Tasks still running: the shutdown starts now, and waits for them
    // (bounded) before it answers this call.
    rt->RequestExit(kCancelledByRequest);
  }

 private:
  static constexpr const char* kCancelledByRequest = "cancelled by request";

  // Answers the call (`ok` on success); it is deleted once the reply's
  // completion comes back, or now if the queue is shutting down.
  void Reply(const grpc::Status& status) {
    bool posted;
    if (status.ok()) {
      v1::CancelActorReply reply;
      reply.set_ok(true);
      SerializeToByteBuffer(reply, &reply_bytes_);
      posted = queue_->Post([this, &status] {
        responder_.Finish(reply_bytes_, status,
                          static_cast<CqTransport::Tag*>(&finish_tag_));
      });
    } else {
      posted = queue_->Post([this, &status] {
        responder_.FinishWithError(
            status, static_cast<CqTransport::Tag*>(&finish_tag_));
      });
    }
    if (!posted) delete this;
  }

  Runtime* const rt_;
  ActorService* const service_;
  ServiceQueue* const queue_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&ctx_};
  ServiceTag accept_tag_{this}, finish_tag_{this};
  grpc::ByteBuffer reply_bytes_;
};

// A unary control method served from the accept queue (see
// ServeControlMethods).
enum class Control { kInfo, kCancelTask, kStats, kStacks };

// One call of a control method, from its request to its reply's completion.
// Its operations complete on the acceptor's queue, whose waiting thread
// runs `Proceed`; between the arrival and the reply only the thread that
// posts the reply (this one, or for `Stacks` the gathering's) touches it.
class ControlCall final : public ServiceCall {
 public:
  ControlCall(Runtime* rt, ActorService* service, DialogAcceptor* acceptor,
              std::shared_ptr<StacksGatherings> stacks, Control method)
      : rt_(rt),
        service_(service),
        acceptor_(acceptor),
        gate_(acceptor->gate()),
        stacks_(std::move(stacks)),
        method_(method) {}

  // Requests one call of `method` on the acceptor's queue, unless it is
  // shutting down.
  static void Request(Runtime* rt, ActorService* service,
                      DialogAcceptor* acceptor,
                      std::shared_ptr<StacksGatherings> stacks,
                      Control method) {
    auto* call =
        new ControlCall(rt, service, acceptor, std::move(stacks), method);
    if (!acceptor->Post([call] { call->RequestOnQueue(); })) delete call;
  }

  void Proceed(ServiceTag* tag, bool ok) override {
    if (tag == &finish_tag_ || !ok) {
      // The reply went (or the caller was gone), or the request was
      // cancelled by the shutdown.
      delete this;
      return;
    }
    Request(rt_, service_, acceptor_, stacks_, method_);
    grpc::Status status;
    switch (method_) {
      case Control::kInfo:
        status = Info(rt_, &ctx_, request_, &reply_bytes_);
        break;
      case Control::kCancelTask:
        status = CancelTask(rt_, &ctx_, request_, &reply_bytes_);
        break;
      case Control::kStats:
        status = Stats(rt_, &ctx_, request_, &reply_bytes_);
        break;
      case Control::kStacks:
        if (StartStacks(&status)) return;
        break;
    }
    request_.Clear();
    Reply(status);
  }

 private:
  void RequestOnQueue() {
    grpc::ServerCompletionQueue* cq = acceptor_->cq();
    void* tag = static_cast<CqTransport::Tag*>(&accept_tag_);
    switch (method_) {
      case Control::kInfo:
        service_->RequestInfo(&ctx_, &request_, &responder_, cq, cq, tag);
        break;
      case Control::kCancelTask:
        service_->RequestCancelTask(&ctx_, &request_, &responder_, cq, cq,
                                    tag);
        break;
      case Control::kStats:
        service_->RequestStats(&ctx_, &request_, &responder_, cq, cq, tag);
        break;
      case Control::kStacks:
        service_->RequestStacks(&ctx_, &request_, &responder_, cq, cq, tag);
        break;
    }
  }

  // Hands a well-formed `Stacks` to a pooled thread, inside the runtime's
  // gate, and returns true; else false with `*status` the refusal.
  bool StartStacks(grpc::Status* status) {
    v1::StacksRequest req;
    *status = DecodeRequest("Actor.Stacks", request_, &req);
    request_.Clear();
    if (!status->ok()) return false;
    std::optional<Gate::Holder> hold = stacks_->TryEnter();
    if (!hold) {
      *status = grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("actor '", rt_->self().name(), "' is shutting down"));
      return false;
    }
    struct Gathering {
      ControlCall* call;
      std::shared_ptr<StacksGatherings> stacks;  // outlives `hold`
      std::optional<Gate::Holder> hold;
      StacksPlan plan;
      absl::Duration per_child;
    };
    auto job = std::make_shared<Gathering>(Gathering{
        this, stacks_, std::move(hold), PlanStacks(*rt_, req.tree()),
        req.timeout_ms() > 0 ? absl::Milliseconds(req.timeout_ms())
                             : absl::Seconds(10)});
    RunPooled([job] {
      ControlCall* const call = job->call;
      SerializeToByteBuffer(
          GatherStacks(job->plan, job->per_child, job->stacks.get()),
          &call->reply_bytes_);
      call->Reply(grpc::Status::OK);
      job->hold.reset();
    });
    return true;
  }

  // Answers the call (`reply_bytes_` on success); it is deleted once the
  // reply's completion comes back, or now if the acceptor stopped.
  void Reply(const grpc::Status& status) {
    // Copied first: once the reply is posted, the queue's thread may
    // delete this call at any time.
    const std::shared_ptr<ServerGate> gate = gate_;
    if (!gate->Enter()) {
      delete this;
      return;
    }
    if (status.ok()) {
      responder_.Finish(reply_bytes_, status,
                        static_cast<CqTransport::Tag*>(&finish_tag_));
    } else {
      responder_.FinishWithError(
          status, static_cast<CqTransport::Tag*>(&finish_tag_));
    }
    gate->Leave();
  }

  Runtime* const rt_;
  ActorService* const service_;
  DialogAcceptor* const acceptor_;
  const std::shared_ptr<ServerGate> gate_;
  const std::shared_ptr<StacksGatherings> stacks_;
  const Control method_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&ctx_};
  ServiceTag accept_tag_{this}, finish_tag_{this};
  grpc::ByteBuffer reply_bytes_;
};

}  // namespace

void ServeCancelActor(Runtime* rt, ActorService* service,
                      ServiceQueue* queue) {
  CancelActorCall::Request(rt, service, queue);
}

void ServeControlMethods(Runtime* rt, ActorService* service,
                         DialogAcceptor* acceptor,
                         std::shared_ptr<StacksGatherings> stacks) {
  for (Control method : {Control::kInfo, Control::kCancelTask,
                         Control::kStats, Control::kStacks}) {
    ControlCall::Request(rt, service, acceptor, stacks, method);
  }
}

}  // namespace tractor::internal
