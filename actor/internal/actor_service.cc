// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/actor_service.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <thread>
#include <utility>

#include "actor/export.h"
#include "absl/strings/str_cat.h"
#include "actor/internal/debugger.h"
#include "actor/internal/dialog.h"
#include "actor/internal/wire.h"
#include "absl/time/time.h"
#include "devx/crash_handler.h"
#include "discovery/address.h"
#include "discovery/log_level.h"
#include "discovery/process_usage.h"
#include "discovery/thread_name.h"
#include "discovery/credentials.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

// Parent side of a child's Link stream: the child says hello, the parent
// accepts it, and either side sees the other go when the stream ends.
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
      const uint32_t version = in_.hello().protocol_version();
      if (version != 0 && version != kProtocolVersion) {
        // 0 is a child too old to say: it speaks version 1.
        FinishOnce(grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            absl::StrCat("the child speaks tractor protocol version ", version,
                         "; this actor speaks version ", kProtocolVersion)));
        return;
      }
      grpc::Status refused;
      child_ = rt_->OnChildLinked(in_.hello(), &refused);
      if (!child_) {
        FinishOnce(refused);
        return;
      }
      TRACTOR_LOG(transport) << "link from child '" << in_.hello().aid().name()
                             << "' " << in_.hello().aid().uuid() << " up";
      aid_ = in_.hello().aid();
      out_.mutable_accepted();
      StartWrite(&out_);
    } else if (in_.has_error()) {
      MutexLock lk(&child_->mu);
      child_->boot_error = in_.error().message();
    } else if (in_.has_bye()) {
      MutexLock lk(&child_->mu);
      child_->said_bye = true;
    } else if (in_.kind_case() == v1::LinkMsg::kDebugHold) {
      {
        MutexLock lk(&child_->mu);
        child_->in_debugger = in_.debug_hold();
        child_->last_heard = absl::Now();
      }
      child_->cv.SignalAll();
    } else if (in_.has_heartbeat()) {
      MutexLock lk(&child_->mu);
      child_->last_heard = absl::Now();
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    // The only write is the answer to the hello.
    if (!ok || !child_) return;
    {
      MutexLock lk(&child_->mu);
      child_->link_confirmed = true;
    }
    child_->cv.SignalAll();
  }
  void OnCancel() override { Lost(); }
  void OnDone() override { delete this; }

 private:
  void Lost() {
    if (child_ && !lost_.exchange(true)) {
      std::function<void()> suspect;
      {
        MutexLock lk(&child_->mu);
        TRACTOR_LOG(transport)
            << "link from child '" << aid_.name() << "' " << aid_.uuid()
            << " down: "
            << (child_->said_bye ? "the child said bye"
                : child_->exited ? "the child exited"
                                 : "dropped (keepalive failure or connection "
                                   "closed) before the child said bye");
        child_->link_lost = true;
        child_->in_debugger = false;
        if (!child_->said_bye && !child_->exited) {
          suspect = std::exchange(child_->on_link_lost, nullptr);
        }
      }
      child_->cv.SignalAll();
      if (suspect) suspect();
    }
    FinishOnce(grpc::Status::OK);
  }
  void FinishOnce(const grpc::Status& s) {
    if (finished_.exchange(true)) return;
    Finish(s);
  }

  Runtime* rt_;
  std::shared_ptr<ChildProc> child_;
  v1::Aid aid_;  // the child's, once linked
  v1::LinkMsg in_, out_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> lost_{false};
};

// Decodes a unary request; on failure finishes `reactor` with
// INVALID_ARGUMENT saying why and returns false.
bool DecodeRequest(const char* method, const grpc::ByteBuffer& bytes,
                   google::protobuf::Message* request,
                   grpc::ServerUnaryReactor* reactor) {
  std::string why;
  if (ParseFromByteBuffer(bytes, request, &why)) return true;
  reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                               absl::StrCat(method, " request: ", why)));
  return false;
}

}  // namespace

