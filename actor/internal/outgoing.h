// SPDX-License-Identifier: AGPL-3.0-or-later
// A dialog's outgoing messages, encoded once by the thread that sends them
// (docs/architecture.md#performance): the outbox holds bytes, the stream
// writes them as they are, and a stream item is encoded straight from its
// payload, without building the `Msg` and `Yield` around it. Queued items
// leave together as one `Batch`, put together from their encodings without
// decoding them.
#ifndef TRACTOR_ACTOR_INTERNAL_OUTGOING_H_
#define TRACTOR_ACTOR_INTERNAL_OUTGOING_H_

#include <vector>

#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// The encoding of `msg`, in one slice. Throws MessagingError for a message
// protobuf cannot encode (2 GiB or more; the stream's own limit, 64 MiB, is
// gRPC's to enforce when it is written).
grpc::Slice EncodeMessage(const google::protobuf::MessageLite& msg);

// The encoding of `Msg{yielded: Yield{payload}}`, the same bytes protobuf
// writes for that message, made from the payload alone. Throws as
// `EncodeMessage`.
grpc::Slice EncodeItem(const v1::Payload& payload);

// True when `encoded` is the encoding of a `Msg` holding a `Yield` and
// nothing else (what `EncodeItem` makes): it can go into a `Batch`.
bool IsEncodedItem(const grpc::Slice& encoded);

// Writes `Msg{batch: Batch{items}}` into `out`, where each of `items` is
// the encoding of a `Msg{yielded: ...}` (`IsEncodedItem`). A `Yield` is
// encoded the same way as `Msg.yielded` and as a `Batch.items` element,
// and both fields are one-byte keys: an item becomes a batch element by
// its first byte alone. Small items are copied into one slice; larger ones
// are referenced where they are.
void EncodeBatch(const std::vector<grpc::Slice>& items,
                 grpc::ByteBuffer* out);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_OUTGOING_H_
