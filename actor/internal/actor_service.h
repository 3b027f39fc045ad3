// SPDX-License-Identifier: AGPL-3.0-or-later
// The `tractor.v1.Actor` gRPC service of an actor: thin entry points that
// hand each RPC to the runtime (`Runtime`, `TaskServer`).
#ifndef TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
#define TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"
#include "actor/internal/dialog_acceptor.h"
#include "actor/internal/dialog_transport.h"
#include "actor/internal/gate.h"
#include "actor/internal/runtime.h"
#include "discovery/mutex.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// The generated service, reduced to the methods served on gRPC's async
// API from the runtime's accept queue: `Open` and `Call` (raw bytes: a
// dialog accepted by the runtime's `DialogAcceptor`,
// actor/internal/dialog_transport.h; a unary call served by
// `ServeUnaryCalls`, below), `CancelActor` (raw bytes, `ServeCancelActor`),
// `Info`, `CancelTask`, `Stats` and `Stacks` (raw bytes,
// `ServeControlMethods`) and `Link` (actor/internal/async_services.h).
// `DebugLock` is taken out ("generic"): it is served by `DebugLockService`
// in debug mode only, and a call of a method no service serves is answered
// by the unknown-method service. No method is on the callback API outside
// debug mode, and none on the sync API (docs/architecture.md#threads).
using RawActorService = v1::Actor::WithRawMethod_Open<
    v1::Actor::WithRawMethod_Call<
        v1::Actor::WithRawMethod_CancelTask<
            v1::Actor::WithRawMethod_CancelActor<
                v1::Actor::WithAsyncMethod_Link<
                    v1::Actor::WithRawMethod_Info<
                        v1::Actor::WithRawMethod_Stats<
                            v1::Actor::WithRawMethod_Stacks<
                                v1::Actor::WithGenericMethod_DebugLock<
                                    v1::Actor::Service>>>>>>>>>;

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

// The parent's side of its children's `Link` streams, served alone by the
// runtime's link server: a server of its own, which pings every connection
// and drops one that stops answering (`discovery::ApplyServerKeepalive`), so
// a hung child is noticed (docs/reliability.md#a-hung-child) without pinging
// the main server's clients, whose large messages could hold an answer back.
// `Link` is an async method (see `ServeLinks`); gRPC answers every other
// method UNIMPLEMENTED. Owned by the `Runtime`.
class LinkService final
    : public v1::Actor::WithGenericMethod_Open<
          v1::Actor::WithGenericMethod_Call<
              v1::Actor::WithGenericMethod_CancelTask<
                  v1::Actor::WithGenericMethod_CancelActor<
                      v1::Actor::WithAsyncMethod_Link<
                          v1::Actor::WithGenericMethod_Info<
                              v1::Actor::WithGenericMethod_Stats<
                                  v1::Actor::WithGenericMethod_Stacks<
                                      v1::Actor::WithGenericMethod_DebugLock<
                                          v1::Actor::Service>>>>>>>>> {};

// `Open`, `Call`, `CancelActor` and `Link`, requested by the runtime (see
// RawActorService). Owned by the `Runtime` it serves, which outlives the
// gRPC server.
class ActorService final : public RawActorService {};

// Serves `tractor.v1.Actor/Call` from `acceptor`'s queue (call it before
// the acceptor's Start). Each call arrives on a thread waiting on the queue
// (`AcceptedCall`), which decodes the request and takes a `max_tasks` slot
// there (`TaskServer::OpenCall`): a refusal is answered at once from that
// thread (INVALID_ARGUMENT, RESOURCE_EXHAUSTED; UNAVAILABLE once the
// acceptor is stopping). Otherwise that thread becomes the task's (another
// waits on the queue in its place): it validates, runs the function and
// writes the reply (`TaskServer::ServeCall`). The call's reply and its
// `AsyncNotifyWhenDone` tag complete on the `CallWatcher`'s queue, which
// cancels the task when the client goes away; a reply is posted through
// the acceptor's gate, so a task that outlives the server's shutdown sends
// none.
void ServeUnaryCalls(Runtime* rt, ActorService* service,
                     DialogAcceptor* acceptor);

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

// The root's tree-wide terminal lock (actor/internal/debugger.h), on the
// callback API, registered in debug mode only. Owned by the `Runtime`.
class DebugLockService final
    : public v1::Actor::WithGenericMethod_Open<
          v1::Actor::WithGenericMethod_Call<
              v1::Actor::WithGenericMethod_CancelTask<
                  v1::Actor::WithGenericMethod_CancelActor<
                      v1::Actor::WithGenericMethod_Link<
                          v1::Actor::WithGenericMethod_Info<
                              v1::Actor::WithGenericMethod_Stats<
                                  v1::Actor::WithGenericMethod_Stacks<
                                      v1::Actor::WithCallbackMethod_DebugLock<
                                          v1::Actor::Service>>>>>>>>> {
 public:
  explicit DebugLockService(Runtime* rt) : rt_(rt) {}
  grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>* DebugLock(
      grpc::CallbackServerContext* ctx) override;

 private:
  Runtime* rt_;
};

// The methods no service registered (gRPC needs a generic service once a
// generated method is taken out of its service), answered by
// `ServeUnknownMethods` (actor/internal/async_services.h).
using UnknownMethodService = grpc::AsyncGenericService;

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
