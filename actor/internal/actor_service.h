// SPDX-License-Identifier: AGPL-3.0-or-later
// The `tractor.v1.Actor` gRPC service of an actor: thin entry points that
// hand each RPC to the runtime (`Runtime`, `TaskServer`).
#ifndef TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
#define TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_

#include "actor/internal/runtime.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// The generated service, reduced to the methods served on gRPC's async
// API from the runtime's accept queue: `Open` (raw bytes, accepted by the
// runtime's `DialogAcceptor`, actor/internal/dialog_transport.h) and `Link`
// (actor/internal/async_services.h). Every other method is taken out
// ("generic"): the unary ones are served by `CallService` and
// `ControlService` on the sync API, `DebugLock` by `DebugLockService` in
// debug mode only, and a call of a method no service serves is answered by
// the unknown-method service. No method is on the callback API outside
// debug mode (docs/architecture.md#threads).
using RawActorService = v1::Actor::WithRawMethod_Open<
    v1::Actor::WithGenericMethod_Call<
        v1::Actor::WithGenericMethod_CancelTask<
            v1::Actor::WithGenericMethod_CancelActor<
                v1::Actor::WithAsyncMethod_Link<
                    v1::Actor::WithGenericMethod_Info<
                        v1::Actor::WithGenericMethod_Stats<
                            v1::Actor::WithGenericMethod_Stacks<
                                v1::Actor::WithGenericMethod_DebugLock<
                                    v1::Actor::Service>>>>>>>>>;

// Gathers the stacks of this actor and, with `tree`, of every actor below
// it (Actor.Stacks of each child, each given `per_child`). Blocks; not a
// checkpoint.
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

// `Open` and `Link`, requested by the runtime (see RawActorService). Owned
// by the `Runtime` it serves, which outlives the gRPC server.
class ActorService final : public RawActorService {};

// The unary control methods `Info`, `CancelTask`, `CancelActor`, `Stats` and
// `Stacks`, on gRPC's sync API with raw bytes: each runs on the gRPC thread
// that read the request (`CancelActor` and `Stacks` block it until their
// answer is ready), and an undecodable request is answered
// INVALID_ARGUMENT saying why. Owned by the `Runtime`, like ActorService.
class ControlService final : public grpc::Service {
 public:
  explicit ControlService(Runtime* rt);
};

// `tractor.v1.Actor/Call`, served on gRPC's sync API with raw bytes: the
// gRPC thread that reads the request is the task's thread (it validates,
// runs the function and writes the reply, with no hand-off), and the
// request is decoded by the runtime, so an undecodable one gets
// INVALID_ARGUMENT saying why. Owned by the `Runtime`, like ActorService.
class CallService final : public grpc::Service {
 public:
  explicit CallService(Runtime* rt);
};

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
