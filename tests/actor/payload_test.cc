// Payload values, accessors, specs and error boxing (no processes).
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

TEST(ErrorBoxingTest, RelayKeepsTheOriginAndAppendsTheHop) {
  v1::Aid a, b;
  a.set_name("a");
  a.set_uuid("ua");
  b.set_name("b");
  b.set_uuid("ub");
  v1::Error origin = internal::PackError(
      std::make_exception_ptr(std::invalid_argument("bad")), a, "c1");
  EXPECT_EQ(origin.boxed_type(), "std::invalid_argument");
  EXPECT_EQ(origin.src_type(), "std::invalid_argument");
  v1::Error relayed =
      internal::PackError(internal::ToException(origin), b, "c2");
  EXPECT_EQ(relayed.boxed_type(), "RemoteActorError");
  EXPECT_EQ(relayed.src_type(), "std::invalid_argument");
  EXPECT_EQ(relayed.src().uuid(), "ua");
  ASSERT_EQ(relayed.relay_path_size(), 2);
  EXPECT_EQ(relayed.relay_path(1).uuid(), "ub");
  EXPECT_EQ(relayed.cid(), "c2");
}

TEST(ErrorBoxingTest, ReraisedContextCancelledKeepsItsCanceller) {
  v1::Aid a, b, k;
  a.set_uuid("ua");
  b.set_uuid("ub");
  k.set_uuid("uk");
  v1::Error ctxc = internal::MakeError(a, "ContextCancelled", "cancelled");
  *ctxc.mutable_canceller() = k;
  v1::Error again = internal::PackError(internal::ToException(ctxc), b);
  EXPECT_EQ(again.boxed_type(), "ContextCancelled");
  EXPECT_EQ(again.src().uuid(), "ub");
  EXPECT_EQ(again.canceller().uuid(), "uk");
  EXPECT_THROW(internal::ThrowError(again), ContextCancelled);
}

}  // namespace
}  // namespace tractor
