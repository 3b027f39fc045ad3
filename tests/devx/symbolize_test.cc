// SPDX-License-Identifier: AGPL-3.0-or-later
// Names of frames that dladdr cannot name (functions a binary does not
// export), looked up in the binary's own symbol table: the same names
// absl::Symbolize gives. Built without debug information, so that no
// addr2line output replaces them.
#include <dlfcn.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/debugging/symbolize.h"
#include "absl/strings/match.h"
#include "devx/stack.h"
#include "devx/throw_trace.h"
#include "gtest/gtest.h"

namespace tractor::devx {
namespace {

std::vector<void*> g_captured;

__attribute__((noinline)) void CaptureHere() {
  void* frames[kMaxFrames];
  const int n = CaptureStack(frames, kMaxFrames, 0);
  g_captured.assign(frames, frames + n);
}
__attribute__((noinline)) void UnexportedLevel2() {
  CaptureHere();
  asm volatile("");  // not a tail call
}
__attribute__((noinline)) void UnexportedLevel1() {
  UnexportedLevel2();
  asm volatile("");
}

// What SymbolizeEach named a frame before it read symbol tables itself:
// dladdr's name, else absl::Symbolize's.
std::string AbslName(void* pc) {
  const void* lookup = static_cast<const char*>(pc) - 1;
  Dl_info info{};
  if (dladdr(lookup, &info) != 0 && info.dli_sname != nullptr) return "";
  char name[1024];
  return absl::Symbolize(lookup, name, sizeof name) ? name : "??";
}

void ExpectSameNamesAsAbsl(const std::vector<void*>& pcs) {
  const std::vector<Frame> frames = Symbolize(pcs);
  ASSERT_EQ(frames.size(), pcs.size());
  for (size_t i = 0; i < pcs.size(); ++i) {
    const std::string expected = AbslName(pcs[i]);
    if (expected.empty()) continue;  // named by dladdr: not looked up
    EXPECT_EQ(frames[i].function, expected)
        << "frame #" << i << " in " << frames[i].object;
  }
}

bool MainProgramHasDebugInfo() {
  bool pie = false;
  return BinaryHasDebugInfo(MainProgramPath(), &pie);
}

TEST(SymbolizeTest, UnexportedFunctionsOfTheProgramAreNamedAsAbslNamesThem) {
  if (MainProgramHasDebugInfo()) {
    GTEST_SKIP() << "built with debug information: addr2line names frames";
  }
  absl::InitializeSymbolizer("/proc/self/exe");
  UnexportedLevel1();
  ASSERT_GE(g_captured.size(), 3u);
  const std::vector<Frame> frames = Symbolize(g_captured);
  const std::string text = FormatFrames(frames);
  EXPECT_TRUE(absl::StrContains(frames[0].function, "CaptureHere")) << text;
  EXPECT_TRUE(absl::StrContains(frames[1].function, "UnexportedLevel2"))
      << text;
  EXPECT_TRUE(absl::StrContains(frames[2].function, "UnexportedLevel1"))
      << text;
  ExpectSameNamesAsAbsl(g_captured);
}

TEST(SymbolizeTest, SharedLibraryFramesOfAThrowAreNamedAsAbslNamesThem) {
  if (MainProgramHasDebugInfo()) {
    GTEST_SKIP() << "built with debug information: addr2line names frames";
  }
  absl::InitializeSymbolizer("/proc/self/exe");
  std::vector<void*> pcs;
  try {
    std::vector<int> v(2);
    (void)v.at(5);  // std::out_of_range, thrown inside libstdc++
  } catch (...) {
    pcs = ThrowSiteStack(std::current_exception());
  }
  ASSERT_FALSE(pcs.empty());
  ExpectSameNamesAsAbsl(pcs);
}

TEST(SymbolizeTest, AddressesOutsideAnyBinaryAreUnknownNotACrash) {
  std::vector<char> heap(64);
  const std::vector<void*> pcs = {
      reinterpret_cast<void*>(uintptr_t{1}),
      reinterpret_cast<void*>(uintptr_t{0x1000}),
      heap.data() + 8,
      reinterpret_cast<void*>(~uintptr_t{0}),
  };
  const std::vector<Frame> frames = Symbolize(pcs);
  ASSERT_EQ(frames.size(), pcs.size());
  for (const Frame& f : frames) EXPECT_EQ(f.function, "??");
}

}  // namespace
}  // namespace tractor::devx
