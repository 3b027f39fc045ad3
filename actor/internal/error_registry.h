// SPDX-License-Identifier: AGPL-3.0-or-later
// The user exception types registered with `RegisterErrorType`
// (actor/errors.h): what the error codec needs to name a user exception on
// the wire and to throw it again on arrival.
#ifndef TRACTOR_ACTOR_INTERNAL_ERROR_REGISTRY_H_
#define TRACTOR_ACTOR_INTERNAL_ERROR_REGISTRY_H_

#include <functional>
#include <optional>
#include <string>
#include <typeinfo>

namespace tractor::internal {

// Throws the registered type with the given message.
using ErrorThrower = std::function<void(const std::string& message)>;

// Records `type` under the wire name `name` (a later registration of either
// replaces the earlier one). Thread-safe.
void RegisterUserErrorType(const std::string& name, const std::type_info& type,
                           ErrorThrower thrower);

// The wire name `type` was registered under, or nullopt. Thread-safe.
std::optional<std::string> RegisteredErrorName(const std::type_info& type);

// The thrower registered for the wire name `name`, or null. Thread-safe.
ErrorThrower RegisteredErrorThrower(const std::string& name);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ERROR_REGISTRY_H_
