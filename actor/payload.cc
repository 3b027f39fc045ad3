// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/payload.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

namespace tractor {
namespace {

const google::protobuf::Value& ValueOf(const v1::Payload& p) {
  return p.value();
}

}  // namespace

Payload::Payload() {
  proto_.mutable_value()->set_null_value(google::protobuf::NULL_VALUE);
}

Payload::Payload(bool b) { proto_.mutable_value()->set_bool_value(b); }

Payload::Payload(double d) { proto_.mutable_value()->set_number_value(d); }

namespace {

// True when `s` is well-formed UTF-8 (protobuf strings must be).
bool IsUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    int n = (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
          : (*p & 0xF8) == 0xF0 ? 3 : -1;
    if (n < 0 || end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
    }
    p += n + 1;
  }
  return true;
}

}  // namespace

Payload::Payload(std::string s) {
  if (!IsUtf8(s)) {
    throw TypeError(
        "a string payload must be valid UTF-8; use Payload::Raw for bytes");
  }
  proto_.mutable_value()->set_string_value(std::move(s));
}

Payload Payload::List(std::vector<Payload> items) {
  Payload out;
  auto* list = out.proto_.mutable_value()->mutable_list_value();
  for (auto& item : items) {
    if (!item.proto_.has_value()) {
      throw TypeError("a list holds JSON-like values only, not " +
                      item.TypeName());
    }
    *list->add_values() = std::move(*item.proto_.mutable_value());
  }
  return out;
}

Payload::Payload(
    std::initializer_list<std::pair<std::string, Payload>> fields)
    : Payload(Object(std::vector<std::pair<std::string, Payload>>(fields))) {}

Payload Payload::Object(std::vector<std::pair<std::string, Payload>> fields) {
  Payload out;
  auto* obj = out.proto_.mutable_value()->mutable_struct_value();
  for (auto& [key, value] : fields) {
    if (!value.proto_.has_value()) {
      throw TypeError("an object holds JSON-like values only, not " +
                      value.TypeName());
    }
    (*obj->mutable_fields())[key] = std::move(*value.proto_.mutable_value());
  }
  return out;
}

Payload Payload::FromJson(const std::string& json) {
  Payload out;
  auto status = google::protobuf::util::JsonStringToMessage(
      json, out.proto_.mutable_value());
  if (!status.ok()) {
    throw TypeError(absl::StrCat("invalid JSON: ", status.ToString()));
  }
  return out;
}

Payload Payload::Raw(std::string bytes) {
  Payload out;
  out.proto_.set_raw(std::move(bytes));
  return out;
}

Payload Payload::Message(const google::protobuf::Message& m) {
  Payload out;
  out.proto_.mutable_message()->PackFrom(m);
  return out;
}

bool Payload::IsNull() const {
  return proto_.has_value() && ValueOf(proto_).has_null_value();
}
bool Payload::IsNumber() const {
  return proto_.has_value() && ValueOf(proto_).has_number_value();
}
bool Payload::IsString() const {
  return proto_.has_value() && ValueOf(proto_).has_string_value();
}
bool Payload::IsBool() const {
  return proto_.has_value() && ValueOf(proto_).has_bool_value();
}
bool Payload::IsList() const {
  return proto_.has_value() && ValueOf(proto_).has_list_value();
}
bool Payload::IsObject() const {
  return proto_.has_value() && ValueOf(proto_).has_struct_value();
}
bool Payload::IsMessage() const { return proto_.has_message(); }
bool Payload::IsRaw() const {
  return proto_.kind_case() == v1::Payload::kRaw;
}

#define TRACTOR_REQUIRE(cond, want)                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      throw TypeError(absl::StrCat("expected a ", want, " payload, got ", \
                                   TypeName(), ": ", ToJson()));         \
    }                                                                    \
  } while (0)

double Payload::AsDouble() const {
  TRACTOR_REQUIRE(IsNumber(), "number");
  return ValueOf(proto_).number_value();
}

int64_t Payload::AsInt() const {
  TRACTOR_REQUIRE(IsNumber(), "number");
  double d = ValueOf(proto_).number_value();
  TRACTOR_REQUIRE(std::trunc(d) == d, "integer");
  return static_cast<int64_t>(d);
}

const std::string& Payload::AsString() const {
  TRACTOR_REQUIRE(IsString(), "string");
  return ValueOf(proto_).string_value();
}

