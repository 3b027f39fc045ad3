// SPDX-License-Identifier: AGPL-3.0-or-later
// The error codec: exceptions to wire errors and back (no processes).
#include "actor/internal/error_codec.h"

#include <stdexcept>
#include <string>

#include "actor/errors.h"
#include "gtest/gtest.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {
namespace {

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

class MyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

TEST(ErrorBoxingTest, RegisteredUserTypesTravelByName) {
  RegisterErrorType<MyError>("MyError");
  v1::Aid a;
  a.set_uuid("ua");
  v1::Error packed =
      internal::PackError(std::make_exception_ptr(MyError("mine")), a);
  EXPECT_EQ(packed.boxed_type(), "MyError");
  EXPECT_EQ(packed.message(), "mine");
  EXPECT_THROW(internal::ThrowError(packed), MyError);
  EXPECT_EQ(internal::Describe(internal::ToException(packed)), "MyError: mine");
}

}  // namespace
}  // namespace tractor
