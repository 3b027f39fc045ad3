// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/error_codec.h"

#include <cxxabi.h>

#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "actor/internal/error_registry.h"
#include "devx/throw_trace.h"

namespace tractor::internal {
namespace {

std::string Demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return mangled;
  std::string s(out);
  std::free(out);
  return s;
}

// "actor 'name' uuid pid N": who raised or relayed an error.
std::string Who(const v1::Aid& aid) {
  return absl::StrCat("actor '", aid.name(), "' ", aid.uuid(), " pid ",
                      aid.pid());
}

// The traceback of an error raised in `self`: the throw site's frames,
// innermost first, when they were recorded, then "Type: message".
std::string OriginTraceback(const v1::Aid& self, const std::string& type,
                            const std::string& message,
                            const std::exception_ptr& e) {
  const std::string frames = e ? devx::ThrowSiteTrace(e, "    ") : "";
  if (frames.empty()) {
    return absl::StrCat("Traceback (", Who(self), "):\n  ", type, ": ",
                        message, "\n");
  }
  return absl::StrCat("Traceback (", Who(self),
                      ", most recent call first):\n", frames, "  ", type,
                      ": ", message, "\n");
}

}  // namespace

std::string ExceptionTypeName(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ActorError& err) {
    return err.TypeName();
  } catch (const std::exception& err) {
    if (std::optional<std::string> name = RegisteredErrorName(typeid(err))) {
      return *std::move(name);
    }
    return Demangle(typeid(err).name());
  } catch (...) {
    std::type_info* t = abi::__cxa_current_exception_type();
    return t ? Demangle(t->name()) : "unknown";
  }
}

std::string Describe(std::exception_ptr e) {
  std::string type = ExceptionTypeName(e);
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& err) {
    return absl::StrCat(type, ": ", err.what());
  } catch (...) {
    return type;
  }
}

v1::Error MakeError(const v1::Aid& self, ErrorKind kind,
                    const std::string& message, const std::string& cid) {
  return MakeError(self, WireName(kind), message, cid);
}

v1::Error MakeError(const v1::Aid& self, const std::string& type,
                    const std::string& message, const std::string& cid) {
  v1::Error out;
  *out.mutable_src() = self;
  out.set_src_type(type);
  out.set_boxed_type(type);
  out.set_message(message);
  out.set_cid(cid);
  *out.add_relay_path() = self;
  out.set_traceback(OriginTraceback(self, type, message, nullptr));
  return out;
}

v1::Error PackError(std::exception_ptr e, const v1::Aid& self,
                    const std::string& cid) {
  try {
    std::rethrow_exception(e);
  } catch (const ActorErrorGroup& group) {
    v1::Error out =
        MakeError(self, ErrorKind::kExceptionGroup, group.message(), cid);
    std::string tb = out.traceback();
    for (const auto& child : group.errors()) {
      *out.add_children() = PackError(child, self, cid);
      absl::StrAppend(&tb, "  +-- ",
                      absl::StrReplaceAll(Describe(child), {{"\n", "\n  |   "}}),
                      "\n");
    }
    out.set_traceback(tb);
    return out;
  } catch (const RemoteActorError& remote) {
    v1::Error out = remote.msgdata();
    out.set_cid(cid);
    if (out.src().uuid() == self.uuid()) return out;  // raised here
    const ErrorKind kind = ErrorKindFromWireName(remote.TypeName());
    if (kind != ErrorKind::kContextCancelled &&
        kind != ErrorKind::kMsgTypeError) {
      // Relay: keep the origin, record this hop.
      out.set_boxed_type(WireName(ErrorKind::kRemoteActorError));
    } else {
      // A received ContextCancelled/MsgTypeError re-raised here is a new
      // error of that type from this actor (its canceller etc. are kept).
      *out.mutable_src() = self;
      out.set_src_type(remote.TypeName());
      out.set_boxed_type(remote.TypeName());
    }
    *out.add_relay_path() = self;
    // Each hop adds where it received the error (the frames of the call
    // that raised it here), after the origin's frames.
    std::string hop = absl::StrCat("Relayed by ", Who(self));
    const std::string frames = devx::ThrowSiteTrace(e, "    ");
    absl::StrAppend(&hop, frames.empty() ? "\n" : ", received at:\n", frames);
    out.set_traceback(absl::StrCat(out.traceback(), hop));
    return out;
  } catch (const std::exception& err) {
    v1::Error out = MakeError(self, ExceptionTypeName(e), err.what(), cid);
    out.set_traceback(OriginTraceback(self, out.src_type(), err.what(), e));
    return out;
  } catch (...) {
    v1::Error out = MakeError(self, ExceptionTypeName(e), "", cid);
    out.set_traceback(OriginTraceback(self, out.src_type(), "", e));
    return out;
  }
}

void ThrowError(const v1::Error& error) {
  switch (ErrorKindOf(error)) {
    case ErrorKind::kContextCancelled: throw ContextCancelled(error);
    case ErrorKind::kMsgTypeError: throw MsgTypeError(error);
    case ErrorKind::kStreamOverrun: throw StreamOverrun(error);
    case ErrorKind::kModuleNotExposed: throw ModuleNotExposed(error);
    case ErrorKind::kFunctionNotFound: throw FunctionNotFound(error);
    // Boxed with its origin like any remote error; an ExceptionGroup's
    // children are kept in msgdata().children().
    case ErrorKind::kExceptionGroup: throw RemoteActorError(error);
    default: break;
  }
  if (ErrorThrower thrower = RegisteredErrorThrower(error.boxed_type())) {
    thrower(error.message());
  }
  throw RemoteActorError(error);
}

std::exception_ptr ToException(const v1::Error& error) {
  try {
    ThrowError(error);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace tractor::internal
