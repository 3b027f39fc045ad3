#include "actor/errors.h"

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <typeindex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tractor {
namespace {

std::string Header(const v1::Error& e) {
  std::string text = absl::StrCat("remote task raised a '", e.boxed_type(),
                                   "'");
  if (e.src().name().empty() && e.src().uuid().empty()) return text;
  absl::StrAppend(&text, " (from actor '", e.src().name(), "' ",
                  e.src().uuid(), ")");
  if (!e.message().empty()) absl::StrAppend(&text, ": ", e.message());
  return text;
}


struct UserTypes {
  std::mutex mu;
  std::map<std::type_index, std::string> names;
  std::map<std::string, std::function<void(const std::string&)>> throwers;
};

UserTypes& Registry() {
  static auto* r = new UserTypes;
  return *r;
}

std::string Demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return mangled;
  std::string s(out);
  std::free(out);
  return s;
}

}  // namespace

RemoteActorError::RemoteActorError(v1::Error error)
    : ActorError(Header(error)), error_(std::move(error)) {}

v1::Aid RemoteActorError::relay_uid() const {
  if (error_.relay_path_size() == 0) return error_.src();
  return error_.relay_path(error_.relay_path_size() - 1);
}

ActorErrorGroup::ActorErrorGroup(const std::string& message,
                                 std::vector<std::exception_ptr> errors)
    : ActorError(message), errors_(std::move(errors)) {}

void RegisterErrorType(const std::string& name, const std::type_info& type,
                       std::function<void(const std::string&)> thrower) {
  UserTypes& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.names[std::type_index(type)] = name;
  r.throwers[name] = std::move(thrower);
}

namespace internal {

std::string ExceptionTypeName(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ActorError& err) {
    return err.TypeName();
  } catch (const std::exception& err) {
    UserTypes& r = Registry();
    {
      std::lock_guard<std::mutex> lock(r.mu);
      auto it = r.names.find(std::type_index(typeid(err)));
      if (it != r.names.end()) return it->second;
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

namespace {

struct KindName {
  ErrorKind kind;
  const char* name;
};

constexpr KindName kKindNames[] = {
    {ErrorKind::kContextCancelled, "ContextCancelled"},
    {ErrorKind::kMsgTypeError, "MsgTypeError"},
    {ErrorKind::kStreamOverrun, "StreamOverrun"},
    {ErrorKind::kModuleNotExposed, "ModuleNotExposed"},
    {ErrorKind::kFunctionNotFound, "FunctionNotFound"},
    {ErrorKind::kTransportClosed, "TransportClosed"},
    {ErrorKind::kMessagingError, "MessagingError"},
    {ErrorKind::kExceptionGroup, "ExceptionGroup"},
    {ErrorKind::kRemoteActorError, "RemoteActorError"},
};

}  // namespace

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
  out.set_traceback(absl::StrCat("Traceback (actor '", self.name(), "' ",
                                 self.uuid(), " pid ", self.pid(), "):\n  ",
                                 type, ": ", message, "\n"));
  return out;
}

v1::Error PackError(std::exception_ptr e, const v1::Aid& self,
                    const std::string& cid) {
  try {
    std::rethrow_exception(e);
  } catch (const ActorErrorGroup& group) {
    v1::Error out =
        MakeError(self, ErrorKind::kExceptionGroup, group.what(), cid);
    std::string tb = out.traceback();
    for (const auto& child : group.errors()) {
      *out.add_children() = PackError(child, self, cid);
      absl::StrAppend(&tb, "  +-- ", Describe(child), "\n");
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
    return out;
  } catch (const std::exception& err) {
    return MakeError(self, ExceptionTypeName(e), err.what(), cid);
  } catch (...) {
    return MakeError(self, ExceptionTypeName(e), "", cid);
  }
}

void ThrowError(const v1::Error& error) {
  const std::string& type = error.boxed_type();
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
  std::function<void(const std::string&)> thrower;
  {
    UserTypes& r = Registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.throwers.find(type);
    if (it != r.throwers.end()) thrower = it->second;
  }
  if (thrower) thrower(error.message());
  throw RemoteActorError(error);
}

std::exception_ptr ToException(const v1::Error& error) {
  try {
    ThrowError(error);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace internal

const char* WireName(ErrorKind kind) {
  for (const auto& kn : internal::kKindNames) {
    if (kn.kind == kind) return kn.name;
  }
  return "";
}

ErrorKind ErrorKindFromWireName(const std::string& name) {
  for (const auto& kn : internal::kKindNames) {
    if (name == kn.name) return kn.kind;
  }
  return ErrorKind::kOther;
}

ErrorKind ErrorKindOf(const v1::Error& error) {
  return ErrorKindFromWireName(error.boxed_type());
}

}  // namespace tractor
