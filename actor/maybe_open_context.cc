// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/maybe_open_context.h"

#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/internal/gate.h"
#include "actor/internal/scope.h"
#include "actor/runtime.h"
#include "discovery/mutex.h"

namespace tractor {
namespace internal {
namespace {

// The task group of one opening function in one actor: the parent scope of
// its resources' tasks, and the gate they hold. When the actor exits it is
// cancelled and awaited (by then no user is left, so no resource either).
struct FunctionNursery {
  std::shared_ptr<ScopeState> scope = std::make_shared<ScopeState>();
  Gate gate;
};

std::shared_ptr<FunctionNursery> NurseryFor(const std::string& function_id) {
  struct Nurseries {
    Mutex mu;
    std::map<std::string, std::shared_ptr<FunctionNursery>> by_id
        ABSL_GUARDED_BY(mu);
  };
  static auto* nurseries = new Nurseries;
  const std::string actor = HasRuntime() ? CurrentActor().uuid() : "";
  const std::string id = actor + "/" + function_id;
  std::shared_ptr<FunctionNursery> n;
  {
    MutexLock lock(&nurseries->mu);
    auto& slot = nurseries->by_id[id];
    if (slot) return slot;
    slot = n = std::make_shared<FunctionNursery>();
  }
  if (!actor.empty()) {
    AddLifetimeCallback([n, id] {
      {
        MutexLock lock(&nurseries->mu);
        auto it = nurseries->by_id.find(id);
        if (it != nurseries->by_id.end() && it->second == n) {
          nurseries->by_id.erase(it);
        }
      }
      n->scope->Cancel();
      n->gate.Close(CloseReason::kCancel);
      ScopeBinding bind(NewScope(nullptr, absl::InfiniteFuture(),
                                 /*shield=*/true));
      n->gate.WaitDrained();
    });
  }
  return n;
}

// One live resource. The fields are guarded by its key's mutex, except
// `scope` and `thread`, set before the resource is shared.
struct Resource {
  int users = 0;
  bool ready = false;     // `serve` was called: `value` is set
  bool release = false;   // the last user left: `serve` returns
  bool finished = false;  // `open` returned or threw
  void* value = nullptr;
  std::exception_ptr error;  // what `open` threw
  // The scope `open` runs in, a child of its function's nursery scope.
  std::shared_ptr<ScopeState> scope;
  // Runs `open`; joined by whoever tears the resource down (`AwaitTask`).
  std::thread thread;
};

// Everything about one key.
struct Key {
  Mutex mu;
  CondVar cv;  // signalled on every change of the key or its resource
  bool locked ABSL_GUARDED_BY(mu) = false;  // entering or tearing down
  std::shared_ptr<Resource> resource ABSL_GUARDED_BY(mu);
};

std::shared_ptr<Key> KeyFor(const std::string& key) {
  struct Keys {
    Mutex mu;
    std::map<std::string, std::shared_ptr<Key>> by_name ABSL_GUARDED_BY(mu);
  };
  static auto* keys = new Keys;
  MutexLock lock(&keys->mu);
  auto& k = keys->by_name[key];
  if (!k) k = std::make_shared<Key>();
  return k;
}

// Waits, not cancellable, for `pred` (which needs `k.mu`).
template <class Pred>
void WaitShielded(Key& k, Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(k.mu) {
  ScopeBinding bind(NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  Wait(k.cv, k.mu, pred);
}

// Starts `open` serving `res` in a task of `nursery`. Throws RuntimeFailure
// when the actor is exiting.
void StartResourceTask(std::shared_ptr<Key> k, std::shared_ptr<Resource> res,
                       ErasedOpen open,
                       const std::shared_ptr<FunctionNursery>& nursery) {
  std::optional<Gate::Holder> hold = nursery->gate.TryEnter();
  if (!hold) {
    throw RuntimeFailure(
        "MaybeOpenContext: the actor is exiting; no new resource opens");
  }
  res->scope = NewScope(nursery->scope, absl::InfiniteFuture(), false);
  res->thread = std::thread([k, res, open = std::move(open),
                             hold = *std::move(hold)]() mutable {
    {
      UserTask task;
      ScopeBinding bind(res->scope);
      std::exception_ptr error;
      try {
        open([&](void* value) {
          MutexLock lock(&k->mu);
          res->value = value;
          res->ready = true;
          k->cv.SignalAll();
          // The value lives in `open` until the last user left: this wait
          // is not cut short by a cancel.
          WaitShielded(*k, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(k->mu) {
            return res->release;
          });
        });
      } catch (...) {
        error = std::current_exception();
      }
      {
        MutexLock lock(&k->mu);
        res->error = error;
        res->finished = true;
      }
      k->cv.SignalAll();
    }
    hold.Leave();  // the last thing this thread does with the resource
  });
}

// Ends `res` (the caller is its last user and holds the key, `locked`):
// tells `serve` to return and waits until `open` finished. Returns its
// error. The caller then joins the task with `AwaitTask`, without the key's
// mutex.
std::exception_ptr TearDown(Key& k, const std::shared_ptr<Resource>& res)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(k.mu) {
  res->release = true;
  k.cv.SignalAll();
  WaitShielded(k, [&] { return res->finished; });
  if (k.resource == res) k.resource = nullptr;
  return res->error;
}

// Joins the thread that ran `open` for `res` (it finished already: see
// `TearDown`).
void AwaitTask(Resource& res) {
  if (res.thread.joinable()) res.thread.join();
}

}  // namespace

void MaybeOpenErased(const std::string& function_id, const std::string& key,
                     ErasedOpen open,
                     const std::function<void(bool, void*)>& body) {
  std::shared_ptr<Key> k = KeyFor(function_id + '\0' + key);
  std::shared_ptr<Resource> res;
  bool hit = false;
  // Set when entering failed: the resource was torn down, and the error is
  // raised once its task is gone.
  std::exception_ptr enter_error;
  {
    MutexLock lock(&k->mu);
    Wait(k->cv, k->mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(k->mu) {
      return !k->locked;
    });
    k->locked = true;
    struct Unlock {
      Key& k;
      // Runs with k.mu held (declared after `lock`).
      ~Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        k.locked = false;
        k.cv.SignalAll();
      }
    } unlock{*k};
    if (k->resource) {
      hit = true;
      res = k->resource;
      ++res->users;
    } else {
      auto fresh = std::make_shared<Resource>();
      fresh->users = 1;
      StartResourceTask(k, fresh, std::move(open), NurseryFor(function_id));
      res = fresh;
      k->resource = res;
      try {
        Wait(k->cv, k->mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(k->mu) {
          return res->ready || res->finished;
        });
      } catch (...) {
        // Cancelled before the value arrived: stop the resource.
        TearDown(*k, res);
        enter_error = std::current_exception();
      }
      if (!enter_error && !res->ready) {  // `open` failed before serving
        std::exception_ptr error = TearDown(*k, res);
        enter_error = error ? error
                            : std::make_exception_ptr(UsageError(
                                  "MaybeOpenContext: '" + key +
                                  "' ended without a value"));
      }
    }
  }
  if (enter_error) {
    AwaitTask(*res);
    std::rethrow_exception(enter_error);
  }
  std::exception_ptr body_error;
  bool body_cancelled = false;
  try {
    body(hit, res->value);
  } catch (const Cancelled&) {
    body_error = std::current_exception();
    body_cancelled = true;
  } catch (...) {
    body_error = std::current_exception();
  }
  std::exception_ptr exit_error;
  bool last = false;
  {
    MutexLock lock(&k->mu);
    WaitShielded(*k, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(k->mu) {
      return !k->locked;
    });
    if (--res->users == 0) {
      k->locked = true;
      exit_error = TearDown(*k, res);
      k->locked = false;
      k->cv.SignalAll();
      last = true;
    }
  }
  if (last) AwaitTask(*res);
  if (body_error && !(body_cancelled && exit_error)) {
    std::rethrow_exception(body_error);
  }
  if (exit_error) std::rethrow_exception(exit_error);
}

}  // namespace internal

void MaybeOpenContext(
    const std::string& key, const ResourceFn& open,
    const std::function<void(bool cache_hit, const Payload& value)>& body) {
  using FnPtr = void (*)(const std::function<void(const Payload&)>&);
  std::string id = std::string("ResourceFn:") + open.target_type().name();
  if (const FnPtr* f = open.target<FnPtr>()) {
    id += "@" + std::to_string(reinterpret_cast<uintptr_t>(*f));
  }
  internal::MaybeOpenErased(
      id, key,
      [open](const internal::ErasedServe& serve) {
        open([&](const Payload& value) {
          Payload copy = value;
          serve(&copy);
        });
      },
      [&](bool hit, void* value) {
        body(hit, *static_cast<const Payload*>(value));
      });
}

void MaybeOpenNursery(TaskGroup* group,
                      const std::function<void(TaskGroup&)>& body) {
  if (group != nullptr) {
    body(*group);
    return;
  }
  TaskGroup::Open(body);
}

}  // namespace tractor
