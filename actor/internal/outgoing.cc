// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/outgoing.h"

#include <climits>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "glog/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpc/slice.h"

namespace tractor::internal {
namespace {

using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormatLite;

constexpr uint8_t KeyOf(int field) {
  return static_cast<uint8_t>(WireFormatLite::MakeTag(
      field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
}
// The keys are one byte each (fields 1 to 15).
static_assert(v1::Msg::kYieldedFieldNumber < 16);
static_assert(v1::Msg::kBatchFieldNumber < 16);
static_assert(v1::Batch::kItemsFieldNumber < 16);
static_assert(v1::Yield::kPayloadFieldNumber < 16);
constexpr uint8_t kMsgYielded = KeyOf(v1::Msg::kYieldedFieldNumber);
constexpr uint8_t kMsgBatch = KeyOf(v1::Msg::kBatchFieldNumber);
constexpr uint8_t kBatchItem = KeyOf(v1::Batch::kItemsFieldNumber);
constexpr uint8_t kYieldPayload = KeyOf(v1::Yield::kPayloadFieldNumber);

// Items up to this size on average are copied into the batch's one slice;
// larger ones are referenced.
constexpr size_t kCopiedItemBytes = 1024;

void CheckEncodable(size_t bytes, const char* what) {
  if (bytes > static_cast<size_t>(INT_MAX)) {
    throw MessagingError(absl::StrCat("cannot send a ", what, " of ", bytes,
                                      " bytes: a message must be under 2 GiB "
                                      "(and a stream's are limited to 64 MiB)"));
  }
}

grpc::Slice Adopt(grpc_slice s) {
  return grpc::Slice(s, grpc::Slice::STEAL_REF);
}

size_t VarintSize(size_t n) {
  return CodedOutputStream::VarintSize32(static_cast<uint32_t>(n));
}

}  // namespace

grpc::Slice EncodeMessage(const google::protobuf::MessageLite& msg) {
  const size_t size = msg.ByteSizeLong();
  CheckEncodable(size, "message");
  grpc_slice s = grpc_slice_malloc(size);
  uint8_t* end = msg.SerializeWithCachedSizesToArray(GRPC_SLICE_START_PTR(s));
  CHECK_EQ(end, GRPC_SLICE_END_PTR(s));
  return Adopt(s);
}

grpc::Slice EncodeItem(const v1::Payload& payload) {
  const size_t payload_size = payload.ByteSizeLong();  // caches the sizes
  CheckEncodable(payload_size, "stream item");
  const size_t yield_size = 1 + VarintSize(payload_size) + payload_size;
  CheckEncodable(yield_size + 1 + VarintSize(yield_size), "stream item");
  grpc_slice s = grpc_slice_malloc(1 + VarintSize(yield_size) + yield_size);
  uint8_t* out = GRPC_SLICE_START_PTR(s);
  *out++ = kMsgYielded;
  out = CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(yield_size), out);
  *out++ = kYieldPayload;
  out = CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(payload_size), out);
  out = payload.SerializeWithCachedSizesToArray(out);
  CHECK_EQ(out, GRPC_SLICE_END_PTR(s));
  return Adopt(s);
}

bool IsEncodedItem(const grpc::Slice& encoded) {
  const uint8_t* p = encoded.begin();
  const size_t size = encoded.size();
  if (size < 2 || p[0] != kMsgYielded) return false;
  uint32_t length = 0;
  const uint8_t* end = encoded.end();
  const uint8_t* at = p + 1;
  // A varint of at most five bytes.
  for (int shift = 0; at < end && shift < 35; shift += 7) {
    const uint8_t b = *at++;
    length |= static_cast<uint32_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return length == static_cast<size_t>(end - at);
  }
  return false;
}

void EncodeBatch(const std::vector<grpc::Slice>& items,
                 grpc::ByteBuffer* out) {
  size_t total = 0;
  for (const grpc::Slice& item : items) total += item.size();
  uint8_t header[1 + 5];
  header[0] = kMsgBatch;
  const size_t header_size =
      CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(total),
                                              header + 1) -
      header;
  if (total <= kCopiedItemBytes * items.size()) {
    grpc_slice s = grpc_slice_malloc(header_size + total);
    uint8_t* at = GRPC_SLICE_START_PTR(s);
    std::memcpy(at, header, header_size);
    at += header_size;
    for (const grpc::Slice& item : items) {
      std::memcpy(at, item.begin(), item.size());
      *at = kBatchItem;
      at += item.size();
    }
    grpc::Slice one = Adopt(s);
    grpc::ByteBuffer buffer(&one, 1);
    out->Swap(&buffer);
    return;
  }
  std::vector<grpc::Slice> slices;
  slices.reserve(1 + 2 * items.size());
  slices.emplace_back(header, header_size);
  static const uint8_t kItemKey[1] = {kBatchItem};
  for (const grpc::Slice& item : items) {
    slices.emplace_back(kItemKey, 1, grpc::Slice::STATIC_SLICE);
    slices.push_back(item.sub(1, item.size()));
  }
  grpc::ByteBuffer buffer(slices.data(), slices.size());
  out->Swap(&buffer);
}

}  // namespace tractor::internal
