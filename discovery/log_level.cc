// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/log_level.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace tractor::discovery {

absl::StatusOr<GlogThresholds> ParseLogLevel(absl::string_view level) {
  const std::string name = absl::AsciiStrToLower(level);
  if (name == "critical") return GlogThresholds{google::GLOG_FATAL, 0};
  if (name.empty() || name == "error") {
    return GlogThresholds{google::GLOG_ERROR, 0};
  }
  if (name == "warning") return GlogThresholds{google::GLOG_WARNING, 0};
  if (name == "info" || name == "cancel" || name == "io") {
    return GlogThresholds{google::GLOG_INFO, 0};
  }
  if (name == "runtime" || name == "devx") {
    return GlogThresholds{google::GLOG_INFO, 1};
  }
  if (name == "debug") return GlogThresholds{google::GLOG_INFO, 2};
  if (name == "transport") return GlogThresholds{google::GLOG_INFO, 3};
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level '", level, "'; accepted: ", kLogLevelNames));
}

std::optional<std::string> LogLevelOverride() {
  const char* env = std::getenv(kLogLevelEnv);
  if (env == nullptr || *env == '\0') return std::nullopt;
  return std::string(env);
}

absl::Status ApplyLogLevel(absl::string_view level) {
  const std::optional<std::string> env = LogLevelOverride();
  absl::StatusOr<GlogThresholds> t = ParseLogLevel(env ? *env : level);
  if (!t.ok()) {
    if (!env) return t.status();
    return absl::InvalidArgumentError(
        absl::StrCat(kLogLevelEnv, ": ", t.status().message()));
  }
  FLAGS_minloglevel = t->min_log_level;
  FLAGS_v = t->verbosity;
  return absl::OkStatus();
}

}  // namespace tractor::discovery
