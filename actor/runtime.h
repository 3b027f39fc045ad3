// SPDX-License-Identifier: AGPL-3.0-or-later
// The actor runtime of one process: entry point, root actor and identity.
//
//   int main(int argc, char** argv) {
//     return tractor::Main(argc, argv, [] {
//       tractor::OpenRootActor({}, [] { ... });
//       return 0;
//     });
//   }
#ifndef TRACTOR_ACTOR_RUNTIME_H_
#define TRACTOR_ACTOR_RUNTIME_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "discovery/credentials.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

// An etcd cluster that holds the registrations of a registrar a root
// serves (docs/registry.md): `RootOptions::registry_etcd`.
struct RegistryEtcd {
  // The cluster's client endpoints, "host:port". Empty: the comma-separated
  // list in TRACTOR_REGISTRY_ETCD; when that is unset too, the registrar
  // keeps its registrations in its own memory (the default).
  std::vector<std::string> endpoints;
  // The prefix of every key. Empty: TRACTOR_REGISTRY_ETCD_PREFIX, else
  // "/tractor/". Registrars share a registry when they name the same
  // cluster and prefix.
  std::string prefix;
  // TLS to etcd: the CA that signs the members' certificates and this
  // client's certificate and key (PEM files). Empty: TRACTOR_REGISTRY_ETCD_CA,
  // TRACTOR_REGISTRY_ETCD_CERT, TRACTOR_REGISTRY_ETCD_KEY; plaintext when
  // none is set. Separate from `RootOptions::tls`.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// Options of the root actor.
struct RootOptions {
  std::string name = "root";
  // Namespaces the root serves.
  std::vector<std::string> enable_modules;
  // Addresses the root binds, in any form of discovery/address.h
  // ("127.0.0.1:0", "[::1]:0", "unix:/path", "/ip4/.../tcp/0", ...). Empty:
  // one random loopback TCP port (plus, when it registers with a registrar
  // on another host, a random port on the interface that reaches it).
  std::vector<std::string> bind_addrs;
  // Registrar addresses (same forms). Empty: the comma-separated list in
  // the environment variable TRACTOR_REGISTRY, else the well-known
  // `kDefaultRegistry` (127.0.0.1:1616), so that independent programs on
  // one host meet there. They are probed concurrently at boot: the root uses
  // those where a registrar answers; if none answers it becomes the
  // registrar and binds them too (with `bind_addrs`); if one is held by a
  // listener that is not a registrar, boot fails with RuntimeFailure naming
  // it. A root registered with registrars that all stop answering takes
  // over: the first to bind the registry addresses serves the registrar
  // there, and the others re-register with it. Children inherit the
  // registry list.
  std::vector<std::string> registry_addrs;
  // Lease of this tree's registrations: an actor that dies without
  // unregistering (SIGKILL) disappears from the registry within it. Zero:
  // the registrar's default (5 s; an embedded registrar uses this value as
  // its default). Children inherit it.
  absl::Duration registry_lease = absl::ZeroDuration();
  // Where the registrar this root serves (when it becomes the registrar at
  // boot, or takes the default registry over later) keeps its
  // registrations: an etcd cluster shared with other registrars, so that
  // they survive this process and any number of registrars in front of the
  // cluster serve the same registry (docs/registry.md). Unset: memory (or
  // the TRACTOR_REGISTRY_ETCD* environment variables). A configuration that
  // does not load fails `OpenRootActor` with RuntimeFailure; a cluster that
  // does not answer does not (the registrar answers UNAVAILABLE until it
  // does). Only a root serves a registrar: children do not use it.
  RegistryEtcd registry_etcd;
  // Log level for the tree, a name of discovery/log_level.h ("error" by
  // default; "cancel" shows who cancelled what); children inherit it and
  // TRACTOR_LOGLEVEL overrides it (docs/debugging.md).
  std::string loglevel;
  // One user task at a time (default), or free-running threads.
  bool single_task = true;
  // Also listen on a unix socket private to this user, used by actors of
  // the same host (same boot and network namespace) instead of TCP.
  bool same_host_socket = true;
  // Most remote tasks (dialogs and calls) this actor runs at once; beyond
  // it a `Start` is refused at once with `ActorTooBusy` (RESOURCE_EXHAUSTED
  // on the unary `Actor/Call`). 0: the default, 1024.
  size_t max_tasks = 0;
  // A child that stops answering (stopped, wedged, its host gone) fails its
  // nursery with ActorFailure ("unresponsive") within this long, like a
  // child that crashed (docs/reliability.md#a-hung-child). A child busy in
  // user code is never taken for hung: gRPC's own threads answer the
  // pings. Zero: the default, 3 s. Children inherit it;
  // TRACTOR_TIMEOUT_SCALE stretches it.
  absl::Duration hang_timeout = absl::ZeroDuration();
  // How long each process of the tree keeps a CPU awake after its own I/O
  // (a send, a reply, a message received), so that the answer wakes a
  // thread on a running CPU rather than an idle one: one thread per
  // process spins for this long, yielding its CPU to any thread that wants
  // it and backing off a busy machine (docs/architecture.md,
  // "Performance").
  // Unset: TRACTOR_BUSY_WAIT_US (microseconds), else 200 us. Zero: off.
  // Children inherit it; up to 1 s.
  std::optional<absl::Duration> busy_wait;
  // Transport security of the whole tree (docs/security.md): the CA,
  // certificate and key files, and whether servers require client
  // certificates (mutual TLS). Empty: the TRACTOR_TLS_* environment
  // variables (discovery/credentials.h), and plaintext when none is set.
  // Every server and channel of the tree uses it; children inherit the
  // paths. A missing or unreadable file, a key that does not match its
  // certificate, an expired certificate or one not signed by the CA fails
  // `OpenRootActor` with RuntimeFailure naming the file and the problem.
  discovery::TlsConfig tls;
  // The mesh secret: a peer that presents it may call the control RPCs
  // (`CancelActor`, `CancelTask`, the registrar's `Register`, `Unregister`,
  // `DeleteAddr`). Empty: TRACTOR_SECRET, else the file TRACTOR_SECRET_FILE
  // names, else a random secret of this root. Children inherit it;
  // independent programs that share a registrar must share it.
  std::string secret;
  // Debug mode (docs/debugging.md, "The debugger"): `Pause()` works, and an
  // error escaping a task stops its actor in gdb on the root's terminal
  // before it travels up the tree (an error the root's own block raised
  // stops the root before OpenRootActor rethrows it); the root serves the
  // tree-wide terminal lock. TRACTOR_DEBUG=1 in the environment turns it on too. Children
  // inherit it.
  bool debug_mode = false;
};

// The registry address a root uses when neither RootOptions, --registry
// nor TRACTOR_REGISTRY names one.
inline constexpr char kDefaultRegistry[] = "127.0.0.1:1616";

// The program's entry point. Call it first thing in `main`.
//
// A spawned child actor never returns from it: it runs the child runtime,
// configured by its spawn spec alone (no flag is passed to it or read), and
// exits. In a root process it first takes the runtime's own flags out of
// `argc`/`argv` (see below), leaving every other argument in order (a test
// framework's flags, the program's own, `--` and everything after it);
// then it runs `root_main` and returns its exit code.
//
// Runtime flags (absl flags; --helpfull lists them with glog's):
//   --name=NAME            root actor name
//   --bind=ADDR,...        addresses the root binds
//   --registry=ADDR,...    registrar addresses
//   --enable_modules=NS,...  namespaces served
//   --loglevel=LEVEL       log level of the tree
//   --lease_ms=MS          lease of the tree's registrations
//   --registry_etcd=H:P,...  etcd endpoints of a registrar the root serves
//   --registry_etcd_prefix=P  its key prefix
//   --v=N, --vmodule=M=N   glog verbosity
//   --daemon               serve this program's exported functions until
//                          SIGTERM or SIGINT instead of running root_main
// Given flags override the corresponding RootOptions fields of every root
// actor the program opens. A bad runtime flag prints one line to stderr and
// exits with status 2.
//
// With --daemon, `root_main` is not run: the root actor (named after the
// program's file unless --name is given, serving every namespace the
// program exports unless --enable_modules is given) prints
//   <name> <uuid> listening on <addr>,<addr>...
// to stdout and serves until SIGTERM or SIGINT (or Portal::CancelActor),
// then cancels its tasks gracefully and exits 0. It exits 1 with one line
// when it cannot boot (an address it cannot bind, a registry address held
// by something else), 2 on any argument that is not a runtime flag.
int Main(int& argc, char** argv, const std::function<int()>& root_main);

// Starts this process's root actor, runs `fn` as its first task and tears
// the actor down when `fn` returns or throws (rethrown). Throws
// RuntimeFailure when a runtime already exists in this process.
void OpenRootActor(const RootOptions& options, const std::function<void()>& fn);

// The identity of the actor this process runs. Throws NoRuntime without one.
const v1::Aid& CurrentActor();
// The addresses this actor accepts on. Throws NoRuntime without one.
std::vector<std::string> AcceptAddrs();
// True when this process runs an actor.
bool HasRuntime();
// True when this process runs the root actor of its tree (tractor's
// `is_root_process()`); false in a spawned child and without a runtime.
bool IsRootProcess();
// The registrar addresses this actor registers with and looks names up in
// (inherited by its children). Throws NoRuntime without one.
std::vector<std::string> RegistryAddrs();
// True when this actor serves the registrar (the embedded default).
// Throws NoRuntime without a runtime.
bool IsRegistrar();

// The log level this actor was started with ("error" when none was set).
// Throws NoRuntime without a runtime.
std::string CurrentLogLevel();

// Registers `fn` to run when this actor exits, whether it ends normally, on
// an error or on a cancel (tractor's actor-lifetime exit stack). Callbacks
// run in reverse order of registration; an exception from one is logged.
// Throws NoRuntime without a runtime.
void AddLifetimeCallback(std::function<void()> fn);

// The stacks of one actor, as `DumpTreeStacks` gathers them.
struct ActorStacks {
  v1::Aid aid;
  // Every thread's stack, symbolized, each thread labelled with the task it
  // runs (what SIGUSR1 prints).
  std::string text;
  // Why `text` is missing (the actor did not answer), else empty.
  std::string error;
};

// Gathers every thread's stack of this actor and of every actor below it
// (`Actor.Stacks` with `tree`, asked of each child, each given `per_child`
// to answer), this actor first. For diagnosing a hung tree from the root
// without attaching a debugger. Blocks (not a checkpoint). Throws NoRuntime
// without a runtime.
std::vector<ActorStacks> DumpTreeStacks(
    absl::Duration per_child = absl::Seconds(10));

// True when this actor runs in debug mode (`RootOptions::debug_mode`,
// inherited by every actor of the tree). False without a runtime.
bool DebugMode();

// Stops the calling task in gdb at the call site, on the root's terminal,
// as tractor's `pause()`: takes the tree-wide terminal lock from the root
// (waiting behind other actors' stops), forks `gdb -p <this pid>` with the
// frame that called Pause() selected, and returns when the user continues
// (gdb detaches). The actor's other threads stop with it; its parent
// counts no missing heartbeat against it meanwhile. An actor on another
// host than the root prints how to attach (`gdb -p PID` on its host) and
// waits for a debugger to attach and detach. Throws UsageError outside
// debug mode, NoRuntime without a runtime. A checkpoint while it waits for
// the lock: a cancel of the calling task's scope withdraws its request and
// throws Cancelled; once stopped in gdb, it returns only on continue.
void Pause();

// Returns true when this actor already verified (by an `Actor.Info` answer)
// that the actor `uuid` serves `addr`, over a connection that is still up,
// so no other process can have taken the address since. False with no
// runtime. Discovery uses it to skip a redundant identity check.
bool KnowsLiveActorAt(const std::string& addr, const std::string& uuid);

}  // namespace tractor

#endif  // TRACTOR_ACTOR_RUNTIME_H_
