// SPDX-License-Identifier: AGPL-3.0-or-later
// The `tractor.v1.Actor` gRPC service of an actor: thin entry points that
// hand each RPC to the runtime (`Runtime`, `TaskServer`). The service never
// blocks a gRPC thread and never runs user code.
#ifndef TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
#define TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_

#include "actor/internal/runtime.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// The generated service with every method but `Link` taking raw bytes: the
// service decodes requests itself, so that one that does not decode is
// answered with what was wrong (INVALID_ARGUMENT; a MessagingError on a
// dialog) rather than gRPC's bare status.
//
// `Open` is an async method, accepted by the runtime's `DialogAcceptor`
// (actor/internal/dialog_transport.h); `Call` is not served here but by
// `CallService`, on gRPC's sync API.
using RawActorService = v1::Actor::WithRawMethod_Open<
    v1::Actor::WithGenericMethod_Call<
        v1::Actor::WithRawCallbackMethod_CancelTask<
            v1::Actor::WithRawCallbackMethod_CancelActor<
                v1::Actor::WithCallbackMethod_Link<
                    v1::Actor::WithRawCallbackMethod_Info<
                        v1::Actor::WithRawCallbackMethod_Stats<
                            v1::Actor::WithRawCallbackMethod_Stacks<
                                v1::Actor::WithCallbackMethod_DebugLock<
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
// Every other method answers UNIMPLEMENTED. Owned by the `Runtime`.
class LinkService final : public v1::Actor::CallbackService {
 public:
  explicit LinkService(Runtime* rt) : rt_(rt) {}
  grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* Link(
      grpc::CallbackServerContext* ctx) override;

 private:
  Runtime* rt_;
};

// Owned by the `Runtime` it serves, which outlives the gRPC server.
class ActorService final : public RawActorService {
 public:
  explicit ActorService(Runtime* rt) : rt_(rt) {}

  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* CancelActor(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* Link(
      grpc::CallbackServerContext*) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  // Gathers on a thread of its own: a child's answer may take a while.
  grpc::ServerUnaryReactor* Stacks(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  // The root's tree-wide terminal lock (actor/internal/debugger.h).
  grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>* DebugLock(
      grpc::CallbackServerContext* ctx) override;

 private:
  Runtime* rt_;
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

// Answers every method no service registered with UNIMPLEMENTED naming it.
// gRPC needs a generic service once a generated method is taken out of its
// service (as `Call` is, for `CallService`).
class UnknownMethodService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
