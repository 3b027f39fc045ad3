// SPDX-License-Identifier: AGPL-3.0-or-later
// Process bookkeeping for one spawned child actor.
#ifndef TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_
#define TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"

namespace tractor::internal {

// One spawned child process: written by the reaper (exit), the link
// reactor (linked, link lost, boot error) and read by the nursery.
// Thread-safe through `mu`; `cv` is signalled on every change. Shared by the
// nursery's entry, the runtime's child table and the portal.
struct ChildProc {
  pid_t pid = -1;  // set once, before the child is shared
  // The read end of the child's crash pipe (-1: none); set once, before
  // the child is shared, and read and closed by the reaper.
  int crash_fd = -1;
  // The per-spawn secret its `Link` must present; set before it is shared.
  std::string link_secret;
  Mutex mu;
  CondVar cv;
  bool exited ABSL_GUARDED_BY(mu) = false;
  int wait_status ABSL_GUARDED_BY(mu) = 0;
  bool linked ABSL_GUARDED_BY(mu) = false;
  // The parent's answer to the child's hello (`accepted`) was written: the
  // child gets it even if this process stops right after. The spawn is
  // complete only then.
  bool link_confirmed ABSL_GUARDED_BY(mu) = false;
  bool link_lost ABSL_GUARDED_BY(mu) = false;
  // The child said it is exiting on purpose (`LinkBye`) before its link
  // ended.
  bool said_bye ABSL_GUARDED_BY(mu) = false;
  // Called once, on a gRPC thread and without `mu`, when the link ends
  // while the child has neither exited nor said bye: it may be hung (the
  // parent's server dropped a connection that stopped answering pings).
  // Must not block. Empty: nobody supervises the child.
  std::function<void()> on_link_lost ABSL_GUARDED_BY(mu);
  std::vector<std::string> accept_addrs ABSL_GUARDED_BY(mu);
  // The child's same-host socket, when it runs on this host; else empty.
  std::string local_addr ABSL_GUARDED_BY(mu);
  // Where this actor's portal to the child connects: its same-host socket
  // when it has one, else its preferred accept address; set when it links.
  std::string portal_addr ABSL_GUARDED_BY(mu);
  std::string boot_error ABSL_GUARDED_BY(mu);
  // What the child's crash handler wrote before it died (set with `exited`).
  std::string crash_report ABSL_GUARDED_BY(mu);
  // Whether the abnormal exit was recorded as a failure already (by the
  // reaper or by a result waiter that saw the transport break).
  bool exit_reported ABSL_GUARDED_BY(mu) = false;
  // Debug mode: the child said on its link that it is in the debugger
  // (`LinkMsg.debug_hold`), and when it was last heard from (a heartbeat or
  // a debug_hold message).
  bool in_debugger ABSL_GUARDED_BY(mu) = false;
  absl::Time last_heard ABSL_GUARDED_BY(mu) = absl::InfinitePast();
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_
