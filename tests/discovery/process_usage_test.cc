// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/process_usage.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace tractor::discovery {
namespace {

constexpr size_t kBlock = 64 << 20;

TEST(ProcessUsageTest, HeapFollowsWhatTheProgramHolds) {
  const ProcessUsage before = ReadProcessUsage();
  ASSERT_GT(before.heap_bytes, 0u);
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  const ProcessUsage holding = ReadProcessUsage();
  EXPECT_GE(holding.heap_bytes, before.heap_bytes + kBlock);
  EXPECT_GE(holding.rss_bytes, before.rss_bytes + kBlock / 2);
  std::free(block);
  const ProcessUsage after = ReadProcessUsage();
  // Freed memory leaves the figure at once, whatever the allocator (or
  // AddressSanitizer's quarantine) does with the pages.
  EXPECT_LT(after.heap_bytes, before.heap_bytes + kBlock / 2);
}

TEST(ProcessUsageTest, CountsThreads) {
  // ThreadSanitizer starts a background thread of its own with the
  // process's first thread: start one first, so that `before` counts it.
  std::thread([] {}).join();
  const uint32_t before = ReadProcessUsage().threads;
  ASSERT_GE(before, 1u);
  std::thread t([&] { EXPECT_EQ(ReadProcessUsage().threads, before + 1); });
  t.join();
}

TEST(ProcessUsageTest, Formats) {
  ProcessUsage u;
  u.threads = 3;
  u.rss_bytes = 4096;
  u.heap_bytes = 100;
  EXPECT_EQ(FormatProcessUsage(u), "threads=3 rss_bytes=4096 heap_bytes=100");
}

}  // namespace
}  // namespace tractor::discovery
