// SPDX-License-Identifier: AGPL-3.0-or-later
// A tractor.v1.Registrar served in the test's own process, for tests that
// need a registrar which is not an actor; and a registrar that counts its
// Find requests or holds them unanswered, for the lookup tests.
#ifndef TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_
#define TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "registrar/registrar_service.h"

namespace tractor::testing {

using discovery::Address;

// A registrar served in this process.
struct LocalRegistrar {
  std::unique_ptr<registrar::RegistrarService> service;
  std::unique_ptr<grpc::Server> server;
  std::string addr;  // as bound

  LocalRegistrar(const std::string& listen, absl::Duration lease) {
    registrar::RegistrarService::Options o;
    o.self.set_name("registrar");
    o.self.set_uuid(absl::StrCat("reg-", listen));
    o.default_lease = lease;
    service = std::make_unique<registrar::RegistrarService>(o);
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    b.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    b.RegisterService(service.get());
    server = b.BuildAndStart();
    addr = listen;
    if (listen.rfind("unix:", 0) != 0) {
      addr = Address::Parse(listen)->WithPort(port).ToString();
    }
  }
  ~LocalRegistrar() {
    service->Shutdown();
    if (server) {
      server->Shutdown(std::chrono::system_clock::now() +
                       std::chrono::seconds(1));
      server->Wait();
    }
  }
  bool Has(const std::string& name) const {
    return !service->Lookup(name).empty();
  }
};

// A registrar on 127.0.0.1 that serves only `Find`: it counts the requests
// and either answers from an in-process `RegistrarService` (add entries to
// `service`), or holds every call unanswered until it is destroyed, as a
// registrar stuck behind a partition or overload would.
class FindRegistrar final : public tractor::v1::Registrar::CallbackService {
 public:
  enum class Mode { kAnswer, kHold };

  explicit FindRegistrar(Mode mode) : mode_(mode) {
    registrar::RegistrarService::Options o;
    o.self.set_name("find-registrar");
    o.self.set_uuid("find-registrar-uuid");
    o.default_lease = absl::Seconds(60);
    service = std::make_unique<registrar::RegistrarService>(o);
    grpc::ServerBuilder b;
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port);
    b.RegisterService(this);
    server_ = b.BuildAndStart();
    addr = absl::StrCat("127.0.0.1:", port);
  }
  ~FindRegistrar() override {
    {
      MutexLock lock(&mu_);
      for (grpc::ServerUnaryReactor* r : held_) {
        r->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "test ended"));
      }
      held_.clear();
    }
    service->Shutdown();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(1));
      server_->Wait();
    }
  }

  grpc::ServerUnaryReactor* Find(grpc::CallbackServerContext* context,
                                 const tractor::v1::FindRequest* request,
                                 tractor::v1::FindReply* reply) override {
    {
      MutexLock lock(&mu_);
      ++finds_;
      cv_.SignalAll();
      if (mode_ == Mode::kHold) {
        grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
        held_.push_back(reactor);
        return reactor;
      }
    }
    return service->Find(context, request, reply);
  }

  // Find requests received so far.
  int finds() const {
    MutexLock lock(&mu_);
    return finds_;
  }
  // Waits until `n` Find requests arrived, at most `timeout`.
  bool WaitForFinds(int n, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (finds_ < n) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) return finds_ >= n;
    }
    return true;
  }
  // Adds an entry named `name` for the actor `uuid` at `actor_addr`.
  void Add(const std::string& name, const std::string& uuid,
           const std::string& actor_addr) {
    tractor::v1::Registration e;
    e.mutable_aid()->set_name(name);
    e.mutable_aid()->set_uuid(uuid);
    e.add_addrs(actor_addr);
    (void)service->AddRegistration(e);
  }

  std::unique_ptr<registrar::RegistrarService> service;
  std::string addr;

 private:
  const Mode mode_;
  mutable Mutex mu_;
  CondVar cv_;
  int finds_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_
