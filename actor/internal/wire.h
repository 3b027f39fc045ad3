// SPDX-License-Identifier: AGPL-3.0-or-later
// The wire contract's numbers, and the decoding of wire messages at the
// service boundary.
//
// The `tractor.v1.Actor` service receives its requests and dialog messages
// as raw bytes and decodes them here, so that a message that does not decode
// is answered with what was wrong with it (a "MessagingError" on a dialog,
// INVALID_ARGUMENT on a unary method) instead of gRPC's bare status.
#ifndef TRACTOR_ACTOR_INTERNAL_WIRE_H_
#define TRACTOR_ACTOR_INTERNAL_WIRE_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace tractor::internal {

// The version of the wire protocol (protos/tractor/v1) this build speaks,
// stated in `ActorInfo.protocol_version` and `LinkHello.protocol_version`.
// Raised only by a change that is not backward compatible.
inline constexpr uint32_t kProtocolVersion = 1;

// Decodes `buffer` into `msg`, reading the buffer's slices in place. On
// failure clears `msg`, sets `*why` to what could not be decoded and returns
// false.
bool ParseFromByteBuffer(const grpc::ByteBuffer& buffer,
                         google::protobuf::Message* msg, std::string* why);

// Encodes `msg` into `buffer`, replacing its contents.
void SerializeToByteBuffer(const google::protobuf::Message& msg,
                           grpc::ByteBuffer* buffer);

// Explains why `bytes` do not decode as a message of `type`: malformed wire
// data, nesting deeper than protobuf's recursion limit, or a `string` field
// that is not valid UTF-8. Returns a generic explanation when it finds none
// of these. Runs only on the failure path.
std::string DescribeUndecodable(absl::string_view bytes,
                                const google::protobuf::Descriptor& type);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_WIRE_H_
