// SPDX-License-Identifier: AGPL-3.0-or-later
// How an actor process sets up glog: its log level, and the --v and
// --vmodule runtime flags.
#ifndef TRACTOR_ACTOR_INTERNAL_LOG_SETUP_H_
#define TRACTOR_ACTOR_INTERNAL_LOG_SETUP_H_

#include <string>

namespace tractor::internal {

// Applies a log level name (discovery/log_level.h; TRACTOR_LOGLEVEL
// overrides it) to glog, logging to stderr. Throws UsageError for a name
// that is not a level.
void ApplyLogLevel(const std::string& level);

// Applies --v and --vmodule (when given) to glog, after the log level so
// that they win over it. Above 0 they also let INFO through (VLOG logs at
// INFO).
void ApplyVerbosityFlags();

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_LOG_SETUP_H_
