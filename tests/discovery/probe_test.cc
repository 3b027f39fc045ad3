// SPDX-License-Identifier: AGPL-3.0-or-later
// The registry probe of a listening address whose first gRPC handshake
// fails: a registrar that a loaded machine answers late, seen from the
// probing side as a connection that ends before the server's SETTINGS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/registry_client.h"
#include "gtest/gtest.h"
#include "tests/discovery/local_registrar.h"

namespace tractor::testing {
namespace {

using discovery::ProbeKind;
using discovery::ProbeRegistryAddrs;

// A TCP listener on 127.0.0.1 that closes the `fail`-th connection it
// accepts (counting from 0) at once and forwards every other one to
// 127.0.0.1:`target_port`.
class OneConnectionFails {
 public:
  OneConnectionFails(int target_port, int fail)
      : target_port_(target_port), fail_(fail) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), len) != 0 ||
        listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { Accept(); });
  }
  ~OneConnectionFails() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    for (auto& t : pumps_) t.join();
    close(listen_fd_);
  }
  std::string addr() const { return absl::StrCat("127.0.0.1:", port_); }
  int accepted() const { return accepted_.load(); }

 private:
  void Accept() {
    while (!stop_) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;  // shut down
      if (accepted_.fetch_add(1) == fail_) {
        close(fd);  // before any byte of the HTTP/2 handshake
        continue;
      }
      pumps_.emplace_back([this, fd] { Forward(fd); });
    }
  }
  // Copies bytes both ways between `client` and a new connection to the
  // target until either side closes or the listener stops.
  void Forward(int client) {
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (connect(server, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      char buf[16384];
      bool open = true;
      while (open && !stop_) {
        if (poll(fds, 2, 100) < 0) break;
        for (int i = 0; i < 2 && open; ++i) {
          if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
          open = n > 0 && write(fds[1 - i].fd, buf, n) == n;
        }
      }
    }
    close(server);
    close(client);
  }

  const int target_port_;
  const int fail_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
  std::vector<std::thread> pumps_;  // touched by the accept thread only
};

TEST(ProbeTest, ARegistrarWhoseFirstHandshakeFailsIsStillARegistrar) {
  LocalRegistrar reg("127.0.0.1:0", absl::Seconds(5));
  ASSERT_NE(reg.server, nullptr);
  const int reg_port = discovery::Address::Parse(reg.addr)->port();
  // Connection 0 is the probe's plain connect (it only checks that
  // something listens); connection 1 is gRPC's first handshake.
  OneConnectionFails proxy(reg_port, /*fail=*/1);

  const absl::Time start = absl::Now();
  std::vector<discovery::ProbeResult> r = ProbeRegistryAddrs(
      {*discovery::Address::Parse(proxy.addr())}, absl::Seconds(2));
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(r.size(), 1u);
  // The probe's own connect, gRPC's failed handshake, then its retry.
  EXPECT_GE(proxy.accepted(), 3);
  EXPECT_EQ(r[0].kind, ProbeKind::kRegistrar) << r[0].detail;
  EXPECT_TRUE(r[0].registrar.is_registrar());
  EXPECT_LT(took, absl::Seconds(2) + absl::Milliseconds(700));
}

}  // namespace
}  // namespace tractor::testing
