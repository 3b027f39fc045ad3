// SPDX-License-Identifier: AGPL-3.0-or-later
// gRPC's server reflection and channelz on an actor's server, loaded when
// a client first calls them (`discovery::LazyStandardServices`): the
// server's catch-all service (`ServeUnknownMethods`,
// actor/internal/async_services.h) hands their calls to
// `ForwardStandardCall`, which relays each to the in-process server with
// the real services, on the same completion queue.
#ifndef TRACTOR_ACTOR_INTERNAL_STANDARD_SERVICES_H_
#define TRACTOR_ACTOR_INTERNAL_STANDARD_SERVICES_H_

#include <memory>

#include "actor/internal/dialog_transport.h"
#include "discovery/listen.h"
#include "grpcpp/generic/async_generic_service.h"

namespace tractor::internal {

// A call accepted by an async generic service: its context and stream,
// kept together so that the call can be handed on after it arrived.
struct GenericCall {
  grpc::GenericServerContext ctx;
  grpc::GenericServerAsyncReaderWriter stream{&ctx};
};

// Serves `call`, which arrived for a method `standard->Serves`, on `queue`
// (the queue it was requested on) until it ends: a `list_services`
// reflection request is answered from `standard`, everything else is
// relayed to the in-process server and its answer relayed back, one
// request and one response at a time (reflection answers each request with
// one response; channelz's methods are unary). The first call loads the
// libraries on the queue's thread (a few milliseconds, once per process);
// when they cannot be loaded the call ends UNIMPLEMENTED with the reason.
void ForwardStandardCall(
    std::shared_ptr<discovery::LazyStandardServices> standard,
    std::unique_ptr<GenericCall> call, ServiceQueue* queue);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_STANDARD_SERVICES_H_
