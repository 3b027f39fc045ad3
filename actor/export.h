// SPDX-License-Identifier: AGPL-3.0-or-later
// Exporting functions so that other actors (and foreign gRPC clients) can
// call them by name, "namespace:function"
// (docs/design.md#exported-functions).
//
//   std::string Greet(const std::string& who) { return "hi " + who; }
//   TRACTOR_EXPORT("demo:greet", Greet);
//
// A function may take no argument or one, and may return void or a value;
// the argument and result types are `Payload` (any JSON-like value or
// message) or a type `PayloadCodec` knows (protobuf messages, std::string,
// double, int64_t, int, bool), which is then the declared payload type and
// is checked on arrival (`MsgTypeError`). A context endpoint takes a
// `Context&` first. An actor serves only the namespaces it enables.
#ifndef TRACTOR_ACTOR_EXPORT_H_
#define TRACTOR_ACTOR_EXPORT_H_

#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "actor/payload.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

class Context;

// A registered function. Immutable once registered.
struct Endpoint {
  std::string name;  // "ns:func"
  std::string ns;
  v1::FuncType type = v1::FUNC_TYPE_FUNCTION;
  std::string arg_spec;     // declared argument type ("any", "string", ...)
  std::string result_spec;  // declared result type
  std::function<bool(const v1::Payload&)> arg_matches;
  // Runs the function. `ctx` is null for plain functions. Throws what the
  // function throws.
  std::function<v1::Payload(Context* ctx, const v1::Payload& args)> invoke;
};

// Registers `endpoint`; returns true. Thread-safe; typically called from a
// static initializer through TRACTOR_EXPORT. A second registration of the
// same name replaces the first (and logs a warning).
bool RegisterEndpoint(Endpoint endpoint);

namespace internal {

// Returns the endpoint registered under `name`, or null.
const Endpoint* FindEndpoint(const std::string& name);
// Every registered name in namespace `ns` ("" for all), sorted.
std::vector<std::string> EndpointNames(const std::string& ns = "");

template <class T>
v1::Payload EncodeResult(const T& value) {
  return PayloadCodec<T>::Encode(value);
}

template <class A>
struct ArgTraits {
  using Arg = std::decay_t<A>;
  static std::string Spec() { return PayloadCodec<Arg>::Spec(); }
  static bool Matches(const v1::Payload& p) {
    return PayloadCodec<Arg>::Matches(p);
  }
  static Arg Decode(const v1::Payload& p) { return PayloadCodec<Arg>::Decode(p); }
};

template <class R, class Call>
v1::Payload InvokeAndEncode(Call&& call) {
  if constexpr (std::is_void_v<R>) {
    call();
    return Payload().proto();
  } else {
    return EncodeResult<std::decay_t<R>>(call());
  }
}

template <class R>
std::string ResultSpec() {
  if constexpr (std::is_void_v<R>) {
    return "null";
  } else {
    return PayloadCodec<std::decay_t<R>>::Spec();
  }
}

template <class R, class A>
Endpoint MakeEndpoint(std::function<R(A)> fn) {
  Endpoint e;
  e.arg_spec = ArgTraits<A>::Spec();
  e.result_spec = ResultSpec<R>();
  e.arg_matches = &ArgTraits<A>::Matches;
  e.invoke = [fn](Context*, const v1::Payload& args) {
    return InvokeAndEncode<R>([&] { return fn(ArgTraits<A>::Decode(args)); });
  };
  return e;
}

template <class R>
Endpoint MakeEndpoint(std::function<R()> fn) {
  Endpoint e;
  e.arg_spec = "any";
  e.result_spec = ResultSpec<R>();
  e.arg_matches = [](const v1::Payload&) { return true; };
  e.invoke = [fn](Context*, const v1::Payload&) {
    return InvokeAndEncode<R>([&] { return fn(); });
  };
  return e;
}

template <class R, class A>
Endpoint MakeEndpoint(std::function<R(Context&, A)> fn) {
  Endpoint e;
  e.type = v1::FUNC_TYPE_CONTEXT;
  e.arg_spec = ArgTraits<A>::Spec();
  e.result_spec = ResultSpec<R>();
  e.arg_matches = &ArgTraits<A>::Matches;
  e.invoke = [fn](Context* ctx, const v1::Payload& args) {
    return InvokeAndEncode<R>(
        [&] { return fn(*ctx, ArgTraits<A>::Decode(args)); });
  };
  return e;
}

template <class R>
Endpoint MakeEndpoint(std::function<R(Context&)> fn) {
  Endpoint e;
  e.type = v1::FUNC_TYPE_CONTEXT;
  e.arg_spec = "any";
  e.result_spec = ResultSpec<R>();
  e.arg_matches = [](const v1::Payload&) { return true; };
  e.invoke = [fn](Context* ctx, const v1::Payload&) {
    return InvokeAndEncode<R>([&] { return fn(*ctx); });
  };
  return e;
}

}  // namespace internal

// Registers `fn` under `name` ("ns:func"). Returns true.
template <class F>
bool Export(const std::string& name, F fn) {
  Endpoint e = internal::MakeEndpoint(std::function(fn));
  e.name = name;
  e.ns = name.substr(0, name.find(':'));
  return RegisterEndpoint(std::move(e));
}

}  // namespace tractor

#define TRACTOR_EXPORT_CONCAT_(a, b) a##b
#define TRACTOR_EXPORT_CONCAT(a, b) TRACTOR_EXPORT_CONCAT_(a, b)
// Registers a function at static-initialization time.
#define TRACTOR_EXPORT(name, fn)                                       \
  [[maybe_unused]] static const bool TRACTOR_EXPORT_CONCAT(            \
      tractor_exported_, __COUNTER__) = ::tractor::Export(name, fn)

#endif  // TRACTOR_ACTOR_EXPORT_H_
