// SPDX-License-Identifier: AGPL-3.0-or-later
// What tests/test_main.cc guarantees every test linked with it.
#ifndef TRACTOR_TESTS_TEST_MAIN_H_
#define TRACTOR_TESTS_TEST_MAIN_H_

namespace tractor::testing {

// The port of tractor::kDefaultRegistry, which no test may bind.
inline constexpr int kWellKnownRegistryPort = 1616;

// How many binds of kWellKnownRegistryPort this process refused so far.
int RefusedWellKnownBinds();

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_TEST_MAIN_H_
