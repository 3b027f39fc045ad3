// SPDX-License-Identifier: AGPL-3.0-or-later
// A dialog's outgoing encodings (actor/internal/outgoing.h) against
// protobuf's own: an item encoded from its payload alone, and a batch put
// together from items' encodings, must be the bytes protobuf writes for the
// same messages.
#include "actor/internal/outgoing.h"

#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string Bytes(const grpc::Slice& s) {
  return std::string(reinterpret_cast<const char*>(s.begin()), s.size());
}

std::string Bytes(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(b.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out += Bytes(s);
  return out;
}

// Payloads of every kind, and raw ones whose sizes cross the one-byte and
// two-byte length encodings (127/128 and 16383/16384 bytes).
std::vector<v1::Payload> SamplePayloads() {
  std::vector<v1::Payload> out;
  out.emplace_back();  // no kind set
  for (size_t n : {0, 1, 16, 120, 124, 125, 126, 127, 128, 1000, 16380,
                   16381, 16383, 16384, 70000}) {
    v1::Payload p;
    p.set_raw(std::string(n, 'r'));
    out.push_back(p);
  }
  v1::Payload value;
  auto* fields = value.mutable_value()->mutable_struct_value()->mutable_fields();
  (*fields)["name"].set_string_value("ünïcode");
  (*fields)["n"].set_number_value(42);
  out.push_back(value);
  v1::Payload message;
  message.mutable_message()->set_type_url("type.googleapis.com/x.Y");
  message.mutable_message()->set_value(std::string(300, '\x01'));
  out.push_back(message);
  return out;
}

v1::Msg ItemMsg(const v1::Payload& p) {
  v1::Msg m;
  *m.mutable_yielded()->mutable_payload() = p;
  return m;
}

TEST(OutgoingTest, AnItemIsTheEncodingOfItsMsg) {
  for (const v1::Payload& p : SamplePayloads()) {
    SCOPED_TRACE(p.ByteSizeLong());
    const grpc::Slice item = EncodeItem(p);
    v1::Msg decoded;
    ASSERT_TRUE(decoded.ParseFromString(Bytes(item)));
    EXPECT_TRUE(MessageDifferencer::Equals(decoded, ItemMsg(p)))
        << decoded.ShortDebugString();
    // A map's order is protobuf's to choose: bytes are compared without.
    if (!p.has_value()) EXPECT_EQ(Bytes(item), ItemMsg(p).SerializeAsString());
    EXPECT_TRUE(IsEncodedItem(item));
  }
}

TEST(OutgoingTest, AMessageIsProtobufsEncoding) {
  v1::Msg start;
  start.mutable_start()->set_func("ns:f");
  start.mutable_start()->set_cid("c1");
  EXPECT_EQ(Bytes(EncodeMessage(start)), start.SerializeAsString());
  v1::Msg empty;
  EXPECT_EQ(EncodeMessage(empty).size(), 0u);
}

TEST(OutgoingTest, OnlyAYieldAloneIsAnItem) {
  v1::Msg stop;
  stop.mutable_stop();
  EXPECT_FALSE(IsEncodedItem(EncodeMessage(stop)));
  v1::Msg ret;
  ret.mutable_returned()->mutable_payload()->set_raw("x");
  EXPECT_FALSE(IsEncodedItem(EncodeMessage(ret)));
  EXPECT_FALSE(IsEncodedItem(EncodeMessage(v1::Msg())));

  v1::Payload p;
  p.set_raw("abc");
  const std::string item = Bytes(EncodeItem(p));
  // A Yield followed by another field, and a Yield cut short.
  const std::string longer = item + "\x2a\x00";
  EXPECT_FALSE(IsEncodedItem(grpc::Slice(longer.data(), longer.size())));
  EXPECT_FALSE(IsEncodedItem(grpc::Slice(item.data(), item.size() - 1)));
  // A length that never ends.
  const std::string endless = "\x22\xff\xff\xff\xff\xff\xff";
  EXPECT_FALSE(IsEncodedItem(grpc::Slice(endless.data(), endless.size())));
}

// Small items are copied into one slice, large ones referenced: both must
// decode as the batch of those items, in order.
TEST(OutgoingTest, ABatchIsTheEncodingOfItsItems) {
  for (size_t size : {1, 100, 1000, 1025, 5000}) {
    SCOPED_TRACE(size);
    std::vector<grpc::Slice> items;
    v1::Msg expected;
    for (int i = 0; i < 40; ++i) {
      v1::Payload p;
      p.set_raw(std::string(size + i, static_cast<char>('a' + i % 26)));
      items.push_back(EncodeItem(p));
      *expected.mutable_batch()->add_items()->mutable_payload() = p;
    }
    grpc::ByteBuffer out;
    EncodeBatch(items, &out);
    EXPECT_EQ(Bytes(out), expected.SerializeAsString());
    // The items are left as they were.
    EXPECT_TRUE(IsEncodedItem(items.front()));
  }
}

TEST(OutgoingTest, ABatchOfItemsOfMixedSizes) {
  std::vector<grpc::Slice> items;
  v1::Msg expected;
  for (size_t size : {3, 70000, 0, 128, 4096}) {
    v1::Payload p;
    p.set_raw(std::string(size, 'm'));
    items.push_back(EncodeItem(p));
    *expected.mutable_batch()->add_items()->mutable_payload() = p;
  }
  grpc::ByteBuffer out;
  EncodeBatch(items, &out);
  EXPECT_EQ(Bytes(out), expected.SerializeAsString());
  v1::Msg decoded;
  ASSERT_TRUE(decoded.ParseFromString(Bytes(out)));
  ASSERT_EQ(decoded.batch().items_size(), 5);
  EXPECT_EQ(decoded.batch().items(1).payload().raw().size(), 70000u);
}

}  // namespace
}  // namespace tractor::internal
