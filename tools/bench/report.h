// SPDX-License-Identifier: AGPL-3.0-or-later
// Results of //tools/bench: statistics over samples, the printed table and
// the JSON file. Internal to the bench.
#ifndef TRACTOR_TOOLS_BENCH_REPORT_H_
#define TRACTOR_TOOLS_BENCH_REPORT_H_

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace tractor::bench {

// A summary of one side's samples.
struct Stat {
  double median = 0;
  // Empty where a tail does not matter (throughput, memory).
  std::optional<double> p99;
  double max = 0;
  int samples = 0;
};

// Summarizes `samples` (at least one); `with_p99` adds the 99th percentile.
Stat Summarize(std::vector<double> samples, bool with_p99);

// What a row promises.
struct Target {
  enum class Kind {
    kNone,      // informational
    kRatioMax,  // ours/raw <= bound
    kRatioMin,  // ours/raw >= bound
    kAbsMax,    // ours < bound (in the row's unit), ours only
  };
  Kind kind = Kind::kNone;
  double bound = 0;
  // With kRatioMax: also ours.p99 / raw.p99 <= p99_bound (0: not checked).
  double p99_bound = 0;

  std::string ToString() const;
};

// One line of the table: a raw baseline and the same job through the
// runtime, or an explicit reason why the row was not measured.
struct Row {
  std::string id;    // "1", "3.64.bp", ...
  std::string name;  // what is measured
  std::string unit;  // "us", "ms", "msg/s", "MiB"
  std::optional<Stat> raw;
  std::optional<Stat> ours;
  // The gRPC API of the raw cell's client and server ("sync" or
  // "callback") in rows that measure both; empty elsewhere.
  std::string raw_api;
  // Whether `raw` is the faster of the raw APIs measured ("best raw"): the
  // lower median for latency, the higher for throughput.
  bool raw_best = false;
  // Payload bytes per message, for throughput rows (adds MB/s).
  int message_bytes = 0;
  Target target;
  // Why the row has no numbers; empty when it has.
  std::string na;
  // How it was measured, or where the time goes.
  std::string note;

  // ours.median / raw.median, when both exist.
  std::optional<double> Ratio() const;
  // Whether the row meets its target; empty for informational or n/a rows.
  std::optional<bool> MeetsTarget() const;
};

// Facts about the machine and the run, printed above the table.
struct RunInfo {
  std::string date;
  std::string mode;  // "quick" or "full"
  int nproc = 0;
  std::string cpu;
  double seconds = 0;
};

RunInfo CollectRunInfo(bool quick);

// Prints the table.
void PrintTable(const RunInfo& info, const std::vector<Row>& rows, FILE* out);
// Writes all rows as JSON to `path`; returns false on an I/O error.
bool WriteJson(const RunInfo& info, const std::vector<Row>& rows,
               const std::string& path);

}  // namespace tractor::bench

#endif  // TRACTOR_TOOLS_BENCH_REPORT_H_
