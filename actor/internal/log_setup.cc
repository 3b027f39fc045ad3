// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/log_setup.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "actor/errors.h"
#include "actor/internal/flags.h"
#include "discovery/log_level.h"
#include "glog/logging.h"

namespace tractor::internal {

void ApplyLogLevel(const std::string& level) {
  FLAGS_logtostderr = true;
  if (absl::Status st = discovery::ApplyLogLevel(level); !st.ok()) {
    throw UsageError(std::string(st.message()));
  }
}

void ApplyVerbosityFlags() {
  const RuntimeFlags& flags = GivenRuntimeFlags();
  if (flags.v) {
    FLAGS_v = *flags.v;
    if (*flags.v > 0) FLAGS_minloglevel = 0;
  }
  if (flags.vmodule) {
    for (absl::string_view item :
         absl::StrSplit(*flags.vmodule, ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv =
          absl::StrSplit(item, absl::MaxSplits('=', 1));
      int level = 0;
      if (absl::SimpleAtoi(kv.second, &level)) {
        google::SetVLOGLevel(kv.first.c_str(), level);
        if (level > 0) FLAGS_minloglevel = 0;
      }
    }
  }
}

}  // namespace tractor::internal
