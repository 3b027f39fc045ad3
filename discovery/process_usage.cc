// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/process_usage.h"

#include <malloc.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

// AddressSanitizer and ThreadSanitizer replace malloc with their own
// allocator: glibc's figures would say nothing.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TRACTOR_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TRACTOR_SANITIZER_ALLOCATOR 1
#endif
#endif

#ifdef TRACTOR_SANITIZER_ALLOCATOR
#include <sanitizer/allocator_interface.h>
#endif

namespace tractor::discovery {
namespace {

uint64_t LiveHeapBytes() {
#ifdef TRACTOR_SANITIZER_ALLOCATOR
  // What the sanitizer's allocator holds for the program (ASan's
  // quarantine left out).
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
#endif
}

}  // namespace

ProcessUsage ReadProcessUsage() {
  ProcessUsage usage;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() < 2) continue;
    if (words[0] == "Threads:") {
      if (!absl::SimpleAtoi(words[1], &usage.threads)) usage.threads = 0;
    } else if (words[0] == "VmRSS:") {
      uint64_t kib = 0;
      if (absl::SimpleAtoi(words[1], &kib)) usage.rss_bytes = kib * 1024;
    }
  }
  usage.heap_bytes = LiveHeapBytes();
  return usage;
}

std::string FormatProcessUsage(const ProcessUsage& usage) {
  return absl::StrCat("threads=", usage.threads, " rss_bytes=",
                      usage.rss_bytes, " heap_bytes=", usage.heap_bytes);
}

}  // namespace tractor::discovery
