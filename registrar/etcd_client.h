// SPDX-License-Identifier: AGPL-3.0-or-later
// A minimal client for etcd's v3 gRPC API (KV, Lease, Watch), written
// against the proto subset in protos/etcd/ (etcd's own package, message and
// field names and numbers). No etcd client library is involved.
#ifndef TRACTOR_REGISTRAR_ETCD_CLIENT_H_
#define TRACTOR_REGISTRAR_ETCD_CLIENT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/api/etcdserverpb/rpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace tractor::registrar {

struct EtcdOptions {
  // The cluster's client endpoints, "host:port" (any address form of
  // discovery/address.h that names a TCP port). At least one.
  std::vector<std::string> endpoints;
  // TLS to etcd: the CA bundle that signs the members' certificates, and
  // optionally this client's certificate and key (both or neither). All
  // empty: plaintext.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // How long one call may take in all, failover included. A call that finds
  // no member able to answer within it fails with UNAVAILABLE.
  absl::Duration deadline = absl::Milliseconds(1800);
};

// Calls etcd with failover: each call goes to the member that answered
// last; a member that is unreachable, has no leader or does not answer in
// its share of the deadline is skipped for the next one. When no member
// answers before the deadline, the call fails with UNAVAILABLE naming the
// endpoints and "no quorum".
//
// Thread-safety: thread-safe (gRPC stubs are).
class EtcdClient {
 public:
  ~EtcdClient();

  // Checks the endpoints and reads the TLS files; does not connect.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const EtcdOptions& options);

  // "etcd at h1:p,h2:p,h3:p".
  const std::string& Describe() const { return description_; }

  absl::Status Range(const etcdserverpb::RangeRequest& request,
                     etcdserverpb::RangeResponse* response);
  absl::Status Put(const etcdserverpb::PutRequest& request,
                   etcdserverpb::PutResponse* response);
  absl::Status Txn(const etcdserverpb::TxnRequest& request,
                   etcdserverpb::TxnResponse* response);
  absl::Status LeaseGrant(const etcdserverpb::LeaseGrantRequest& request,
                          etcdserverpb::LeaseGrantResponse* response);
  absl::Status LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& request,
                           etcdserverpb::LeaseRevokeResponse* response);
  absl::Status LeaseTimeToLive(
      const etcdserverpb::LeaseTimeToLiveRequest& request,
      etcdserverpb::LeaseTimeToLiveResponse* response);
  absl::Status LeaseLeases(etcdserverpb::LeaseLeasesResponse* response);
  // Renews lease `id` once; returns its new TTL in seconds, 0 or less when
  // the lease is gone.
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t id);

  // For watches, which run on one member at a time and move on by
  // themselves: the endpoints, their Watch stubs, and the member that
  // answered last.
  size_t endpoint_count() const { return endpoints_.size(); }
  const std::string& endpoint(size_t i) const { return endpoints_[i].addr; }
  etcdserverpb::Watch::Stub* watch_stub(size_t i) const {
    return endpoints_[i].watch.get();
  }
  size_t preferred() const { return preferred_.load(); }

  // Returns `range_end` for every key starting with `prefix`.
  static std::string PrefixEnd(const std::string& prefix);

 private:
  struct Endpoint {
    std::string addr;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  };

  EtcdClient(std::vector<Endpoint> endpoints, absl::Duration deadline);

  // Runs `attempt(endpoint, context)` on one member after another until one
  // answers or the deadline passes.
  template <typename Attempt>
  absl::Status Call(const char* what, Attempt attempt);

  std::vector<Endpoint> endpoints_;
  const absl::Duration deadline_;
  std::string description_;
  std::atomic<size_t> preferred_{0};
  // Polled by `poller_` (see the constructor); never gets an operation.
  grpc::CompletionQueue poll_queue_;
  std::thread poller_;
};

}  // namespace tractor::registrar

#endif  // TRACTOR_REGISTRAR_ETCD_CLIENT_H_
