// The `tractor.v1.Actor` gRPC service of an actor: thin entry points that
// hand each RPC to the runtime (`Runtime`, `TaskServer`). The service never
// blocks a gRPC thread and never runs user code.
#ifndef TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
#define TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_

#include "actor/internal/runtime.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

// Owned by the `Runtime` it serves, which outlives the gRPC server.
class ActorService final : public v1::Actor::CallbackService {
 public:
  explicit ActorService(Runtime* rt) : rt_(rt) {}

  grpc::ServerBidiReactor<v1::Msg, v1::Msg>* Open(
      grpc::CallbackServerContext*) override;
  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext*,
                                 const v1::Msg* request,
                                 v1::Msg* reply) override;
  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* ctx,
                                       const v1::CancelTaskRequest* req,
                                       v1::CancelTaskReply* reply) override;
  grpc::ServerUnaryReactor* CancelActor(grpc::CallbackServerContext* ctx,
                                        const v1::CancelActorRequest* req,
                                        v1::CancelActorReply* reply) override;
  grpc::ServerBidiReactor<v1::LinkMsg, v1::LinkMsg>* Link(
      grpc::CallbackServerContext*) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx,
                                 const v1::InfoRequest*,
                                 v1::ActorInfo* info) override;

 private:
  Runtime* rt_;
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ACTOR_SERVICE_H_
