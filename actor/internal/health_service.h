// SPDX-License-Identifier: AGPL-3.0-or-later
// The standard health service of an actor's server, on gRPC's async API
// from the accept queue (docs/architecture.md#threads).
#ifndef TRACTOR_ACTOR_INTERNAL_HEALTH_SERVICE_H_
#define TRACTOR_ACTOR_INTERNAL_HEALTH_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "actor/internal/dialog_transport.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace tractor::internal {

// The standard health service (grpc.health.v1.Health) without gRPC's
// default implementation, which uses the callback API: `Check` and `Watch`
// on a `ServiceQueue` (raw bytes: an undecodable request is answered
// INVALID_ARGUMENT). One overall status (the service name
// is not looked at), SERVING until `SetServingStatus(false)`. Register it
// with the builder's `HealthCheckServiceServerBuilderOption` (as the
// server's health service) and `RegisterService(service())`, then call
// `Serve` once the server is built. Thread-safe.
class HealthService final : public grpc::HealthCheckServiceInterface {
 public:
  HealthService();
  ~HealthService() override;

  grpc::Service* service();
  void Serve(ServiceQueue* queue);

  void SetServingStatus(const std::string& service_name,
                        bool serving) override;
  void SetServingStatus(bool serving) override;
  void Shutdown() override;

  class CheckCall;
  class WatchCall;

 private:
  class Impl;
  // The encoded HealthCheckResponse of the current status.
  std::string Response() ABSL_LOCKS_EXCLUDED(mu_);
  void Request(ServiceQueue* queue);
  void Forget(WatchCall* call) ABSL_LOCKS_EXCLUDED(mu_);

  std::unique_ptr<Impl> service_;
  Mutex mu_;
  // 1 SERVING, 2 NOT_SERVING (the proto's values).
  int status_ ABSL_GUARDED_BY(mu_) = 1;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<WatchCall*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_HEALTH_SERVICE_H_
