// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog_transport.h"

#include <pthread.h>

#include <map>
#include <utility>

#include "actor/internal/dialog.h"
#include "actor/internal/thread_pool.h"
#include "actor/internal/wire.h"
#include "glog/logging.h"
#include "grpcpp/alarm.h"

namespace tractor::internal {
CqTransport::CqTransport(Dialog* dialog) : dialog_(dialog) {}

CqTransport::~CqTransport() {
  CHECK_EQ(pending_.load(), 0) << "a dialog transport destroyed with "
                                  "operations in flight";
}

// A kick: an alarm that fires at once on the queue it is set on.
struct CqTransport::KickTag : Tag {
  explicit KickTag(CqTransport* owner) : Tag{Op::kKick, owner} {}
  grpc::Alarm alarm;
};

void CqTransport::DriveOnce(absl::Time deadline) {
  void* raw = nullptr;
  bool ok = false;
  grpc::CompletionQueue::NextStatus st;
  if (deadline == absl::InfiniteFuture()) {
    st = cq_.AsyncNext(&raw, &ok, gpr_inf_future(GPR_CLOCK_REALTIME));
  } else if (deadline == absl::InfinitePast()) {
    st = cq_.AsyncNext(&raw, &ok, gpr_inf_past(GPR_CLOCK_REALTIME));
  } else {
    st = cq_.AsyncNext(&raw, &ok, absl::ToChronoTime(deadline));
  }
  if (st != grpc::CompletionQueue::GOT_EVENT) return;
  auto* tag = static_cast<Tag*>(raw);
  TakeOver(tag->owner);
  if (tag->op == Op::kKick) {
    delete static_cast<KickTag*>(tag);
  } else {
    Complete(tag->op, ok);
  }
  pending_.fetch_sub(1, std::memory_order_acq_rel);
}

void CqTransport::Kick() {
  auto* kick = new KickTag(this);
  Posted();
  kick->alarm.Set(&cq_, gpr_now(GPR_CLOCK_MONOTONIC), static_cast<Tag*>(kick));
}

void CqTransport::Finished(const grpc::Status& status, bool tell) {
  finished_.store(true, std::memory_order_release);
  if (tell) dialog_->OnDone(status);
}

void CqTransport::DrainAndShutdown() {
  while (pending_.load(std::memory_order_acquire) > 0) {
    DriveOnce(absl::InfiniteFuture());
  }
  cq_.Shutdown();
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
  }
}

// --- caller ----------------------------------------------------------------

CqClientTransport::CqClientTransport(Dialog* dialog,
                                     std::shared_ptr<v1::Actor::Stub> stub,
                                     bool cork)
    : CqTransport(dialog), stub_(std::move(stub)) {
  context_.set_initial_metadata_corked(cork);
  stream_ = stub_->PrepareAsyncOpen(&context_, &cq_);
  if (cork) {
    stream_->StartCall(nullptr);  // no operation, no tag
    return;
  }
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  Posted();
  stream_->StartCall(&write_tag_);
}

CqClientTransport::~CqClientTransport() {
  Abandon();
  DrainAndShutdown();
}

void CqClientTransport::Read(v1::Msg* msg) {
  {
    MutexLock lk(&mu_);
    reading_ = true;
  }
  Posted();
  stream_->Read(msg, &read_tag_);
}

void CqClientTransport::Write(const v1::Msg* msg, grpc::WriteOptions options) {
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  Posted();
  stream_->Write(*msg, options, &write_tag_);
}

void CqClientTransport::Release(const grpc::Status&, bool abort) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  if (abort) context_.TryCancel();
  Posted();
  stream_->Finish(&status_, &finish_tag_);
}

void CqClientTransport::Abandon() {
  {
    MutexLock lk(&mu_);
    abandoned_ = true;
    if (finishing_) return;
    finishing_ = true;
  }
  context_.TryCancel();
  Posted();
  stream_->Finish(&status_, &finish_tag_);
}

