// SPDX-License-Identifier: AGPL-3.0-or-later
// A handle for calling into another actor.
#ifndef TRACTOR_ACTOR_PORTAL_H_
#define TRACTOR_ACTOR_PORTAL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "actor/context.h"
#include "actor/payload.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

namespace internal {
struct PortalState;
}  // namespace internal

struct ContextOptions {
  // The callee's receive queue for this dialog.
  StreamOptions callee_stream;
  // Types this side accepts in Started, Yield and Return; a payload of
  // another type raises MsgTypeError here and cancels the remote task.
  PayloadSpec pld_spec;
  // When the body returns without an error, cancel the remote task rather
  // than wait for its result (for a callee that serves until cancelled).
  // The cancel is this side's: `OpenContext` then returns the result if the
  // callee had already returned one, else null.
  bool cancel_on_exit = false;
  // This side's receive queue for the dialog's stream, when it is to be set
  // before the call: from the first item the callee sends, not from
  // `OpenStream`. A strict one (`StreamOptions::strict`) then bounds the
  // callee's items in flight from its first. `OpenStream()` without options
  // keeps it.
  std::optional<StreamOptions> caller_stream;
};

// A portal to one remote actor: its identity and a gRPC channel to it.
// Copyable; copies share state. Thread-safe. Calls block the calling task
// and are checkpoints.
class Portal {
 public:
  Portal() = default;
  explicit Portal(std::shared_ptr<internal::PortalState> state);

  // Returns a portal to the actor serving at `addr` (any address form,
  // see discovery/address.h). When `aid` is empty it is fetched with the
  // actor's `Info` RPC (bounded by `timeout`; TransportClosed if nothing
  // answers). Requires a runtime in this process.
  static Portal Connect(const std::string& addr, const v1::Aid& aid = {},
                        absl::Duration timeout = absl::Seconds(2));

  // Runs the plain function `func` ("ns:func") in the actor and returns its
  // result. A function exported with named parameters takes an object of
  // them, `Run("ns:f", {{"count", 3}, {"label", "x"}})`, or a list of them
  // in order. Throws RemoteActorError (or a subclass: ModuleNotExposed,
  // FunctionNotFound, MsgTypeError, ContextCancelled) for a remote failure,
  // TransportClosed if the actor vanished.
  Payload Run(const std::string& func, const Payload& args = Payload());
  // Typed forms: decode the result as `R` (MsgTypeError on a mismatch).
  template <class R, class A>
  R Run(const std::string& func, const A& args);
  template <class R>
  R Run(const std::string& func, const Payload& args);

  // Opens a context with the endpoint `func`, waits for its first value and
  // runs `body(ctx, first)`. On a normal exit waits for the remote result
  // and returns it; on an error exit cancels the remote task and rethrows.
  Payload OpenContext(
      const std::string& func, const Payload& args,
      const std::function<void(Context& ctx, const Payload& first)>& body,
      ContextOptions options = {});

  // Asks the actor to cancel itself gracefully and waits up to `timeout`
  // for the acknowledgement. Returns true once acknowledged; false if it is
  // gone, and on timeout unless `raise_on_timeout`, which throws
  // ActorTooSlowError instead (tractor's `raise_on_timeout=True`).
  bool CancelActor(absl::Duration timeout = absl::Milliseconds(500),
                   bool raise_on_timeout = false);

  // The result of the function started by `ActorNursery::RunInActor`;
  // blocks until it is known. Readable after the nursery exits.
  Payload Result();

  const v1::Aid& aid() const;
  // The address this portal dials.
  const std::string& addr() const;
  bool valid() const { return state_ != nullptr; }

 private:
  friend class ActorNursery;  // records a RunInActor child's result

  std::shared_ptr<internal::PortalState> state_;
};

// The current actor's identity, or an empty Aid without a runtime.
v1::Aid CurrentActorOrEmpty();

// Returns a portal to the root actor of this actor's tree (tractor's
// `get_root()`); in the root, a portal to itself. Throws NoRuntime without
// a runtime, TransportClosed when the root does not answer within
// `timeout`.
Portal GetRoot(absl::Duration timeout = absl::Seconds(2));

}  // namespace tractor

// The definition of `Portal::Run<R, A>`.
#include "actor/internal/portal_impl.h"  // IWYU pragma: export

#endif  // TRACTOR_ACTOR_PORTAL_H_
