// SPDX-License-Identifier: AGPL-3.0-or-later
// Where a registrar keeps its registrations.
//
// `RegistrarService` keeps them in its own memory by default (the embedded
// registrar, one machine). A `Store` moves them to a shared, replicated
// store, so that any number of registrar processes serve the same table and
// none of them holds state of its own: `EtcdStore` (registrar/etcd_store.h)
// is the one implementation. See docs/registry.md.
#ifndef TRACTOR_REGISTRAR_STORE_H_
#define TRACTOR_REGISTRAR_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tractor/v1/registrar.pb.h"

namespace tractor::registrar {

// A shared table of registrations keyed by `aid.uuid`, each under a lease.
//
// Revisions: every entry carries the store's revision of its last change in
// `Registration.revision`, and every watch event the revision at which it
// happened. Revisions grow with every change anywhere in the store and are
// the same as seen through any registrar in front of it.
//
// Errors: a store that cannot answer (no quorum, no member reachable)
// returns UNAVAILABLE naming itself (its endpoints) within its own deadline;
// the registrar passes the status on to its client.
//
// Thread-safety: every method may be called from any thread at once.
class Store {
 public:
  virtual ~Store() = default;

  // Describes the store for logs and errors, e.g. "etcd at h1:p,h2:p".
  virtual std::string Describe() const = 0;

  // Returns the lease a registration asking for `lease` is granted.
  virtual absl::Duration GrantedLease(absl::Duration lease) const = 0;

  // Creates or refreshes the entry of `registration.aid().uuid()` (already
  // validated by the registrar, `revision` ignored) under `lease`. Returns
  // the lease actually granted, which may be longer (a store with a coarser
  // lease granularity or a minimum rounds up).
  virtual absl::StatusOr<absl::Duration> Put(
      const tractor::v1::Registration& registration, absl::Duration lease) = 0;

  // Removes the entry of `uuid`; false when there was none.
  virtual absl::StatusOr<bool> Remove(const std::string& uuid) = 0;

  struct Read {
    // Oldest registration first.
    std::vector<tractor::v1::Registration> registrations;
    // The store's revision the read saw.
    int64_t revision = 0;
  };
  // Returns the live entries named `name`, or every live entry when `name`
  // is null.
  virtual absl::StatusOr<Read> Get(const std::string* name) = 0;

  // Returns the entry holding `addr`, if any.
  virtual absl::StatusOr<std::optional<tractor::v1::Registration>> FindAddr(
      const std::string& addr) = 0;

  struct AddrDeletion {
    // True when `addr` was deleted.
    bool deleted = false;
    // The entry's revision afterwards; 0 when it is gone.
    uint64_t revision = 0;
    // The entry's owner when one still held `addr` or held it until now.
    std::optional<tractor::v1::Aid> owner;
    // Why `addr` was kept, when an entry still holds it.
    std::string kept_because;
  };
  // Removes `addr` from the entry of `uuid` only while that entry's revision
  // is still `revision` (one transaction); an entry left with no address is
  // removed.
  virtual absl::StatusOr<AddrDeletion> DeleteAddrIf(const std::string& addr,
                                                    const std::string& uuid,
                                                    uint64_t revision) = 0;

  // A running watch; destroying it stops the watch and waits until no
  // callback runs any more.
  class Watch {
   public:
    virtual ~Watch() = default;
  };
  // Delivers every change from revision `from_revision` (inclusive, > 0) on,
  // in revision order, each once, to `on_event` (on a thread of the
  // store's). ADDED events carry the entry as it is now, REMOVED and
  // EXPIRED ones the entry as it was. `on_end` is called once if the watch
  // cannot go on (e.g. the revision was compacted away); no event follows
  // it.
  virtual absl::StatusOr<std::unique_ptr<Watch>> StartWatch(
      int64_t from_revision,
      std::function<void(tractor::v1::WatchEvent)> on_event,
      std::function<void(absl::Status)> on_end) = 0;
};

}  // namespace tractor::registrar

#endif  // TRACTOR_REGISTRAR_STORE_H_
