// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests the post-mortem hook as OpenCrashHandler uses it (devx/debugger.h):
// an exception escaping OpenCrashHandler is examined before it is
// rethrown, once per exception object, and not at all without a hook.
// (That the runtime's hook stops the actor in gdb under the tree-wide lock
// is tested end to end by debugger_test.)
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "devx/crash_handler.h"
#include "devx/debugger.h"
#include "gtest/gtest.h"

namespace tractor::devx {
namespace {

class PostMortemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetPostMortemHook([this](const std::exception_ptr& e,
                             const std::string& where) {
      seen_.push_back(where);
      errors_.push_back(e);
    });
  }
  void TearDown() override { SetPostMortemHook(nullptr); }

  std::vector<std::string> seen_;
  std::vector<std::exception_ptr> errors_;
};

TEST_F(PostMortemTest, AnErrorEscapingOpenCrashHandlerIsExaminedBeforeItIsRethrown) {
  EXPECT_THROW(OpenCrashHandler([]() -> int {
                 throw std::out_of_range("index 7");
               }),
               std::out_of_range);
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0], "OpenCrashHandler");
  try {
    std::rethrow_exception(errors_[0]);
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "index 7");
  }
}

TEST_F(PostMortemTest, TheSameErrorIsExaminedOnceWhereverItIsCaughtAgain) {
  std::exception_ptr caught;
  try {
    OpenCrashHandler([] { throw std::runtime_error("once"); });
  } catch (...) {
    caught = std::current_exception();
  }
  ASSERT_EQ(seen_.size(), 1u);
  // The task the error escapes next hands the same object to the hook.
  PostMortem(caught, "task 'f'");
  EXPECT_EQ(seen_.size(), 1u);
  // Another error is examined.
  EXPECT_THROW(OpenCrashHandler([] { throw std::runtime_error("twice"); }),
               std::runtime_error);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[1], "OpenCrashHandler");
}

TEST(PostMortemWithoutHookTest, OpenCrashHandlerOnlyReportsAndRethrows) {
  SetPostMortemHook(nullptr);
  EXPECT_THROW(OpenCrashHandler([] { throw std::logic_error("no hook"); }),
               std::logic_error);
  EXPECT_EQ(OpenCrashHandler([] { return 42; }), 42);
}

}  // namespace
}  // namespace tractor::devx
