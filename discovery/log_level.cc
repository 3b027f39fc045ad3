// SPDX-License-Identifier: AGPL-3.0-or-later
// glog's custom line prefix (InitLogging) is declared under this macro.
#define GLOG_CUSTOM_PREFIX_SUPPORT 1
#include "discovery/log_level.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <mutex>
#include <ostream>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace tractor::discovery {

namespace {

std::atomic<int> g_level{40};

// The actor every line names: a leaked string, swapped whole.
std::atomic<const std::string*> g_actor{nullptr};

void Prefix(std::ostream& s, const google::LogMessageInfo& l, void*) {
  s << l.severity[0] << std::setw(4) << 1900 + l.time.year() << std::setw(2)
    << std::setfill('0') << 1 + l.time.month() << std::setw(2) << l.time.day()
    << ' ' << std::setw(2) << l.time.hour() << ':' << std::setw(2)
    << l.time.min() << ':' << std::setw(2) << l.time.sec() << '.'
    << std::setw(6) << l.time.usec() << ' ' << std::setfill(' ')
    << std::setw(5) << l.thread_id << std::setfill('0') << ' ' << l.filename
    << ':' << l.line_number << "] ";
  const std::string* actor = g_actor.load(std::memory_order_acquire);
  // glog writes one space after the prefix.
  s << (actor != nullptr ? *actor : std::string("-"));
}

}  // namespace

absl::StatusOr<GlogThresholds> ParseLogLevel(absl::string_view level) {
  const std::string name = absl::AsciiStrToLower(level);
  if (name == "critical") return GlogThresholds{google::GLOG_FATAL, 0, 50};
  if (name.empty() || name == "error") {
    return GlogThresholds{google::GLOG_ERROR, 0, 40};
  }
  if (name == "warning") return GlogThresholds{google::GLOG_WARNING, 0, 30};
  if (name == "info" || name == "io") {
    return GlogThresholds{google::GLOG_INFO, 0, 20};
  }
  if (name == "devx") return GlogThresholds{google::GLOG_INFO, 0, kLevelDevx};
  if (name == "cancel") {
    return GlogThresholds{google::GLOG_INFO, 0, kLevelCancel};
  }
  if (name == "runtime") {
    return GlogThresholds{google::GLOG_INFO, 1, kLevelRuntime};
  }
  if (name == "debug") return GlogThresholds{google::GLOG_INFO, 2, 10};
  if (name == "transport") return GlogThresholds{google::GLOG_INFO, 3, 5};
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log level '", level, "'; accepted: ", kLogLevelNames));
}

bool LogEnabled(int level) {
  return level >= g_level.load(std::memory_order_relaxed);
}

void InitLogging(const char* argv0) {
  static std::once_flag once;
  std::call_once(once, [argv0] {
    if (google::IsGoogleLoggingInitialized()) return;
    google::InitGoogleLogging(argv0, &Prefix, nullptr);
  });
}

void SetLogActor(const std::string& name, const std::string& uuid) {
  // A name may be in use by a line being written, so none is ever freed:
  // every name set stays in `names` (reachable, and each distinct name
  // kept once), and `g_actor` points at one of them.
  static std::mutex mu;
  static auto* names = new std::set<std::string>();
  std::string actor = absl::StrCat(name, "[", uuid.substr(0, 8), "]");
  std::lock_guard<std::mutex> lk(mu);
  const std::string& kept = *names->insert(std::move(actor)).first;
  g_actor.store(&kept, std::memory_order_release);
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
  g_level.store(t->level, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace tractor::discovery
