// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tests/raw_unary.h"

#include <vector>

#include "discovery/credentials.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

namespace tractor::testing {

grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel,
                      const std::string& method, const std::string& request,
                      absl::Duration deadline, std::string* reply) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  discovery::AttachSecret(&ctx);
  grpc::Slice slice(request);
  grpc::ByteBuffer bytes(&slice, 1), response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&ctx, method, bytes, &cq);
  call->StartCall();
  call->Finish(&response, &status, &status);
  void* tag = nullptr;
  bool ok = false;
  // Bounded by the call's deadline.
  EXPECT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(tag, &status);
  if (reply != nullptr && status.ok()) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(response.Dump(&slices).ok());
    reply->clear();
    for (const auto& s : slices) {
      reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

}  // namespace tractor::testing
