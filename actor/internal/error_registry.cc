// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/error_registry.h"

#include <map>
#include <typeindex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "discovery/mutex.h"

namespace tractor::internal {
namespace {

struct UserTypes {
  Mutex mu;
  std::map<std::type_index, std::string> names ABSL_GUARDED_BY(mu);
  std::map<std::string, ErrorThrower> throwers ABSL_GUARDED_BY(mu);
};

UserTypes& Registry() {
  static auto* r = new UserTypes;
  return *r;
}

}  // namespace

void RegisterUserErrorType(const std::string& name, const std::type_info& type,
                           ErrorThrower thrower) {
  UserTypes& r = Registry();
  MutexLock lock(&r.mu);
  r.names[std::type_index(type)] = name;
  r.throwers[name] = std::move(thrower);
}

std::optional<std::string> RegisteredErrorName(const std::type_info& type) {
  UserTypes& r = Registry();
  MutexLock lock(&r.mu);
  auto it = r.names.find(std::type_index(type));
  if (it == r.names.end()) return std::nullopt;
  return it->second;
}

ErrorThrower RegisteredErrorThrower(const std::string& name) {
  UserTypes& r = Registry();
  MutexLock lock(&r.mu);
  auto it = r.throwers.find(name);
  if (it == r.throwers.end()) return nullptr;
  return it->second;
}

}  // namespace tractor::internal
