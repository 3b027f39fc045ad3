// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/uuid.h"

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <thread>

#include "absl/strings/str_format.h"

namespace tractor::discovery {
namespace {

// A 64-bit Mersenne twister owned by one thread, reseeded whenever the
// process id differs from the one it was seeded in (after fork()).
class ThreadGenerator {
 public:
  uint64_t Next() {
    const pid_t pid = getpid();
    if (pid != seeded_pid_) Seed(pid);
    return engine_();
  }

 private:
  void Seed(pid_t pid) {
    std::random_device entropy;
    const uint64_t now = static_cast<uint64_t>(
        std::chrono::high_resolution_clock::now().time_since_epoch().count());
    const uint64_t thread =
        std::hash<std::thread::id>()(std::this_thread::get_id());
    std::seed_seq seq{entropy(),
                      entropy(),
                      entropy(),
                      entropy(),
                      static_cast<unsigned>(pid),
                      static_cast<unsigned>(now),
                      static_cast<unsigned>(now >> 32),
                      static_cast<unsigned>(thread),
                      static_cast<unsigned>(thread >> 32)};
    engine_.seed(seq);
    seeded_pid_ = pid;
  }

  std::mt19937_64 engine_;
  pid_t seeded_pid_ = -1;
};

}  // namespace

std::string NewUuid() {
  thread_local ThreadGenerator generator;
  uint64_t hi = generator.Next();
  uint64_t lo = generator.Next();
  hi = (hi & ~uint64_t{0xF000}) | uint64_t{0x4000};            // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60);  // RFC 4122
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                         (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48,
                         lo & 0xFFFFFFFFFFFF);
}

}  // namespace tractor::discovery
