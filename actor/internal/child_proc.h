// Process bookkeeping for one spawned child actor.
#ifndef TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_
#define TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace tractor::internal {

// One spawned child process: written by the reaper (exit), the link
// reactor (linked, link lost, boot error) and read by the nursery.
// Thread-safe through `mu`; `cv` is notified on every change. Shared by the
// nursery's entry, the runtime's child table and the portal.
struct ChildProc {
  pid_t pid = -1;  // set once, before the child is shared
  std::mutex mu;
  std::condition_variable_any cv;
  bool exited = false;                    // guarded by mu
  int wait_status = 0;                    // guarded by mu
  bool linked = false;                    // guarded by mu
  bool link_lost = false;                 // guarded by mu
  std::vector<std::string> accept_addrs;  // guarded by mu
  // The child's same-host socket, when it runs on this host; else empty.
  std::string local_addr;                 // guarded by mu
  std::string boot_error;                 // guarded by mu
};

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_CHILD_PROC_H_
