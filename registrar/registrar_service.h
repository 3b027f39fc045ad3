// SPDX-License-Identifier: AGPL-3.0-or-later
// The registrar: maps actor names to the addresses they accept on
// (docs/design.md#discovery-and-addresses,
// docs/behaviour.md#registrar-table).
//
// `RegistrarService` implements the `tractor.v1.Registrar` gRPC service
// (protos/tractor/v1/registrar.proto) with gRPC's callback API, and also
// offers the same operations in process, for an actor that embeds the
// registrar (the root actor becomes the registrar when none answers).
#ifndef TRACTOR_REGISTRAR_REGISTRAR_SERVICE_H_
#define TRACTOR_REGISTRAR_REGISTRAR_SERVICE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "discovery/mutex.h"
#include "registrar/store.h"
#include "tractor/v1/msg.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"
#include "tractor/v1/registrar.pb.h"

namespace tractor::registrar {

namespace internal {
class WaitForReactor;
class WatchReactor;
}  // namespace internal

// Serves the registrar: a table of live registrations keyed by `aid.uuid`.
//
// Semantics (see registrar.proto for the wire contract):
// - `Register` creates or refreshes an entry: it replaces the entry's
//   addresses and restarts its lease (`lease_ms` 0 means the default lease;
//   longer leases are clamped to `max_lease`). An address already held by
//   another uuid moves to the registering one; an entry left with no address
//   is dropped (a REMOVED event), an entry that keeps other addresses changes
//   (an ADDED event).
// - An entry whose lease runs out is dropped (an EXPIRED event) by a
//   background sweeper thread that wakes at the next expiry; lookups never
//   return an expired entry.
// - `Find`/`WaitFor`/`List` return entries oldest registration first (a
//   refresh keeps an entry's place; a registration after expiry is new).
// - `WaitFor` never blocks a gRPC thread: the call stays pending until a
//   matching entry appears, its deadline passes (DEADLINE_EXCEEDED), the
//   client cancels (CANCELLED) or `Shutdown()` runs (UNAVAILABLE).
// - `Watch` streams the current entries as ADDED events, then every change,
//   one write in flight at a time. A watcher that falls more than
//   `kMaxWatchBacklog` events behind is ended with RESOURCE_EXHAUSTED. The
//   stream ends on client cancel, and with UNAVAILABLE on `Shutdown()`.
// - An address must parse (`discovery::Address::Parse`: "host:port",
//   "[v6]:port", "unix:/path" or a multiaddr); anything else is refused with
//   INVALID_ARGUMENT. Addresses are then stored and compared as given.
// - `WatchEvent.revision` grows along a stream. A `Watch` with
//   `start_revision` set gets a RESET event, then the snapshot: the table
//   keeps no history to resume from.
//
// With `Options::store` set, the leased registrations live in that store
// instead (registrar/store.h, docs/registry.md), shared by every registrar
// in front of it: `Register`, `Unregister`, `Find`, `List` and `DeleteAddr`
// are calls to the store, whose errors (UNAVAILABLE without quorum) are
// passed on; `WaitFor` and `Watch` follow the store's watch, and a `Watch`
// with `start_revision` resumes after it with no snapshot and no duplicate.
// Those calls block a gRPC thread for up to the store's deadline. Pinned
// registrations (the registrar's own) stay in this process and are added to
// `Find` and `List` answers. Addresses do not move between uuids: a stale
// address stays with its entry until `DeleteAddr` or its lease ends.
//
// Thread-safety: thread-safe. All state is guarded by one `Mutex`;
// gRPC reactions and the sweeper take it briefly and never block under it.
//
// Lifetime: the service must outlive any `grpc::Server` it is registered
// with (as for every gRPC service): call `Shutdown()`, then shut the server
// down and wait for it, then destroy the service. The destructor calls
// `Shutdown()` and joins the sweeper thread.
class RegistrarService final : public tractor::v1::Registrar::CallbackService {
 public:
  struct Options {
    // The registrar's own identity, answered by `Hello`. `is_registrar` is
    // forced to true.
    tractor::v1::Aid self;
    // Lease granted to a registration that names none (`lease_ms` 0).
    absl::Duration default_lease = absl::Seconds(5);
    // Longest lease granted; longer requests are clamped to it.
    absl::Duration max_lease = absl::Seconds(60);
    // How long the DeleteAddr RPC spends looking for evidence that the actor
    // is gone from the address (`discovery::CheckActorAt`).
    absl::Duration delete_check = absl::Milliseconds(700);
    // Where leased registrations live; null: this service's own memory.
    std::shared_ptr<Store> store;
    // Honour `Register`, `Unregister` and `DeleteAddr` only from members of
    // the mesh (`discovery::CheckMember`: a verified client certificate or
    // this process's mesh secret); others get PERMISSION_DENIED. The
    // in-process API is not checked.
    bool members_only = false;
  };

  // A watcher more than this many events behind is disconnected.
  static constexpr size_t kMaxWatchBacklog = 10000;