void CqClientTransport::Complete(Op op, bool ok) {
  bool tell;
  {
    MutexLock lk(&mu_);
    tell = !abandoned_;
    if (op == Op::kRead) reading_ = false;
    if (op == Op::kWrite) writing_ = false;
    if (op == Op::kFinish) finish_done_ = true;
  }
  if (tell && op == Op::kRead) dialog_->OnReadDone(ok);
  if (tell && op == Op::kWrite) dialog_->OnWriteDone(ok);
  bool over;
  {
    MutexLock lk(&mu_);
    over = finish_done_ && !reading_ && !writing_ && !finished();
    tell = !abandoned_;
  }
  // Abandoned: destroyed with its dialog, nobody to tell.
  if (over) Finished(status_, tell);
}

// --- callee ----------------------------------------------------------------

CqServerTransport::CqServerTransport(Dialog* dialog) : CqTransport(dialog) {
  context_.AsyncNotifyWhenDone(&done_tag_);
}

CqServerTransport::~CqServerTransport() {
  Abandon();
  DrainAndShutdown();
}

void CqServerTransport::Read(v1::Msg* msg) {
  {
    MutexLock lk(&mu_);
    reading_ = true;
    read_target_ = msg;
  }
  Posted();
  stream_.Read(&read_bytes_, &read_tag_);
}

void CqServerTransport::Write(const v1::Msg* msg, grpc::WriteOptions options) {
  {
    MutexLock lk(&mu_);
    writing_ = true;
  }
  SerializeToByteBuffer(*msg, &write_bytes_);
  Posted();
  stream_.Write(write_bytes_, options, &write_tag_);
}

void CqServerTransport::WriteAndFinish(const v1::Msg* msg,
                                       grpc::WriteOptions options,
                                       const grpc::Status& status) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  SerializeToByteBuffer(*msg, &write_bytes_);
  Posted();
  stream_.WriteAndFinish(write_bytes_, options, status, &finish_tag_);
}

void CqServerTransport::Release(const grpc::Status& status, bool) {
  {
    MutexLock lk(&mu_);
    if (finishing_) return;
    finishing_ = true;
  }
  Posted();
  stream_.Finish(status, &finish_tag_);
}

void CqServerTransport::Abandon() {
  {
    MutexLock lk(&mu_);
    abandoned_ = true;
    if (read_failed_) read_end_alarm_.Cancel();
    // A call that never arrived has nothing in flight.
    if (!matched_ || finishing_) return;
    finishing_ = true;
    VLOG(1) << "a dialog was dropped before its RPC ended (reading="
            << reading_ << ", writing=" << writing_ << "); cancelling it";
  }
  context_.TryCancel();
  Posted();
  stream_.Finish(grpc::Status(grpc::StatusCode::CANCELLED, "dialog dropped"),
                 &finish_tag_);
}

void CqServerTransport::Complete(Op op, bool ok) {
  bool tell;
  bool cancelled = false;
  v1::Msg* target = nullptr;
  {
    MutexLock lk(&mu_);
    tell = !abandoned_;
    if (op == Op::kRead) {
      reading_ = false;
      target = read_target_;
    }
    if (op == Op::kWrite) writing_ = false;
    if (op == Op::kFinish) finish_done_ = true;
    if (op == Op::kDone) {
      call_done_ = true;
      cancelled = context_.IsCancelled();
    }
  }
  if (tell && op == Op::kRead && ok) {
    std::string why;
    const bool decoded = ParseFromByteBuffer(read_bytes_, target, &why);
    read_bytes_.Clear();
    if (!decoded) {
      dialog_->OnReadUndecodable(std::move(why));
    } else {
      dialog_->OnReadDone(true);
    }
  }
  bool deliver_read_end = false;
  if (op == Op::kRead && !ok) {
    MutexLock lk(&mu_);
    if (call_done_) {
      deliver_read_end = true;  // the cancel (if any) was told already
    } else {
      // Held back until the done tag says whether the RPC was cancelled.
      read_failed_ = true;
      reading_ = true;
      Posted();
      read_end_alarm_.Set(&cq_, absl::ToChronoTime(absl::Now() + kReadEndWait),
                          &read_end_tag_);
    }
  }
  if (tell && op == Op::kWrite) dialog_->OnWriteDone(ok);
  if (tell && cancelled) dialog_->OnCancel();
  if (op == Op::kDone) {
    MutexLock lk(&mu_);
    // The failure held back goes now, after the cancel; its timer, cut
    // short, comes back at once.
    if (read_failed_) read_end_alarm_.Cancel();
  }
  if (op == Op::kReadEnd) {
    MutexLock lk(&mu_);
    if (read_failed_) {
      read_failed_ = false;
      deliver_read_end = true;
    }
  }
  if (deliver_read_end) {
    {
      MutexLock lk(&mu_);
      reading_ = false;
      tell = !abandoned_;
    }
    if (tell) dialog_->OnReadDone(false);
  }
  bool over;
  {
    MutexLock lk(&mu_);
    over = finish_done_ && call_done_ && !reading_ && !writing_ && !finished();
    tell = !abandoned_;
  }
  if (over) Finished(grpc::Status::OK, tell);
}

