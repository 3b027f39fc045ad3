// SPDX-License-Identifier: AGPL-3.0-or-later
// Tractor's log level names, mapped onto glog.
//
// Every tractor program (actors and the registrar daemon) accepts the same
// level names and gives them the same meaning. Levels are numbered as
// tractor numbers them (`cancel` at 16, between `runtime` and `info`); a
// level writes every line at its number or above. glog carries the lines:
// a level sets `FLAGS_minloglevel` (the least severe LOG() written) and
// `FLAGS_v` (the highest VLOG() written), and the runtime's `cancel` and
// `devx` and `transport` lines (TRACTOR_LOG below) check the number itself:
//
//   name       number  FLAGS_minloglevel  FLAGS_v  writes
//   critical   50      FATAL (3)          0        LOG(FATAL) only
//   error      40      ERROR (2)          0        errors (the default; "")
//   warning    30      WARNING (1)        0        + warnings
//   info       20      INFO (0)           0        + informational messages
//   io         20      INFO (0)           0        same as info
//   devx       17      INFO (0)           0        + debugging aids
//   cancel     16      INFO (0)           0        + who cancelled what
//   runtime    15      INFO (0)           1        + VLOG(1): runtime decisions
//   debug      10      INFO (0)           2        + VLOG(2): per-message detail
//   transport  5       INFO (0)           3        + VLOG(3) and transport
//                                                   events: connections and
//                                                   dialog streams opened
//                                                   and closed, links up and
//                                                   down, keepalive failures
//
// Names are case-insensitive. The environment variable TRACTOR_LOGLEVEL, when
// set and not empty, overrides the level a program was given (and, being in
// the environment, reaches every child actor).
//
// Every line names the process's actor, "name[1a2b3c4d]" (its short uuid),
// after glog's usual prefix, once InitLogging and SetLogActor ran.
#ifndef TRACTOR_DISCOVERY_LOG_LEVEL_H_
#define TRACTOR_DISCOVERY_LOG_LEVEL_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tractor::discovery {

// The environment variable that overrides every program's log level.
inline constexpr char kLogLevelEnv[] = "TRACTOR_LOGLEVEL";

// The accepted level names, least verbose first, comma-separated (for usage
// and error messages).
inline constexpr char kLogLevelNames[] =
    "critical, error, warning, info, io, devx, cancel, runtime, debug, "
    "transport";

// The numbers of the levels the runtime writes with TRACTOR_LOG.
inline constexpr int kLevelRuntime = 15;
inline constexpr int kLevelCancel = 16;
inline constexpr int kLevelDevx = 17;
inline constexpr int kLevelTransport = 5;

// glog's thresholds for one level, and its number.
struct GlogThresholds {
  int min_log_level = 2;  // FLAGS_minloglevel
  int verbosity = 0;      // FLAGS_v
  int level = 40;         // the level's number (the table above)

  friend bool operator==(const GlogThresholds& a, const GlogThresholds& b) {
    return a.min_log_level == b.min_log_level && a.verbosity == b.verbosity &&
           a.level == b.level;
  }
};

// Returns the thresholds of `level` (see the table above; "" is "error").
// Returns InvalidArgumentError naming `level` and the accepted names for any
// other name. Pure: ignores TRACTOR_LOGLEVEL, changes nothing. Thread-safe.
absl::StatusOr<GlogThresholds> ParseLogLevel(absl::string_view level);

// Returns the value of TRACTOR_LOGLEVEL, or nullopt when it is unset or
// empty. Thread-safe as long as nobody modifies the environment.
std::optional<std::string> LogLevelOverride();

// Sets FLAGS_minloglevel and FLAGS_v for `level`, or for TRACTOR_LOGLEVEL
// when that is set (then `level` is not looked at). Returns
// InvalidArgumentError, and changes nothing, for an unknown name; the message
// names the rejected value, where it came from when that was
// TRACTOR_LOGLEVEL, and the accepted names. Callers decide what an error
// means (the registrar daemon exits 2; the actor runtime refuses to open the
// root actor).
//
// Does not touch glog's other flags (e.g. FLAGS_logtostderr). glog's flags
// are plain globals: call this at startup, before other threads log.
absl::Status ApplyLogLevel(absl::string_view level);

// True when the current level writes lines of number `level`. Thread-safe.
bool LogEnabled(int level);

// Initializes glog (once; later calls do nothing) with the prefix that
// names this process's actor. Call first thing, before other threads log.
void InitLogging(const char* argv0);

// Names the actor every later line of this process names (`name` and the
// first 8 characters of `uuid`). Thread-safe.
void SetLogActor(const std::string& name, const std::string& uuid);

}  // namespace tractor::discovery

// Writes a line at one of the runtime's own levels (`cancel`, `devx`,
// `runtime`, `transport`) when the current level includes it, as glog INFO, starting
// with the level's name:
//   TRACTOR_LOG(cancel) << "task 'ns:f' cancelled by 'root' ...";
#define TRACTOR_LOG(name)                                              \
  LOG_IF(INFO, ::tractor::discovery::LogEnabled(                       \
                   ::tractor::discovery::internal_log::k_##name))      \
      << #name ": "

namespace tractor::discovery::internal_log {
inline constexpr int k_runtime = kLevelRuntime;
inline constexpr int k_cancel = kLevelCancel;
inline constexpr int k_devx = kLevelDevx;
inline constexpr int k_transport = kLevelTransport;

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_LOG_LEVEL_H_
