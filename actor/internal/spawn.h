// SPDX-License-Identifier: AGPL-3.0-or-later
// Starting child actor processes: the program re-executes its own binary
// with the child's SpawnSpec in the environment
// (docs/design.md#spawning-by-re-exec).
#ifndef TRACTOR_ACTOR_INTERNAL_SPAWN_H_
#define TRACTOR_ACTOR_INTERNAL_SPAWN_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "discovery/credentials.h"
#include "tractor/v1/actor.pb.h"

namespace tractor::internal {

// The environment variable that carries a child's SpawnSpec (web-safe
// base64 of the serialized message).
inline constexpr char kSpawnSpecEnv[] = "TRACTOR_SPAWN_SPEC";

// A program that children are started through, for profiling and
// debugging them (e.g. a script running `valgrind "$1"`): when set, a child
// is exec'd as `<wrapper> <path of this program>`, with the same
// environment. The wrapper must exec the program in its own place (same
// pid), as valgrind does. Read at each spawn.
inline constexpr char kChildWrapperEnv[] = "TRACTOR_CHILD_WRAPPER";

// The exit status of a child that exits because its link to its parent
// broke (not because it was cancelled): the parent's nursery, if it is
// still there and did not cancel the child, reports it as a failure instead
// of taking it for a daemon that ended on purpose.
inline constexpr int kLinkLostExitStatus = 3;

// A spawned child: its pid and the read end of its crash pipe.
struct SpawnedProcess {
  pid_t pid = -1;
  // Non-blocking, close-on-exec; owned by the caller, who reads the
  // child's crash report there after reaping it (ReadCrashReport). -1 when
  // the pipe could not be made (the child then runs without one).
  int crash_fd = -1;
};

// Spawns `/proc/self/exe` as a child actor with `spec` (its `crash_fd` is
// set here: the write end of a new crash pipe, inherited by the child
// alone); returns the pid and the pipe's read end, or throws
// RuntimeFailure. The child gets PR_SET_PDEATHSIG(SIGKILL) against the
// spawning thread, which is one long-lived thread of this process.
// Thread-safe.
SpawnedProcess SpawnProcess(v1::SpawnSpec spec);

// Reads what a reaped child wrote to its crash pipe (at most 1 MiB; "" when
// nothing) and closes `fd`. Never blocks.
std::string ReadCrashReport(int fd);

// In a spawned child: the SpawnSpec from the environment (which is then
// removed from it), or nullopt in a process that was not spawned as an
// actor. Exits the process with status 2 when the variable is malformed.
std::optional<v1::SpawnSpec> TakeSpawnSpec();

// Copies the file paths of `tls` and `secret` into `spec` (what a child
// inherits: paths, never key material).
void SetInheritedSecurity(const discovery::TlsConfig& tls,
                          const std::string& secret, v1::SpawnSpec* spec);

// The TLS configuration a `SpawnSpec` names.
discovery::TlsConfig TlsConfigOf(const v1::TlsFiles& files);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_SPAWN_H_
