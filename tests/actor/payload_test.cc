// SPDX-License-Identifier: AGPL-3.0-or-later
// Payload values, accessors and specs (no processes). Error boxing is
// tested in tests/actor/internal/error_codec_test.cc.
#include "actor/payload.h"

#include "actor/errors.h"
#include "gtest/gtest.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {
namespace {

TEST(PayloadTest, JsonLikeValuesRoundTrip) {
  Payload p = Payload::Object({{"n", 3}, {"s", "x"}, {"b", true},
                               {"l", Payload::List({1, "two", nullptr})}});
  EXPECT_EQ(p["n"].AsInt(), 3);
  EXPECT_EQ(p["s"].AsString(), "x");
  EXPECT_TRUE(p["b"].AsBool());
  EXPECT_EQ(p["l"].size(), 3u);
  EXPECT_TRUE(p["l"][2].IsNull());
  EXPECT_EQ(Payload::FromJson(p.ToJson()), p);
}

TEST(PayloadTest, AccessorOnTheWrongTypeNamesBothTypes) {
  try {
    Payload("text").AsInt();
    ADD_FAILURE() << "no error";
  } catch (const TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("expected a number payload, got string"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(Payload(1.5).AsInt(), TypeError);
  EXPECT_THROW(Payload::Object({})["missing"], TypeError);
  EXPECT_THROW(Payload::List({})[0], TypeError);
  EXPECT_THROW(Payload::FromJson("{not json"), TypeError);
}

TEST(PayloadTest, InvalidUtf8StringIsRejectedInFavourOfRaw) {
  EXPECT_THROW(Payload(std::string("\xff\xfe")), TypeError);
  EXPECT_EQ(Payload::Raw("\xff\xfe").AsRaw(), "\xff\xfe");
  EXPECT_EQ(Payload("héllo").AsString(), "héllo");
}

TEST(PayloadTest, MessagesPackAndUnpackByType) {
  v1::Aid aid;
  aid.set_name("n");
  Payload p = Payload::Message(aid);
  EXPECT_TRUE(p.IsMessage());
  EXPECT_EQ(p.TypeName(), "tractor.v1.Aid");
  EXPECT_EQ(p.AsMessage<v1::Aid>().name(), "n");
  EXPECT_THROW(p.AsMessage<v1::Error>(), TypeError);
}

TEST(PayloadTest, SpecsMatchTheirUnion) {
  PayloadSpec spec = PayloadSpec::Of<v1::Aid>() | PayloadSpec::Null();
  EXPECT_EQ(spec.name(), "tractor.v1.Aid|null");
  EXPECT_TRUE(spec.Matches(Payload().proto()));
  EXPECT_TRUE(spec.Matches(Payload::Message(v1::Aid()).proto()));
  EXPECT_FALSE(spec.Matches(Payload(1).proto()));
  EXPECT_TRUE(PayloadSpec().Matches(Payload(1).proto()));
  EXPECT_TRUE(PayloadSpec::Of<int64_t>().Matches(Payload(4).proto()));
  EXPECT_FALSE(PayloadSpec::Of<int64_t>().Matches(Payload(4.5).proto()));
}

}  // namespace
}  // namespace tractor