// --- acceptor --------------------------------------------------------------

// --- server gate -----------------------------------------------------------

bool ServerGate::Enter() {
  MutexLock lk(&mu_);
  if (closed_) return false;
  ++inside_;
  return true;
}

void ServerGate::Leave() {
  bool last;
  {
    MutexLock lk(&mu_);
    last = --inside_ == 0 && closed_;
  }
  if (last) cv_.SignalAll();
}

void ServerGate::Close() {
  MutexLock lk(&mu_);
  closed_ = true;
  while (inside_ > 0) cv_.Wait(&mu_);
}

struct DialogAcceptor::Shared {
  RequestFn request;
  // Requests one `AcceptedCall` (see ServeCalls); empty if none is served.
  std::function<void()> request_call;
  const std::shared_ptr<ServerGate> gate = std::make_shared<ServerGate>();
  grpc::ServerCompletionQueue* cq;
  std::function<void(std::shared_ptr<Dialog>)> serve;
  Mutex mu;
  CondVar cv;  // signalled when `waiting` drops to zero
  // Threads in Loop (waiting in cq->Next, or delivering what it returned).
  int waiting ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool cq_shut ABSL_GUARDED_BY(mu) = false;
  // Requested calls, by their transport, until they arrive.
  std::map<CqTransport*, std::shared_ptr<Dialog>> requested
      ABSL_GUARDED_BY(mu);
  // A dialog built ahead for the next request (see Prepare), or null.
  std::shared_ptr<Dialog> spare ABSL_GUARDED_BY(mu);
};

namespace {

// How many threads wait on the accept queue once calls have come (see
// DialogAcceptor::Loop): one takes the next arrival while the other is
// already waiting for the one after, so taking a call or a dialog wakes no
// thread, as gRPC's sync server keeps two pollers. More would add to every
// socket event's wake-ups, since all waiting threads share gRPC's epoll set
// (tools/bench/README.md, "The accept queue's spare waiter").
constexpr int kAcceptWaiters = 2;

}  // namespace

DialogAcceptor::DialogAcceptor(RequestFn request,
                               grpc::ServerCompletionQueue* cq,
                               std::function<void(std::shared_ptr<Dialog>)> serve)
    : shared_(std::make_shared<Shared>()) {
  shared_->request = std::move(request);
  shared_->cq = cq;
  shared_->serve = std::move(serve);
}

DialogAcceptor::~DialogAcceptor() { Stop(); }

void DialogAcceptor::ServeCalls(std::function<void()> request) {
  shared_->request_call = std::move(request);
}

void DialogAcceptor::Start() {
  // Two requests outstanding, so that a call arriving while the next one
  // is being requested is matched at once.
  Request(shared_);
  Request(shared_);
  if (shared_->request_call) {
    shared_->request_call();
    shared_->request_call();
  }
  // One waiter: the others join as they finish serving (see Loop), so an
  // actor that is never called keeps one thread here.
  {
    MutexLock lk(&shared_->mu);
    ++shared_->waiting;
  }
  RunPooled([sh = shared_] { Loop(sh); });
}

void DialogAcceptor::Request(const std::shared_ptr<Shared>& sh) {
  std::shared_ptr<Dialog> dialog;
  {
    MutexLock lk(&sh->mu);
    dialog = std::move(sh->spare);
  }
  if (dialog == nullptr) {
    dialog = std::make_shared<Dialog>();
    dialog->AdoptServerTransport();
  }
  auto* t = static_cast<CqServerTransport*>(dialog->cq_transport());
  // Under the lock: no request is posted once stopping (the server may be
  // shut down then).
  MutexLock lk(&sh->mu);
  if (sh->stopping) return;
  sh->requested[t] = dialog;
  HandOff(t);
  sh->request(&t->context_, &t->stream_, &t->cq_, sh->cq, &t->accept_tag_);
}

