// SPDX-License-Identifier: AGPL-3.0-or-later
#include "devx/throw_trace.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <typeinfo>

#include "devx/stack.h"

namespace tractor::devx {
namespace {

using Destructor = void (*)(void*);

// One live thrown exception and its throw site. A slot is free when `obj`
// is null. Entries are never evicted: the entry holds the object's real
// destructor, which TrackedDestroy must call. When every slot is taken a
// throw is simply not tracked.
struct Entry {
  void* obj;
  Destructor dest;
  int depth;
  void* frames[kMaxFrames];
};

// Zero-initialised at compile time (all slots free), so it stays in .bss
// untouched until something throws: with default member initialisers it
// had a static initialiser that wrote every slot at start-up, dirtying its
// 134 KiB in every process.
constexpr int kSlots = 256;
constinit Entry g_entries[kSlots] = {};
int g_tracked = 0;  // guarded by g_mu
std::mutex g_mu;

std::atomic<int> g_enabled{-1};  // -1: not yet read from the environment

bool Enabled() {
  int v = g_enabled.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* env = std::getenv(kThrowTraceEnv);
    v = (env != nullptr && strcmp(env, "0") == 0) ? 0 : 1;
    g_enabled.store(v, std::memory_order_relaxed);
  }
  return v == 1;
}

// The destructor libstdc++ calls for a tracked exception: drops the entry,
// then runs the object's own destructor.
void TrackedDestroy(void* obj) {
  Destructor dest = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (Entry& e : g_entries) {
      if (e.obj == obj) {
        dest = e.dest;
        e.obj = nullptr;
        --g_tracked;
        break;
      }
    }
  }
  if (dest != nullptr) dest(obj);
}

// Records `frames` for `obj`; returns false when no slot is free.
bool Track(void* obj, Destructor dest, void* const* frames, int depth) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (Entry& e : g_entries) {
    if (e.obj == nullptr) {
      e.obj = obj;
      e.dest = dest;
      e.depth = depth;
      memcpy(e.frames, frames, depth * sizeof(void*));
      ++g_tracked;
      return true;
    }
  }
  return false;
}

using ThrowFn = void (*)(void*, std::type_info*, Destructor);

ThrowFn RealThrow() {
  static ThrowFn real =
      reinterpret_cast<ThrowFn>(dlsym(RTLD_NEXT, "__cxa_throw"));
  return real;
}

}  // namespace

std::vector<void*> ThrowSiteStack(const std::exception_ptr& e) {
  if (!e) return {};
  // libstdc++'s exception_ptr is one pointer: the thrown object.
  static_assert(sizeof(std::exception_ptr) == sizeof(void*));
  void* obj;
  memcpy(&obj, &e, sizeof obj);
  std::lock_guard<std::mutex> lock(g_mu);
  for (const Entry& entry : g_entries) {
    if (entry.obj == obj) {
      return std::vector<void*>(entry.frames, entry.frames + entry.depth);
    }
  }
  return {};
}

std::string ThrowSiteTrace(const std::exception_ptr& e,
                           const std::string& indent) {
  std::vector<void*> frames = ThrowSiteStack(e);
  if (frames.empty()) return "";
  return FormatStack(frames, indent);
}

void SetThrowCapture(bool on) { g_enabled.store(on ? 1 : 0); }

bool ThrowCaptureEnabled() { return Enabled(); }

int TrackedThrows() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_tracked;
}

}  // namespace tractor::devx

// The interposed entry point of every C++ `throw`.
extern "C" __attribute__((noreturn, visibility("default"))) void __cxa_throw(
    void* obj, std::type_info* type, void (*dest)(void*)) {
  using namespace tractor::devx;
  if (Enabled()) {
    void* frames[kMaxFrames];
    // Skip CaptureStack's caller (this function): frames[0] is the throw.
    const int depth = CaptureStack(frames, kMaxFrames, 1);
    if (depth > 0 && Track(obj, dest, frames, depth)) dest = TrackedDestroy;
  }
  RealThrow()(obj, type, dest);
  __builtin_unreachable();
}
