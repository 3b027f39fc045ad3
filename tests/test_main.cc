// SPDX-License-Identifier: AGPL-3.0-or-later
// GoogleTest entry point for tests that spawn actors: spawned children
// re-execute the test binary, and tractor::Main routes them to the child
// runtime before GoogleTest sees the command line.
//
// Tests never use the well-known registry address (127.0.0.1:1616): before
// each test, TRACTOR_REGISTRY names a unix socket in a fresh temporary
// directory (removed after the test), so a root opened with default options
// serves or finds its registrar there; and any bind of port 1616 in this
// process (or an actor it spawns, which runs this binary too) is refused
// with EACCES and fails the running test.
#include "tests/test_main.h"

#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "actor/runtime.h"
#include "gtest/gtest.h"

namespace {

std::atomic<int> g_refused_binds{0};
std::atomic<bool> g_gtest_running{false};

uint16_t PortOf(const sockaddr* addr, socklen_t len) {
  if (addr == nullptr) return 0;
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(addr)->sin_port);
  }
  if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port);
  }
  return 0;
}

// Sets TRACTOR_REGISTRY to a unix socket in a fresh directory for each test.
class PerTestRegistry : public testing::EmptyTestEventListener {
  void OnTestStart(const testing::TestInfo&) override {
    char dir[] = "/tmp/trreg.XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      perror("mkdtemp");
      std::abort();
    }
    dir_ = dir;
    setenv("TRACTOR_REGISTRY", ("unix:" + dir_ + "/registry.sock").c_str(), 1);
  }
  void OnTestEnd(const testing::TestInfo&) override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    (void)std::system(cmd.c_str());
  }
  std::string dir_;
};

}  // namespace

// Interposes the C library's bind for the whole test binary (gRPC's
// listeners included).
extern "C" int bind(int fd, const sockaddr* addr, socklen_t len) {
  using BindFn = int (*)(int, const sockaddr*, socklen_t);
  static BindFn real = reinterpret_cast<BindFn>(dlsym(RTLD_NEXT, "bind"));
  if (PortOf(addr, len) == tractor::testing::kWellKnownRegistryPort) {
    g_refused_binds.fetch_add(1);
    fprintf(stderr,
            "test refused to bind port %d: tests must not use the "
            "well-known registry address\n",
            tractor::testing::kWellKnownRegistryPort);
    if (g_gtest_running.load()) {
      ADD_FAILURE() << "a bind of the well-known registry port "
                    << tractor::testing::kWellKnownRegistryPort;
    }
    errno = EACCES;
    return -1;
  }
  return real(fd, addr, len);
}

namespace tractor::testing {
int RefusedWellKnownBinds() { return g_refused_binds.load(); }
}  // namespace tractor::testing

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::UnitTest::GetInstance()->listeners().Append(
        new PerTestRegistry);
    g_gtest_running.store(true);
    return RUN_ALL_TESTS();
  });
}
