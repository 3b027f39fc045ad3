// SPDX-License-Identifier: AGPL-3.0-or-later
// Tracebacks across actors: an error raised in a child carries the frames
// of its throw site, with file:line (this test is built with -g), and each
// actor that relays it adds a hop.
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "gtest/gtest.h"
#include "tests/process_fixture.h"

namespace tractor {
namespace {

// std::out_of_range from libstdc++, three calls deep in a child.
__attribute__((noinline)) int64_t LookUpThird(const std::vector<int64_t>& v) {
  return v.at(3);  // the throw
}
constexpr int kThrowLine = __LINE__ - 2;
__attribute__((noinline)) int64_t SumWithThird(const std::vector<int64_t>& v) {
  return v[0] + LookUpThird(v);
}
int64_t OutOfRange() {
  std::vector<int64_t> v = {1, 2};
  return SumWithThird(v) + 1;
}
TRACTOR_EXPORT("tb:out_of_range", OutOfRange);

// Spawns a grandchild that raises the same error; it is relayed here.
int64_t RelayOutOfRange() {
  int64_t got = 0;
  OpenNursery([&](ActorNursery& an) {
    Portal gc = an.StartActor("leaf", {.enable_modules = {"tb"}});
    got = gc.Run("tb:out_of_range").AsInt();
  });
  return got;
}
TRACTOR_EXPORT("tb:relay", RelayOutOfRange);

class TracebackTest : public testing::ProcessTest {};

const std::string kFileLine =
    absl::StrCat("tests/devx/traceback_test.cc:", kThrowLine);

TEST_F(TracebackTest, ChildErrorNamesTheThrowingFunctionAndLine) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("thrower", {.enable_modules = {"tb"}});
      try {
        p.Run("tb:out_of_range");
        ADD_FAILURE() << "no error raised";
      } catch (const RemoteActorError& e) {
        EXPECT_EQ(e.src_type(), "std::out_of_range");
        const std::string tb = e.traceback();
        EXPECT_TRUE(absl::StrContains(tb, "most recent call first")) << tb;
        EXPECT_TRUE(absl::StrContains(tb, "LookUpThird(")) << tb;
        EXPECT_TRUE(absl::StrContains(tb, "SumWithThird(")) << tb;
        EXPECT_TRUE(absl::StrContains(tb, "OutOfRange(")) << tb;
        EXPECT_TRUE(absl::StrContains(tb, kFileLine)) << tb;
        // Innermost first; the message closes the traceback.
        EXPECT_LT(tb.find("LookUpThird("), tb.find("SumWithThird("));
        EXPECT_TRUE(absl::StrContains(tb, "std::out_of_range: vector"))
            << tb;
        // what() prints the traceback too.
        EXPECT_TRUE(absl::StrContains(e.what(), kFileLine)) << e.what();
      }
      an.Cancel();
    });
  });
}

TEST_F(TracebackTest, RelayedErrorKeepsOriginFramesAndAddsEachHop) {
  OpenRootActor({}, [] {
    OpenNursery([](ActorNursery& an) {
      Portal p = an.StartActor("middle", {.enable_modules = {"tb"}});
      try {
        p.Run("tb:relay");
        ADD_FAILURE() << "no error raised";
      } catch (const RemoteActorError& e) {
        EXPECT_EQ(e.src().name(), "leaf");
        EXPECT_EQ(e.src_type(), "std::out_of_range");
        const std::string tb = e.traceback();
        EXPECT_TRUE(absl::StrContains(tb, kFileLine)) << tb;
        EXPECT_TRUE(absl::StrContains(tb, "Relayed by actor 'middle'")) << tb;
        // The hop shows where the middle actor received it.
        EXPECT_TRUE(absl::StrContains(tb, "RelayOutOfRange(")) << tb;
        EXPECT_LT(tb.find(kFileLine), tb.find("Relayed by actor 'middle'"));
      }
      an.Cancel();
    });
  });
}

TEST_F(TracebackTest, UncaughtGroupListsEveryChildTraceback) {
  try {
    OpenRootActor({}, [] {
      OpenNursery([](ActorNursery& an) {
        an.RunInActor("one", "tb:out_of_range");
        an.RunInActor("two", "tb:out_of_range");
      });
    });
    ADD_FAILURE() << "no error raised";
  } catch (const ActorErrorGroup& g) {
    const std::string what = g.what();
    EXPECT_EQ(g.message(), "2 errors in actor nursery");
    EXPECT_TRUE(absl::StrContains(what, "+-- [1/2] RemoteActorError")) << what;
    EXPECT_TRUE(absl::StrContains(what, "+-- [2/2] RemoteActorError")) << what;
    EXPECT_TRUE(absl::StrContains(what, "|       #")) << what;
    EXPECT_TRUE(absl::StrContains(what, kFileLine)) << what;
  }
}

}  // namespace
}  // namespace tractor
