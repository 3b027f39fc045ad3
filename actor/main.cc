// SPDX-License-Identifier: AGPL-3.0-or-later
// The program's entry point: tractor::Main and its --daemon mode.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/internal/child_main.h"
#include "actor/internal/flags.h"
#include "actor/internal/log_setup.h"
#include "actor/internal/runtime.h"
#include "actor/internal/signals.h"
#include "actor/internal/spawn.h"
#include "actor/internal/thread_pool.h"
#include "actor/runtime.h"
#include "discovery/allocator.h"
#include "discovery/log_level.h"
#include "glog/logging.h"
#include "grpc/support/log.h"

namespace tractor {

namespace {

std::string ProgramName(const char* argv0) {
  std::string name = argv0 != nullptr ? argv0 : "tractor";
  if (size_t slash = name.rfind('/'); slash != std::string::npos) {
    name = name.substr(slash + 1);
  }
  return name.empty() ? "tractor" : name;
}

// gRPC's own log lines (a failed bind, a dropped connection) go to glog at
// INFO, shown from --loglevel=info on, instead of straight to stderr: the
// runtime reports what matters itself, in one line.
void LogGrpcThroughGlog(gpr_log_func_args* args) {
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) return;
  LOG(INFO) << "grpc " << args->file << ":" << args->line << ": "
            << args->message;
}

// Main's --daemon mode: the root actor serves until SIGTERM or SIGINT.
int RunDaemon(const std::string& program, int argc, char** argv) {
  if (argc > 1) {
    fprintf(stderr,
            "%s: unexpected argument '%s' (--daemon takes runtime flags "
            "only; see --helpfull)\n",
            program.c_str(), argv[1]);
    return 2;
  }
  // SIGTERM goes to one watcher thread: blocked here, before the runtime
  // starts any thread, so that every thread inherits the mask.
  internal::BlockSignals({SIGTERM});
  RootOptions options;
  options.name = program;
  for (const std::string& name : internal::EndpointNames()) {
    std::string ns = name.substr(0, name.find(':'));
    if (std::find(options.enable_modules.begin(), options.enable_modules.end(),
                  ns) == options.enable_modules.end()) {
      options.enable_modules.push_back(ns);
    }
  }
  try {
    OpenRootActor(options, [] {
      internal::Runtime& rt = internal::Runtime::Require();
      internal::SigtermWatch watch([&rt] { rt.RequestExit("SIGTERM"); });
      printf("%s %s listening on %s\n", rt.self().name().c_str(),
             rt.self().uuid().c_str(),
             absl::StrJoin(rt.accept_addrs(), ",").c_str());
      fflush(stdout);
      try {
        Sleep(absl::InfiniteDuration());
      } catch (const Cancelled&) {
        // SIGTERM, or Portal::CancelActor: the graceful exit.
      }
    });
  } catch (const KeyboardInterrupt&) {
    return 0;  // SIGINT: the tree was cancelled gracefully
  } catch (const std::exception& e) {
    fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return 1;
  }
  return 0;
}

}  // namespace

int Main(int& argc, char** argv, const std::function<int()>& root_main) {
  discovery::TuneAllocatorForMessages();
  // Debian's Abseil checks every absl::Mutex acquisition for lock-order
  // cycles (a debugging aid that gRPC's own locks pay for on every call);
  // an actor process runs without it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  gpr_set_log_function(LogGrpcThroughGlog);
  if (std::optional<v1::SpawnSpec> spec = internal::TakeSpawnSpec()) {
    discovery::SetLogActor(spec->aid().name(), spec->aid().uuid());
    discovery::InitLogging(argc > 0 ? argv[0] : "tractor");
    const int rc = internal::ChildMain(*spec);
    internal::QuiescePoolForExit();
    _exit(rc);
  }
  const std::string program = ProgramName(argc > 0 ? argv[0] : nullptr);
  if (argc > 0) {
    absl::StatusOr<internal::RuntimeFlags> flags =
        internal::TakeRuntimeFlags(&argc, argv);
    if (!flags.ok()) {
      fprintf(stderr, "%s: %s\n", program.c_str(),
              std::string(flags.status().message()).c_str());
      fflush(stderr);
      std::exit(2);
    }
    if (flags->help) {
      fputs(internal::FlagsHelp(argv[0]).c_str(), stdout);
      fflush(stdout);
      std::exit(0);
    }
    internal::SetGivenRuntimeFlags(*std::move(flags));
  }
  static bool glog_ready = false;
  if (!glog_ready) {
    glog_ready = true;
    discovery::InitLogging(argc > 0 ? argv[0] : "tractor");
    internal::ApplyLogLevel("");
    internal::ApplyVerbosityFlags();
  }
  if (internal::GivenRuntimeFlags().daemon) {
    const int rc = RunDaemon(program, argc, argv);
    // gRPC's own threads may outlive the runtime: no static destructors.
    fflush(stdout);
    fflush(stderr);
    internal::QuiescePoolForExit();
    _exit(rc);
  }
  try {
    return root_main();
  } catch (const KeyboardInterrupt&) {
    // Exit the way an interrupted program does: by SIGINT.
    fprintf(stderr, "KeyboardInterrupt\n");
    fflush(stderr);
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return 130;
  } catch (const std::exception& e) {
    // A runtime error the program did not handle (a root that cannot boot,
    // a bad option): one line and status 1, not an abort.
    fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    fflush(stderr);
    return 1;
  }
}

}  // namespace tractor
