// SPDX-License-Identifier: AGPL-3.0-or-later
// A tractor.v1.Registrar served in the test's own process, for tests that
// need a registrar which is not an actor.
#ifndef TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_
#define TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "discovery/address.h"
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

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_DISCOVERY_LOCAL_REGISTRAR_H_
