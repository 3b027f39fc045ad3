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
// actor/internal/dialog_acceptor.h; a unary call served by
// `ServeUnaryCalls`, below), `CancelActor`, `Info`, `CancelTask`, `Stats`
// and `Stacks` (raw bytes, `ServeCancelActor` and `ServeControlMethods`,
// actor/internal/control_methods.h) and `Link`
// (actor/internal/async_services.h).
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
