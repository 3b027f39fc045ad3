// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/actor_service.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actor/export.h"
#include "absl/strings/str_cat.h"
#include "actor/internal/busy_wait.h"
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

grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>*
DebugLockService::DebugLock(grpc::CallbackServerContext* ctx) {
  return NewDebugLockReactor(rt_, ctx);
}

namespace {

void* AsTag(CqTransport::Tag* tag) { return tag; }

// One `Actor/Call`, from its request to its last completion (see
// ServeUnaryCalls). Counted references: the request (then the thread that
// answers or serves the call), the done tag (which may come back as soon as
// the call arrived) and the reply posted, each until its completion came
// back; the last one deletes the call.
class UnaryCall final : public AcceptedCall,
                        public ServiceCall,
                        public CallClient {
 public:
  UnaryCall(Runtime* rt, ActorService* service, DialogAcceptor* acceptor)
      : rt_(rt),
        service_(service),
        acceptor_(acceptor),
        gate_(acceptor->gate()),
        watcher_(&rt->tasks().call_watcher()) {}

  // Requests one call on the acceptor's queue, unless it stopped.
  static void Request(Runtime* rt, ActorService* service,
                      DialogAcceptor* acceptor) {
    auto* call = new UnaryCall(rt, service, acceptor);
    if (!acceptor->Post([call] {
          HandOff(call);
          call->ctx_.AsyncNotifyWhenDone(AsTag(&call->done_tag_));
          call->service_->RequestCall(
              &call->ctx_, &call->request_, &call->responder_,
              call->watcher_->cq(), call->acceptor_->cq(),
              AsTag(&call->accept_tag_));
        })) {
      delete call;
    }
  }

  bool Arrived(bool ok, bool can_serve) override {
    TakeOver(this);
    if (!ok) {
      // Cancelled by the shutdown: no done tag comes.
      Unref();
      Unref();
      return false;
    }
    id_ = watcher_->Add();
    grpc::Status refusal;
    if (!can_serve) {
      refusal = grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("actor '", rt_->self().name(), "' is shutting down"));
    } else if (rt_->tasks().OpenCall(request_, &msg_, &refusal)) {
      request_.Clear();
      return true;
    }
    request_.Clear();
    Reply(refusal, nullptr);
    return false;
  }

  void Serve() override {
    // The request (msg_) is freed with the call, and the ended task's
    // session and the reply's message as this returns: after the reply
    // left, off its path.
    const TaskServer::CallOutcome out = rt_->tasks().ServeCall(&msg_, this);
    SerializeToByteBuffer(out.reply, &reply_bytes_);
    // Copied first: once the reply is posted, the watcher may let go of
    // this call at any time.
    const std::shared_ptr<ServerGate> gate = gate_;
    CallWatcher* const watcher = watcher_;
    Reply(grpc::Status::OK, &reply_bytes_);
    // With the reply on its way, this thread delivers the completions
    // that are ready (usually this call's own reply and done tag), so
    // that the watcher does not take a burst of them every poll while
    // calls keep coming. Inside the gate: the watcher outlives the
    // acceptor's Stop, which waits for the threads inside.
    if (gate->Enter()) {
      watcher->Reap(CallWatcher::kReapPerCall);
      gate->Leave();
    }
  }

  // The reply's and the done tag's completions, on the watcher's thread.
  void Proceed(ServiceTag* tag, bool) override {
    if (tag == &done_tag_) {
      std::shared_ptr<DialogSession> cancel;
      {
        MutexLock lk(&mu_);
        // Valid now that the done tag came: the client went away (or the
        // server cancelled the call) rather than the reply ending it.
        if (ctx_.IsCancelled()) {
          gone_ = true;
          cancel = std::move(session_);
        }
      }
      if (cancel) CancelForCaller(cancel);
    }
    Unref();
  }

  void Watch(std::shared_ptr<DialogSession> s) override {
    {
      MutexLock lk(&mu_);
      if (!gone_) {
        session_ = std::move(s);
        return;
      }
    }
    CancelForCaller(s);
  }

  void Unwatch() override {
    std::shared_ptr<DialogSession> s;
    MutexLock lk(&mu_);
    s = std::move(session_);
  }

 private:
  ~UnaryCall() override {
    if (id_ != kNoId) watcher_->Forget(id_);
  }

  // Answers the call with `status` and `bytes` (a success) or `status`
  // alone, unless the server is going away; then lets go of the call.
  void Reply(const grpc::Status& status, const grpc::ByteBuffer* bytes) {
    refs_.fetch_add(1, std::memory_order_relaxed);  // the reply's completion
    BusyWait::NoteIo();
    if (gate_->Enter()) {
      if (bytes != nullptr) {
        responder_.Finish(*bytes, status, AsTag(&finish_tag_));
      } else {
        responder_.FinishWithError(status, AsTag(&finish_tag_));
      }
      gate_->Leave();
    } else {
      Unref();
    }
    Unref();
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  static constexpr uint64_t kNoId = ~uint64_t{0};

  Runtime* const rt_;
  ActorService* const service_;
  DialogAcceptor* const acceptor_;
  const std::shared_ptr<ServerGate> gate_;
  CallWatcher* const watcher_;
  std::atomic<int> refs_{2};  // the request and the done tag
  uint64_t id_ = kNoId;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder_{&ctx_};
  CallTag accept_tag_{this};
  ServiceTag done_tag_{this}, finish_tag_{this};
  v1::Msg msg_;  // the decoded request (freed with the call)
  grpc::ByteBuffer reply_bytes_;
  Mutex mu_;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<DialogSession> session_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void ServeUnaryCalls(Runtime* rt, ActorService* service,
                     DialogAcceptor* acceptor) {
  acceptor->ServeCalls([rt, service, acceptor] {
    UnaryCall::Request(rt, service, acceptor);
  });
}

}  // namespace tractor::internal
