// SPDX-License-Identifier: AGPL-3.0-or-later
// Tractor's log level names, mapped onto glog.
//
// Every tractor program (actors and the registrar daemon) accepts the same
// level names and gives them the same meaning. A level sets glog's
// `FLAGS_minloglevel` (the least severe LOG() that is written) and `FLAGS_v`
// (the highest VLOG() level that is written):
//
//   name        FLAGS_minloglevel   FLAGS_v   writes
//   critical    FATAL (3)           0         LOG(FATAL) only
//   error       ERROR (2)           0         errors (the default; also "")
//   warning     WARNING (1)         0         + warnings
//   info        INFO (0)            0         + informational messages
//   cancel      INFO (0)            0         same as info
//   io          INFO (0)            0         same as info
//   runtime     INFO (0)            1         + VLOG(1): runtime decisions
//   devx        INFO (0)            1         same as runtime
//   debug       INFO (0)            2         + VLOG(2): per-message detail
//   transport   INFO (0)            3         + VLOG(3): transport traces
//
// Names are case-insensitive. The environment variable TRACTOR_LOGLEVEL, when
// set and not empty, overrides the level a program was given.
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
    "critical, error, warning, info, cancel, io, runtime, devx, debug, "
    "transport";

// glog's thresholds for one level.
struct GlogThresholds {
  int min_log_level = 2;  // FLAGS_minloglevel
  int verbosity = 0;      // FLAGS_v

  friend bool operator==(const GlogThresholds& a, const GlogThresholds& b) {
    return a.min_log_level == b.min_log_level && a.verbosity == b.verbosity;
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

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_LOG_LEVEL_H_