void DialogAcceptor::Prepare(const std::shared_ptr<Shared>& sh) {
  {
    MutexLock lk(&sh->mu);
    if (sh->spare != nullptr || sh->stopping) return;
  }
  auto dialog = std::make_shared<Dialog>();
  dialog->AdoptServerTransport();
  MutexLock lk(&sh->mu);
  // (Else dropped, outside the lock: another thread prepared one.)
  if (sh->spare == nullptr && !sh->stopping) sh->spare.swap(dialog);
}

bool DialogAcceptor::Leave(const std::shared_ptr<Shared>& sh) {
  MutexLock lk(&sh->mu);
  if (sh->waiting > 1) {
    --sh->waiting;
    return false;
  }
  return true;  // `waiting` stays: it counts the replacement
}

bool DialogAcceptor::Rejoin(const std::shared_ptr<Shared>& sh) {
  MutexLock lk(&sh->mu);
  if (sh->stopping || sh->waiting >= kAcceptWaiters) return false;
  ++sh->waiting;
  return true;
}

void DialogAcceptor::Loop(std::shared_ptr<Shared> sh) {
  // Counted in `waiting` by whoever started this thread, or by Rejoin.
  for (;;) {
    void* raw = nullptr;
    bool ok = false;
    const bool got = sh->cq->Next(&raw, &ok);
    if (got && static_cast<CqTransport::Tag*>(raw)->op ==
                   CqTransport::Op::kService) {
      auto* tag = static_cast<ServiceTag*>(static_cast<CqTransport::Tag*>(raw));
      tag->call->Proceed(tag, ok);
      continue;
    }
    if (got && static_cast<CqTransport::Tag*>(raw)->op ==
                   CqTransport::Op::kCall) {
      AcceptedCall* call =
          static_cast<CallTag*>(static_cast<CqTransport::Tag*>(raw))->call;
      bool can_serve;
      {
        MutexLock lk(&sh->mu);
        can_serve = !sh->stopping;
      }
      if (!call->Arrived(ok, can_serve)) {
        // Refused (answered on this thread), or cancelled by the shutdown.
        if (ok && can_serve) sh->request_call();
        continue;
      }
      // This thread serves the call. If it was the last waiter, a new one
      // requests the next call and waits; else this one requests it (two
      // requests stay outstanding) and the others wait.
      if (Leave(sh)) {
        RunPooled([sh] {
          sh->request_call();
          Loop(sh);
        });
      } else {
        sh->request_call();
      }
      call->Serve();
      // Its reply posted: back to waiting, unless enough threads wait.
      if (!Rejoin(sh)) return;
      continue;
    }
    if (got) TakeOver(static_cast<CqTransport::Tag*>(raw)->owner);
    std::shared_ptr<Dialog> dialog;
    bool serve = false;
    {
      MutexLock lk(&sh->mu);
      if (!got) {
        if (--sh->waiting == 0) sh->cv.SignalAll();
        return;
      }
      auto* tag = static_cast<CqTransport::Tag*>(raw);
      auto it = sh->requested.find(tag->owner);
      CHECK(it != sh->requested.end()) << "unknown tag on the accept queue";
      dialog = std::move(it->second);
      sh->requested.erase(it);
      serve = ok && !sh->stopping;
    }
    if (ok) {
      // The call arrived: its done tag will come.
      auto* t = static_cast<CqServerTransport*>(dialog->cq_transport());
      {
        MutexLock lk(&t->mu_);
        t->matched_ = true;
      }
      t->Posted();
      DialogWatcher::Get().Add(dialog);
    }
    // A request cancelled by the shutdown, or a call that arrived during
    // it, is dropped (which cancels the call); this thread goes on
    // waiting.
    if (!serve) continue;
    // As for a call: this thread serves the dialog, and the next is
    // requested by a new waiter if this was the last one, else by this one.
    if (Leave(sh)) {
      RunPooled([sh] {
        Request(sh);
        Loop(sh);
      });
    } else {
      Request(sh);
    }
    sh->serve(std::move(dialog));
    if (!Rejoin(sh)) return;
    // Waiting again: the next dialog's objects (its completion queue among
    // them) are built now rather than when the next stream has arrived.
    Prepare(sh);
  }
}

