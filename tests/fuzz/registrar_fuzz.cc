// SPDX-License-Identifier: AGPL-3.0-or-later
// Fuzzes the registrar's request handling (registrar/registrar_service.h)
// in process: a sequence of Hello, Register, Unregister, Find and List
// requests, each parsed from the input, sent to one RegistrarService over
// an in-process gRPC channel, interleaved with the in-process API
// (`RemoveAddr`, `Lookup`, `Snapshot`). Checks, beyond "no crash": every
// request is answered with a status; a refused request changes nothing; a
// registration that was accepted is listed; every listed address parses;
// `List` and `Snapshot` agree. The table is emptied after each input, so
// inputs do not depend on each other. `WaitFor`, `Watch` and `DeleteAddr`
// (which waits on timers and dials the address) are not fuzzed here.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "grpcpp/grpcpp.h"
#include "registrar/registrar_service.h"
#include "tests/fuzz/fuzz_input.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::registrar {
namespace {

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "registrar fuzz: %s\n", what);
  std::abort();
}

// One service and in-process server for the whole run (starting a server
// per input would dominate the run time).
struct Fixture {
  Fixture() {
    RegistrarService::Options options;
    options.self.set_name("registrar");
    options.self.set_uuid("registrar-uuid");
    options.default_lease = absl::Seconds(5);
    options.max_lease = absl::Seconds(60);
    service = std::make_unique<RegistrarService>(std::move(options));
    grpc::ServerBuilder builder;
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    Require(server != nullptr, "the in-process server did not start");
    stub = v1::Registrar::NewStub(
        server->InProcessChannel(grpc::ChannelArguments()));
  }
  std::unique_ptr<RegistrarService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::Registrar::Stub> stub;
};

Fixture& Get() {
  static Fixture* f = new Fixture();  // lives until exit, like the process
  return *f;
}

void Deadline(grpc::ClientContext* c) {
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

// Every status a request may end with is an answer; a deadline means the
// request hung.
void RequireAnswered(const grpc::Status& st) {
  Require(st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED,
          "a request was not answered within 10 s");
}

void CheckTable(Fixture& f) {
  v1::ListRequest req;
  v1::ListReply reply;
  grpc::ClientContext c;
  Deadline(&c);
  grpc::Status st = f.stub->List(&c, req, &reply);
  Require(st.ok(), "List failed");
  Require(reply.registrations_size() == reply.lease_left_ms_size(),
          "List's leases do not match its registrations");
  const auto snapshot = f.service->Snapshot();
  Require(static_cast<size_t>(reply.registrations_size()) == snapshot.size(),
          "List and Snapshot disagree");
  for (const v1::Registration& r : reply.registrations()) {
    Require(r.addrs_size() > 0, "a listed registration has no address");
    for (const std::string& a : r.addrs()) {
      Require(discovery::Address::Parse(a).ok(),
              "a listed address does not parse");
    }
  }
}

}  // namespace
}  // namespace tractor::registrar

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tractor::registrar;
  namespace v1 = tractor::v1;
  Fixture& f = Get();
  tractor::fuzz::FuzzInput in(data, size);
  for (int steps = 0; !in.empty() && steps < 64; ++steps) {
    const uint8_t op = in.Byte();
    const std::string bytes = in.Bytes();
    grpc::ClientContext c;
    Deadline(&c);
    switch (op % 8) {
      case 0: {
        v1::HelloReply reply;
        grpc::Status st = f.stub->Hello(&c, v1::HelloRequest(), &reply);
        Require(st.ok() && reply.registrar().is_registrar(),
                "Hello did not name a registrar");
        break;
      }
      case 1:
      case 2: {
        v1::RegisterRequest req;
        if (!req.ParseFromString(bytes)) break;
        const auto before = f.service->Snapshot();
        v1::RegisterReply reply;
        grpc::Status st = f.stub->Register(&c, req, &reply);
        RequireAnswered(st);
        if (!st.ok()) {
          const auto after = f.service->Snapshot();
          Require(before.size() == after.size(),
                  "a refused Register changed the table");
          break;
        }
        Require(reply.lease_ms() <= 60000, "a lease beyond max_lease");
        if (req.registration().addrs_size() > 0) {
          bool listed = false;
          for (const v1::Registration& r : f.service->Snapshot()) {
            listed |= r.aid().uuid() == req.registration().aid().uuid();
          }
          Require(listed, "an accepted registration is not listed");
        }
        break;
      }
      case 3: {
        v1::UnregisterRequest req;
        if (!req.ParseFromString(bytes)) break;
        v1::UnregisterReply reply;
        RequireAnswered(f.stub->Unregister(&c, req, &reply));
        break;
      }
      case 4: {
        v1::FindRequest req;
        if (!req.ParseFromString(bytes)) break;
        v1::FindReply reply;
        grpc::Status st = f.stub->Find(&c, req, &reply);
        RequireAnswered(st);
        if (st.ok()) {
          for (const v1::Registration& r : reply.registrations()) {
            Require(r.aid().name() == req.name(), "Find answered another name");
          }
        }
        break;
      }
      case 5:
        CheckTable(f);
        break;
      case 6:
        (void)f.service->RemoveAddr(bytes);
        break;
      default:
        (void)f.service->Lookup(bytes);
        break;
    }
  }
  CheckTable(f);
  for (const v1::Registration& r : f.service->Snapshot()) {
    f.service->RemoveRegistration(r.aid().uuid());
  }
  Require(f.service->Snapshot().empty(), "the table did not empty");
  return 0;
}
