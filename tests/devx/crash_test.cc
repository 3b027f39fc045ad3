// SPDX-License-Identifier: AGPL-3.0-or-later
// A child that dies by a fatal signal reaches its supervisors as an
// ActorFailure naming the signal, with the crash report its crash handler
// wrote to the crash pipe (this test is built with -g: file:line).
#include <signal.h>

#include <exception>
#include <string>

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

// UBSan (--config=asan) would stop the store before it faults: the crash
// is what is tested here, so the null check is off for this one.
#if defined(__clang__)
__attribute__((no_sanitize("null")))
#endif
__attribute__((noinline)) void StoreThrough(int* volatile p) {
  *p = 42;  // the fault
}
constexpr int kFaultLine = __LINE__ - 2;
__attribute__((noinline)) void UpdateSlot(int* volatile p) {
  StoreThrough(p);
}
void Segfault() { UpdateSlot(nullptr); }
TRACTOR_EXPORT("crash:segv", Segfault);

void Abort() { abort(); }
TRACTOR_EXPORT("crash:abort", Abort);

// The segfault one level further down: this actor's child crashes.
void RelaySegfault() {
  OpenNursery([](ActorNursery& an) { an.RunInActor("leaf", "crash:segv"); });
}
TRACTOR_EXPORT("crash:relay", RelaySegfault);

class CrashTest : public testing::ProcessTest {};

// The text of whatever OpenRootActor raised.
std::string RunTreeAndDescribe(const std::string& func) {
  try {
    OpenRootActor({}, [&] {
      OpenNursery([&](ActorNursery& an) {
        an.RunInActor("crasher", func);
      });
    });
  } catch (const ActorError& e) {
    return e.TypeName() + ": " + e.what();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST_F(CrashTest, ChildSegfaultReachesTheRootAsActorFailureWithFrames) {
  const std::string what = RunTreeAndDescribe("crash:segv");
  EXPECT_TRUE(absl::StartsWith(what, "ActorFailure: ")) << what;
  EXPECT_TRUE(absl::StrContains(
      what, "child actor 'crasher' (pid "))
      << what;
  EXPECT_TRUE(absl::StrContains(
      what, "was killed by signal 11 (SIGSEGV, Segmentation fault)"))
      << what;
  EXPECT_TRUE(absl::StrContains(what, "fatal signal SIGSEGV (11) in actor "
                                      "'crasher'"))
      << what;
  EXPECT_TRUE(absl::StrContains(what, "StoreThrough")) << what;
  EXPECT_TRUE(absl::StrContains(what, "UpdateSlot")) << what;
  EXPECT_TRUE(absl::StrContains(
      what, absl::StrCat("tests/devx/crash_test.cc:", kFaultLine)))
      << what;
  // The crashing thread ran the task, and says so; the other threads are
  // listed too.
  EXPECT_TRUE(absl::StrContains(what, "task 'crash:segv'")) << what;
  EXPECT_TRUE(absl::StrContains(what, "Other threads:")) << what;
}

TEST_F(CrashTest, ChildAbortIsNamedSigabrt) {
  const std::string what = RunTreeAndDescribe("crash:abort");
  EXPECT_TRUE(absl::StrContains(what, "(SIGABRT, Aborted)")) << what;
  EXPECT_TRUE(absl::StrContains(what, "fatal signal SIGABRT (6)")) << what;
}

TEST_F(CrashTest, GrandchildSegfaultIsRelayedToTheRoot) {
  const std::string what = RunTreeAndDescribe("crash:relay");
  EXPECT_TRUE(absl::StrContains(what, "child actor 'leaf'")) << what;
  EXPECT_TRUE(absl::StrContains(what, "SIGSEGV")) << what;
  EXPECT_TRUE(absl::StrContains(what, "StoreThrough")) << what;
  EXPECT_TRUE(absl::StrContains(what, "from actor 'crasher'")) << what;
}

}  // namespace
}  // namespace tractor
