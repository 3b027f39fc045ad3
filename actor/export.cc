// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/export.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/errors.h"
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
  std::set<std::string> names;
  for (const EndpointParam& p : endpoint.params) {
    CHECK(!p.name.empty()) << endpoint.name << ": a parameter name is empty";
    CHECK(names.insert(p.name).second)
        << endpoint.name << ": parameter '" << p.name << "' is named twice";
  }
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

namespace {

std::string ParamList(const std::vector<EndpointParam>& params) {
  return absl::StrJoin(params, ", ", [](std::string* out, const auto& p) {
    absl::StrAppend(out, p.name);
  });
}

}  // namespace

std::string SplitNamedArgs(const std::vector<EndpointParam>& params,
                           const v1::Payload& args,
                           std::vector<v1::Payload>* out) {
  out->clear();
  out->resize(params.size());
  const size_t n = params.size();
  const auto& value = args.value();
  if (args.has_value() && value.has_struct_value()) {
    const auto& fields = value.struct_value().fields();
    std::vector<std::string> extra;
    for (const auto& field : fields) {
      const std::string& key = field.first;
      if (std::none_of(params.begin(), params.end(),
                       [&](const EndpointParam& p) { return p.name == key; })) {
        extra.push_back(key);
      }
    }
    if (!extra.empty()) {
      std::sort(extra.begin(), extra.end());
      return absl::StrCat("unexpected argument", extra.size() > 1 ? "s" : "",
                          " '", absl::StrJoin(extra, "', '"),
                          "' (parameters: ", ParamList(params), ")");
    }
    for (size_t i = 0; i < n; ++i) {
      auto it = fields.find(params[i].name);
      if (it == fields.end()) {
        return absl::StrCat("missing argument '", params[i].name,
                            "' (parameters: ", ParamList(params), ")");
      }
      *(*out)[i].mutable_value() = it->second;
    }
  } else if (args.has_value() && value.has_list_value()) {
    const auto& values = value.list_value().values();
    if (static_cast<size_t>(values.size()) != n) {
      return absl::StrCat("takes ", n, " argument", n == 1 ? "" : "s", " (",
                          ParamList(params), "), got a list of ",
                          values.size());
    }
    for (size_t i = 0; i < n; ++i) *(*out)[i].mutable_value() = values[i];
  } else {
    return absl::StrCat("takes its arguments as an object with the keys (",
                        ParamList(params), ") or a list of ", n,
                        ", got ", Payload(args).TypeName());
  }
  for (size_t i = 0; i < n; ++i) {
    if (!params[i].matches((*out)[i])) {
      Payload got((*out)[i]);
      return absl::StrCat("argument '", params[i].name, "' = ", got.ToJson(),
                          " has type ", got.TypeName(),
                          " and does not match its type-spec `",
                          params[i].spec, "`");
    }
  }
  return "";
}

std::vector<v1::Payload> SplitCheckedArgs(
    const std::vector<EndpointParam>& params, const v1::Payload& args) {
  std::vector<v1::Payload> out;
  std::string problem = SplitNamedArgs(params, args, &out);
  if (!problem.empty()) throw UsageError(problem);
  return out;
}

}  // namespace internal
}  // namespace tractor
