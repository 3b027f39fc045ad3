// SPDX-License-Identifier: AGPL-3.0-or-later
// The error types of the tractor runtime (docs/design.md#errors,
// docs/behaviour.md#errors-across-actors).
//
// The user-facing API throws these. Errors raised in another actor arrive as
// `RemoteActorError` (or one of its subclasses), carrying where the error came
// from; errors of the local runtime derive from `ActorError` directly.
// `Cancelled` is deliberately not a `std::exception`: a generic
// `catch (const std::exception&)` must not swallow a cancellation.
#ifndef TRACTOR_ACTOR_ERRORS_H_
#define TRACTOR_ACTOR_ERRORS_H_

#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "tractor/v1/msg.pb.h"

namespace tractor {

namespace internal {
struct ScopeState;
}  // namespace internal

// Thrown at a checkpoint when an enclosing cancel scope is cancelled
// (actor/cancel.h). It is caught by the scope that was cancelled. Not a
// `std::exception`, so generic handlers do not swallow it; code that catches
// it with `catch (...)` must rethrow.
class Cancelled final {
 public:
  explicit Cancelled(std::shared_ptr<internal::ScopeState> scope)
      : scope_(std::move(scope)) {}
  const char* what() const { return "Cancelled"; }
  const std::shared_ptr<internal::ScopeState>& scope() const { return scope_; }

 private:
  std::shared_ptr<internal::ScopeState> scope_;
};

// The runtime's own error kinds: a closed set, each with the name that
// identifies it on the wire (`Error.boxed_type` / `src_type`). The wire
// stays a string, so foreign clients and user-registered exception types
// (`RegisterErrorType`) use names of their own; those are `kOther` here.
enum class ErrorKind {
  kOther,             // a user or foreign type name, or empty
  kContextCancelled,  // a dialog's remote task was cancelled; see `canceller`
  kMsgTypeError,      // a payload did not match its declared type
  kStreamOverrun,     // a receive queue was full under the kError policy
  kModuleNotExposed,  // the function's namespace is not enabled
  kFunctionNotFound,  // no such function (or not "namespace:function")
  kTransportClosed,   // the actor is going away or the connection broke
  kMessagingError,    // a message was wrong for the dialog's state
  kExceptionGroup,    // several errors at once; see `Error.children`
  kRemoteActorError,  // an error relayed from another actor
};

// The wire name of `kind` ("" for kOther).
const char* WireName(ErrorKind kind);
// The kind a wire name stands for (kOther when it is none of the above).
ErrorKind ErrorKindFromWireName(const std::string& name);
// The kind boxed in `error` (its `boxed_type`).
ErrorKind ErrorKindOf(const v1::Error& error);

// Base of every error the runtime throws.
class ActorError : public std::runtime_error {
 public:
  explicit ActorError(const std::string& message)
      : std::runtime_error(message) {}
  // The type name that identifies this error on the wire.
  virtual std::string TypeName() const { return "ActorError"; }
};

// An error raised in another actor (or relayed through several), boxed.
// Thread-compatible value type.
class RemoteActorError : public ActorError {
 public:
  explicit RemoteActorError(v1::Error error);

  std::string TypeName() const override { return "RemoteActorError"; }
  // The full wire form.
  const v1::Error& msgdata() const { return error_; }
  // Type of the error as boxed by the last relaying actor.
  const std::string& boxed_type() const { return error_.boxed_type(); }
  // Type of the error at its origin.
  const std::string& src_type() const { return error_.src_type(); }
  // The actor the error was first raised in.
  const v1::Aid& src() const { return error_.src(); }
  const std::string& src_uid() const { return error_.src().uuid(); }
  // Every actor that packed the error, origin first.
  const google::protobuf::RepeatedPtrField<v1::Aid>& relay_path() const {
    return error_.relay_path();
  }
  // The last actor that packed the error.
  v1::Aid relay_uid() const;
  // The origin's message, without the box's prefix.
  const std::string& remote_message() const { return error_.message(); }
  // Traceback / context text from the origin.
  const std::string& traceback() const { return error_.traceback(); }
  const std::string& cid() const { return error_.cid(); }
  // True when the error was relayed: boxed type differs from the source type.
  bool IsInception() const { return error_.boxed_type() != error_.src_type(); }

