// SPDX-License-Identifier: AGPL-3.0-or-later
// A program linking the runtime, for text_order_test: its code layout is
// what the test reads.
#include "actor/runtime.h"

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [] { return 0; });
}
