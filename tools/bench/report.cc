// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tools/bench/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tractor::bench {
namespace {

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double p) {
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

std::string FormatValue(double v, const std::string& unit) {
  if (unit == "msg/s") {
    if (v >= 1e6) return absl::StrFormat("%.2fM", v / 1e6);
    if (v >= 1e3) return absl::StrFormat("%.1fk", v / 1e3);
    return absl::StrFormat("%.0f", v);
  }
  if (v >= 100) return absl::StrFormat("%.0f", v);
  if (v >= 10) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.2f", v);
}

std::string FormatStat(const std::optional<Stat>& s, const Row& row) {
  if (!s) return "-";
  std::string out = FormatValue(s->median, row.unit);
  if (s->p99) absl::StrAppend(&out, " / ", FormatValue(*s->p99, row.unit));
  if (row.message_bytes > 0) {
    absl::StrAppend(&out, absl::StrFormat(
                              " (%.1f MB/s)",
                              s->median * row.message_bytes / 1e6));
  }
  return out;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

std::string JsonStat(const Stat& s, const Row& row) {
  std::string out = absl::StrCat("{\"median\":", JsonNumber(s.median));
  if (s.p99) absl::StrAppend(&out, ",\"p99\":", JsonNumber(*s.p99));
  absl::StrAppend(&out, ",\"max\":", JsonNumber(s.max),
                  ",\"samples\":", s.samples);
  if (row.message_bytes > 0) {
    absl::StrAppend(&out, ",\"mb_per_s\":",
                    JsonNumber(s.median * row.message_bytes / 1e6));
  }
  out += "}";
  return out;
}

}  // namespace

Stat Summarize(std::vector<double> samples, bool with_p99) {
  Stat s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  s.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  if (with_p99) s.p99 = Percentile(samples, 99);
  s.max = samples.back();
  s.samples = static_cast<int>(n);
  return s;
}

std::string Target::ToString() const {
  switch (kind) {
    case Kind::kNone: return "-";
    case Kind::kRatioMax:
      if (p99_bound > 0) {
        return absl::StrFormat("<= %g, p99 <= %g", bound, p99_bound);
      }
      return absl::StrFormat("<= %g", bound);
    case Kind::kRatioMin: return absl::StrFormat(">= %g", bound);
    case Kind::kAbsMax: return absl::StrFormat("< %g", bound);
  }
  return "-";
}

std::optional<double> Row::Ratio() const {
  if (!raw || !ours || raw->median <= 0) return std::nullopt;
  return ours->median / raw->median;
}

std::optional<bool> Row::MeetsTarget() const {
  if (!na.empty()) return std::nullopt;
  switch (target.kind) {
    case Target::Kind::kNone: return std::nullopt;
    case Target::Kind::kRatioMax: {
      auto r = Ratio();
      if (!r) return std::nullopt;
      if (target.p99_bound > 0) {
        if (!raw->p99 || !ours->p99 || *raw->p99 <= 0) return std::nullopt;
        if (*ours->p99 / *raw->p99 > target.p99_bound) return false;
      }
      return *r <= target.bound;
    }
    case Target::Kind::kRatioMin:
      if (auto r = Ratio()) return *r >= target.bound;
      return std::nullopt;
    case Target::Kind::kAbsMax:
      if (ours) return ours->median < target.bound;
      return std::nullopt;
  }
  return std::nullopt;
}

RunInfo CollectRunInfo(bool quick) {
  RunInfo info;
  info.date = absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", absl::Now(),
                               absl::LocalTimeZone());
  info.mode = quick ? "quick" : "full";
  info.nproc = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        info.cpu = line.substr(colon + 1);
        info.cpu.erase(0, info.cpu.find_first_not_of(' '));
      }
      break;
    }
  }
  return info;
}

