// SPDX-License-Identifier: AGPL-3.0-or-later
// The service of `Actor/Open` (and of unary `Actor/Call`s) on gRPC's async
// API: the accept queue, the threads that wait on it, and the dialogs built
// ahead for the calls it requests (docs/architecture.md#threads). The
// queue's tags and the other services sharing it are declared with the
// dialog's transport (actor/internal/dialog_transport.h).
#ifndef TRACTOR_ACTOR_INTERNAL_DIALOG_ACCEPTOR_H_
#define TRACTOR_ACTOR_INTERNAL_DIALOG_ACCEPTOR_H_

#include <functional>
#include <memory>

#include "absl/functional/function_ref.h"
#include "actor/internal/dialog_transport.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

class Dialog;

// The service of `Actor/Open` on gRPC's async API: requests calls on the
// server's completion queue and gives each new stream, as a `Dialog`, to
// `serve` on the thread that accepted it, which then serves it (a callee's
// task runs on that thread, with no hand-off) while another thread waits for
// the next call. Unary `Actor/Call`s arrive on it the same way
// (`AcceptedCall`, `ServeCalls`). Other services' calls may share the queue
// (`ServiceQueue`): the waiting thread delivers their completions in
// between. Once calls have come, two threads wait on the queue: taking a
// call or a dialog leaves the other one waiting and wakes nobody (a pooled
// thread is woken only when the last waiter was taken), and a thread that
// finished serving waits again while fewer than two do (else it goes back
// to the pool). Thread-safe.
class DialogAcceptor final : public ServiceQueue {
 public:
  // Requests the next call (the generated `RequestOpen` of a service whose
  // `Open` is an async raw method).
  using RequestFn = std::function<void(
      grpc::ServerContext*,
      grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>*,
      grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*)>;

  DialogAcceptor(RequestFn request, grpc::ServerCompletionQueue* cq,
                 std::function<void(std::shared_ptr<Dialog>)> serve);
  // Stops first if Stop was not called.
  ~DialogAcceptor();

  // Serves calls of `AcceptedCall`s as well: `request` requests one (on
  // this queue, through `Post`). Once, before Start. Two requests are
  // outstanding from Start on; each arrival requests the next (a call
  // served: before it is served, by the thread that serves it, or by the
  // pooled thread woken to wait in its place).
  void ServeCalls(std::function<void()> request);
  // Starts accepting, once the server is built.
  void Start();
  // Before the server's Shutdown: no new call is requested.
  void StopRequesting();
  // After the server's Shutdown: closes the gate (waiting for the posts in
  // progress), shuts the queue down and waits until no thread waits on it
  // (threads serving a dialog or a call are not waited for; once stopping,
  // they do not wait on the queue again). Service calls still on the queue
  // get their completions (their posts are refused from then on); a call
  // arriving then is refused.
  void Stop();

  grpc::ServerCompletionQueue* cq() override;
  bool Post(absl::FunctionRef<void()> post) override;
  // Closed by Stop (see ServerGate).
  const std::shared_ptr<ServerGate>& gate() const;
  // How many threads wait on the queue now (for tests and diagnostics).
  int waiters() const;

 private:
  struct Shared;
  static void Request(const std::shared_ptr<Shared>& sh);
  // Builds the dialog the next Request posts, unless one is built (called
  // by a thread that finished serving a dialog, before it waits again).
  static void Prepare(const std::shared_ptr<Shared>& sh);
  // A waiting thread took a call or a dialog to serve: true if it was the
  // last one, and a replacement (already counted) must be started.
  static bool Leave(const std::shared_ptr<Shared>& sh);
  // A thread that finished serving waits on the queue again if fewer than
  // the target number do and the acceptor is not stopping (then counted).
  static bool Rejoin(const std::shared_ptr<Shared>& sh);
  static void Loop(std::shared_ptr<Shared> sh);

  std::shared_ptr<Shared> shared_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_DIALOG_ACCEPTOR_H_
