// SPDX-License-Identifier: AGPL-3.0-or-later
// Values carried by dialogs: arguments, first values, stream items, results.
//
// A `Payload` is a JSON-like value (null, number, string, bool, list,
// object), a typed protobuf message, or raw bytes (msg.proto `Payload`).
// Exported functions may take and return `Payload` directly, or declare
// concrete types (a protobuf message type, `std::string`, `double`,
// `int64_t`, `int`, `bool`); a payload of another type is then rejected with
// `MsgTypeError` before user code sees it.
#ifndef TRACTOR_ACTOR_PAYLOAD_H_
#define TRACTOR_ACTOR_PAYLOAD_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "actor/errors.h"
#include "google/protobuf/message.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

// A payload accessor was used on a value of another type.
class TypeError : public ActorError {
 public:
  using ActorError::ActorError;
  std::string TypeName() const override { return "TypeError"; }
};

// A value; cheap to move, copyable. Thread-compatible.
class Payload {
 public:
  Payload();  // null
  Payload(std::nullptr_t) : Payload() {}
  Payload(bool b);
  Payload(int i) : Payload(static_cast<double>(i)) {}
  Payload(int64_t i) : Payload(static_cast<double>(i)) {}
  Payload(double d);
  Payload(const char* s) : Payload(std::string(s)) {}
  Payload(std::string s);
  explicit Payload(v1::Payload proto) : proto_(std::move(proto)) {}
  // An object, e.g. the named arguments of a call:
  // `Payload args = {{"count", 3}, {"label", "x"}}`. Throws TypeError as
  // `Object`.
  Payload(std::initializer_list<std::pair<std::string, Payload>> fields);

  static Payload List(std::vector<Payload> items);
  static Payload Object(std::vector<std::pair<std::string, Payload>> fields);
  // Parses JSON text; throws TypeError on malformed input.
  static Payload FromJson(const std::string& json);
  static Payload Raw(std::string bytes);
  static Payload Message(const google::protobuf::Message& m);

  bool IsNull() const;
  bool IsNumber() const;
  bool IsString() const;
  bool IsBool() const;
  bool IsList() const;
  bool IsObject() const;
  bool IsMessage() const;
  bool IsRaw() const;

  // Accessors; each throws TypeError naming both types on a mismatch.
  double AsDouble() const;
  // The number must be integral and within int64_t's range.
  int64_t AsInt() const;
  const std::string& AsString() const;
  bool AsBool() const;
  const std::string& AsRaw() const;
  size_t size() const;                         // list or object
  Payload operator[](size_t i) const;          // list element
  Payload operator[](const std::string& key) const;  // object field
  bool Has(const std::string& key) const;
  template <class M>
  M AsMessage() const {
    M m;
    UnpackInto(&m);
    return m;
  }

  // JSON text (a message renders as its JSON mapping).
  std::string ToJson() const;
  // Short type description: "null", "number", "string", "bool", "list",
  // "object", "raw", or the message's full type name.
  std::string TypeName() const;

  const v1::Payload& proto() const { return proto_; }
  v1::Payload& mutable_proto() { return proto_; }

  bool operator==(const Payload& other) const;

 private:
  void UnpackInto(google::protobuf::Message* m) const;
  v1::Payload proto_;
};

// Prints the payload as JSON.
std::ostream& operator<<(std::ostream& os, const Payload& p);

// How a C++ type travels as a payload. Specialized for Payload, protobuf
// messages, std::string, double, int64_t, int and bool.
template <class T, class Enable = void>
struct PayloadCodec;

template <>
struct PayloadCodec<Payload> {
  static std::string Spec() { return "any"; }
  static bool Matches(const v1::Payload&) { return true; }
  static Payload Decode(const v1::Payload& p) { return Payload(p); }
  static v1::Payload Encode(const Payload& v) { return v.proto(); }
  static v1::Payload Encode(Payload&& v) { return std::move(v.mutable_proto()); }
};

