// SPDX-License-Identifier: AGPL-3.0-or-later
// What tests/test_main.cc guarantees: each test has its own TRACTOR_REGISTRY
// (a unix socket in a fresh directory), which a root with default options
// uses, and the well-known registry port is never bound.
#include "tests/test_main.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "actor/runtime.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace tractor {
namespace {

std::string RegistryEnv() {
  const char* env = std::getenv("TRACTOR_REGISTRY");
  return env == nullptr ? "" : env;
}

std::string g_first_registry;

TEST(TestMainTest, EachTestGetsAFreshUnixRegistry) {
  g_first_registry = RegistryEnv();
  ASSERT_TRUE(absl::StartsWith(g_first_registry, "unix:/"))
      << g_first_registry;
  std::string dir = g_first_registry.substr(5);
  dir = dir.substr(0, dir.rfind('/'));
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0) << dir;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST(TestMainTest, TheNextTestGetsAnotherOne) {
  ASSERT_FALSE(g_first_registry.empty()) << "run the whole file, in order";
  EXPECT_NE(RegistryEnv(), g_first_registry);
  EXPECT_TRUE(absl::StartsWith(RegistryEnv(), "unix:/"));
}

TEST(TestMainTest, ARootWithDefaultOptionsServesTheRegistrarThere) {
  const std::string registry = RegistryEnv();
  OpenRootActor({}, [&] {
    EXPECT_TRUE(IsRegistrar());
    EXPECT_EQ(RegistryAddrs(), std::vector<std::string>{registry});
  });
}

int g_bind_result = 0;
int g_bind_errno = 0;

void BindWellKnownPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(testing::kWellKnownRegistryPort);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  g_bind_result = bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  g_bind_errno = errno;
  close(fd);
}

TEST(TestMainTest, BindingTheWellKnownPortIsRefusedAndFailsTheTest) {
  const int before = testing::RefusedWellKnownBinds();
  EXPECT_NONFATAL_FAILURE(BindWellKnownPort(),
                          "a bind of the well-known registry port 1616");
  EXPECT_EQ(g_bind_result, -1);
  EXPECT_EQ(g_bind_errno, EACCES);
  EXPECT_EQ(testing::RefusedWellKnownBinds(), before + 1);
}

}  // namespace
}  // namespace tractor