void PrintTable(const RunInfo& info, const std::vector<Row>& rows, FILE* out) {
  std::fprintf(out,
               "\ntractor bench (%s), %s, nproc=%d, CPU: %s, took %.1f s\n",
               info.mode.c_str(), info.date.c_str(), info.nproc,
               info.cpu.c_str(), info.seconds);
  std::fprintf(out,
               "latency cells: median / p99; throughput cells: median "
               "msg/s (MB/s); raw and ours rounds interleaved\n"
               "raw API: the gRPC API (client and server) of the raw cell; "
               "\"best\" is the faster of sync and callback in this run, "
               "which the ratio is taken against\n\n");
  const char* fmt = "%-12s %-48s %-5s %-14s %-26s %-26s %-8s %-7s %s\n";
  std::fprintf(out, fmt, "row", "what", "unit", "raw API", "raw gRPC", "ours",
               "ours/raw", "target", "");
  std::fprintf(out, "%s\n", std::string(155, '-').c_str());
  for (const Row& r : rows) {
    if (!r.na.empty()) {
      std::fprintf(out, fmt, r.id.c_str(), r.name.c_str(), r.unit.c_str(),
                   "n/a", "n/a", "n/a", "n/a", r.target.ToString().c_str(),
                   ("n/a: " + r.na).c_str());
      continue;
    }
    std::string api = r.raw_api;
    if (r.raw_best && !api.empty()) api = "best: " + api;
    std::string ratio = "-";
    if (auto x = r.Ratio()) ratio = absl::StrFormat("%.2f", *x);
    std::string verdict;
    if (auto m = r.MeetsTarget()) verdict = *m ? "ok" : "MISS";
    std::fprintf(out, fmt, r.id.c_str(), r.name.c_str(), r.unit.c_str(),
                 api.c_str(), FormatStat(r.raw, r).c_str(),
                 FormatStat(r.ours, r).c_str(), ratio.c_str(),
                 r.target.ToString().c_str(), verdict.c_str());
  }
  bool any_note = false;
  for (const Row& r : rows) {
    if (r.note.empty()) continue;
    if (!any_note) std::fprintf(out, "\nnotes:\n");
    any_note = true;
    std::fprintf(out, "  %-12s %s\n", r.id.c_str(), r.note.c_str());
  }
  std::fflush(out);
}

bool WriteJson(const RunInfo& info, const std::vector<Row>& rows,
               const std::string& path) {
  std::ostringstream o;
  o << "{\n\"run\":{\"date\":\"" << JsonEscape(info.date) << "\",\"mode\":\""
    << info.mode << "\",\"nproc\":" << info.nproc << ",\"cpu\":\""
    << JsonEscape(info.cpu) << "\",\"seconds\":" << JsonNumber(info.seconds)
    << "},\n\"rows\":[\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    o << "{\"id\":\"" << JsonEscape(r.id) << "\",\"name\":\""
      << JsonEscape(r.name) << "\",\"unit\":\"" << JsonEscape(r.unit)
      << "\",\"target\":\"" << JsonEscape(r.target.ToString()) << "\"";
    if (!r.na.empty()) {
      o << ",\"na\":\"" << JsonEscape(r.na) << "\"";
    } else {
      if (!r.raw_api.empty()) {
        o << ",\"raw_api\":\"" << JsonEscape(r.raw_api)
          << "\",\"raw_best\":" << (r.raw_best ? "true" : "false");
      }
      if (r.raw) o << ",\"raw\":" << JsonStat(*r.raw, r);
      if (r.ours) o << ",\"ours\":" << JsonStat(*r.ours, r);
      if (auto x = r.Ratio()) o << ",\"ratio\":" << JsonNumber(*x);
      if (auto m = r.MeetsTarget()) {
        o << ",\"meets_target\":" << (*m ? "true" : "false");
      }
    }
    if (!r.note.empty()) o << ",\"note\":\"" << JsonEscape(r.note) << "\"";
    o << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  o << "]\n}\n";
  std::ofstream f(path);
  f << o.str();
  f.close();
  return static_cast<bool>(f);
}

}  // namespace tractor::bench
