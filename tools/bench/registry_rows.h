// SPDX-License-Identifier: AGPL-3.0-or-later
// Row 10 of //tools/bench: the registry, in memory and in etcd, against the
// raw etcd floor. Internal to the bench.
#ifndef TRACTOR_TOOLS_BENCH_REGISTRY_ROWS_H_
#define TRACTOR_TOOLS_BENCH_REGISTRY_ROWS_H_

#include <vector>

#include "tools/bench/report.h"

namespace tractor::bench {

// The row shells (ids and names), for --only and for n/a on failure.
std::vector<Row> RegistryRowShells();

// Starts a 3-member etcd cluster on loopback (data on /dev/shm), three
// registrar daemons on it and three in-memory ones, measures, and stops
// them all (`quick`: fewer rounds). Throws std::runtime_error when something
// cannot be set up.
std::vector<Row> RegistryRows(bool quick);

}  // namespace tractor::bench

#endif  // TRACTOR_TOOLS_BENCH_REGISTRY_ROWS_H_
