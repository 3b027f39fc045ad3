// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests discovery/log_level.h: the one mapping of tractor's level names onto
// glog, the rejection of unknown names, and the TRACTOR_LOGLEVEL override.
#include "discovery/log_level.h"

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tractor::discovery {
namespace {

using ::testing::HasSubstr;

class LogLevelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv(kLogLevelEnv);
    saved_min_ = FLAGS_minloglevel;
    saved_v_ = FLAGS_v;
  }
  void TearDown() override {
    unsetenv(kLogLevelEnv);
    FLAGS_minloglevel = saved_min_;
    FLAGS_v = saved_v_;
  }

 private:
  int saved_min_ = 0;
  int saved_v_ = 0;
};

TEST_F(LogLevelTest, MapsEveryNameOntoGlog) {
  const std::vector<std::pair<std::string, GlogThresholds>> table = {
      {"critical", {google::GLOG_FATAL, 0, 50}},
      {"error", {google::GLOG_ERROR, 0, 40}},
      {"", {google::GLOG_ERROR, 0, 40}},
      {"warning", {google::GLOG_WARNING, 0, 30}},
      {"info", {google::GLOG_INFO, 0, 20}},
      {"io", {google::GLOG_INFO, 0, 20}},
      {"devx", {google::GLOG_INFO, 0, 17}},
      {"cancel", {google::GLOG_INFO, 0, 16}},
      {"runtime", {google::GLOG_INFO, 1, 15}},
      {"debug", {google::GLOG_INFO, 2, 10}},
      {"transport", {google::GLOG_INFO, 3, 5}},
  };
  for (const auto& [name, want] : table) {
    absl::StatusOr<GlogThresholds> got = ParseLogLevel(name);
    ASSERT_TRUE(got.ok()) << "'" << name << "': " << got.status();
    EXPECT_EQ(got->min_log_level, want.min_log_level) << name;
    EXPECT_EQ(got->verbosity, want.verbosity) << name;
    EXPECT_EQ(got->level, want.level) << name;

    ASSERT_TRUE(ApplyLogLevel(name).ok()) << name;
    EXPECT_EQ(FLAGS_minloglevel, want.min_log_level) << name;
    EXPECT_EQ(FLAGS_v, want.verbosity) << name;
    EXPECT_TRUE(LogEnabled(want.level)) << name;
    EXPECT_FALSE(LogEnabled(want.level - 1)) << name;
  }
}

TEST_F(LogLevelTest, CancelSitsBetweenRuntimeAndInfo) {
  ASSERT_TRUE(ApplyLogLevel("cancel").ok());
  EXPECT_TRUE(LogEnabled(kLevelCancel));
  EXPECT_TRUE(LogEnabled(kLevelDevx));
  EXPECT_FALSE(LogEnabled(kLevelRuntime));
  EXPECT_EQ(FLAGS_v, 0);  // no runtime VLOG(1) lines
  ASSERT_TRUE(ApplyLogLevel("info").ok());
  EXPECT_FALSE(LogEnabled(kLevelCancel));
  ASSERT_TRUE(ApplyLogLevel("runtime").ok());
  EXPECT_TRUE(LogEnabled(kLevelCancel));
  EXPECT_TRUE(LogEnabled(kLevelRuntime));
}

TEST_F(LogLevelTest, NamesAreCaseInsensitive) {
  ASSERT_TRUE(ApplyLogLevel("DeBuG").ok());
  EXPECT_EQ(FLAGS_minloglevel, google::GLOG_INFO);
  EXPECT_EQ(FLAGS_v, 2);
  EXPECT_TRUE(ParseLogLevel("WARNING").ok());
}

TEST_F(LogLevelTest, UnknownNameIsRejectedNamingTheAcceptedOnes) {
  ASSERT_TRUE(ApplyLogLevel("warning").ok());
  for (const char* bad : {"verbose", "trace", "warn", "info ", "2"}) {
    absl::Status s = ApplyLogLevel(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(absl::StrCat("'", bad, "'")));
    EXPECT_THAT(std::string(s.message()), HasSubstr(kLogLevelNames));
    // Nothing changed.
    EXPECT_EQ(FLAGS_minloglevel, google::GLOG_WARNING) << bad;
    EXPECT_EQ(FLAGS_v, 0) << bad;
  }
  EXPECT_EQ(ParseLogLevel("verbose").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LogLevelTest, EnvironmentOverridesTheGivenLevel) {
  setenv(kLogLevelEnv, "transport", 1);
  ASSERT_TRUE(ApplyLogLevel("error").ok());
  EXPECT_EQ(FLAGS_minloglevel, google::GLOG_INFO);
  EXPECT_EQ(FLAGS_v, 3);
  // Even an unknown given level: it is not looked at.
  EXPECT_TRUE(ApplyLogLevel("nonsense").ok());
  // An empty variable is no override.
  setenv(kLogLevelEnv, "", 1);
  ASSERT_TRUE(ApplyLogLevel("warning").ok());
  EXPECT_EQ(FLAGS_minloglevel, google::GLOG_WARNING);
  EXPECT_EQ(FLAGS_v, 0);
}

TEST_F(LogLevelTest, UnknownEnvironmentLevelIsRejectedNamingTheVariable) {
  ASSERT_TRUE(ApplyLogLevel("info").ok());
  setenv(kLogLevelEnv, "loud", 1);
  absl::Status s = ApplyLogLevel("debug");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(kLogLevelEnv));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'loud'"));
  EXPECT_EQ(FLAGS_minloglevel, google::GLOG_INFO);
  EXPECT_EQ(FLAGS_v, 0);
  // ParseLogLevel ignores the environment.
  EXPECT_TRUE(ParseLogLevel("debug").ok());
}

}  // namespace
}  // namespace tractor::discovery
