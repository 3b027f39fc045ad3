// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime's long-lived and catch-all calls on gRPC's async API, served
// from a completion queue a runtime thread already waits on
// (`ServiceQueue`, actor/internal/dialog_transport.h): a parent's `Link`
// streams and the answer to methods nobody serves (the standard health
// service is in actor/internal/health_service.h). An actor process uses no
// callback API outside debug mode (docs/architecture.md#threads): gRPC's
// callback threads would wait in the same poller as every other thread and
// hand events over.
#ifndef TRACTOR_ACTOR_INTERNAL_ASYNC_SERVICES_H_
#define TRACTOR_ACTOR_INTERNAL_ASYNC_SERVICES_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "actor/internal/dialog_transport.h"
#include "discovery/listen.h"
#include "discovery/mutex.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

class Runtime;

// A `ServiceQueue` with a thread of its own (the link server's). Thread-safe.
class ServiceThread final : public ServiceQueue {
 public:
  // `cq` is the server's, from ServerBuilder::AddCompletionQueue.
  explicit ServiceThread(std::unique_ptr<grpc::ServerCompletionQueue> cq);
  // Stops first if Stop was not called.
  ~ServiceThread() override;

  // Once the server is built.
  void Start(const std::string& thread_name);
  // After the server's Shutdown: refuses new posts, shuts the queue down
  // and joins the thread once every completion was delivered.
  void Stop();

  grpc::ServerCompletionQueue* cq() override { return cq_.get(); }
  bool Post(absl::FunctionRef<void()> post) override;

 private:
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  Mutex mu_;
  bool shut_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Requests one `Actor/Link` call on a queue (the generated `RequestLink`
// of a service whose `Link` is an async method).
using LinkRequestFn = std::function<void(
    grpc::ServerContext*,
    grpc::ServerAsyncReaderWriter<v1::LinkMsg, v1::LinkMsg>*,
    grpc::ServerCompletionQueue*, void*)>;

// Serves `Link` (the parent's side of a child's link: the child says hello,
// the parent accepts it, and either side sees the other go when the stream
// ends) on `queue`, one call at a time requested: each arrival requests the
// next. Call once the server is built; the calls end with the server.
void ServeLinks(Runtime* rt, ServiceQueue* queue, LinkRequestFn request);

// The same for a generated service whose `Link` is an async method.
template <typename Service>
void ServeLinksOf(Runtime* rt, ServiceQueue* queue, Service* service) {
  ServeLinks(rt, queue,
             [service](grpc::ServerContext* ctx,
                       grpc::ServerAsyncReaderWriter<v1::LinkMsg, v1::LinkMsg>*
                           stream,
                       grpc::ServerCompletionQueue* cq, void* tag) {
               service->RequestLink(ctx, stream, cq, cq, tag);
             });
}

// Answers every method no service registered (on `service`, registered
// with RegisterAsyncGenericService) with UNIMPLEMENTED naming it; the debug
// lock of an actor not in debug mode with FAILED_PRECONDITION saying so.
// Calls to reflection and channelz, when `standard` (the server's
// `LazyStandardServices`, or null) serves them, go to
// `ForwardStandardCall` (actor/internal/standard_services.h).
void ServeUnknownMethods(
    const std::string& actor_name, grpc::AsyncGenericService* service,
    ServiceQueue* queue,
    std::shared_ptr<discovery::LazyStandardServices> standard = nullptr);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ASYNC_SERVICES_H_
