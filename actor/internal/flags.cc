// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/internal/busy_wait.h"
#include "discovery/address.h"
#include "discovery/log_level.h"

// absl flags are defined at global scope. This file must not include glog,
// whose gflags-defined FLAGS_v is also visible at global scope; the rest of
// the runtime reads these flags through TakeRuntimeFlags only.

ABSL_FLAG(std::string, name, "",
          "name of the root actor (default: 'root'; with --daemon, the "
          "program's file name)");
ABSL_FLAG(std::string, bind, "",
          "addresses the root actor binds, comma-separated: host:port, "
          "[v6]:port, unix:/path or a multiaddr (default: a random loopback "
          "port)");
ABSL_FLAG(std::string, registry, "",
          "registrar addresses, comma-separated, same forms as --bind "
          "(default: $TRACTOR_REGISTRY, else 127.0.0.1:1616; the first root "
          "on a host serves the registrar there)");
ABSL_FLAG(std::vector<std::string>, enable_modules, {},
          "namespaces of exported functions the root actor serves, "
          "comma-separated (with --daemon, default: every namespace the "
          "program exports)");
ABSL_FLAG(std::string, loglevel, "",
          "log level of the actor tree: one of critical, error, warning, "
          "info, cancel, io, runtime, devx, debug, transport (default: "
          "error; TRACTOR_LOGLEVEL overrides it)");
ABSL_FLAG(int64_t, lease_ms, 0,
          "lease of the tree's registrations in milliseconds (default: the "
          "registrar's, 5000)");
ABSL_FLAG(int64_t, busy_wait_us, -1,
          "microseconds each process of the tree keeps a CPU awake after "
          "its own I/O, 0 to turn it off, at most 1000000 (default: "
          "$TRACTOR_BUSY_WAIT_US, else 200)");
ABSL_FLAG(std::string, registry_etcd, "",
          "etcd endpoints, host:port comma-separated, where a registrar the "
          "root serves keeps its registrations (default: "
          "$TRACTOR_REGISTRY_ETCD, else its own memory)");
ABSL_FLAG(std::string, registry_etcd_prefix, "",
          "the prefix of the registrations' etcd keys (default: "
          "$TRACTOR_REGISTRY_ETCD_PREFIX, else /tractor/)");
ABSL_FLAG(bool, daemon, false,
          "serve the program's exported functions until SIGTERM or SIGINT "
          "instead of running the program's main, then exit 0");
ABSL_FLAG(int, v, 0,
          "glog: show VLOG(n) messages for n up to this level (above 0 also "
          "shows INFO messages)");
ABSL_FLAG(std::string, vmodule, "",
          "glog: per-module verbose levels, comma-separated <module>=<level> "
          "(a module is a file name without extension; * and ? match)");

