// SPDX-License-Identifier: AGPL-3.0-or-later
// The runtime's own command-line flags (absl flags), read by tractor::Main
// in a root process only: a spawned child is configured by its SpawnSpec.
//
// Spelling: lower snake_case names, `--flag=value` or `--flag value`,
// comma-separated lists, durations in milliseconds with an `_ms` suffix,
// booleans as `--flag`, `--noflag` or `--flag=true|false`.
#ifndef TRACTOR_ACTOR_INTERNAL_FLAGS_H_
#define TRACTOR_ACTOR_INTERNAL_FLAGS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tractor::internal {

// The runtime flags given on the command line; a flag that was not given
// stays unset.
struct RuntimeFlags {
  std::optional<std::string> name;
  std::optional<std::vector<std::string>> bind_addrs;
  std::optional<std::vector<std::string>> registry_addrs;
  std::optional<std::vector<std::string>> enable_modules;
  std::optional<std::string> loglevel;
  std::optional<absl::Duration> lease;
  std::optional<absl::Duration> busy_wait;
  std::optional<std::vector<std::string>> registry_etcd;
  std::optional<std::string> registry_etcd_prefix;
  std::optional<int> v;
  std::optional<std::string> vmodule;
  bool daemon = false;
  // --helpfull was given: print every flag and exit.
  bool help = false;
};

// Takes the runtime flags out of `argv` (compacting it and updating
// `*argc`; argv[*argc] stays null) and leaves every other argument, in
// order: flags the runtime does not know, positional arguments, and `--`
// with everything after it. Returns InvalidArgumentError, with a one-line
// message naming the flag, for a runtime flag without a value or with a
// value that does not parse (an address, a log level, a lease).
absl::StatusOr<RuntimeFlags> TakeRuntimeFlags(int* argc, char** argv);

// The usage text of every absl flag linked into the program (the runtime's
// and glog's --v and --vmodule among them), for --helpfull.
std::string FlagsHelp(const char* argv0);

// The flags Main parsed, applied by OpenRootActor over its RootOptions.
void SetGivenRuntimeFlags(RuntimeFlags flags);
const RuntimeFlags& GivenRuntimeFlags();

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_FLAGS_H_