 private:
  v1::Error error_;
};

// The remote task of a dialog was cancelled. `canceller()` names who asked.
class ContextCancelled : public RemoteActorError {
 public:
  using RemoteActorError::RemoteActorError;
  std::string TypeName() const override { return "ContextCancelled"; }
  const v1::Aid& canceller() const { return msgdata().canceller(); }
};

// A payload did not match the type its endpoint declared.
class MsgTypeError : public RemoteActorError {
 public:
  using RemoteActorError::RemoteActorError;
  std::string TypeName() const override { return "MsgTypeError"; }
  // The message kind whose payload was wrong ("Started", "Yield", ...).
  const std::string& expected_msg_type() const {
    return msgdata().expected_msg_type();
  }
};

// A receiver's queue was full under the `kError` overrun policy.
class StreamOverrun : public RemoteActorError {
 public:
  using RemoteActorError::RemoteActorError;
  std::string TypeName() const override { return "StreamOverrun"; }
  const v1::Aid& sender() const { return msgdata().sender(); }
};

// A function's namespace is not enabled in the called actor.
class ModuleNotExposed : public RemoteActorError {
 public:
  using RemoteActorError::RemoteActorError;
  std::string TypeName() const override { return "ModuleNotExposed"; }
};

// The called actor has no function of that name.
class FunctionNotFound : public RemoteActorError {
 public:
  using RemoteActorError::RemoteActorError;
  std::string TypeName() const override { return "FunctionNotFound"; }
};

// The connection to a peer broke, or the peer process vanished.
class TransportClosed : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "TransportClosed"; }
};

// A runtime API was used in a process with no actor runtime.
class NoRuntime : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "NoRuntime"; }
};

// The runtime could not start or was misused (e.g. a second root actor).
class RuntimeFailure : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "RuntimeFailure"; }
};

// A child actor failed outside any dialog (crashed, killed, failed to boot).
class ActorFailure : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
  std::string TypeName() const override { return "ActorFailure"; }
};

// An actor did not acknowledge a cancel request in time.
class ActorTooSlowError : public RuntimeFailure {
 public:
  using RuntimeFailure::RuntimeFailure;
  std::string TypeName() const override { return "ActorTooSlowError"; }
};

// A dialog saw a message that is wrong for its state.
class MessagingError : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "MessagingError"; }
};

// Invalid use of the API (e.g. `Started` called twice).
class UsageError : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "UsageError"; }
};

// The root actor received SIGINT (ctrl-c); the tree was torn down.
class KeyboardInterrupt : public ActorError {
 public:
  KeyboardInterrupt() : ActorError("KeyboardInterrupt") {}
  std::string TypeName() const override { return "KeyboardInterrupt"; }
};

// Several errors at once, e.g. several children of a nursery failed.
// `what()` is the message followed by every error's type and `what()`
// (tracebacks included), indented, so an uncaught group reports them all;
// `message()` is the message alone.
class ActorErrorGroup : public ActorError {
 public:
  ActorErrorGroup(const std::string& message,
                  std::vector<std::exception_ptr> errors);
  std::string TypeName() const override { return "ExceptionGroup"; }
  const std::vector<std::exception_ptr>& errors() const { return errors_; }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
  std::vector<std::exception_ptr> errors_;
};

// Registers a user exception type so that, raised in one actor, it is
// re-thrown as itself in another (register it in both). `name` is the wire
// name; `E` must be constructible from `std::string` (the message).
// Thread-safe; call before the actors exchange the error.
void RegisterErrorType(const std::string& name, const std::type_info& type,
                       std::function<void(const std::string&)> thrower);

template <class E>
void RegisterErrorType(const std::string& name) {
  RegisterErrorType(name, typeid(E),
                    [](const std::string& msg) { throw E(msg); });
}

}  // namespace tractor

#endif  // TRACTOR_ACTOR_ERRORS_H_
