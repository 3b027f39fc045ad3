// SPDX-License-Identifier: AGPL-3.0-or-later
// A resource shared by the tasks of one actor: tractor's
// `maybe_open_context` and `maybe_open_nursery`
// (docs/behaviour.md#shared-resources-and-clusters).
//
//   // Opens one feed per host; every task asking for the same host while
//   // it is open shares it.
//   void OpenFeed(const Payload& kwargs,
//                 const std::function<void(Feed& feed)>& serve) {
//     Feed feed(kwargs["host"].AsString());  // set up
//     serve(feed);                           // returns once the last user left
//   }                                        // torn down
//
//   MaybeOpenContext<Feed>(OpenFeed, Payload::Object({{"host", "h1"}}), {},
//                          [](bool cache_hit, Feed& feed) { ... });
#ifndef TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_
#define TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "actor/cancel.h"
#include "actor/payload.h"

namespace tractor {

// Which resource of an opening function a user asks for (tractor's `key`):
// a string, a callable computing it from the arguments, or, by default,
// the arguments themselves (their JSON text). Copyable value type.
class ResourceKey {
 public:
  // The arguments are the key.
  ResourceKey() = default;
  ResourceKey(std::string key) : key_(std::move(key)), given_(true) {}
  ResourceKey(const char* key) : ResourceKey(std::string(key)) {}
  // `fn(kwargs)` computes the key.
  template <class F>
    requires std::is_invocable_r_v<std::string, const F&, const Payload&>
  ResourceKey(F fn) : fn_(std::move(fn)) {}

  // The key for `kwargs`. Throws what a key callable throws.
  std::string For(const Payload& kwargs) const {
    if (fn_) return fn_(kwargs);
    return given_ ? key_ : kwargs.ToJson();
  }

 private:
  std::string key_;
  bool given_ = false;
  std::function<std::string(const Payload&)> fn_;
};

namespace internal {

using ErasedServe = std::function<void(void* value)>;
using ErasedOpen = std::function<void(const ErasedServe& serve)>;

// The engine behind `MaybeOpenContext`: resources are cached under
// (`function_id`, `key`); `value` is the address `open` passed to `serve`.
void MaybeOpenErased(const std::string& function_id, const std::string& key,
                     ErasedOpen open,
                     const std::function<void(bool cache_hit, void* value)>& body);

// Identifies an opening function: its type (every lambda expression has
// its own) and, for a function pointer, its address.
template <class F>
std::string FunctionId(const F& f) {
  std::string id = typeid(F).name();
  if constexpr (std::is_function_v<F>) {
    id += "@" + std::to_string(reinterpret_cast<uintptr_t>(&f));
  } else if constexpr (std::is_pointer_v<F> &&
                       std::is_function_v<std::remove_pointer_t<F>>) {
    id += "@" + std::to_string(reinterpret_cast<uintptr_t>(f));
  }
  return id;
}

}  // namespace internal

// Runs `body(cache_hit, value)` with the resource that `open(kwargs, serve)`
// provides, shared by every task of this actor that asks for the same
// opening function and key meanwhile (tractor's `maybe_open_context`):
// - the cache key is the opening function (its type, and its address for a
//   function pointer) together with `key.For(kwargs)`: two functions never
//   share a resource, whatever their keys;
// - `open` sets the resource up, calls `serve(value)` with it (which
//   returns once the last user has left) and tears it down; the value may
//   be of any type (a Portal, a MsgStream, a user object) and lives in
//   `open` for as long as it serves, so users share that very object (in
//   single-task actors one task runs at a time; with free threads, guard it);
// - the first user (a miss, `cache_hit` false) starts `open` in a task of
//   the opening function's own task group, supervised by this actor, and
//   waits for the value; later users (hits) get the same value;
// - the last user to leave waits until `open` has torn the resource down and
//   its task has ended, and gets the error `open` ended with, if any (it
//   replaces a pending cancellation; a body's own error is raised in
//   preference to it);
// - entering and the teardown hold a per-key lock, so a user arriving
//   during a teardown waits for it and then gets a fresh miss;
// - a first user cancelled before the value arrived stops the resource:
//   `serve` returns at once when `open` reaches it, and the user waits for
//   `open` to end; the key is free again for the next user. An `open` that
//   fails before serving raises its error in the users that waited for it;
// - `open`'s task is a thread that is joined, never detached, before the
//   last user (or the failed first one) returns. When this actor exits, its
//   task groups are cancelled and awaited.
template <class T, class Open>
  requires std::is_invocable_v<const Open&, const Payload&,
                               const std::function<void(T&)>&>
void MaybeOpenContext(const Open& open, const Payload& kwargs,
                      const ResourceKey& key,
                      const std::function<void(bool cache_hit, T& value)>& body) {
  internal::MaybeOpenErased(
      internal::FunctionId(open) + "/" + typeid(T).name(), key.For(kwargs),
      [fn = std::decay_t<Open>(open), kwargs](const internal::ErasedServe& serve) {
        fn(kwargs, std::function<void(T&)>([&](T& v) { serve(&v); }));
      },
      [&](bool hit, void* value) { body(hit, *static_cast<T*>(value)); });
}

// Sets a resource up, calls `serve(value)` (which returns once the last
// user has left), then tears the resource down.
using ResourceFn =
    std::function<void(const std::function<void(const Payload& value)>& serve)>;

// The form of `MaybeOpenContext` whose value is a `Payload` and whose key is
// given: the cache key is `open`'s function (the type of the callable it
// wraps, and its address for a function pointer) with `key`. `body` gets a
// copy of the value.
void MaybeOpenContext(
    const std::string& key, const ResourceFn& open,
    const std::function<void(bool cache_hit, const Payload& value)>& body);

// Runs `body` with `group` when one is given, otherwise with a new task
// group that `body`'s tasks must finish in before this returns (tractor's
// `maybe_open_nursery`): code that may run inside a caller's task group or
// on its own.
void MaybeOpenNursery(TaskGroup* group,
                      const std::function<void(TaskGroup&)>& body);

}  // namespace tractor

#endif  // TRACTOR_ACTOR_MAYBE_OPEN_CONTEXT_H_
