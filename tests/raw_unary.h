// SPDX-License-Identifier: AGPL-3.0-or-later
// One unary call of any method with raw request bytes, as a foreign client
// sends it, for tests of what an actor answers to well-formed and
// malformed requests.
#ifndef TRACTOR_TESTS_RAW_UNARY_H_
#define TRACTOR_TESTS_RAW_UNARY_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace tractor::testing {

// Calls `method` (e.g. "/tractor.v1.Actor/Info") on `channel` with the raw
// bytes `request` and the tree's mesh secret attached, on a completion
// queue of its own (no callback API in the test's process), bounded by
// `deadline`; returns its status and, when it is OK, the reply's bytes in
// `*reply`.
grpc::Status RawUnary(const std::shared_ptr<grpc::Channel>& channel,
                      const std::string& method, const std::string& request,
                      absl::Duration deadline, std::string* reply = nullptr);

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_RAW_UNARY_H_
