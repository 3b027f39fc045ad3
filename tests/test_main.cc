// SPDX-License-Identifier: AGPL-3.0-or-later
// GoogleTest entry point for tests that spawn actors: spawned children
// re-execute the test binary, and tractor::Main routes them to the child
// runtime before GoogleTest sees the command line.
#include "actor/runtime.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
  });
}
