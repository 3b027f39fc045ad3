// SPDX-License-Identifier: AGPL-3.0-or-later
// A `Store` in an etcd cluster (v3 API), shared by every registrar that
// names the same cluster and prefix. See docs/registry.md.
#ifndef TRACTOR_REGISTRAR_ETCD_STORE_H_
#define TRACTOR_REGISTRAR_ETCD_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "registrar/etcd_client.h"
#include "registrar/store.h"
#include "tractor/v1/registrar.pb.h"

namespace tractor::registrar {

// Layout: one key per actor, `<prefix><uuid>`, whose value is the
// `Registration` (binary protobuf, `revision` unset) and which is bound to
// an etcd lease of its own. `Registration.revision` is the key's
// `mod_revision`; the order of `Get` is the keys' `create_revision`. A name
// index, `<prefix>names/<name>/<uuid>` with the same value and lease, is
// written in the same transactions (so it has the same revisions): a `Find`
// is one range read of its name, whatever the number of entries.
//
// Leases: etcd leases are whole seconds. The lease granted is the one asked
// for rounded up to whole seconds, and at least `min_lease`. A `Put` for a
// key whose lease is alive renews that lease (one keep-alive) and rewrites
// the key only when its content changed; otherwise it grants a new lease and
// writes the key in one transaction conditioned on the key's revision (a
// lost race revokes the new lease, and a replaced lease is revoked), so
// registrars refreshing the same actor never leave leases behind.
//
// Deletions (`Remove`, `DeleteAddrIf`) are transactions conditioned on the
// revision that was read, so a concurrent registration always wins. They do
// not revoke the entry's lease, which expires within one lease: a watch
// tells an expiry (its lease is gone) from a deletion (its lease is alive)
// by that.
//
// Reads are linearizable. Every call has the client's deadline (1.8 s by
// default); with no quorum it fails with UNAVAILABLE naming the endpoints.
//
// Thread-safety: thread-safe.
class EtcdStore final : public Store {
 public:
  struct Options {
    EtcdOptions etcd;
    // Every key starts with it.
    std::string prefix = "/tractor/";
    // Shortest lease granted (etcd's own minimum is about 2 s with its
    // default election timeout; a shorter lease would be extended anyway).
    absl::Duration min_lease = absl::Seconds(2);
  };

  static absl::StatusOr<std::unique_ptr<EtcdStore>> Create(Options options);

  std::string Describe() const override;
  absl::Duration GrantedLease(absl::Duration lease) const override;
  absl::StatusOr<absl::Duration> Put(
      const tractor::v1::Registration& registration,
      absl::Duration lease) override;
  absl::StatusOr<bool> Remove(const std::string& uuid) override;
  absl::StatusOr<Read> Get(const std::string* name) override;
  absl::StatusOr<std::optional<tractor::v1::Registration>> FindAddr(
      const std::string& addr) override;
  absl::StatusOr<AddrDeletion> DeleteAddrIf(const std::string& addr,
                                            const std::string& uuid,
                                            uint64_t revision) override;
  absl::StatusOr<std::unique_ptr<Watch>> StartWatch(
      int64_t from_revision,
      std::function<void(tractor::v1::WatchEvent)> on_event,
      std::function<void(absl::Status)> on_end) override;


  EtcdClient* client() { return client_.get(); }

 private:
  class EtcdWatch;

  EtcdStore(Options options, std::unique_ptr<EtcdClient> client);

  static constexpr char kIndex[] = "names/";

  std::string Key(const std::string& uuid) const {
    return options_.prefix + uuid;
  }
  std::string IndexKey(const std::string& name, const std::string& uuid) const;
  bool IsIndexKey(const std::string& key) const;
  // Adds to `txn` the writes that make `after` (encoded as `value`) the
  // entry, index included, replacing `before`.
  void AddWrites(etcdserverpb::TxnRequest* txn,
                 const std::optional<tractor::v1::Registration>& before,
                 const tractor::v1::Registration& after,
                 const std::string& value, int64_t lease) const;

  const Options options_;
  const std::unique_ptr<EtcdClient> client_;
};

}  // namespace tractor::registrar

#endif  // TRACTOR_REGISTRAR_ETCD_STORE_H_