  // Starts the sweeper thread. Does not register `options.self`; an embedder
  // that wants the registrar listed calls `AddPinnedRegistration` with its
  // addresses.
  explicit RegistrarService(Options options);
  RegistrarService(const RegistrarService&) = delete;
  RegistrarService& operator=(const RegistrarService&) = delete;
  // Calls `Shutdown()`, then stops and joins the sweeper thread.
  ~RegistrarService() override;

  // Ends every pending `WaitFor` and `Watch` call, and every `DeleteAddr`
  // waiting for its evidence check, with UNAVAILABLE and refuses new ones
  // the same way, so that a `grpc::Server::Shutdown` does not wait for
  // them. The other calls keep working. Idempotent; does not block on
  // clients.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // --- In-process API ---
  // Same rules as the RPCs named in each comment; distinct names so they do
  // not hide the generated service methods.

  // Registers or refreshes `registration` (the Register RPC) under the
  // lease it asks for (`lease_ms`; 0 means the default). Returns the lease
  // granted, or INVALID_ARGUMENT when the uuid, the name or every address is
  // missing, or an address is empty or does not parse. `registration` is copied, not retained.
  absl::StatusOr<absl::Duration> AddRegistration(
      const tractor::v1::Registration& registration) ABSL_LOCKS_EXCLUDED(mu_);

  // Like `AddRegistration`, but the entry has no lease: it stays until
  // removed, or until other uuids take all its addresses. For the
  // registrar's own entry. The stored `lease_ms` is 0.
  absl::Status AddPinnedRegistration(
      const tractor::v1::Registration& registration) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes the entry of `uuid` (the Unregister RPC). Returns false when
  // there was none (or, with a store, when the store could not be reached:
  // that is logged).
  bool RemoveRegistration(const std::string& uuid) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes `addr` from whichever entry holds it, dropping that entry if it
  // has no address left. Unlike the DeleteAddr RPC, it deletes without
  // looking for evidence and whatever the revision: it is for the embedder,
  // which knows. Returns the owner's Aid, or nullopt if no entry held
  // `addr`.
  std::optional<tractor::v1::Aid> RemoveAddr(const std::string& addr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Returns the live entries named exactly `name`, oldest first (the Find
  // RPC).
  std::vector<tractor::v1::Registration> Lookup(const std::string& name) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Returns every live entry, oldest first (the List RPC).
  std::vector<tractor::v1::Registration> Snapshot() const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Returns how many `WaitFor` calls are pending (for tests and metrics).
  size_t PendingWaitForCount() const ABSL_LOCKS_EXCLUDED(mu_);
  // Returns how many `Watch` streams are open (for tests and metrics).
  size_t WatcherCount() const ABSL_LOCKS_EXCLUDED(mu_);

  // --- tractor.v1.Registrar (gRPC callback API) ---

  grpc::ServerUnaryReactor* Hello(grpc::CallbackServerContext* context,
                                  const tractor::v1::HelloRequest* request,
                                  tractor::v1::HelloReply* reply) override;
  grpc::ServerUnaryReactor* Register(
      grpc::CallbackServerContext* context,
      const tractor::v1::RegisterRequest* request,
      tractor::v1::RegisterReply* reply) override;
  grpc::ServerUnaryReactor* Unregister(
      grpc::CallbackServerContext* context,
      const tractor::v1::UnregisterRequest* request,
      tractor::v1::UnregisterReply* reply) override;
  grpc::ServerUnaryReactor* Find(grpc::CallbackServerContext* context,
                                 const tractor::v1::FindRequest* request,
                                 tractor::v1::FindReply* reply) override;
  grpc::ServerUnaryReactor* WaitFor(grpc::CallbackServerContext* context,
                                    const tractor::v1::FindRequest* request,
                                    tractor::v1::FindReply* reply) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const tractor::v1::ListRequest* request,
                                 tractor::v1::ListReply* reply) override;
  grpc::ServerUnaryReactor* DeleteAddr(
      grpc::CallbackServerContext* context,
      const tractor::v1::DeleteAddrRequest* request,
      tractor::v1::DeleteAddrReply* reply) override;
  grpc::ServerWriteReactor<tractor::v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* context,
      const tractor::v1::WatchRequest* request) override;

 private:
  friend class internal::WaitForReactor;
  friend class internal::WatchReactor;

  struct Entry {
    // As stored and returned; `lease_ms` is the lease granted (0: pinned).
    tractor::v1::Registration registration;
    // absl::InfiniteFuture() for a pinned entry.
    absl::Time expiry;
    // Registration order: lower is older.
    uint64_t seq = 0;
  };

  // What is left of `entry`'s lease at `now` (0: pinned), for the
  // `lease_left_ms` of Find and List replies.
  static uint32_t LeaseLeftMs(const Entry& entry, absl::Time now);

  // Monotonic time (steady clock) expressed as absl::Time; only differences
  // are meaningful.
  static absl::Time Now();

