// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/dialog_acceptor.h"

#include <map>
#include <utility>

#include "actor/internal/dialog.h"
#include "actor/internal/thread_pool.h"
#include "glog/logging.h"

namespace tractor::internal {

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
      dialog->Arrived();
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

}  // namespace tractor::internal
