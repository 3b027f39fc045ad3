// SPDX-License-Identifier: AGPL-3.0-or-later
// Fuzzes payload decoding (actor/payload.h, actor/internal/payload_check.h,
// actor/export.h): arbitrary bytes parsed as a wire `Payload`, then checked
// against and decoded into every type a parameter may declare, split into
// named parameters, rendered as JSON and as a MsgTypeError. Checks, beyond
// "no crash": a payload a codec accepts decodes to a value that encodes
// back to an accepted payload (an integer parameter gets the same number);
// the accessors throw only TypeError; the spec union accepts exactly what
// one of its members accepts.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "actor/errors.h"
#include "actor/export.h"
#include "actor/internal/payload_check.h"
#include "actor/payload.h"
#include "tests/fuzz/fuzz_input.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {
namespace {

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "payload fuzz: %s\n", what);
  std::abort();
}

// Decodes `p` as a `T` parameter would, when the codec accepts it, and
// checks that the value travels back.
template <class T>
bool DecodeAs(const v1::Payload& p) {
  using Codec = PayloadCodec<T>;
  (void)Codec::Spec();
  if (!Codec::Matches(p)) return false;
  T value = Codec::Decode(p);
  v1::Payload back = Codec::Encode(value);
  Require(Codec::Matches(back), "a decoded value does not encode back");
  if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
    Require(static_cast<double>(value) == p.value().number_value(),
            "an integer parameter changed the number");
  }
  return true;
}

// Every accessor of `Payload`; each may throw only TypeError.
void Access(const Payload& v, int depth) {
  try { (void)v.AsDouble(); } catch (const TypeError&) {}
  try { (void)v.AsInt(); } catch (const TypeError&) {}
  try { (void)v.AsString(); } catch (const TypeError&) {}
  try { (void)v.AsBool(); } catch (const TypeError&) {}
  try { (void)v.AsRaw(); } catch (const TypeError&) {}
  try { (void)v.AsMessage<v1::Aid>(); } catch (const TypeError&) {}
  (void)v.TypeName();
  (void)v.IsNull();
  (void)(v == v);
  if (depth > 3) return;
  try {
    const size_t n = v.size();
    for (size_t i = 0; i < n && i < 4; ++i) {
      if (v.IsList()) Access(v[i], depth + 1);
    }
    if (v.IsObject()) {
      for (const auto& [key, field] : v.proto().value().struct_value().fields()) {
        Require(v.Has(key), "an object lacks its own key");
        Access(v[key], depth + 1);
        break;
      }
    }
    try { (void)v[n]; } catch (const TypeError&) {}
    try { (void)v["\x01missing"]; } catch (const TypeError&) {}
  } catch (const TypeError&) {
  }
}

EndpointParam Param(std::string name, std::string spec,
                    std::function<bool(const v1::Payload&)> matches) {
  return EndpointParam{std::move(name), std::move(spec), std::move(matches)};
}

}  // namespace
}  // namespace tractor

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tractor;
  fuzz::FuzzInput in(data, size);
  const uint8_t mode = in.Byte();
  v1::Payload p;
  if (mode & 1) {
    // JSON text, through the JSON decoder.
    try {
      p = Payload::FromJson(in.Rest()).proto();
    } catch (const TypeError&) {
      return 0;
    }
  } else if (!p.ParseFromString(in.Rest())) {
    return 0;
  }

  const bool any = DecodeAs<Payload>(p);
  const bool message = DecodeAs<v1::Aid>(p);
  const bool error_message = DecodeAs<v1::Error>(p);
  const bool string = DecodeAs<std::string>(p);
  const bool number = DecodeAs<double>(p);
  const bool int64 = DecodeAs<int64_t>(p);
  const bool int32 = DecodeAs<int>(p);
  const bool boolean = DecodeAs<bool>(p);
  Require(any, "the any codec refused a payload");
  Require(!int32 || int64, "an int accepted what int64_t refused");
  Require(!int64 || number, "an integer accepted what double refused");

  PayloadSpec spec = PayloadSpec::Of<v1::Aid>() | PayloadSpec::Of<int>() |
                     PayloadSpec::Null();
  const bool is_null = p.has_value() && p.value().has_null_value();
  Require(spec.Matches(p) == (message || int32 || is_null),
          "a spec union disagrees with its members");
  Require(PayloadSpec().Matches(p), "the default spec refused a payload");

  v1::Aid self;
  self.set_name("fuzz");
  v1::Error e = internal::MakeMsgTypeError(self, "cid", "Yield", p,
                                           spec.name());
  Require(!e.message().empty(), "a MsgTypeError without a message");

  Payload v(p);
  Access(v, 0);
  std::string json;
  try {
    json = v.ToJson();
  } catch (const TypeError&) {
  }

  const std::vector<EndpointParam> params = {
      Param("a", PayloadCodec<int>::Spec(), &PayloadCodec<int>::Matches),
      Param("b", PayloadCodec<std::string>::Spec(),
            &PayloadCodec<std::string>::Matches),
      Param("c", PayloadCodec<Payload>::Spec(),
            &PayloadCodec<Payload>::Matches),
  };
  std::vector<v1::Payload> split;
  const std::string problem = internal::SplitNamedArgs(params, p, &split);
  if (problem.empty()) {
    Require(split.size() == params.size(), "named arguments lost a value");
    for (size_t i = 0; i < params.size(); ++i) {
      Require(params[i].matches(split[i]), "a split argument does not match");
    }
  } else {
    v1::Error args_error =
        internal::MakeArgsTypeError(self, "cid", "f", p, problem);
    Require(!args_error.message().empty(), "an args error without a message");
  }
  (void)error_message;
  (void)string;
  (void)boolean;
  return 0;
}
