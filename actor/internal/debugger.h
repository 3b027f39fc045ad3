// SPDX-License-Identifier: AGPL-3.0-or-later
// Debug mode's tree-wide terminal lock and the entry into the debugger
// (docs/debugging.md, "The debugger").
//
// The root actor serves the lock (`Actor.DebugLock`, `TtyLock`); an actor
// that stops in the debugger (`tractor::Pause()`, or the post-mortem of a
// task's error) tells its parent on its link that it is in the debugger,
// takes the lock from the root, stops in gdb on the root's terminal
// (devx/debugger.h), then releases the lock and tells its parent it left.
#ifndef TRACTOR_ACTOR_INTERNAL_DEBUGGER_H_
#define TRACTOR_ACTOR_INTERNAL_DEBUGGER_H_

#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"

namespace tractor::internal {

class Runtime;

// The root's terminal lock: granted to one requester at a time, in the
// order of the requests. Thread-safe. One per process (`Process()`): only
// the root's is ever taken.
class TtyLock {
 public:
  using Ticket = uint64_t;

  static TtyLock& Process();

  // Queues a request by `who`; `on_grant` runs once (on the thread that
  // requested, when the lock is free, or on the releasing thread), without
  // the lock's mutex held, when the request reaches the head of the queue.
  Ticket Request(std::string who, std::function<void()> on_grant)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Releases the lock held by `ticket`, or withdraws the request when it is
  // still waiting; unknown tickets are ignored. Grants the next request.
  void Release(Ticket ticket) ABSL_LOCKS_EXCLUDED(mu_);
  // True while some request holds the lock.
  bool Held() const ABSL_LOCKS_EXCLUDED(mu_);
  // Who holds it ("" when free).
  std::string Holder() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    Ticket ticket;
    std::string who;
    std::function<void()> on_grant;
  };

  mutable Mutex mu_;
  std::deque<Waiter> queue_ ABSL_GUARDED_BY(mu_);  // front: the holder
  Ticket next_ ABSL_GUARDED_BY(mu_) = 1;
};

// The root's side of `Actor.DebugLock` (FAILED_PRECONDITION in any actor
// but the root).
grpc::ServerBidiReactor<v1::DebugLockMsg, v1::DebugLockMsg>*
NewDebugLockReactor(Runtime* rt, grpc::CallbackServerContext* ctx);

// How a child actor tells its parent on its link that it entered (true) or
// left (false) the debugger; set by ChildMain, unset in the root.
void SetDebugHoldAnnouncer(std::function<void(bool)> announce);

// Takes the tree-wide lock and stops the calling thread in gdb (see the
// file comment). `reason` heads the banner; `select_caller_of` is the
// function whose caller gdb selects. Blocks until the user continues.
// Logs and returns when the root cannot be reached.
//
// The wait for the lock is a checkpoint: when the calling thread's scope is
// cancelled while another actor holds the lock, the request is withdrawn
// from the root's queue and `Cancelled` is thrown (the post-mortem waits in
// a shielded scope instead). Once the lock is granted, the stop in gdb is
// not interrupted.
void EnterDebugger(const std::string& reason,
                   const std::string& select_caller_of,
                   const std::string& details = "");

// In debug mode, makes an error that escapes a task, or the root actor's
// block, stop the actor in the debugger before it is boxed
// (devx::SetPostMortemHook), unless `ExaminedWhereRaised`.
void InstallPostMortem();

// True for an error that the post-mortem skips because it was not raised by
// this actor's own code or was examined where it was: a cancellation, an
// error relayed from another actor (`RemoteActorError`, `ActorFailure`), or
// an `ActorErrorGroup` made only of such errors.
bool ExaminedWhereRaised(const std::exception_ptr& error);

// Runs the root actor's block `fn`. In debug mode an error escaping it that
// the root's own code raised stops the root in the debugger, under the
// tree-wide lock, before it is rethrown (the post-mortem hook above; once
// per exception object, as for OpenCrashHandler).
void RunRootBlock(const std::function<void()>& fn);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_DEBUGGER_H_
