// SPDX-License-Identifier: AGPL-3.0-or-later
// What a process holds right now: threads, resident memory and live heap.
// Reported by `Actor/Stats` and by the registrar daemon on SIGUSR1, and read
// by the tests that check a process gives back what a load took.
#ifndef TRACTOR_DISCOVERY_PROCESS_USAGE_H_
#define TRACTOR_DISCOVERY_PROCESS_USAGE_H_

#include <cstdint>
#include <string>

namespace tractor::discovery {

struct ProcessUsage {
  // OS threads of the process.
  uint32_t threads = 0;
  // Resident set size, in bytes.
  uint64_t rss_bytes = 0;
  // Bytes of live heap allocations: what the program holds, without the
  // memory its allocator keeps for reuse. glibc's in-use figure (all
  // arenas, mmapped blocks included); under AddressSanitizer, ASan's own
  // count, which leaves out freed memory held in its quarantine.
  uint64_t heap_bytes = 0;
};

// Reads the figures of this process (/proc/self/status and the allocator);
// a figure that cannot be read is 0.
ProcessUsage ReadProcessUsage();

// "threads=N rss_bytes=N heap_bytes=N".
std::string FormatProcessUsage(const ProcessUsage& usage);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_PROCESS_USAGE_H_
