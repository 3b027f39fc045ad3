// SPDX-License-Identifier: AGPL-3.0-or-later
// Exporting functions so that other actors (and foreign gRPC clients) can
// call them by name, "namespace:function"
// (docs/design.md#exported-functions).
//
//   std::string Greet(const std::string& who) { return "hi " + who; }
//   TRACTOR_EXPORT("demo:greet", Greet);
//
//   std::string Repeat(int64_t count, const std::string& label) { ... }
//   TRACTOR_EXPORT("demo:repeat", Repeat, "count", "label");
//   // portal.Run("demo:repeat", {{"count", 3}, {"label", "x"}})
//
// Exported without parameter names, a function takes no argument or one:
// the argument payload is that argument itself. Exported with one name per
// parameter, it takes any number of them, and its argument payload is an
// object whose keys are exactly the names, or a list of as many values, in
// order; a missing or unexpected key, a list of another length or a payload
// of another kind is answered with a `MsgTypeError` naming it. Arguments
// and results are `Payload` (any value) or a type `PayloadCodec` knows
// (protobuf messages, std::string, double, int64_t, int, bool), which is
// then the declared type and is checked on arrival (`MsgTypeError` naming
// the parameter). A named parameter holds a JSON-like value, so it cannot
// be a protobuf message (a message travels as the single unnamed argument).
// A context endpoint takes a `Context&` first (not counted, not named). The
// result may be void. An actor serves only the namespaces it enables.
#ifndef TRACTOR_ACTOR_EXPORT_H_
#define TRACTOR_ACTOR_EXPORT_H_

#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "actor/payload.h"
#include "tractor/v1/msg.pb.h"