  // Find/List from the store, with the pinned local entries first. With
  // `revision`, also the store's revision the read saw (a watch from the
  // next one misses no later change).
  absl::StatusOr<std::vector<tractor::v1::Registration>> ReadWithStore(
      const std::string* name, int64_t* revision = nullptr) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // A store watch feeding a pending WaitFor saw `event`.
  void OnStoreWaitEvent(internal::WaitForReactor* waiter,
                        const tractor::v1::WatchEvent& event)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Ends a pending WaitFor with `status`, unless someone else already did.
  void EndWaiter(internal::WaitForReactor* waiter, grpc::Status status)
      ABSL_LOCKS_EXCLUDED(mu_);
  grpc::ServerUnaryReactor* WaitForStore(
      grpc::CallbackServerContext* context,
      const tractor::v1::FindRequest* request, tractor::v1::FindReply* reply)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Looks up the owner of the address in the store; queues the call for the
  // checker (returning ABORTED with kQueued) or answers at once.
  grpc::Status DeleteAddrInStore(grpc::ServerUnaryReactor* reactor,
                                 const tractor::v1::DeleteAddrRequest* request,
                                 tractor::v1::DeleteAddrReply* reply)
      ABSL_LOCKS_EXCLUDED(mu_);
  grpc::ServerWriteReactor<tractor::v1::WatchEvent>* WatchStore(
      const tractor::v1::WatchRequest& request) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<absl::Duration> RegisterImpl(
      const tractor::v1::Registration& registration, bool pinned)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns the granted lease for a requested `lease_ms`.
  absl::Duration GrantLease(uint32_t lease_ms) const;

  // Drops entries whose lease ran out by `now` (EXPIRED events).
  void SweepLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `addr` from entry `uuid`; drops the entry when it has no address
  // left. Emits REMOVED or ADDED accordingly.
  void RemoveAddrLocked(const std::string& uuid, const std::string& addr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Erases entry `it` and its address index; emits an event of `kind`.
  void EraseEntryLocked(
      absl::flat_hash_map<std::string, Entry>::iterator it,
      tractor::v1::WatchEvent::Kind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends an event to every watcher; a REMOVED or EXPIRED event takes the
  // next revision.
  void EmitLocked(tractor::v1::WatchEvent::Kind kind,
                  const tractor::v1::Registration& registration)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Live entries (optionally only those named `name`), oldest first.
  std::vector<const Entry*> SortedLocked(const std::string* name,
                                         absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Claims the pending WaitFor calls for `name` (which now has a live entry)
  // and fills their replies; the caller finishes them after unlocking.
  void ClaimWaitersLocked(const std::string& name, absl::Time now,
                          std::vector<internal::WaitForReactor*>* satisfied)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Called from reactors.
  void OnWaitForCancelled(internal::WaitForReactor* waiter)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnWatchDone(internal::WatchReactor* watcher) ABSL_LOCKS_EXCLUDED(mu_);

  void SweeperLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs the evidence checks of queued DeleteAddr calls, one at a time.
  void CheckerLoop() ABSL_LOCKS_EXCLUDED(mu_);

  // A DeleteAddr call waiting for its evidence check.
  struct PendingDelete {
    grpc::ServerUnaryReactor* reactor;
    std::string addr;
    std::string uuid;       // the owner when the call arrived
    uint64_t revision = 0;  // its revision then
    tractor::v1::DeleteAddrReply* reply;
    // The entry is in `Options::store`, not in this process.
    bool in_store = false;
  };

  const Options options_;

  mutable Mutex mu_;
  // Signalled when the sweeper's next wake-up may need to come earlier, or
  // when it must stop.
  CondVar sweeper_cv_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // address -> uuid of the entry holding it.
  absl::flat_hash_map<std::string, std::string> addr_owner_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_revision_ ABSL_GUARDED_BY(mu_) = 1;
  // DeleteAddr calls waiting for the checker; it finishes each.
  std::deque<PendingDelete> deletes_ ABSL_GUARDED_BY(mu_);
  // Signalled when `deletes_` grows, or on shutdown.
  CondVar checker_cv_;
  // Pending WaitFor calls. Whoever erases a waiter from this set (under mu_)
  // owns finishing it.
  absl::flat_hash_set<internal::WaitForReactor*> waiters_
      ABSL_GUARDED_BY(mu_);
  // Open Watch streams. A watcher removes itself in OnDone, under mu_, so a
  // pointer here is valid while mu_ is held.
  absl::flat_hash_set<internal::WatchReactor*> watchers_ ABSL_GUARDED_BY(mu_);
  // When the sweeper next wakes up on its own.
  absl::Time sweeper_wake_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_sweeper_ ABSL_GUARDED_BY(mu_) = false;

  std::thread sweeper_;
  std::thread checker_;
};

}  // namespace tractor::registrar

#endif  // TRACTOR_REGISTRAR_REGISTRAR_SERVICE_H_