namespace tractor::internal {
namespace {

constexpr const char* kValueFlags[] = {
    "name",          "bind",     "registry",
    "enable_modules", "loglevel", "lease_ms", "busy_wait_us",
    "registry_etcd", "registry_etcd_prefix",
    "v",             "vmodule"};
constexpr const char* kBoolFlags[] = {"daemon"};

bool IsIn(absl::string_view name, const char* const* begin,
          const char* const* end) {
  return std::find_if(begin, end, [&](const char* n) { return name == n; }) !=
         end;
}

bool IsValueFlag(absl::string_view name) {
  return IsIn(name, std::begin(kValueFlags), std::end(kValueFlags));
}
bool IsBoolFlag(absl::string_view name) {
  return IsIn(name, std::begin(kBoolFlags), std::end(kBoolFlags));
}

absl::Status BadFlag(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", why));
}

// Sets flag `name` from `value` through absl's own parser for its type.
absl::Status SetFlag(absl::string_view name, absl::string_view value) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return BadFlag(name, "not linked into this program");
  std::string error;
  if (!flag->ParseFrom(value, &error)) {
    return BadFlag(name, absl::StrCat("bad value '", value, "': ", error));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AddressFlag(absl::string_view name,
                                                     const std::string& text) {
  auto addrs = discovery::ParseAddressList(text);
  if (!addrs.ok()) return BadFlag(name, addrs.status().message());
  std::vector<std::string> out;
  for (const auto& a : *addrs) out.push_back(a.ToString());
  return out;
}

RuntimeFlags& Given() {
  static RuntimeFlags* flags = new RuntimeFlags;
  return *flags;
}

}  // namespace

absl::StatusOr<RuntimeFlags> TakeRuntimeFlags(int* argc, char** argv) {
  RuntimeFlags out;
  std::set<std::string> given;
  int kept = 1;
  int i = 1;
  for (; i < *argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;  // the rest belongs to the program
    if (arg.size() < 2 || arg[0] != '-') {
      argv[kept++] = argv[i];
      continue;
    }
    absl::string_view body = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    absl::string_view name = body;
    std::optional<absl::string_view> value;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    if (name == "helpfull" && !value) {
      out.help = true;
      continue;
    }
    if (IsBoolFlag(name)) {
      absl::Status st = SetFlag(name, value ? *value : "true");
      if (!st.ok()) return st;
      given.insert(std::string(name));
      continue;
    }
    if (absl::StartsWith(name, "no") && IsBoolFlag(name.substr(2))) {
      if (value) return BadFlag(name, "a negated flag takes no value");
      absl::Status st = SetFlag(name.substr(2), "false");
      if (!st.ok()) return st;
      given.insert(std::string(name.substr(2)));
      continue;
    }
    if (!IsValueFlag(name)) {
      argv[kept++] = argv[i];
      continue;
    }
    if (!value) {
      if (i + 1 >= *argc) return BadFlag(name, "missing value");
      value = argv[++i];
    }
    absl::Status st = SetFlag(name, *value);
    if (!st.ok()) return st;
    given.insert(std::string(name));
  }
  for (; i < *argc; ++i) argv[kept++] = argv[i];
  *argc = kept;
  argv[kept] = nullptr;

  auto has = [&](const char* name) { return given.count(name) > 0; };
  if (has("name")) {
    out.name = absl::GetFlag(FLAGS_name);
    if (out.name->empty()) return BadFlag("name", "must not be empty");
  }
  if (has("bind")) {
    auto addrs = AddressFlag("bind", absl::GetFlag(FLAGS_bind));
    if (!addrs.ok()) return addrs.status();
    out.bind_addrs = *std::move(addrs);
  }
  if (has("registry")) {
    auto addrs = AddressFlag("registry", absl::GetFlag(FLAGS_registry));
    if (!addrs.ok()) return addrs.status();
    out.registry_addrs = *std::move(addrs);
  }
  if (has("enable_modules")) {
    out.enable_modules = absl::GetFlag(FLAGS_enable_modules);
    for (const auto& m : *out.enable_modules) {
      if (m.empty() || absl::StrContains(m, ':')) {
        return BadFlag("enable_modules",
                       absl::StrCat("bad namespace '", m, "'"));
      }
    }
  }
  if (has("loglevel")) {
    out.loglevel = absl::GetFlag(FLAGS_loglevel);
    if (auto st = discovery::ParseLogLevel(*out.loglevel).status(); !st.ok()) {
      return BadFlag("loglevel", st.message());
    }
  }
  if (has("lease_ms")) {
    const int64_t ms = absl::GetFlag(FLAGS_lease_ms);
    if (ms <= 0) {
      return BadFlag("lease_ms",
                     absl::StrCat("must be a positive integer, got ", ms));
    }
    out.lease = absl::Milliseconds(ms);
  }
  if (has("busy_wait_us")) {
    const int64_t us = absl::GetFlag(FLAGS_busy_wait_us);
    const int64_t max_us = absl::ToInt64Microseconds(kMaxBusyWait);
    if (us < 0 || us > max_us) {
      return BadFlag("busy_wait_us", absl::StrCat("must be 0 to ", max_us,
                                                  " microseconds, got ", us));
    }
    out.busy_wait = absl::Microseconds(us);
  }
  if (has("registry_etcd")) {
    auto addrs =
        AddressFlag("registry_etcd", absl::GetFlag(FLAGS_registry_etcd));
    if (!addrs.ok()) return addrs.status();
    if (addrs->empty()) return BadFlag("registry_etcd", "no endpoint given");
    out.registry_etcd = *std::move(addrs);
  }
  if (has("registry_etcd_prefix")) {
    out.registry_etcd_prefix = absl::GetFlag(FLAGS_registry_etcd_prefix);
    if (out.registry_etcd_prefix->empty()) {
      return BadFlag("registry_etcd_prefix", "must not be empty");
    }
  }
  if (has("v")) {
    out.v = absl::GetFlag(FLAGS_v);
    if (*out.v < 0) return BadFlag("v", "must not be negative");
  }
  if (has("vmodule")) {
    out.vmodule = absl::GetFlag(FLAGS_vmodule);
    for (absl::string_view item :
         absl::StrSplit(*out.vmodule, ',', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(item, absl::MaxSplits('=', 1));
      int level = 0;
      if (kv.first.empty() || !absl::SimpleAtoi(kv.second, &level)) {
        return BadFlag("vmodule", absl::StrCat("expected <module>=<level>, "
                                               "got '", item, "'"));
      }
    }
  }
  out.daemon = has("daemon") && absl::GetFlag(FLAGS_daemon);
  return out;
}

std::string FlagsHelp(const char* argv0) {
  // By defining file, then by name, as absl's own --helpfull does.
  std::map<std::string, std::map<std::string, absl::CommandLineFlag*>> files;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Abseil's own (--flagfile, --fromenv, ...) are not read here.
    if (absl::StrContains(flag->Filename(), "absl/flags/")) continue;
    files[flag->Filename()][std::string(name)] = flag;
  }
  std::string out = absl::StrCat(
      argv0,
      ": the actor runtime's flags; every other argument is left to the "
      "program.\n");
  for (const auto& [file, flags] : files) {
    absl::StrAppend(&out, "\n  Flags from ", file, ":\n");
    for (const auto& [name, flag] : flags) {
      absl::StrAppend(&out, "    --", name, " (", flag->Help(),
                      "); default: ", flag->DefaultValue(), ";\n");
    }
  }
  return out;
}

void SetGivenRuntimeFlags(RuntimeFlags flags) { Given() = std::move(flags); }

const RuntimeFlags& GivenRuntimeFlags() { return Given(); }

}  // namespace tractor::internal