template <class M>
struct PayloadCodec<
    M, std::enable_if_t<std::is_base_of_v<google::protobuf::Message, M>>> {
  static std::string Spec() { return M::descriptor()->full_name(); }
  // The type URL must name `M` and the bytes must parse as an `M`: a
  // payload that only claims the type is refused like any other mismatch.
  static bool Matches(const v1::Payload& p) {
    if (!p.has_message() || !p.message().Is<M>()) return false;
    M m;
    return p.message().UnpackTo(&m);
  }
  // Only for a payload that `Matches`.
  static M Decode(const v1::Payload& p) {
    M m;
    p.message().UnpackTo(&m);
    return m;
  }
  static v1::Payload Encode(const M& m) { return Payload::Message(m).proto(); }
};

template <>
struct PayloadCodec<std::string> {
  static std::string Spec() { return "string"; }
  static bool Matches(const v1::Payload& p) {
    return p.has_value() && p.value().has_string_value();
  }
  static std::string Decode(const v1::Payload& p) {
    return p.value().string_value();
  }
  static v1::Payload Encode(const std::string& s) { return Payload(s).proto(); }
};

template <>
struct PayloadCodec<double> {
  static std::string Spec() { return "number"; }
  static bool Matches(const v1::Payload& p) {
    return p.has_value() && p.value().has_number_value();
  }
  static double Decode(const v1::Payload& p) {
    return p.value().number_value();
  }
  static v1::Payload Encode(double d) { return Payload(d).proto(); }
};

// An integer parameter accepts a number that is integral and within the
// type's range; anything else (1e300, 3e10 for an `int`, NaN, a fraction)
// does not match, so it is a `MsgTypeError` whose spec names the range,
// e.g. "integer in [-2147483648, 2147483647]".
template <class I>
struct PayloadCodec<I, std::enable_if_t<std::is_same_v<I, int64_t> ||
                                        std::is_same_v<I, int>>> {
  static std::string Spec() {
    return "integer in [" + std::to_string(std::numeric_limits<I>::min()) +
           ", " + std::to_string(std::numeric_limits<I>::max()) + "]";
  }
  static bool Matches(const v1::Payload& p) {
    if (!p.has_value() || !p.value().has_number_value()) return false;
    return InRange(p.value().number_value());
  }
  // True for an integral `d` that `I` holds. The bounds are powers of two,
  // exact as doubles: [min, -min).
  static bool InRange(double d) {
    constexpr double kMin = static_cast<double>(std::numeric_limits<I>::min());
    return d >= kMin && d < -kMin && std::trunc(d) == d;
  }
  // Only for a payload that `Matches`.
  static I Decode(const v1::Payload& p) {
    return static_cast<I>(p.value().number_value());
  }
  static v1::Payload Encode(I i) { return Payload(static_cast<int64_t>(i)).proto(); }
};

template <>
struct PayloadCodec<bool> {
  static std::string Spec() { return "bool"; }
  static bool Matches(const v1::Payload& p) {
    return p.has_value() && p.value().has_bool_value();
  }
  static bool Decode(const v1::Payload& p) { return p.value().bool_value(); }
  static v1::Payload Encode(bool b) { return Payload(b).proto(); }
};

// The payload types a dialog accepts (tractor's `pld_spec`): a union of
// types, e.g. `PayloadSpec::Of<MyMsg>() | PayloadSpec::Null()`. The default
// accepts anything. Immutable value type.
class PayloadSpec {
 public:
  PayloadSpec() = default;  // any payload
  template <class T>
  static PayloadSpec Of() {
    PayloadSpec s;
    s.name_ = PayloadCodec<T>::Spec();
    s.alts_.push_back(&PayloadCodec<T>::Matches);
    return s;
  }
  static PayloadSpec Null();
  PayloadSpec operator|(const PayloadSpec& other) const;

  bool is_any() const { return alts_.empty(); }
  bool Matches(const v1::Payload& p) const;
  // "any", or the union of type names ("tractor.v1.Aid|null").
  std::string name() const { return is_any() ? "any" : name_; }

 private:
  std::string name_;
  std::vector<std::function<bool(const v1::Payload&)>> alts_;
};

}  // namespace tractor

#endif  // TRACTOR_ACTOR_PAYLOAD_H_
