// SPDX-License-Identifier: AGPL-3.0-or-later
// TuneAllocatorForMessages: glibc's thresholds fixed, or left to the user.
#include "discovery/allocator.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tractor::discovery {
namespace {

// AddressSanitizer and ThreadSanitizer bring their own allocator, whose
// mallopt does nothing.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TRACTOR_SANITIZER_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TRACTOR_SANITIZER_MALLOC 1
#endif

#ifdef TRACTOR_SANITIZER_MALLOC
#define SKIP_UNDER_SANITIZER() GTEST_SKIP() << "the sanitizer's allocator"
#else
#define SKIP_UNDER_SANITIZER()
#endif

void ClearMallocEnvironment() {
  for (const char* name : {"GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_",
                           "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    unsetenv(name);
  }
}

TEST(AllocatorTest, AMiBBlockComesFromTheArenaAndStaysThereWhenFreed) {
  SKIP_UNDER_SANITIZER();
  ClearMallocEnvironment();
  ASSERT_TRUE(TuneAllocatorForMessages());
  // Above glibc's default 128 KiB, below the runtime's threshold.
  constexpr size_t kBlock = kMmapThreshold / 2;
  const size_t mmapped_before = mallinfo2().hblkhd;
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  // Not a fresh mmap: glibc's default threshold would have made it one.
  EXPECT_EQ(mallinfo2().hblkhd, mmapped_before);
  std::free(block);
  // Freed at the top of the arena and kept (below the trim threshold),
  // where the default would have given all but 128 KiB back.
  EXPECT_GE(mallinfo2().keepcost, kBlock / 2);
}

// Resident set size of this process, from /proc/self/statm.
size_t RssBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

TEST(AllocatorTest, FreeMemoryBelowALiveBlockGoesBackAboveTheBound) {
  SKIP_UNDER_SANITIZER();
  ClearMallocEnvironment();
  ASSERT_TRUE(TuneAllocatorForMessages());
  // 48 blocks of 1 MiB from the arena, each followed by a small block that
  // stays: freeing the big ones leaves 48 MiB free between live blocks,
  // which the trim threshold (the arena's top only) does not give back.
  constexpr int kBlocks = 48;
  constexpr size_t kBlock = 1 << 20;
  std::vector<char*> blocks, pins;
  for (int i = 0; i < kBlocks; ++i) {
    char* b = static_cast<char*>(std::malloc(kBlock));
    ASSERT_NE(b, nullptr);
    std::memset(b, 1, kBlock);
    blocks.push_back(b);
    pins.push_back(static_cast<char*>(std::malloc(2000)));
    ASSERT_NE(pins.back(), nullptr);
  }
  for (char* b : blocks) std::free(b);
  const size_t kept = RssBytes();
  ASSERT_GE(mallinfo2().fordblks, kBlocks * kBlock / 2);
  // Under the bound: nothing is done.
  EXPECT_FALSE(ReleaseFreeMemoryAbove(1UL << 40));
  EXPECT_GE(RssBytes() + kBlock, kept);
  // Above it: the free pages go back.
  EXPECT_TRUE(ReleaseFreeMemoryAbove(16 << 20));
  EXPECT_LE(RssBytes() + 32 * kBlock, kept)
      << "RSS " << kept << " -> " << RssBytes();
  for (char* p : pins) std::free(p);
}

TEST(AllocatorTest, LeavesMallocAloneWhenTheEnvironmentTunesIt) {
  for (const auto& [name, value] :
       {std::pair{"MALLOC_TRIM_THRESHOLD_", "131072"},
        std::pair{"MALLOC_MMAP_THRESHOLD_", "131072"},
        std::pair{"MALLOC_TOP_PAD_", "0"},
        std::pair{"GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"}}) {
    ClearMallocEnvironment();
    setenv(name, value, 1);
    EXPECT_FALSE(TuneAllocatorForMessages()) << name << "=" << value;
  }
  // A tunable of another glibc module is no reason to stay out.
  SKIP_UNDER_SANITIZER();
  ClearMallocEnvironment();
  setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0", 1);
  EXPECT_TRUE(TuneAllocatorForMessages());
  ClearMallocEnvironment();
}

}  // namespace
}  // namespace tractor::discovery
