#include "actor/maybe_open_context.h"

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "actor/cancel.h"
#include "actor/errors.h"

namespace tractor {
namespace {

// One live resource. Guarded by its key's mutex.
struct Resource {
  int users = 0;
  bool ready = false;     // `serve` was called: `value` is set
  bool release = false;   // the last user left: `serve` returns
  bool finished = false;  // `open` returned or threw
  Payload value;
  std::exception_ptr error;  // what `open` threw
};

// Everything about one key.
struct Key {
  std::mutex mu;
  std::condition_variable_any cv;
  bool locked = false;  // entering or tearing down
  std::shared_ptr<Resource> resource;
};

std::shared_ptr<Key> KeyFor(const std::string& key) {
  static std::mutex mu;
  static auto* keys = new std::map<std::string, std::shared_ptr<Key>>;
  std::lock_guard<std::mutex> lk(mu);
  auto& k = (*keys)[key];
  if (!k) k = std::make_shared<Key>();
  return k;
}

// Waits, not cancellable, for `pred` under `lk`.
template <class Pred>
void WaitShielded(Key& k, std::unique_lock<std::mutex>& lk, Pred pred) {
  internal::ScopeBinding bind(
      internal::NewScope(nullptr, absl::InfiniteFuture(), /*shield=*/true));
  internal::Wait(k.cv, lk, pred);
}

// Starts `open` in a task of its own, serving `res`.
void StartResourceTask(std::shared_ptr<Key> k, std::shared_ptr<Resource> res,
                       ResourceFn open) {
  std::thread([k, res, open = std::move(open)] {
    internal::UserTask task;
    internal::ScopeBinding bind(
        internal::NewScope(nullptr, absl::InfiniteFuture(), false));
    std::exception_ptr error;
    try {
      open([&](const Payload& value) {
        std::unique_lock<std::mutex> lk(k->mu);
        res->value = value;
        res->ready = true;
        k->cv.notify_all();
        internal::Wait(k->cv, lk, [&] { return res->release; });
      });
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(k->mu);
      res->error = error;
      res->finished = true;
    }
    k->cv.notify_all();
  }).detach();
}

// Ends `res` (the caller is its last user and holds the key's lock): tells
// `serve` to return and waits until `open` finished. Returns its error.
std::exception_ptr TearDown(Key& k, std::unique_lock<std::mutex>& lk,
                            const std::shared_ptr<Resource>& res) {
  res->release = true;
  k.cv.notify_all();
  WaitShielded(k, lk, [&] { return res->finished; });
  if (k.resource == res) k.resource = nullptr;
  return res->error;
}

}  // namespace

void MaybeOpenContext(
    const std::string& key, const ResourceFn& open,
    const std::function<void(bool cache_hit, const Payload& value)>& body) {
  std::shared_ptr<Key> k = KeyFor(key);
  std::shared_ptr<Resource> res;
  bool hit = false;
  {
    std::unique_lock<std::mutex> lk(k->mu);
    internal::Wait(k->cv, lk, [&] { return !k->locked; });
    k->locked = true;
    struct Unlock {
      Key& k;
      ~Unlock() {
        k.locked = false;
        k.cv.notify_all();
      }
    } unlock{*k};  // runs with k->mu held (declared after lk)
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
        internal::Wait(k->cv, lk, [&] { return res->ready || res->finished; });
      } catch (...) {
        // Cancelled before the value arrived: stop the resource.
        TearDown(*k, lk, res);
        throw;
      }
      if (!res->ready) {  // `open` failed before serving
        std::exception_ptr error = TearDown(*k, lk, res);
        std::rethrow_exception(error ? error
                                     : std::make_exception_ptr(UsageError(
                                           "MaybeOpenContext: '" + key +
                                           "' ended without a value")));
      }
    }
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
  {
    std::unique_lock<std::mutex> lk(k->mu);
    WaitShielded(*k, lk, [&] { return !k->locked; });
    if (--res->users == 0) {
      k->locked = true;
      exit_error = TearDown(*k, lk, res);
      k->locked = false;
      k->cv.notify_all();
    }
  }
  if (body_error && !(body_cancelled && exit_error)) {
    std::rethrow_exception(body_error);
  }
  if (exit_error) std::rethrow_exception(exit_error);
}

}  // namespace tractor