bool Payload::AsBool() const {
  TRACTOR_REQUIRE(IsBool(), "bool");
  return ValueOf(proto_).bool_value();
}

const std::string& Payload::AsRaw() const {
  TRACTOR_REQUIRE(IsRaw(), "raw");
  return proto_.raw();
}

size_t Payload::size() const {
  if (IsList()) return ValueOf(proto_).list_value().values_size();
  TRACTOR_REQUIRE(IsObject(), "list or object");
  return ValueOf(proto_).struct_value().fields_size();
}

Payload Payload::operator[](size_t i) const {
  TRACTOR_REQUIRE(IsList(), "list");
  const auto& values = ValueOf(proto_).list_value().values();
  if (i >= static_cast<size_t>(values.size())) {
    throw TypeError(absl::StrCat("list index ", i, " out of range (size ",
                                 values.size(), ")"));
  }
  v1::Payload p;
  *p.mutable_value() = values[i];
  return Payload(std::move(p));
}

Payload Payload::operator[](const std::string& key) const {
  TRACTOR_REQUIRE(IsObject(), "object");
  const auto& fields = ValueOf(proto_).struct_value().fields();
  auto it = fields.find(key);
  if (it == fields.end()) {
    throw TypeError(absl::StrCat("object has no field '", key, "': ",
                                 ToJson()));
  }
  v1::Payload p;
  *p.mutable_value() = it->second;
  return Payload(std::move(p));
}

bool Payload::Has(const std::string& key) const {
  return IsObject() && ValueOf(proto_).struct_value().fields().contains(key);
}

#undef TRACTOR_REQUIRE

void Payload::UnpackInto(google::protobuf::Message* m) const {
  if (!proto_.has_message() || !proto_.message().UnpackTo(m)) {
    throw TypeError(absl::StrCat("expected a ", m->GetTypeName(),
                                 " payload, got ", TypeName()));
  }
}

std::string Payload::ToJson() const {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  switch (proto_.kind_case()) {
    case v1::Payload::kValue:
      (void)google::protobuf::util::MessageToJsonString(proto_.value(), &out,
                                                        options);
      return out;
    case v1::Payload::kMessage:
      (void)google::protobuf::util::MessageToJsonString(proto_, &out, options);
      return out;
    case v1::Payload::kRaw:
      return absl::StrCat("<", proto_.raw().size(), " raw bytes>");
    default:
      return "<empty payload>";
  }
}

std::string Payload::TypeName() const {
  switch (proto_.kind_case()) {
    case v1::Payload::kValue:
      switch (proto_.value().kind_case()) {
        case google::protobuf::Value::kNullValue: return "null";
        case google::protobuf::Value::kNumberValue: return "number";
        case google::protobuf::Value::kStringValue: return "string";
        case google::protobuf::Value::kBoolValue: return "bool";
        case google::protobuf::Value::kListValue: return "list";
        case google::protobuf::Value::kStructValue: return "object";
        default: return "null";
      }
    case v1::Payload::kMessage: {
      const std::string& url = proto_.message().type_url();
      auto slash = url.rfind('/');
      return slash == std::string::npos ? url : url.substr(slash + 1);
    }
    case v1::Payload::kRaw: return "raw";
    default: return "empty";
  }
}

bool Payload::operator==(const Payload& other) const {
  return google::protobuf::util::MessageDifferencer::Equals(proto_,
                                                          other.proto_);
}

PayloadSpec PayloadSpec::Null() {
  PayloadSpec s;
  s.name_ = "null";
  s.alts_.push_back([](const v1::Payload& p) {
    return p.has_value() && p.value().has_null_value();
  });
  return s;
}

PayloadSpec PayloadSpec::operator|(const PayloadSpec& other) const {
  if (is_any() || other.is_any()) return PayloadSpec();
  PayloadSpec s = *this;
  s.name_ += "|" + other.name_;
  s.alts_.insert(s.alts_.end(), other.alts_.begin(), other.alts_.end());
  return s;
}

bool PayloadSpec::Matches(const v1::Payload& p) const {
  if (is_any()) return true;
  for (const auto& alt : alts_) {
    if (alt(p)) return true;
  }
  return false;
}

std::ostream& operator<<(std::ostream& os, const Payload& p) {
  return os << p.ToJson();
}

}  // namespace tractor
