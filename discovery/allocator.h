// SPDX-License-Identifier: AGPL-3.0-or-later
// How a tractor process sets up glibc's allocator for message traffic.
#ifndef TRACTOR_DISCOVERY_ALLOCATOR_H_
#define TRACTOR_DISCOVERY_ALLOCATOR_H_

#include <cstddef>

namespace tractor::discovery {

// Fixes glibc malloc's trim and mmap thresholds (docs/architecture.md,
// Performance): freed memory at the top of an arena is given back to the
// kernel only above kTrimThreshold, and blocks up to kMmapThreshold come
// from the arenas rather than from a fresh mmap each. With glibc's
// defaults (128 KiB, raised by what the program happened to free) a stream
// of KiB-sized messages gave the same pages back and faulted them in again
// many times a millisecond, at a rate that depended on what the process
// had carried before. Called first thing by tractor::Main and the registrar
// daemon.
//
// Left alone when the user tunes malloc through the environment
// (GLIBC_TUNABLES naming a glibc.malloc tunable, or MALLOC_TRIM_THRESHOLD_,
// MALLOC_MMAP_THRESHOLD_ or MALLOC_TOP_PAD_). Returns whether the
// thresholds were set.
bool TuneAllocatorForMessages();

// Gives the kernel back the free pages of every malloc arena
// (`malloc_trim`) when more than `min_free` bytes of the arenas are free,
// and returns whether it did. The trim threshold returns only the free
// memory at an arena's top: blocks freed below a live one (a burst of
// large messages that ended while something small stayed) are kept, up to
// a whole 64 MiB arena heap. A process calls this now and then to bound
// what such a burst leaves behind (the registrar daemon: every second).
bool ReleaseFreeMemoryAbove(size_t min_free);

inline constexpr long kTrimThreshold = 4L << 20;
inline constexpr long kMmapThreshold = 2L << 20;

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_ALLOCATOR_H_
