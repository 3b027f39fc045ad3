// SPDX-License-Identifier: AGPL-3.0-or-later
// The unary control methods of `tractor.v1.Actor` (`CancelActor`, `Info`,
// `CancelTask`, `Stats`, `Stacks`), served as raw bytes from the runtime's
// accept queue (docs/architecture.md#threads).
#ifndef TRACTOR_ACTOR_INTERNAL_CONTROL_METHODS_H_
#define TRACTOR_ACTOR_INTERNAL_CONTROL_METHODS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "actor/internal/actor_service.h"
#include "actor/internal/dialog_acceptor.h"
#include "actor/internal/dialog_transport.h"
#include "actor/internal/gate.h"
#include "actor/internal/runtime.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// What `Stacks` asks of the children, taken on the thread that received
// the request (it touches the runtime) so that the gathering, which may
// block, touches nothing the runtime owns.
struct StacksPlan {
  v1::Aid self;
  // Every linked child, with its address and a channel to it.
  struct Child {
    v1::Aid aid;
    std::string addr;
    std::shared_ptr<grpc::Channel> channel;
  };
  std::vector<Child> children;
};
StacksPlan PlanStacks(Runtime& rt, bool tree);

// The lifetime gate of the `Stacks` calls an actor is gathering (each on a
// pooled thread: asking the children blocks). Shared by the runtime and
// the gatherings, which may outlive it. Thread-safe.
class StacksGatherings {
 public:
  // Enters the gate, or nullopt once the runtime is shutting down.
  std::optional<Gate::Holder> TryEnter() { return gate_.TryEnter(); }
  // Refuses new gatherings and waits up to `bound` for those in progress;
  // then cancels their calls to the children still out (each such child
  // is reported as not answering) and waits up to `bound` again. Returns
  // whether they all ended. Not a checkpoint.
  bool Stop(absl::Duration bound);
  // Runs a child's call, unless the gatherings are being cancelled (then
  // returns false and does not run it): `ctx` is cancelled too should that
  // happen while it runs.
  bool Track(grpc::ClientContext* ctx, absl::FunctionRef<void()> call);
  // How many gatherings are in progress (for tests and diagnostics).
  size_t in_progress() const { return gate_.holders(); }

 private:
  Gate gate_;
  Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
};

// Gathers the stacks of this process and, for each child in `plan`, of the
// tree below it (Actor.Stacks of each child, each given `per_child`).
// Blocks; not a checkpoint. With `gatherings`, a cancel there cuts the
// children's calls short.
v1::StacksReply GatherStacks(const StacksPlan& plan, absl::Duration per_child,
                             StacksGatherings* gatherings = nullptr);
// The same, for this actor (`tree`: and every actor below it).
v1::StacksReply GatherStacks(Runtime& rt, bool tree, absl::Duration per_child);

// Serves `tractor.v1.Actor/CancelActor` from `queue` (the acceptor's), one
// call requested at a time: each arrival requests the next. On the thread
// that takes the arrival, without blocking: an undecodable request is
// answered INVALID_ARGUMENT saying why, a caller that is not a member of
// the mesh PERMISSION_DENIED (`discovery::CheckMember`); otherwise every
// task is cancelled in the requester's name and the actor's exit is
// requested (`Runtime::RequestExit`), and the reply (`ok`) is sent once the
// tasks ended (`TaskServer::CancelAllTasksThen`): by the thread of the last
// task to end, or by the actor's shutdown once its bounded wait for them is
// over, before its server shuts down. No thread waits for the tasks, and a
// caller that went away meanwhile costs the teardown nothing (its reply
// fails at once). Call once the acceptor started.
void ServeCancelActor(Runtime* rt, ActorService* service,
                      ServiceQueue* queue);

// Serves the unary control methods `Info`, `CancelTask`, `Stats` and
// `Stacks` from `acceptor`'s queue (raw bytes), one call of each requested
// at a time: each arrival requests the next. An undecodable request is
// answered INVALID_ARGUMENT saying why, and a `CancelTask` from a caller
// that is not a member of the mesh PERMISSION_DENIED
// (`discovery::CheckMember`). `Info`, `CancelTask` and `Stats` are answered
// on the thread that takes the arrival (none of them blocks); `Stacks`,
// which waits for the children's answers, is gathered on a pooled thread
// inside `stacks`' gate (refused UNAVAILABLE once it is closed), which
// `Runtime::Shutdown` waits on with a bound. Replies go through the
// acceptor's gate: none is sent once it stopped. Call once the acceptor
// started.
void ServeControlMethods(Runtime* rt, ActorService* service,
                         DialogAcceptor* acceptor,
                         std::shared_ptr<StacksGatherings> stacks);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_CONTROL_METHODS_H_
