// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace tractor::discovery {

namespace {

bool UserTunesMalloc() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) {
    return true;
  }
  for (const char* name : {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                           "MALLOC_TOP_PAD_"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

}  // namespace

bool TuneAllocatorForMessages() {
  if (UserTunesMalloc()) return false;
  // Either call alone would fix both thresholds (glibc stops adjusting
  // them); both are given their value.
  const bool trim = mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
  const bool mmap = mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  return trim && mmap;
}

bool ReleaseFreeMemoryAbove(size_t min_free) {
  // mallinfo2 walks the arenas' bins; cheap next to a trim, which also
  // gives back the free pages between live blocks.
  if (mallinfo2().fordblks <= min_free) return false;
  malloc_trim(0);
  return true;
}

}  // namespace tractor::discovery
