// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/errors.h"

#include <cxxabi.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "actor/internal/error_registry.h"

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

namespace {

// The header, then the traceback (the origin's frames and each relay hop),
// so that what() -- and the report of an error nobody caught -- shows
// where the error was raised.
std::string HeaderAndTraceback(const v1::Error& e) {
  std::string text = Header(e);
  if (!e.traceback().empty()) absl::StrAppend(&text, "\n", e.traceback());
  return text;
}

}  // namespace

RemoteActorError::RemoteActorError(v1::Error error)
    : ActorError(HeaderAndTraceback(error)), error_(std::move(error)) {}

v1::Aid RemoteActorError::relay_uid() const {
  if (error_.relay_path_size() == 0) return error_.src();
  return error_.relay_path(error_.relay_path_size() - 1);
}

namespace {

// "Type: what()" of each error, every line after the first indented.
std::string GroupReport(const std::string& message,
                        const std::vector<std::exception_ptr>& errors) {
  std::string text = message;
  for (size_t i = 0; i < errors.size(); ++i) {
    std::string one;
    try {
      std::rethrow_exception(errors[i]);
    } catch (const ActorError& e) {
      one = absl::StrCat(e.TypeName(), ": ", e.what());
    } catch (const std::exception& e) {
      int status = 0;
      char* name =
          abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
      one = absl::StrCat(status == 0 && name ? name : typeid(e).name(), ": ",
                         e.what());
      std::free(name);
    } catch (...) {
      one = "unknown error";
    }
    absl::StrAppend(&text, "\n+-- [", i + 1, "/", errors.size(), "] ",
                    absl::StrReplaceAll(one, {{"\n", "\n|   "}}));
  }
  return text;
}

}  // namespace

ActorErrorGroup::ActorErrorGroup(const std::string& message,
                                 std::vector<std::exception_ptr> errors)
    : ActorError(GroupReport(message, errors)),
      message_(message),
      errors_(std::move(errors)) {}

void RegisterErrorType(const std::string& name, const std::type_info& type,
                       std::function<void(const std::string&)> thrower) {
  internal::RegisterUserErrorType(name, type, std::move(thrower));
}

const char* WireName(ErrorKind kind) {
  for (const auto& kn : kKindNames) {
    if (kn.kind == kind) return kn.name;
  }
  return "";
}

ErrorKind ErrorKindFromWireName(const std::string& name) {
  for (const auto& kn : kKindNames) {
    if (name == kn.name) return kn.kind;
  }
  return ErrorKind::kOther;
}

ErrorKind ErrorKindOf(const v1::Error& error) {
  return ErrorKindFromWireName(error.boxed_type());
}

}  // namespace tractor
