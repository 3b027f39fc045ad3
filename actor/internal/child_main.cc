// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/child_main.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/internal/debugger.h"
#include "actor/internal/log_setup.h"
#include "actor/internal/parent_link.h"
#include "actor/internal/runtime.h"
#include "actor/internal/signals.h"
#include "actor/internal/wire.h"
#include "devx/crash_handler.h"
#include "discovery/log_level.h"
#include "actor/internal/spawn.h"
#include "actor/internal/thread_pool.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "discovery/credentials.h"
#include "discovery/mutex.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "discovery/thread_name.h"

namespace tractor::internal {

namespace {
constexpr char kParentLinkLost[] = "parent link lost";
// How long the exit waits for its bye to leave on the link, and then for
// the link to end.
constexpr absl::Duration kByeWait = absl::Seconds(2);
}  // namespace

int ChildMain(const v1::SpawnSpec& spec) {
  // SIGTERM is a request to exit, taken by one watcher thread (below): it
  // is blocked before this process starts any thread, so that every thread
  // inherits the mask. A thread with SIGTERM unblocked (the stack-dump
  // thread, started next, once was) takes it with the default action: the
  // process dies at once, without its graceful exit.
  BlockSignals({SIGTERM});
  // `ps`, `top` and `perf` show the actor's name (first 15 bytes); threads
  // started from here on inherit it.
  prctl(PR_SET_NAME, spec.aid().name().substr(0, 15).c_str());
  // The crash pipe stays with this process: its own children get theirs.
  if (spec.crash_fd() > 0) fcntl(spec.crash_fd(), F_SETFD, FD_CLOEXEC);
  devx::SetProcessLabel(absl::StrCat("actor '", spec.aid().name(), "' ",
                                     spec.aid().uuid().substr(0, 8)));
  // Prepared by the connector thread below, while this one boots.
  devx::InstallCrashHandler(spec.crash_fd() > 0 ? spec.crash_fd() : -1,
                            devx::CrashHandlerPreparation::kByCaller);
  devx::InstallStackDumpOnSignal();
  ApplyLogLevel(spec.loglevel());
  // SIGINT goes to the whole foreground process group on ctrl-c; the root
  // handles it and cancels the tree, so children ignore it.
  signal(SIGINT, SIG_IGN);
  // SIGUSR1 too, so that it reaches the stack-dump thread started above
  // (the one thread left with it unblocked, asleep in sem_wait) rather
  // than whichever thread the kernel picks. Under ThreadSanitizer a handler
  // runs only when its thread next enters a call TSan intercepts: one
  // asleep in Abseil's futex wait (this thread, a parked task) could leave
  // the dump pending indefinitely.
  BlockSignals({SIGTERM, SIGUSR1});

  // The tree's transport security and mesh secret, inherited.
  absl::StatusOr<discovery::TlsMaterial> tls =
      discovery::LoadTls(TlsConfigOf(spec.tls()));
  if (!tls.ok()) {
    LOG(ERROR) << "actor '" << spec.aid().name()
               << "' failed to boot: " << tls.status().message();
    return 1;
  }
  discovery::InstallSecurity({*std::move(tls), spec.mesh_secret()});

  // Link to the parent: on its link server, through a connection of the
  // link's own (discovery::LinkChannelArgs: as patient with the parent as
  // the parent is with this child).
  //
  // The boot's connections, to the parent's link server and to each
  // registrar, are opened on a thread of their own (which then prepares the
  // crash handler) while this one starts the actor's server: their TCP and HTTP/2 handshakes, and gRPC's
  // client-side setup on a process's first channel, overlap the server's
  // start instead of following it. The registrar channels are the
  // process's shared ones, which the registration uses. The thread keeps
  // the actor's name: a gRPC thread it starts inherits that name, as it
  // would from this thread.
  std::shared_ptr<grpc::Channel> channel;  // written by `connector`
  std::string linked_at = spec.parent_addr();
  std::optional<discovery::Address> link_addr;
  if (auto parsed = discovery::Address::Parse(spec.link_addr()); parsed.ok()) {
    link_addr = *std::move(parsed);
    linked_at = spec.link_addr();
  }
  std::thread connector([&spec, &link_addr, &channel] {
    if (link_addr) {
      grpc::ChannelArguments args = discovery::LinkChannelArgs(
          spec.hang_timeout_ms(),
          // In debug mode the parent may be stopped in a debugger: no pings.
          /*keepalive=*/!spec.debug_mode());
      channel = grpc::CreateCustomChannel(
          link_addr->GrpcTarget(), discovery::ProcessChannelCredentials(),
          args);
      channel->GetState(/*try_to_connect=*/true);
    }
    for (const std::string& r : spec.registry_addrs()) {
      if (auto addr = discovery::Address::Parse(r); addr.ok()) {
        discovery::RegistrarChannel(*addr)->GetState(/*try_to_connect=*/true);
      }
    }
    // Then, while the handshakes travel, the crash handler's preparation
    // (mostly file reads), also off the boot's path.
    devx::PrepareCrashHandler();
  });
  // Joined once the runtime started (or failed to), and on every return.
  struct Joiner {
    std::thread& thread;
    ~Joiner() {
      if (thread.joinable()) thread.join();
    }
  } join_connector{connector};

  Runtime::Config config;
  config.self = spec.aid();
  config.parent = spec.parent();
  config.parent_addr = spec.parent_addr();
  config.bind_addrs.assign(spec.bind_addrs().begin(), spec.bind_addrs().end());
  config.registry_addrs.assign(spec.registry_addrs().begin(),
                               spec.registry_addrs().end());
  config.enable_modules.insert(spec.enable_modules().begin(),
                               spec.enable_modules().end());
  config.loglevel = spec.loglevel();
  config.root_addr = spec.root_addr();
  config.single_task = !spec.free_threads();
  config.max_tasks = spec.max_tasks();
  config.same_host_socket = !spec.no_same_host_socket();
  config.registry_lease = absl::Milliseconds(spec.lease_ms());
  config.hang_timeout = absl::Milliseconds(spec.hang_timeout_ms());
  config.debug_mode = spec.debug_mode();
  config.busy_wait = spec.no_busy_wait() ? absl::ZeroDuration()
                     : spec.busy_wait_us() == 0
                         ? kDefaultBusyWait
                         : absl::Microseconds(spec.busy_wait_us());
  auto rt = std::make_unique<Runtime>(config);
  Runtime::SetCurrent(rt.get());
  try {
    rt->Start();
  } catch (const std::exception& e) {
    LOG(ERROR) << "actor '" << spec.aid().name() << "' failed to boot: "
               << e.what();
    return 1;
  }
  connector.join();
  // Let go (not joined) just before the _exit below, or joined when
  // ChildMain returns early.
  SigtermWatch sigterm([r = rt.get()] { r->RequestExit("SIGTERM"); });

  if (!channel) channel = rt->ChannelTo(spec.parent_addr());
  const absl::Time link_start = absl::Now();
  // The link's completions are delivered by the accept queue's waiting
  // thread (actor/internal/parent_link.h): no thread of its own.
  ParentLink link(channel, rt->accept_queue());
  v1::LinkMsg hello;
  *hello.mutable_hello()->mutable_aid() = rt->self();
  for (const auto& a : rt->accept_addrs()) hello.mutable_hello()->add_accept_addrs(a);
  hello.mutable_hello()->set_protocol_version(kProtocolVersion);
  hello.mutable_hello()->set_local_addr(rt->local_addr());
  hello.mutable_hello()->set_host_id(discovery::HostId());
  hello.mutable_hello()->set_link_secret(spec.link_secret());
  v1::LinkMsg reply;
  bool wrote = false;
  const bool read = link.Exchange(hello, &reply, &wrote);
  if (!read || !reply.has_accepted()) {
    // A parent that refused the link (e.g. for another protocol version)
    // ended the stream with a status that says why; otherwise end it here.
    if (!wrote || read) link.Cancel();
    const grpc::Status status = link.Finish(absl::InfiniteFuture());
    LOG(ERROR) << "actor '" << spec.aid().name()
               << "' could not link to its parent at " << linked_at
               << " (after "
               << absl::FormatDuration(absl::Trunc(absl::Now() - link_start,
                                                   absl::Milliseconds(1)))
               << "): " << status.error_message();
    return 1;
  }
  TRACTOR_LOG(transport) << "link to parent '" << spec.parent().name()
                         << "' at " << spec.link_addr() << " up";
  link.StartReading([r = rt.get(), &spec] {
    TRACTOR_LOG(transport) << "link to parent '" << spec.parent().name()
                           << "' down";
    r->RequestExit(kParentLinkLost);
  });
  // Tells the parent that the end of the link is an exit, not a hang, and
  // ends the link: the last of the lifetime callbacks, run by Shutdown once
  // the tasks are over and before the accept queue is shut down (which
  // delivers the link's completions).
  std::string why;
  rt->AddLifetimeCallback([&link, &why] {
    v1::LinkMsg bye;
    bye.mutable_bye()->set_reason(why);
    link.Write(bye);
    link.Flush(absl::Now() + kByeWait);
    link.Cancel();
    link.Finish(absl::Now() + kByeWait);
  });
  // Writes on the link come from several threads (the debugger's
  // announcements, the heartbeats); the link queues them.
  auto write_link = [&link](const v1::LinkMsg& m) { link.Write(m); };
  // Debug mode: the parent's link server pings nobody (a child stopped in
  // the debugger could not answer); the child says it is alive instead,
  // every quarter of the hang timeout, and says when it enters and leaves
  // the debugger.
  Mutex heartbeat_mu;
  CondVar heartbeat_cv;
  bool heartbeat_stop = false;
  std::thread heartbeat;
  if (spec.debug_mode()) {
    SetDebugHoldAnnouncer([write_link](bool in_debugger) {
      v1::LinkMsg m;
      m.set_debug_hold(in_debugger);
      write_link(m);
    });
    const absl::Duration period = rt->config().hang_timeout / 4;
    heartbeat = std::thread([&, period] {
      discovery::NameThisThread("heartbeat");
      v1::LinkMsg beat;
      beat.mutable_heartbeat();
      MutexLock lock(&heartbeat_mu);
      while (!heartbeat_stop) {
        write_link(beat);
        heartbeat_cv.WaitWithTimeout(&heartbeat_mu, period);
      }
    });
  }

  why = rt->WaitForExitRequest();
  TRACTOR_LOG(cancel) << "actor '" << spec.aid().name() << "' "
                      << spec.aid().uuid() << " exiting: " << why;
  rt->Shutdown();
  if (heartbeat.joinable()) {
    {
      MutexLock lock(&heartbeat_mu);
      heartbeat_stop = true;
    }
    heartbeat_cv.SignalAll();
    heartbeat.join();
  }
  SetDebugHoldAnnouncer(nullptr);
  google::FlushLogFiles(google::GLOG_INFO);
  fflush(stdout);
  fflush(stderr);
  QuiescePoolForExit();
  sigterm.LeaveForExit();
  _exit(why == kParentLinkLost ? kLinkLostExitStatus : 0);
}

}  // namespace tractor::internal