grpc::ServerUnaryReactor* ActorService::CancelTask(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  auto* r = ctx->DefaultReactor();
  v1::CancelTaskRequest req;
  if (!DecodeRequest("Actor.CancelTask", *request, &req, r)) return r;
  if (grpc::Status member = discovery::CheckMember(*ctx, "CancelTask");
      !member.ok()) {
    r->Finish(member);
    return r;
  }
  v1::CancelTaskReply reply;
  reply.set_found(rt_->tasks().CancelTask(req.cid(), req.requester()));
  TRACTOR_LOG(cancel) << "task cid " << req.cid() << " of actor '"
                      << rt_->self().name() << "' " << rt_->self().uuid()
                      << " cancelled by '" << req.requester().name() << "' "
                      << req.requester().uuid()
                      << (reply.found() ? "" : " (no such task running)");
  SerializeToByteBuffer(reply, response);
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* ActorService::CancelActor(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  auto* r = ctx->DefaultReactor();
  v1::CancelActorRequest req;
  if (!DecodeRequest("Actor.CancelActor", *request, &req, r)) return r;
  if (grpc::Status member = discovery::CheckMember(*ctx, "CancelActor");
      !member.ok()) {
    r->Finish(member);
    return r;
  }
  const v1::Aid& requester = req.requester();
  TRACTOR_LOG(cancel) << "actor '" << rt_->self().name() << "' "
                      << rt_->self().uuid() << " cancelled by '"
                      << requester.name() << "' " << requester.uuid();
  Runtime* rt = rt_;
  rt_->tasks().CancelAllTasks(requester, absl::Seconds(2), [r, response, rt] {
    // The exit is under way before the requester hears back (the root's
    // block is cancelled by then).
    rt->RequestExit("cancelled by request");
    v1::CancelActorReply reply;
    reply.set_ok(true);
    SerializeToByteBuffer(reply, response);
    r->Finish(grpc::Status::OK);
  });
  return r;
}

grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* ActorService::Link(
    grpc::CallbackServerContext*) {
  return new LinkReactor(rt_);
}

grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>*
ActorService::DebugLock(grpc::CallbackServerContext* ctx) {
  return NewDebugLockReactor(rt_, ctx);
}

grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* LinkService::Link(
    grpc::CallbackServerContext*) {
  return new LinkReactor(rt_);
}

grpc::ServerUnaryReactor* ActorService::Info(grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* response) {
  auto* r = ctx->DefaultReactor();
  v1::InfoRequest req;
  if (!DecodeRequest("Actor.Info", *request, &req, r)) return r;
  v1::ActorInfo info;
  *info.mutable_aid() = rt_->self();
  for (const auto& a : rt_->accept_addrs()) info.add_accept_addrs(a);
  for (const auto& ns : rt_->tasks().enable_modules()) {
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
  for (v1::ChildAddrs& c : rt_->ChildAddrs()) {
    *info.add_children() = c.aid();
    *info.add_child_addrs() = std::move(c);
  }
  *info.mutable_parent() = rt_->config().parent;
  if (!rt_->config().parent_addr.empty()) {
    info.add_parent_addrs(rt_->config().parent_addr);
  }
  info.set_protocol_version(kProtocolVersion);
  info.set_local_addr(rt_->local_addr());
  info.set_host_id(discovery::HostId());
  SerializeToByteBuffer(info, response);
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerUnaryReactor* ActorService::Stats(grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) {
  auto* r = ctx->DefaultReactor();
  v1::StatsRequest req;
  if (!DecodeRequest("Actor.Stats", *request, &req, r)) return r;
  v1::ActorStats stats;
  *stats.mutable_aid() = rt_->self();
  rt_->tasks().FillStats(&stats);
  stats.set_open_dialogs(static_cast<uint32_t>(Dialog::LiveCount()));
  stats.set_overruns(Dialog::OverrunCount());
  stats.set_children(static_cast<uint32_t>(rt_->Children().size()));
  discovery::ProcessUsage usage = discovery::ReadProcessUsage();
  stats.set_threads(usage.threads);
  stats.set_rss_bytes(usage.rss_bytes);
  stats.set_heap_bytes(usage.heap_bytes);
  SerializeToByteBuffer(stats, response);
  r->Finish(grpc::Status::OK);
  return r;
}

v1::StacksReply GatherStacks(Runtime& rt, bool tree,
                             absl::Duration per_child) {
  v1::StacksReply reply;
  v1::ActorStacks* own = reply.add_actors();
  *own->mutable_aid() = rt.self();
  own->set_text(devx::StackReport());
  if (!tree) return reply;
  for (const auto& [aid, addr] : rt.ChildLinks()) {
    v1::StacksRequest req;
    req.set_tree(true);
    req.set_timeout_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(per_child)));
    v1::StacksReply sub;
    grpc::ClientContext ctx;
    // A grandchild's wait is inside the child's: give each level a bit
    // more than the one below.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + per_child * 2));
    auto stub = v1::Actor::NewStub(rt.ChannelTo(addr));
    grpc::Status st = stub->Stacks(&ctx, req, &sub);
    if (!st.ok()) {
      v1::ActorStacks* missing = reply.add_actors();
      *missing->mutable_aid() = aid;
      missing->set_error(absl::StrCat("no answer from ", addr, ": ",
                                      st.error_message()));
      continue;
    }
    for (auto& a : *sub.mutable_actors()) *reply.add_actors() = std::move(a);
  }
  return reply;
}

grpc::ServerUnaryReactor* ActorService::Stacks(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) {
  auto* r = ctx->DefaultReactor();
  v1::StacksRequest req;
  if (!DecodeRequest("Actor.Stacks", *request, &req, r)) return r;
  const absl::Duration per_child =
      req.timeout_ms() > 0 ? absl::Milliseconds(req.timeout_ms())
                           : absl::Seconds(10);
  Runtime* rt = rt_;
  // The gRPC thread must not block: the gathering runs on its own thread,
  // which ends the RPC; the server's shutdown waits for that.
  std::thread([rt, r, response, tree = req.tree(), per_child] {
    discovery::NameThisThread("stacks");
    const v1::StacksReply reply = GatherStacks(*rt, tree, per_child);
    SerializeToByteBuffer(reply, response);
    r->Finish(grpc::Status::OK);
  }).detach();
  return r;
}

grpc::ServerGenericBidiReactor* UnknownMethodService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  class Refuse : public grpc::ServerGenericBidiReactor {
   public:
    explicit Refuse(const std::string& method) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "unknown method " + method));
    }
    void OnDone() override { delete this; }
  };
  return new Refuse(context->method());
}

CallService::CallService(Runtime* rt) {
  AddMethod(new grpc::internal::RpcServiceMethod(
      "/tractor.v1.Actor/Call", grpc::internal::RpcMethod::NORMAL_RPC,
      new grpc::internal::RpcMethodHandler<CallService, grpc::ByteBuffer,
                                           grpc::ByteBuffer>(
          [rt](CallService*, grpc::ServerContext* ctx,
               const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
            return rt->tasks().ServeCall(ctx, *request, response);
          },
          this)));
}

}  // namespace tractor::internal