namespace tractor {

class Context;

// One named parameter of an exported function.
struct EndpointParam {
  std::string name;
  std::string spec;  // declared type ("any", "string", "integer", ...)
  std::function<bool(const v1::Payload&)> matches;
};

// A registered function. Immutable once registered.
struct Endpoint {
  std::string name;  // "ns:func"
  std::string ns;
  v1::FuncType type = v1::FUNC_TYPE_FUNCTION;
  // Named parameters, in order; empty for a function exported without
  // names, which takes its argument payload as is.
  std::vector<EndpointParam> params;
  // Exported without names: whether the function takes its argument (one
  // parameter) or ignores it (none).
  bool takes_arg = false;
  std::string arg_spec;     // declared argument type ("any", "string", ...)
  std::string result_spec;  // declared result type
  // Exported without names: whether the argument payload has the declared
  // type.
  std::function<bool(const v1::Payload&)> arg_matches;
  // Runs the function. `ctx` is null for plain functions. `args` passed the
  // checks (`internal::CheckArgs`); the function may take it (move from
  // it). Throws what the function throws.
  std::function<v1::Payload(Context* ctx, v1::Payload& args)> invoke;
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

// Splits the argument payload of a function with named `params` into one
// payload per parameter, in order: from an object whose keys are exactly
// the names, or from a list of as many values. Returns an empty string and
// fills `out`, or returns what is wrong (a missing or unexpected key, the
// length, the kind of payload, or the first argument whose type does not
// match its parameter's, named).
std::string SplitNamedArgs(const std::vector<EndpointParam>& params,
                           const v1::Payload& args,
                           std::vector<v1::Payload>* out);

template <class T>
v1::Payload EncodeResult(T&& value) {
  return PayloadCodec<std::decay_t<T>>::Encode(std::forward<T>(value));
}

template <class A>
struct ArgTraits {
  using Arg = std::decay_t<A>;
  static std::string Spec() { return PayloadCodec<Arg>::Spec(); }
  static bool Matches(const v1::Payload& p) {
    return PayloadCodec<Arg>::Matches(p);
  }
  static Arg Decode(const v1::Payload& p) { return PayloadCodec<Arg>::Decode(p); }
  // Decodes the argument of a call, which is not needed afterwards: a
  // Payload parameter takes it without a copy.
  static Arg Take(v1::Payload& p) {
    if constexpr (std::is_same_v<Arg, Payload>) {
      return Payload(std::move(p));
    } else {
      return Decode(p);
    }
  }
};

template <class R, class Call>
v1::Payload InvokeAndEncode(Call&& call) {
  if constexpr (std::is_void_v<R>) {
    call();
    return Payload().proto();
  } else {
    return EncodeResult(call());
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
  e.takes_arg = true;
  e.arg_spec = ArgTraits<A>::Spec();
  e.result_spec = ResultSpec<R>();
  e.arg_matches = &ArgTraits<A>::Matches;
  e.invoke = [fn](Context*, v1::Payload& args) {
    return InvokeAndEncode<R>([&] { return fn(ArgTraits<A>::Take(args)); });
  };
  return e;
}

template <class R>
Endpoint MakeEndpoint(std::function<R()> fn) {
  Endpoint e;
  e.arg_spec = "any";
  e.result_spec = ResultSpec<R>();
  e.arg_matches = [](const v1::Payload&) { return true; };
  e.invoke = [fn](Context*, v1::Payload&) {
    return InvokeAndEncode<R>([&] { return fn(); });
  };
  return e;
}

template <class R, class A>
Endpoint MakeEndpoint(std::function<R(Context&, A)> fn) {
  Endpoint e;
  e.takes_arg = true;
  e.type = v1::FUNC_TYPE_CONTEXT;
  e.arg_spec = ArgTraits<A>::Spec();
  e.result_spec = ResultSpec<R>();
  e.arg_matches = &ArgTraits<A>::Matches;
  e.invoke = [fn](Context* ctx, v1::Payload& args) {
    return InvokeAndEncode<R>(
        [&] { return fn(*ctx, ArgTraits<A>::Take(args)); });
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
  e.invoke = [fn](Context* ctx, v1::Payload&) {
    return InvokeAndEncode<R>([&] { return fn(*ctx); });
  };
  return e;
}

template <class... A>
struct FirstIsContext : std::false_type {};
template <class... A>
struct FirstIsContext<Context&, A...> : std::true_type {};

template <class R, class... A, size_t... I>
v1::Payload InvokeNamed(const std::function<R(A...)>& fn,
                        const std::vector<v1::Payload>& args,
                        std::index_sequence<I...>) {
  return InvokeAndEncode<R>(
      [&] { return fn(ArgTraits<A>::Decode(args[I])...); });
}

template <class R, class... A, size_t... I>
v1::Payload InvokeNamed(const std::function<R(Context&, A...)>& fn,
                        Context& ctx, const std::vector<v1::Payload>& args,
                        std::index_sequence<I...>) {
  return InvokeAndEncode<R>(
      [&] { return fn(ctx, ArgTraits<A>::Decode(args[I])...); });
}

template <class... A>
std::vector<EndpointParam> NamedParams(
    const std::array<std::string, sizeof...(A)>& names) {
  static_assert(
      (!std::is_base_of_v<google::protobuf::Message, std::decay_t<A>> && ...),
      "a named parameter holds a JSON-like value: export a function taking "
      "a protobuf message without parameter names");
  std::vector<EndpointParam> params;
  size_t i = 0;
  ((params.push_back(EndpointParam{names[i++], ArgTraits<A>::Spec(),
                                   &ArgTraits<A>::Matches})),
   ...);
  return params;
}

// Splits `args` (already checked) for `invoke`.
std::vector<v1::Payload> SplitCheckedArgs(
    const std::vector<EndpointParam>& params, const v1::Payload& args);

template <class R, class... A, size_t N>
  requires(!FirstIsContext<A...>::value)
Endpoint MakeNamedEndpoint(std::function<R(A...)> fn,
                           const std::array<std::string, N>& names) {
  static_assert(N == sizeof...(A),
                "TRACTOR_EXPORT: give one name per parameter");
  Endpoint e;
  e.params = NamedParams<A...>(names);
  e.arg_spec = "object";
  e.result_spec = ResultSpec<R>();
  e.invoke = [fn, params = e.params](Context*, v1::Payload& args) {
    return InvokeNamed(fn, SplitCheckedArgs(params, args),
                       std::index_sequence_for<A...>());
  };
  return e;
}

template <class R, class... A, size_t N>
Endpoint MakeNamedEndpoint(std::function<R(Context&, A...)> fn,
                           const std::array<std::string, N>& names) {
  static_assert(N == sizeof...(A),
                "TRACTOR_EXPORT: give one name per parameter after the "
                "Context&");
  Endpoint e;
  e.type = v1::FUNC_TYPE_CONTEXT;
  e.params = NamedParams<A...>(names);
  e.arg_spec = "object";
  e.result_spec = ResultSpec<R>();
  e.invoke = [fn, params = e.params](Context* ctx, v1::Payload& args) {
    return InvokeNamed(fn, *ctx, SplitCheckedArgs(params, args),
                       std::index_sequence_for<A...>());
  };
  return e;
}

}  // namespace internal

// Registers `fn` under `name` ("ns:func"), with `param_names` naming its
// parameters (none: the one-argument form). Returns true. Aborts (a
// programming error, found at static initialization) on a name without
// "ns:" or repeated parameter names.
template <class F, class... Names>
bool Export(const std::string& name, F fn, const Names&... param_names) {
  Endpoint e;
  if constexpr (sizeof...(Names) == 0) {
    e = internal::MakeEndpoint(std::function(fn));
  } else {
    e = internal::MakeNamedEndpoint(
        std::function(fn),
        std::array<std::string, sizeof...(Names)>{std::string(param_names)...});
  }
  e.name = name;
  e.ns = name.substr(0, name.find(':'));
  return RegisterEndpoint(std::move(e));
}

}  // namespace tractor

#define TRACTOR_EXPORT_CONCAT_(a, b) a##b
#define TRACTOR_EXPORT_CONCAT(a, b) TRACTOR_EXPORT_CONCAT_(a, b)
// Registers a function at static-initialization time:
// `TRACTOR_EXPORT("ns:f", F)` or, naming its parameters,
// `TRACTOR_EXPORT("ns:f", F, "count", "label")`.
#define TRACTOR_EXPORT(name, ...)                                      \
  [[maybe_unused]] static const bool TRACTOR_EXPORT_CONCAT(            \
      tractor_exported_, __COUNTER__) = ::tractor::Export(name, __VA_ARGS__)

#endif  // TRACTOR_ACTOR_EXPORT_H_
