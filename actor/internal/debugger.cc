// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/debugger.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/internal/error_codec.h"
#include "actor/internal/runtime.h"
#include "actor/internal/scope.h"
#include "devx/debugger.h"
#include "devx/throw_trace.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/log_level.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"

namespace tractor::internal {
namespace {

std::mutex g_announce_mu;
std::condition_variable g_announce_cv;  // signalled when the announcer is set
std::function<void(bool)>* g_announce = nullptr;

// How long a child's task waits for ChildMain to set up the announcer: a
// task may start as soon as the parent saw the link's hello, a moment
// before ChildMain has read the parent's answer.
constexpr auto kAnnouncerWait = std::chrono::seconds(10);

void AnnounceHold(bool in_debugger, bool is_child) {
  std::function<void(bool)> announce;
  {
    std::unique_lock<std::mutex> lock(g_announce_mu);
    if (is_child) {
      g_announce_cv.wait_for(lock, kAnnouncerWait,
                             [] { return g_announce != nullptr; });
    }
    if (g_announce != nullptr) announce = *g_announce;
  }
  if (announce) {
    announce(in_debugger);
  } else if (is_child) {
    LOG(WARNING) << "could not tell the parent that this actor "
                 << (in_debugger ? "enters" : "leaves") << " the debugger";
  }
}

// The root's side of one `DebugLock` stream: the request queues on the
// process's TtyLock; the grant is written when it reaches the head; a
// release, the end of the stream or a cancelled RPC releases it.
class DebugLockReactor
    : public grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg> {
 public:
  DebugLockReactor() : state_(std::make_shared<State>()) { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End();
      return;
    }
    if (!requested_) {
      if (!in_.has_request()) {
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first DebugLock message must be request"));
        return;
      }
      requested_ = true;
      const v1::DebugLockRequest& req = in_.request();
      const std::string who = absl::StrCat(
          "actor '", req.requester().name(), "' ",
          req.requester().uuid().substr(0, 8), " (pid ", req.pid(), ")");
      TRACTOR_LOG(devx) << "debug lock requested by " << who << " for "
                        << req.reason();
      const TtyLock::Ticket ticket = TtyLock::Process().Request(
          who, [state = state_, this, who] {
            MutexLock lock(&state->mu);
            if (state->done) return;
            TRACTOR_LOG(devx) << "debug lock granted to " << who;
            out_.mutable_granted()->set_host_id(discovery::HostId());
            StartWrite(&out_);
          });
      bool ended;
      {
        MutexLock lock(&state_->mu);
        state_->ticket = ticket;
        state_->who = who;
        ended = state_->done;
      }
      // The stream ended (OnCancel) while the request was being queued.
      if (ended) {
        TtyLock::Process().Release(ticket);
        return;
      }
    } else if (in_.has_release()) {
      End();
      return;
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool) override {}
  void OnCancel() override { End(); }
  void OnDone() override { delete this; }

 private:
  struct State {
    Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    // The queued request (0: none yet) and who made it.
    TtyLock::Ticket ticket ABSL_GUARDED_BY(mu) = 0;
    std::string who ABSL_GUARDED_BY(mu);
  };

  // Runs once, on a release, the end of the stream or a cancelled RPC
  // (possibly on another thread than the reads).
  void End() {
    TtyLock::Ticket ticket;
    std::string who;
    {
      MutexLock lock(&state_->mu);
      if (state_->done) return;
      state_->done = true;
      ticket = state_->ticket;
      who = state_->who;
    }
    if (ticket != 0) {
      TtyLock::Process().Release(ticket);
      TRACTOR_LOG(devx) << "debug lock released by " << who;
    }
    FinishOnce(grpc::Status::OK);
  }
  void FinishOnce(const grpc::Status& s) {
    if (finished_.exchange(true)) return;
    Finish(s);
  }

  std::shared_ptr<State> state_;
  v1::DebugLockMsg in_, out_;
  bool requested_ = false;  // read and written by the read callbacks only
  std::atomic<bool> finished_{false};
};

class RefuseDebugLock
    : public grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg> {
 public:
  explicit RefuseDebugLock(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// The root's process id is the terminal's owner: a requester in the root
// itself queues on the lock without an RPC. The wait for the grant is a
// checkpoint; a cancelled request is withdrawn.
void StopUnderRootLock(const std::string& who, const devx::DebuggerStop& stop) {
  // Shared with the grant callback, which may still run on a releasing
  // thread after a cancelled wait has returned.
  struct Grant {
    Mutex mu;
    CondVar cv;
    bool granted ABSL_GUARDED_BY(mu) = false;
  };
  auto grant = std::make_shared<Grant>();
  const TtyLock::Ticket ticket = TtyLock::Process().Request(who, [grant] {
    {
      MutexLock lock(&grant->mu);
      grant->granted = true;
    }
    grant->cv.SignalAll();
  });
  try {
    MutexLock lock(&grant->mu);
    Wait(grant->cv, grant->mu,
         [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(grant->mu) {
           return grant->granted;
         });
  } catch (...) {
    TRACTOR_LOG(devx) << who << " gives up waiting for the debug lock";
    TtyLock::Process().Release(ticket);
    throw;
  }
  devx::StopInDebugger(stop);
  TtyLock::Process().Release(ticket);
}

// What the root answered a child's `DebugLock` request: a reader thread
// fills it in, while the requesting task waits at a checkpoint.
struct GrantReply {
  Mutex mu;
  CondVar cv;
  bool done ABSL_GUARDED_BY(mu) = false;
  bool granted ABSL_GUARDED_BY(mu) = false;
  std::string host_id ABSL_GUARDED_BY(mu);
};

// Waits for the root's answer on `stream` (the request is written). Returns
// whether the lock was granted, and on which host. When the calling
// thread's scope is cancelled first, ends the call (the root then withdraws
// the request) and throws `Cancelled`.
bool AwaitGrant(grpc::ClientContext& ctx,
                grpc::ClientReaderWriter<v1::DebugLockMsg, v1::DebugLockMsg>&
                    stream,
                const std::string& who, std::string* host_id) {
  auto reply = std::make_shared<GrantReply>();
  std::thread reader([reply, &stream] {
    discovery::NameThisThread("debug-lock");
    v1::DebugLockMsg m;
    const bool ok = stream.Read(&m);
    {
      MutexLock lock(&reply->mu);
      reply->done = true;
      reply->granted = ok && m.has_granted();
      if (reply->granted) reply->host_id = m.granted().host_id();
    }
    reply->cv.SignalAll();
  });
  try {
    MutexLock lock(&reply->mu);
    Wait(reply->cv, reply->mu,
         [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reply->mu) {
           return reply->done;
         });
  } catch (...) {
    TRACTOR_LOG(devx) << who << " gives up waiting for the debug lock";
    ctx.TryCancel();
    reader.join();
    throw;
  }
  reader.join();
  MutexLock lock(&reply->mu);
  *host_id = reply->host_id;
  return reply->granted;
}

}  // namespace

TtyLock& TtyLock::Process() {
  static TtyLock* lock = new TtyLock();
  return *lock;
}

TtyLock::Ticket TtyLock::Request(std::string who,
                                 std::function<void()> on_grant) {
  Ticket ticket;
  bool now;
  {
    MutexLock lock(&mu_);
    ticket = next_++;
    now = queue_.empty();
    queue_.push_back({ticket, std::move(who), now ? nullptr : on_grant});
  }
  if (now) on_grant();
  return ticket;
}

void TtyLock::Release(Ticket ticket) {
  std::function<void()> grant;
  {
    MutexLock lock(&mu_);
    if (queue_.empty()) return;
    if (queue_.front().ticket != ticket) {
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->ticket == ticket) {
          queue_.erase(it);
          break;
        }
      }
      return;
    }
    queue_.pop_front();
    if (!queue_.empty()) grant = std::move(queue_.front().on_grant);
  }
  if (grant) grant();
}

bool TtyLock::Held() const {
  MutexLock lock(&mu_);
  return !queue_.empty();
}

std::string TtyLock::Holder() const {
  MutexLock lock(&mu_);
  return queue_.empty() ? "" : queue_.front().who;
}

grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>*
NewDebugLockReactor(Runtime* rt, grpc::CallbackServerContext* ctx) {
  if (grpc::Status member = discovery::CheckMember(*ctx, "DebugLock");
      !member.ok()) {
    return new RefuseDebugLock(member);
  }
  if (!rt->config().parent.uuid().empty()) {
    return new RefuseDebugLock(grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat("actor '", rt->self().name(),
                     "' is not the root of its tree: the root serves the "
                     "debug lock")));
  }
  return new DebugLockReactor();
}

void SetDebugHoldAnnouncer(std::function<void(bool)> announce) {
  std::lock_guard<std::mutex> lock(g_announce_mu);
  delete g_announce;
  g_announce =
      announce ? new std::function<void(bool)>(std::move(announce)) : nullptr;
  g_announce_cv.notify_all();
}

void EnterDebugger(const std::string& reason,
                   const std::string& select_caller_of,
                   const std::string& details) {
  Runtime& rt = Runtime::Require();
  const v1::Aid& self = rt.self();
  const std::string who =
      absl::StrCat("actor '", self.name(), "' ", self.uuid().substr(0, 8),
                   " (pid ", getpid(), ")");
  const devx::DebuggerStop stop{
      absl::StrCat("\n[tractor] ", reason, " in ", who, "\n", details),
      select_caller_of};
  // The parent learns first, so that it counts nothing against this actor
  // while it waits for the lock and is stopped, and so that a teardown waits
  // for it to leave the debugger.
  const bool is_child = !rt.config().parent.uuid().empty();
  AnnounceHold(true, is_child);
  struct Leave {
    bool is_child;
    ~Leave() { AnnounceHold(false, is_child); }
  } leave{is_child};
  if (!is_child) {
    StopUnderRootLock(who, stop);
    return;
  }
  auto stub = v1::Actor::NewStub(rt.ChannelTo(rt.config().root_addr));
  grpc::ClientContext ctx;
  discovery::AttachSecret(&ctx);
  auto stream = stub->DebugLock(&ctx);
  v1::DebugLockMsg request;
  v1::DebugLockRequest* req = request.mutable_request();
  *req->mutable_requester() = self;
  req->set_pid(getpid());
  req->set_host_id(discovery::HostId());
  req->set_reason(reason);
  TRACTOR_LOG(devx) << who << " waits for the debug lock (" << reason << ")";
  std::string host_id;
  bool granted = false;
  if (stream->Write(request)) {
    try {
      granted = AwaitGrant(ctx, *stream, who, &host_id);
    } catch (...) {
      stream->Finish();
      throw;
    }
  }
  if (!granted) {
    ctx.TryCancel();
    const grpc::Status status = stream->Finish();
    LOG(ERROR) << who << " could not take the debug lock from the root at "
               << rt.config().root_addr << ": "
               << (status.ok() ? "the stream ended" : status.error_message())
               << "; not stopping";
    return;
  }
  if (host_id == discovery::HostId()) {
    devx::StopInDebugger(stop);
  } else {
    devx::WaitForExternalDebugger(stop.banner);
  }
  v1::DebugLockMsg release;
  release.mutable_release();
  stream->Write(release);
  stream->WritesDone();
  stream->Finish();
}

bool ExaminedWhereRaised(const std::exception_ptr& error) {
  if (error == nullptr) return true;
  try {
    std::rethrow_exception(error);
  } catch (const Cancelled&) {
    return true;
  } catch (const RemoteActorError&) {
    return true;
  } catch (const ActorFailure&) {
    return true;
  } catch (const ActorErrorGroup& group) {
    for (const std::exception_ptr& e : group.errors()) {
      if (!ExaminedWhereRaised(e)) return false;
    }
    return true;
  } catch (...) {
  }
  return false;
}

namespace {

// The error a post-mortem shows: `error` itself, or the first error of a
// group that this actor raised.
std::exception_ptr OwnError(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const ActorErrorGroup& group) {
    for (const std::exception_ptr& e : group.errors()) {
      if (!ExaminedWhereRaised(e)) return OwnError(e);
    }
  } catch (...) {
  }
  return error;
}

}  // namespace

void InstallPostMortem() {
  devx::SetPostMortemHook(
      [](const std::exception_ptr& error, const std::string& where) {
        if (ExaminedWhereRaised(error)) return;
        const std::exception_ptr own = OwnError(error);
        const std::string trace = devx::ThrowSiteTrace(own);
        // The task has failed already: a cancel of its scope (its actor's
        // teardown) does not end the wait for the lock.
        auto shielded = NewScope(nullptr, absl::InfiniteFuture(), true);
        ScopeBinding bind(shielded);
        EnterDebugger(
            absl::StrCat("post-mortem of ", where),
            "tractor::devx::PostMortem",
            absl::StrCat("[tractor] ", Describe(own), "\n",
                         trace.empty() ? "" : "[tractor] thrown at:\n",
                         trace));
      });
}

void RunRootBlock(const std::function<void()>& fn) {
  try {
    fn();
  } catch (...) {
    devx::PostMortem(std::current_exception(), "the root actor's block");
    throw;
  }
}

}  // namespace tractor::internal
