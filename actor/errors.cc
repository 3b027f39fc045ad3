// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/errors.h"

#include <utility>

#include "absl/strings/str_cat.h"
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
