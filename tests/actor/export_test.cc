// SPDX-License-Identifier: AGPL-3.0-or-later
// Exported functions with named parameters: how a caller passes them, what
// a payload that does not fit gets, and how `Actor.Info` describes them.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/portal.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "tests/actor/with_child.h"
#include "tests/process_fixture.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor {
namespace {

std::string Repeat(int64_t count, const std::string& label) {
  std::string out;
  for (int64_t i = 0; i < count; ++i) out += label;
  return out;
}
TRACTOR_EXPORT("named:repeat", Repeat, "count", "label");

int64_t Twice(int64_t x) { return 2 * x; }
TRACTOR_EXPORT("named:twice", Twice, "x");
// The same function without names: its argument is the payload itself.
TRACTOR_EXPORT("named:twice_bare", Twice);

// Reports `start` first, then returns start + step.
double Stepper(Context& ctx, double start, double step, const Payload& tag) {
  ctx.Started(Payload::List({start, tag}));
  return start + step;
}
TRACTOR_EXPORT("named:stepper", Stepper, "start", "step", "tag");

void Nothing() {}
TRACTOR_EXPORT("named:nothing", Nothing);

class ExportTest : public testing::ProcessTest {};

const ActorOptions kNamed = {.enable_modules = {"named"}};

// Runs `func(args)` in `p` and returns the MsgTypeError it must raise.
MsgTypeError RunExpectingMsgTypeError(Portal& p, const std::string& func,
                                      const Payload& args) {
  try {
    Payload got = p.Run(func, args);
    ADD_FAILURE() << func << "(" << args << ") returned " << got
                  << " instead of raising MsgTypeError";
  } catch (const MsgTypeError& e) {
    EXPECT_EQ(e.expected_msg_type(), "Start");
    return e;
  }
  return MsgTypeError(v1::Error());
}

TEST_F(ExportTest, NamedArgumentsArePassedAsAnObjectOrAList) {
  testing::WithChild(kNamed, [](Portal& p) {
    EXPECT_EQ(p.Run("named:repeat", {{"count", 3}, {"label", "ab"}}),
              Payload("ababab"));
    // Key order does not matter.
    EXPECT_EQ(p.Run("named:repeat", {{"label", "x"}, {"count", 2}}),
              Payload("xx"));
    EXPECT_EQ(p.Run("named:repeat", Payload::List({2, "yz"})), Payload("yzyz"));
    EXPECT_EQ(p.Run<std::string>("named:repeat", {{"count", 1}, {"label", "q"}}),
              "q");
    EXPECT_EQ(p.Run("named:twice", {{"x", 21}}), Payload(42));
    // Without names, the payload is the argument itself, as before.
    EXPECT_EQ((p.Run<int64_t, int64_t>("named:twice_bare", 21)), 42);
  });
}

TEST_F(ExportTest, AMissingNamedArgumentIsAMsgTypeErrorNamingIt) {
  testing::WithChild(kNamed, [](Portal& p) {
    MsgTypeError e =
        RunExpectingMsgTypeError(p, "named:repeat", {{"count", 3}});
    EXPECT_NE(e.remote_message().find("missing argument 'label'"),
              std::string::npos)
        << e.remote_message();
  });
}

TEST_F(ExportTest, AnUnexpectedNamedArgumentIsAMsgTypeErrorNamingIt) {
  testing::WithChild(kNamed, [](Portal& p) {
    MsgTypeError e = RunExpectingMsgTypeError(
        p, "named:repeat", {{"count", 3}, {"label", "x"}, {"colour", "red"}});
    EXPECT_NE(e.remote_message().find("unexpected argument 'colour'"),
              std::string::npos)
        << e.remote_message();
  });
}

TEST_F(ExportTest, AnArgumentOfTheWrongTypeIsAMsgTypeErrorNamingTheParameter) {
  testing::WithChild(kNamed, [](Portal& p) {
    MsgTypeError e = RunExpectingMsgTypeError(
        p, "named:repeat", {{"count", "three"}, {"label", "x"}});
    EXPECT_NE(e.remote_message().find("argument 'count'"), std::string::npos)
        << e.remote_message();
    EXPECT_NE(e.remote_message().find("integer"), std::string::npos)
        << e.remote_message();
    // In a list too.
    MsgTypeError l = RunExpectingMsgTypeError(p, "named:repeat",
                                              Payload::List({2, 7}));
    EXPECT_NE(l.remote_message().find("argument 'label'"), std::string::npos)
        << l.remote_message();
  });
}

TEST_F(ExportTest, AListOfTheWrongLengthOrAnotherPayloadIsAMsgTypeError) {
  testing::WithChild(kNamed, [](Portal& p) {
    MsgTypeError l = RunExpectingMsgTypeError(p, "named:repeat",
                                              Payload::List({2}));
    EXPECT_NE(l.remote_message().find("takes 2 arguments (count, label), got "
                                      "a list of 1"),
              std::string::npos)
        << l.remote_message();
    // A function with one named parameter does not take the bare value.
    MsgTypeError b = RunExpectingMsgTypeError(p, "named:twice", 21);
    EXPECT_NE(b.remote_message().find("object with the keys (x)"),
              std::string::npos)
        << b.remote_message();
  });
}

TEST_F(ExportTest, AContextEndpointTakesNamedArguments) {
  testing::WithChild(kNamed, [](Portal& p) {
    Payload first;
    Payload result = p.OpenContext(
        "named:stepper", {{"start", 1.5}, {"step", 2}, {"tag", "t"}},
        [&](Context&, const Payload& f) { first = f; });
    EXPECT_EQ(first, Payload::List({1.5, "t"}));
    EXPECT_EQ(result, Payload(3.5));
  });
}

TEST_F(ExportTest, InfoReportsEachFunctionsKindParametersAndResult) {
  testing::WithChild(kNamed, [](Portal& p) {
    auto stub = v1::Actor::NewStub(
        grpc::CreateChannel(p.addr(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ActorInfo info;
    ASSERT_TRUE(stub->Info(&ctx, v1::InfoRequest(), &info).ok());
    ASSERT_EQ(info.signatures_size(), info.functions_size());
    std::map<std::string, v1::FunctionSignature> by_name;
    for (int i = 0; i < info.signatures_size(); ++i) {
      EXPECT_EQ(info.signatures(i).name(), info.functions(i));
      by_name[info.signatures(i).name()] = info.signatures(i);
    }
    ASSERT_EQ(by_name.count("named:repeat"), 1u);
    const v1::FunctionSignature& repeat = by_name["named:repeat"];
    EXPECT_EQ(repeat.kind(), v1::FUNC_TYPE_FUNCTION);
    EXPECT_TRUE(repeat.named());
    ASSERT_EQ(repeat.params_size(), 2);
    EXPECT_EQ(repeat.params(0).name(), "count");
    EXPECT_EQ(repeat.params(0).type(), "integer");
    EXPECT_EQ(repeat.params(1).name(), "label");
    EXPECT_EQ(repeat.params(1).type(), "string");
    EXPECT_EQ(repeat.result_type(), "string");

    const v1::FunctionSignature& stepper = by_name["named:stepper"];
    EXPECT_EQ(stepper.kind(), v1::FUNC_TYPE_CONTEXT);
    ASSERT_EQ(stepper.params_size(), 3);
    EXPECT_EQ(stepper.params(2).name(), "tag");
    EXPECT_EQ(stepper.params(2).type(), "any");
    EXPECT_EQ(stepper.result_type(), "number");

    const v1::FunctionSignature& bare = by_name["named:twice_bare"];
    EXPECT_FALSE(bare.named());
    ASSERT_EQ(bare.params_size(), 1);
    EXPECT_EQ(bare.params(0).name(), "");
    EXPECT_EQ(bare.params(0).type(), "integer");

    const v1::FunctionSignature& nothing = by_name["named:nothing"];
    EXPECT_FALSE(nothing.named());
    EXPECT_EQ(nothing.params_size(), 0);
    EXPECT_EQ(nothing.result_type(), "null");
  });
}

}  // namespace
}  // namespace tractor
