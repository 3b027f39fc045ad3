// SPDX-License-Identifier: AGPL-3.0-or-later
// Naming the threads the runtime creates after their roles, so `top -H`,
// `ps -L`, debuggers and /proc/<pid>/task/<tid>/comm tell them apart (a
// thread otherwise inherits its creator's name, often one of gRPC's).
#ifndef TRACTOR_DISCOVERY_THREAD_NAME_H_
#define TRACTOR_DISCOVERY_THREAD_NAME_H_

#include <pthread.h>

#include <string>

namespace tractor::discovery {

// The prefix of every thread name the runtime gives.
inline constexpr char kThreadNamePrefix[] = "tr-";

// Names the calling thread "tr-<role>", cut to the kernel's 15 bytes.
// Thread-safe (it names only the calling thread).
inline void NameThisThread(const char* role) {
  std::string name = std::string(kThreadNamePrefix) + role;
  if (name.size() > 15) name.resize(15);
  pthread_setname_np(pthread_self(), name.c_str());
}

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_THREAD_NAME_H_
