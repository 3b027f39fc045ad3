// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/export.h"

#include <algorithm>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "discovery/mutex.h"
#include "glog/logging.h"

namespace tractor {
namespace {

struct Table {
  Mutex mu;
  std::map<std::string, std::unique_ptr<Endpoint>> endpoints
      ABSL_GUARDED_BY(mu);
};

Table& GetTable() {
  static auto* table = new Table;
  return *table;
}

}  // namespace

bool RegisterEndpoint(Endpoint endpoint) {
  CHECK(endpoint.name.find(':') != std::string::npos)
      << "exported function name must be \"namespace:function\", got \""
      << endpoint.name << "\"";
  Table& t = GetTable();
  MutexLock lock(&t.mu);
  auto& slot = t.endpoints[endpoint.name];
  if (slot) LOG(WARNING) << "re-exporting " << endpoint.name;
  slot = std::make_unique<Endpoint>(std::move(endpoint));
  return true;
}

namespace internal {

const Endpoint* FindEndpoint(const std::string& name) {
  Table& t = GetTable();
  MutexLock lock(&t.mu);
  auto it = t.endpoints.find(name);
  return it == t.endpoints.end() ? nullptr : it->second.get();
}

std::vector<std::string> EndpointNames(const std::string& ns) {
  Table& t = GetTable();
  MutexLock lock(&t.mu);
  std::vector<std::string> out;
  for (const auto& [name, e] : t.endpoints) {
    if (ns.empty() || e->ns == ns) out.push_back(name);
  }
  return out;
}

}  // namespace internal
}  // namespace tractor
