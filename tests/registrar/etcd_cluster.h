// SPDX-License-Identifier: AGPL-3.0-or-later
// Test helpers: a real etcd cluster (the `etcd` binary of Debian's
// etcd-server) on free loopback ports with its data on tmpfs, and registrar
// daemons in front of it. For tests tagged `etcd`.
#ifndef TRACTOR_TESTS_REGISTRAR_ETCD_CLUSTER_H_
#define TRACTOR_TESTS_REGISTRAR_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "registrar/etcd_client.h"

namespace tractor::testing {

// Where the children's stdout and stderr files go: by default the test's
// output directory ($TEST_UNDECLARED_OUTPUTS_DIR, else $TEST_TMPDIR, else
// /tmp). Call before starting anything.
void SetLogDir(const std::string& dir);

// Returns a TCP port on 127.0.0.1 that was free a moment ago (never 2379 or
// 2380, the ports of a packaged etcd).
int FreeLoopbackPort();

// A child process with stdout and stderr in files.
class Child {
 public:
  Child(std::vector<std::string> argv, std::string log_prefix);
  ~Child();  // kills (SIGKILL) and reaps
  // Starts it (again); false if it could not be spawned.
  bool Start();
  // SIGKILL and reap. Idempotent.
  void Kill();
  // SIGTERM, then waits up to `timeout` for the exit; SIGKILL after it.
  void Stop(absl::Duration timeout);
  // True (and reaped) when it has exited by itself.
  bool Exited();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  const std::vector<std::string> argv_;
  const std::string log_prefix_;
  int starts_ = 0;
  pid_t pid_ = -1;
};

// A cluster of `size` etcd members, heartbeat 50 ms and election timeout
// 500 ms so that a lost leader is replaced within about a second.
class EtcdCluster {
 public:
  static constexpr absl::Duration kHeartbeat = absl::Milliseconds(50);
  static constexpr absl::Duration kElectionTimeout = absl::Milliseconds(500);

  explicit EtcdCluster(int size = 3);
  ~EtcdCluster();  // kills the members and removes their data

  // Starts every member and waits until the cluster answers a linearizable
  // read, up to `timeout`.
  absl::Status Start(absl::Duration timeout = absl::Seconds(20));
  void Kill(int member) { members_[member]->Kill(); }
  bool Restart(int member) { return members_[member]->Start(); }
  // Waits until a linearizable read through the member-failover client
  // succeeds.
  absl::Status WaitHealthy(absl::Duration timeout);

  // The index of the member that leads, as the live members see it; -1
  // when none answers or they disagree.
  int LeaderIndex();

  // "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3".
  std::string Endpoints() const;
  std::vector<std::string> EndpointList() const { return client_endpoints_; }
  // A client of the cluster (for lease counts and the raw floor).
  registrar::EtcdClient* client() { return client_.get(); }
  std::string Logs() const;

 private:
  std::string dir_;
  std::vector<std::string> client_endpoints_;
  std::vector<std::unique_ptr<Child>> members_;
  std::unique_ptr<registrar::EtcdClient> client_;
};

// A registrar daemon (//registrar:registrar) with --store=etcd (or, with
// no endpoints, its in-memory store) on a fixed loopback port, so that a
// restarted one is found at the same address.
class RegistrarDaemon {
 public:
  RegistrarDaemon(const std::string& etcd_endpoints,
                  const std::string& prefix);
  // Starts it and waits for its ready line, up to `timeout`.
  absl::Status Start(absl::Duration timeout = absl::Seconds(10));
  void Kill() { child_->Kill(); }
  const std::string& addr() const { return addr_; }
  std::string Logs() const { return child_->Stderr(); }

 private:
  std::string addr_;
  std::unique_ptr<Child> child_;
};

// The registrar binary from the runfiles of this test (or binary).
std::string RegistrarBinary();

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_REGISTRAR_ETCD_CLUSTER_H_