grpc::ServerCompletionQueue* DialogAcceptor::cq() { return shared_->cq; }

bool DialogAcceptor::Post(absl::FunctionRef<void()> post) {
  MutexLock lk(&shared_->mu);
  if (shared_->cq_shut) return false;
  post();
  return true;
}

const std::shared_ptr<ServerGate>& DialogAcceptor::gate() const {
  return shared_->gate;
}

int DialogAcceptor::waiters() const {
  MutexLock lk(&shared_->mu);
  return shared_->waiting;
}

void DialogAcceptor::StopRequesting() {
  MutexLock lk(&shared_->mu);
  shared_->stopping = true;
}

void DialogAcceptor::Stop() {
  auto& sh = shared_;
  {
    MutexLock lk(&sh->mu);
    if (sh->cq_shut) return;
    sh->cq_shut = true;
    sh->stopping = true;
  }
  // The server may be destroyed from now on: calls still serving post
  // their replies no more.
  sh->gate->Close();
  sh->cq->Shutdown();
  // Drain here as well: every accepting thread may be gone serving.
  void* raw;
  bool ok;
  while (sh->cq->Next(&raw, &ok)) {
    auto* tag = static_cast<CqTransport::Tag*>(raw);
    if (tag->op == CqTransport::Op::kService) {
      auto* service_tag = static_cast<ServiceTag*>(tag);
      service_tag->call->Proceed(service_tag, ok);
      continue;
    }
    if (tag->op == CqTransport::Op::kCall) {
      static_cast<CallTag*>(tag)->call->Arrived(ok, /*can_serve=*/false);
      continue;
    }
    MutexLock lk(&sh->mu);
    sh->requested.erase(tag->owner);
  }
  std::map<CqTransport*, std::shared_ptr<Dialog>> left;
  std::shared_ptr<Dialog> spare;
  {
    MutexLock lk(&sh->mu);
    while (sh->waiting > 0) sh->cv.Wait(&sh->mu);
    left.swap(sh->requested);
    spare.swap(sh->spare);
  }
}

// --- watcher ---------------------------------------------------------------

DialogWatcher& DialogWatcher::Get() {
  static DialogWatcher* const watcher = new DialogWatcher();
  return *watcher;
}

DialogWatcher::DialogWatcher() : thread_([this] { Loop(); }) {}

void DialogWatcher::Add(std::weak_ptr<Dialog> dialog) {
  bool wake;
  {
    MutexLock lk(&mu_);
    dialogs_.push_back(std::move(dialog));
    wake = sleeping_;
    sleeping_ = false;
  }
  if (wake) cv_.SignalAll();
}

void DialogWatcher::Loop() {
  pthread_setname_np(pthread_self(), "tractor-dwatch");
  // No dialog seen yet: it sleeps until the first one is added.
  absl::Time last_seen = absl::InfinitePast();
  std::vector<std::shared_ptr<Dialog>> live;
  for (;;) {
    {
      MutexLock lk(&mu_);
      const absl::Time now = absl::Now();
      if (dialogs_.empty() && now - last_seen > absl::Seconds(1)) {
        sleeping_ = true;
        while (sleeping_) cv_.Wait(&mu_);
      } else {
        cv_.WaitWithDeadline(&mu_, now + Dialog::kAwayAfter);
      }
      size_t kept = 0;
      for (size_t i = 0; i < dialogs_.size(); ++i) {
        if (auto d = dialogs_[i].lock()) {
          live.push_back(std::move(d));
          // (A weak_ptr moved onto itself is left empty.)
          if (kept != i) dialogs_[kept] = std::move(dialogs_[i]);
          ++kept;
        }
      }
      dialogs_.resize(kept);
      if (kept > 0) last_seen = absl::Now();
    }
    const absl::Time now = absl::Now();
    for (auto& d : live) d->CheckAway(now);
    live.clear();  // outside the lock: the last reference may go here
  }
}

}  // namespace tractor::internal
