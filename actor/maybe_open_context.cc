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
#include "discovery/mutex.h"

namespace tractor {
namespace {

// One live resource. The fields are guarded by its key's mutex.
struct Resource {
  int users = 0;
  bool ready = false;     // `serve` was called: `value` is set
  bool release = false;   // the last user left: `serve` returns
  bool finished = false;  // `open` returned or threw
  Payload value;
  std::exception_ptr error;  // what `open` threw
  // Held by the thread that runs `open` until it is done; whoever tears the
  // resource down waits for it to drain (`AwaitTask`).
  internal::Gate task;
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
  internal::ScopeBinding bind(
      internal::NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  internal::Wait(k.cv, k.mu, pred);
}

// Starts `open` in a task of its own, serving `res`.
void StartResourceTask(std::shared_ptr<Key> k, std::shared_ptr<Resource> res,
                       ResourceFn open) {
  std::optional<internal::Gate::Holder> hold = res->task.TryEnter();  // open
  std::thread([k, res, open = std::move(open),
               hold = *std::move(hold)]() mutable {
    {
      internal::UserTask task;
      internal::ScopeBinding bind(
          internal::NewScope(nullptr, absl::InfiniteFuture(), false));
      std::exception_ptr error;
      try {
        open([&](const Payload& value) {
          MutexLock lock(&k->mu);
          res->value = value;
          res->ready = true;
          k->cv.SignalAll();
          internal::Wait(k->cv, k->mu, [&] { return res->release; });
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
  }).detach();
}

// Ends `res` (the caller is its last user and holds the key, `locked`):
// tells `serve` to return and waits until `open` finished. Returns its
// error. The caller then awaits the task with `AwaitTask`, without the
// key's mutex.
std::exception_ptr TearDown(Key& k, const std::shared_ptr<Resource>& res)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(k.mu) {
  res->release = true;
  k.cv.SignalAll();
  WaitShielded(k, [&] { return res->finished; });
  if (k.resource == res) k.resource = nullptr;
  return res->error;
}

// Waits, not cancellable, until the thread that ran `open` for `res` is
// gone (it finished already: see `TearDown`).
void AwaitTask(Resource& res) {
  res.task.Close(internal::CloseReason::kExit);
  internal::ScopeBinding bind(
      internal::NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  res.task.WaitDrained();
}

}  // namespace

void MaybeOpenContext(
    const std::string& key, const ResourceFn& open,
    const std::function<void(bool cache_hit, const Payload& value)>& body) {
  std::shared_ptr<Key> k = KeyFor(key);
  std::shared_ptr<Resource> res;
  bool hit = false;
  // Set when entering failed: the resource was torn down, and the error is
  // raised once its task is gone.
  std::exception_ptr enter_error;
  {
    MutexLock lock(&k->mu);
    internal::Wait(k->cv, k->mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(k->mu) {
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
      res = std::make_shared<Resource>();
      res->users = 1;
      k->resource = res;
      StartResourceTask(k, res, open);
      try {
        internal::Wait(k->cv, k->mu,
                       [&] { return res->ready || res->finished; });
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

}  // namespace tractor
