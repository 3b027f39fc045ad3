// SPDX-License-Identifier: AGPL-3.0-or-later
#include "registrar/registrar_service.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "discovery/thread_name.h"

namespace tractor::registrar {

namespace v1 = ::tractor::v1;

namespace {

// Limits of a registration: none is near what an actor registers (a few
// addresses, each under 120 bytes), and they keep a hostile `Register`
// from costing time (the checks are linear in them) or from being quoted
// whole in an error.
constexpr int kMaxAddrs = 64;
constexpr size_t kMaxFieldBytes = 1024;
constexpr size_t kMaxUuidBytes = 128;

uint32_t ToLeaseMs(absl::Duration lease) {
  int64_t ms = absl::ToInt64Milliseconds(lease);
  if (ms < 0) return 0;
  if (ms > std::numeric_limits<uint32_t>::max()) {
    return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(ms);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  // absl::StatusCode and grpc::StatusCode share their numeric values.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

// DeleteAddrInStore's answer when it queued the call for the checker.
constexpr char kQueued[] = "queued for the evidence check";

grpc::Status ShuttingDownStatus() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "registrar is shutting down");
}

RegistrarService::Options Normalized(RegistrarService::Options options) {
  CHECK(options.default_lease > absl::ZeroDuration())
      << "RegistrarService: default_lease must be positive";
  if (options.max_lease < options.default_lease) {
    options.max_lease = options.default_lease;
  }
  options.self.set_is_registrar(true);
  return options;
}

}  // namespace

namespace internal {

// A pending WaitFor call. Owned by gRPC: deleted in OnDone. While it sits in
// `RegistrarService::waiters_` the service may finish it; whoever erases it
// from that set (under the service's mutex) calls Finish, exactly once.
class WaitForReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitForReactor(RegistrarService* service, std::string name,
                 absl::Time deadline, v1::FindReply* reply)
      : service_(service),
        name_(std::move(name)),
        deadline_(deadline),
        reply_(reply) {}

  const std::string& name() const { return name_; }
  // In the service's monotonic time base.
  absl::Time deadline() const { return deadline_; }
  // Valid until Finish; filled by the claimer before it finishes.
  v1::FindReply* reply() { return reply_; }

  // The store watch that finishes this call; set before the handler
  // returns it, destroyed (stopped) before this reactor.
  void set_source(std::unique_ptr<Store::Watch> source) {
    source_ = std::move(source);
  }

  void OnCancel() override { service_->OnWaitForCancelled(this); }
  void OnDone() override {
    source_.reset();
    delete this;
  }

 private:
  RegistrarService* const service_;
  const std::string name_;
  const absl::Time deadline_;
  v1::FindReply* const reply_;
  std::unique_ptr<Store::Watch> source_;
};

// A Watch stream: a queue of events written one at a time. Owned by gRPC:
// deleted in OnDone, after removing itself from the service's watcher set.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  // `initial_events` (the snapshot) do not count against the backlog limit.
  WatchReactor(RegistrarService* service, size_t initial_events)
      : service_(service),
        max_backlog_(RegistrarService::kMaxWatchBacklog + initial_events) {}

  // Queues `event` (or starts writing it). Ends the stream with
  // RESOURCE_EXHAUSTED when the client lags too far behind.
  void Enqueue(v1::WatchEvent event) ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    if (closing_) {
      mu_.Unlock();
      return;
    }
    if (writing_) {
      if (backlog_.size() >= max_backlog_) {
        mu_.Unlock();
        LOG(WARNING) << "registrar: a Watch client fell more than "
                     << RegistrarService::kMaxWatchBacklog
                     << " events behind; ending its stream";
        Close(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           "watcher fell too far behind"));
        return;
      }
      backlog_.push_back(std::move(event));
      mu_.Unlock();
      return;
    }
    in_flight_ = std::move(event);
    writing_ = true;
    mu_.Unlock();
    StartWrite(&in_flight_);
  }

  // Ends the stream with `status` once no write is in flight. Idempotent.
  void Close(grpc::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    if (closing_) {
      mu_.Unlock();
      return;
    }
    closing_ = true;
    final_status_ = std::move(status);
    backlog_.clear();
    if (writing_) {  // OnWriteDone finishes.
      mu_.Unlock();
      return;
    }
    grpc::Status final_status = final_status_;
    mu_.Unlock();
    Finish(final_status);
  }

  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    writing_ = false;
    if (!ok && !closing_) {
      closing_ = true;
      final_status_ = grpc::Status(grpc::StatusCode::CANCELLED,
                                   "Watch stream write failed");
      backlog_.clear();
    }
    if (closing_) {
      grpc::Status final_status = final_status_;
      mu_.Unlock();
      Finish(final_status);
      return;
    }
    if (backlog_.empty()) {
      mu_.Unlock();
      return;
    }
    in_flight_ = std::move(backlog_.front());
    backlog_.pop_front();
    writing_ = true;
    mu_.Unlock();
    StartWrite(&in_flight_);
  }

  void OnCancel() override {
    Close(grpc::Status(grpc::StatusCode::CANCELLED, "Watch cancelled"));
  }

  // The store watch that feeds this stream; set before the handler returns
  // it, destroyed (stopped) before this reactor.
  void set_source(std::unique_ptr<Store::Watch> source) {
    source_ = std::move(source);
  }

  void OnDone() override {
    service_->OnWatchDone(this);
    source_.reset();
    delete this;
  }

 private:
  RegistrarService* const service_;
  const size_t max_backlog_;
  std::unique_ptr<Store::Watch> source_;
  Mutex mu_;
  std::deque<v1::WatchEvent> backlog_ ABSL_GUARDED_BY(mu_);
  // The event being written; untouched while `writing_`.
  v1::WatchEvent in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Set once: no more writes; Finish follows when no write is in flight.
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

using internal::WaitForReactor;
using internal::WatchReactor;

RegistrarService::RegistrarService(Options options)
    : options_(Normalized(std::move(options))) {
  sweeper_ = std::thread([this] {
    discovery::NameThisThread("reg-sweeper");
    SweeperLoop();
  });
  checker_ = std::thread([this] {
    discovery::NameThisThread("reg-checker");
    CheckerLoop();
  });
}

RegistrarService::~RegistrarService() {
  Shutdown();
  {
    MutexLock lock(&mu_);
    stop_sweeper_ = true;
    sweeper_cv_.Signal();
    checker_cv_.Signal();
    LOG_IF(ERROR, !watchers_.empty())
        << "RegistrarService destroyed with " << watchers_.size()
        << " Watch streams open: shut the gRPC server down first";
  }
  sweeper_.join();
  checker_.join();
}

absl::Time RegistrarService::Now() {
  return absl::UnixEpoch() +
         absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

void RegistrarService::Shutdown() {
  std::vector<WaitForReactor*> waiters;
  {
    MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    waiters.assign(waiters_.begin(), waiters_.end());
    waiters_.clear();
    // Watchers stay valid while mu_ is held (they leave in OnDone).
    for (WatchReactor* watcher : watchers_) watcher->Close(ShuttingDownStatus());
    // The checker finishes the queued deletions (UNAVAILABLE) at once.
    checker_cv_.Signal();
  }
  for (WaitForReactor* waiter : waiters) waiter->Finish(ShuttingDownStatus());
}

absl::Duration RegistrarService::GrantLease(uint32_t lease_ms) const {
  if (lease_ms == 0) return options_.default_lease;
  return std::min(absl::Milliseconds(lease_ms), options_.max_lease);
}

absl::StatusOr<absl::Duration> RegistrarService::AddRegistration(
    const v1::Registration& registration) {
  return RegisterImpl(registration, /*pinned=*/false);
}

absl::Status RegistrarService::AddPinnedRegistration(
    const v1::Registration& registration) {
  return RegisterImpl(registration, /*pinned=*/true).status();
}

absl::StatusOr<absl::Duration> RegistrarService::RegisterImpl(
    const v1::Registration& registration, bool pinned) {
  const v1::Aid& aid = registration.aid();
  // Bounds first: the checks below are linear in them, and their errors
  // quote the fields.
  if (aid.uuid().size() > kMaxUuidBytes || aid.name().size() > kMaxFieldBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Register: registration.aid has a uuid of ", aid.uuid().size(),
        " bytes and a name of ", aid.name().size(), " bytes (at most ",
        kMaxUuidBytes, " and ", kMaxFieldBytes, ")"));
  }
  if (registration.addrs_size() > kMaxAddrs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Register: registration.addrs holds ", registration.addrs_size(),
        " addresses for '", aid.name(), "' (at most ", kMaxAddrs, ")"));
  }
  for (const std::string& addr : registration.addrs()) {
    if (addr.size() > kMaxFieldBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Register: registration.addrs holds an address of ", addr.size(),
          " bytes for '", aid.name(), "' (at most ", kMaxFieldBytes,
          "), which is not an address: '", addr.substr(0, 40), "...'"));
    }
  }
  if (aid.uuid().empty()) {
    return absl::InvalidArgumentError(
        "Register: registration.aid.uuid is empty");
  }
  if (aid.name().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Register: registration.aid.name is empty (uuid ", aid.uuid(), ")"));
  }
  if (registration.addrs().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Register: registration.addrs is empty for '",
                     aid.name(), "' (uuid ", aid.uuid(), ")"));
  }
  std::vector<std::string> addrs;
  for (const std::string& addr : registration.addrs()) {
    if (addr.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Register: registration.addrs holds an empty address "
                       "for '",
                       aid.name(), "' (uuid ", aid.uuid(), ")"));
    }
    if (absl::StatusOr<discovery::Address> parsed =
            discovery::Address::Parse(addr);
        !parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Register: registration.addrs holds '", addr,
          "', which is not an address, for '", aid.name(), "' (uuid ",
          aid.uuid(), "): ", parsed.status().message()));
    }
    if (std::find(addrs.begin(), addrs.end(), addr) == addrs.end()) {
      addrs.push_back(addr);
    }
  }
  const absl::Duration lease =
      pinned ? absl::InfiniteDuration() : GrantLease(registration.lease_ms());

  v1::Registration stored;
  *stored.mutable_aid() = aid;
  for (const std::string& addr : addrs) stored.add_addrs(addr);
  stored.set_lease_ms(pinned ? 0 : ToLeaseMs(lease));
  if (!pinned && options_.store != nullptr) {
    {
      MutexLock lock(&mu_);
      if (shutting_down_) {
        return absl::UnavailableError("registrar is shutting down");
      }
    }
    return options_.store->Put(stored, lease);
  }

  std::vector<WaitForReactor*> satisfied;
  {
    MutexLock lock(&mu_);
    const absl::Time now = Now();
    SweepLocked(now);
    const std::string& uuid = aid.uuid();
    // Take the addresses away from any other entry holding them.
    for (const std::string& addr : addrs) {
      auto owner = addr_owner_.find(addr);
      if (owner != addr_owner_.end() && owner->second != uuid) {
        const std::string previous = owner->second;
        LOG(INFO) << "registrar: address " << addr << " moves from uuid "
                  << previous << " to '" << aid.name() << "' (" << uuid << ")";
        RemoveAddrLocked(previous, addr);
      }
    }
    auto [it, inserted] = entries_.try_emplace(uuid);
    Entry& entry = it->second;
    bool changed = inserted;
    if (inserted) {
      entry.seq = next_seq_++;
      LOG(INFO) << "registrar: registered '" << aid.name() << "' (" << uuid
                << ") at " << absl::StrJoin(addrs, ",") << ", lease "
                << (pinned ? std::string("none") : absl::FormatDuration(lease));
    } else {
      v1::Registration before = entry.registration;
      before.clear_revision();
      changed =
          !google::protobuf::util::MessageDifferencer::Equals(before, stored);
      for (const std::string& old_addr : entry.registration.addrs()) {
        if (std::find(addrs.begin(), addrs.end(), old_addr) == addrs.end()) {
          addr_owner_.erase(old_addr);
        }
      }
      VLOG(2) << "registrar: refreshed '" << aid.name() << "' (" << uuid
              << ")" << (changed ? ", changed" : "");
    }
    for (const std::string& addr : addrs) addr_owner_[addr] = uuid;
    // Every registration, a refresh included, is a new revision: a
    // deletion decided on an older one no longer applies.
    stored.set_revision(next_revision_++);
    entry.registration = stored;
    entry.expiry = pinned ? absl::InfiniteFuture() : now + lease;
    if (changed) EmitLocked(v1::WatchEvent::ADDED, stored);
    if (entry.expiry < sweeper_wake_) sweeper_cv_.Signal();
    ClaimWaitersLocked(aid.name(), now, &satisfied);
  }
  for (WaitForReactor* waiter : satisfied) waiter->Finish(grpc::Status::OK);
  return lease;
}

bool RegistrarService::RemoveRegistration(const std::string& uuid) {
  if (options_.store != nullptr) {
    bool local = false;
    {
      MutexLock lock(&mu_);
      local = entries_.contains(uuid);
    }
    if (!local) {
      absl::StatusOr<bool> removed = options_.store->Remove(uuid);
      if (!removed.ok()) {
        LOG(WARNING) << "registrar: Unregister of " << uuid << ": "
                     << removed.status();
        return false;
      }
      return *removed;
    }
  }
  MutexLock lock(&mu_);
  SweepLocked(Now());
  auto it = entries_.find(uuid);
  if (it == entries_.end()) {
    VLOG(1) << "registrar: Unregister of unknown uuid " << uuid;
    return false;
  }
  LOG(INFO) << "registrar: unregistered '"
            << it->second.registration.aid().name() << "' (" << uuid << ")";
  EraseEntryLocked(it, v1::WatchEvent::REMOVED);
  return true;
}

std::optional<v1::Aid> RegistrarService::RemoveAddr(const std::string& addr) {
  if (options_.store != nullptr) {
    bool local = false;
    {
      MutexLock lock(&mu_);
      local = addr_owner_.contains(addr);
    }
    if (!local) {
      absl::StatusOr<std::optional<v1::Registration>> owner =
          options_.store->FindAddr(addr);
      if (!owner.ok() || !owner->has_value()) {
        if (!owner.ok()) LOG(WARNING) << "registrar: RemoveAddr: " << owner.status();
        return std::nullopt;
      }
      absl::StatusOr<Store::AddrDeletion> deleted = options_.store->DeleteAddrIf(
          addr, (*owner)->aid().uuid(), (*owner)->revision());
      if (!deleted.ok() || !deleted->deleted) {
        if (!deleted.ok()) LOG(WARNING) << "registrar: RemoveAddr: " << deleted.status();
        return std::nullopt;
      }
      return (*owner)->aid();
    }
  }
  MutexLock lock(&mu_);
  SweepLocked(Now());
  auto owner = addr_owner_.find(addr);
  if (owner == addr_owner_.end()) return std::nullopt;
  const std::string uuid = owner->second;
  auto it = entries_.find(uuid);
  CHECK(it != entries_.end()) << "address index names a missing entry";
  v1::Aid aid = it->second.registration.aid();
  LOG(INFO) << "registrar: deleted address " << addr << " of '" << aid.name()
            << "' (" << uuid << ")";
  RemoveAddrLocked(uuid, addr);
  return aid;
}

absl::StatusOr<std::vector<v1::Registration>> RegistrarService::ReadWithStore(
    const std::string* name, int64_t* revision) const {
  std::vector<v1::Registration> result;
  {
    MutexLock lock(&mu_);
    for (const Entry* entry : SortedLocked(name, Now())) {
      result.push_back(entry->registration);
    }
  }
  absl::StatusOr<Store::Read> read = options_.store->Get(name);
  if (!read.ok()) return read.status();
  if (revision != nullptr) *revision = read->revision;
  for (v1::Registration& registration : read->registrations) {
    result.push_back(std::move(registration));
  }
  return result;
}

std::vector<v1::Registration> RegistrarService::Lookup(
    const std::string& name) const {
  if (options_.store != nullptr) {
    absl::StatusOr<std::vector<v1::Registration>> read = ReadWithStore(&name);
    if (read.ok()) return *std::move(read);
    LOG(WARNING) << "registrar: Lookup('" << name << "'): " << read.status();
    return {};
  }
  MutexLock lock(&mu_);
  std::vector<v1::Registration> result;
  for (const Entry* entry : SortedLocked(&name, Now())) {
    result.push_back(entry->registration);
  }
  return result;
}

std::vector<v1::Registration> RegistrarService::Snapshot() const {
  if (options_.store != nullptr) {
    absl::StatusOr<std::vector<v1::Registration>> read = ReadWithStore(nullptr);
    if (read.ok()) return *std::move(read);
    LOG(WARNING) << "registrar: Snapshot: " << read.status();
    return {};
  }
  MutexLock lock(&mu_);
  std::vector<v1::Registration> result;
  for (const Entry* entry : SortedLocked(nullptr, Now())) {
    result.push_back(entry->registration);
  }
  return result;
}

size_t RegistrarService::PendingWaitForCount() const {
  MutexLock lock(&mu_);
  return waiters_.size();
}

size_t RegistrarService::WatcherCount() const {
  MutexLock lock(&mu_);
  return watchers_.size();
}

void RegistrarService::SweepLocked(absl::Time now) {
  std::vector<std::string> expired;
  for (const auto& [uuid, entry] : entries_) {
    if (entry.expiry <= now) expired.push_back(uuid);
  }
  for (const std::string& uuid : expired) {
    auto it = entries_.find(uuid);
    LOG(INFO) << "registrar: lease of '"
              << it->second.registration.aid().name() << "' (" << uuid
              << ") expired";
    EraseEntryLocked(it, v1::WatchEvent::EXPIRED);
  }
}

void RegistrarService::RemoveAddrLocked(const std::string& uuid,
                                        const std::string& addr) {
  auto it = entries_.find(uuid);
  CHECK(it != entries_.end()) << "address index names a missing entry";
  auto* addrs = it->second.registration.mutable_addrs();
  for (int i = 0; i < addrs->size(); ++i) {
    if (addrs->Get(i) == addr) {
      addrs->erase(addrs->begin() + i);
      break;
    }
  }
  addr_owner_.erase(addr);
  if (addrs->empty()) {
    EraseEntryLocked(it, v1::WatchEvent::REMOVED);
  } else {
    it->second.registration.set_revision(next_revision_++);
    EmitLocked(v1::WatchEvent::ADDED, it->second.registration);
  }
}

void RegistrarService::EraseEntryLocked(
    absl::flat_hash_map<std::string, Entry>::iterator it,
    v1::WatchEvent::Kind kind) {
  v1::Registration registration = std::move(it->second.registration);
  for (const std::string& addr : registration.addrs()) {
    auto owner = addr_owner_.find(addr);
    if (owner != addr_owner_.end() && owner->second == it->first) {
      addr_owner_.erase(owner);
    }
  }
  entries_.erase(it);
  EmitLocked(kind, registration);
}

void RegistrarService::EmitLocked(v1::WatchEvent::Kind kind,
                                  const v1::Registration& registration) {
  if (watchers_.empty()) return;
  v1::WatchEvent event;
  event.set_kind(kind);
  *event.mutable_registration() = registration;
  event.set_revision(kind == v1::WatchEvent::ADDED ? registration.revision()
                                                   : next_revision_++);
  for (WatchReactor* watcher : watchers_) watcher->Enqueue(event);
}

std::vector<const RegistrarService::Entry*> RegistrarService::SortedLocked(
    const std::string* name, absl::Time now) const {
  std::vector<const Entry*> result;
  for (const auto& [uuid, entry] : entries_) {
    if (entry.expiry <= now) continue;
    if (name != nullptr && entry.registration.aid().name() != *name) continue;
    result.push_back(&entry);
  }
  std::sort(result.begin(), result.end(),
            [](const Entry* a, const Entry* b) { return a->seq < b->seq; });
  return result;
}

void RegistrarService::ClaimWaitersLocked(
    const std::string& name, absl::Time now,
    std::vector<WaitForReactor*>* satisfied) {
  std::vector<const Entry*> matches;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    WaitForReactor* waiter = *it;
    if (waiter->name() != name) {
      ++it;
      continue;
    }
    if (matches.empty()) matches = SortedLocked(&name, now);
    if (matches.empty()) return;
    for (const Entry* entry : matches) {
      *waiter->reply()->add_registrations() = entry->registration;
    }
    satisfied->push_back(waiter);
    waiters_.erase(it++);
  }
}

void RegistrarService::OnWaitForCancelled(WaitForReactor* waiter) {
  {
    MutexLock lock(&mu_);
    if (waiters_.erase(waiter) == 0) return;  // Someone else finishes it.
  }
  waiter->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                              "WaitFor cancelled by the client"));
}

void RegistrarService::OnWatchDone(WatchReactor* watcher) {
  MutexLock lock(&mu_);
  watchers_.erase(watcher);
}

void RegistrarService::SweeperLoop() {
  mu_.Lock();
  while (!stop_sweeper_) {
    const absl::Time now = Now();
    SweepLocked(now);
    std::vector<WaitForReactor*> timed_out;
    for (WaitForReactor* waiter : waiters_) {
      if (waiter->deadline() <= now) timed_out.push_back(waiter);
    }
    if (!timed_out.empty()) {
      for (WaitForReactor* waiter : timed_out) waiters_.erase(waiter);
      mu_.Unlock();
      for (WaitForReactor* waiter : timed_out) {
        waiter->Finish(grpc::Status(
            grpc::StatusCode::DEADLINE_EXCEEDED,
            absl::StrCat("WaitFor('", waiter->name(),
                         "'): no such actor registered before the deadline")));
      }
      mu_.Lock();
      continue;
    }
    absl::Time next = absl::InfiniteFuture();
    for (const auto& [uuid, entry] : entries_) {
      next = std::min(next, entry.expiry);
    }
    for (WaitForReactor* waiter : waiters_) {
      next = std::min(next, waiter->deadline());
    }
    sweeper_wake_ = next;
    sweeper_cv_.WaitWithTimeout(&mu_, next - Now());
    sweeper_wake_ = absl::InfiniteFuture();
  }
  mu_.Unlock();
}

// --- gRPC handlers ---

grpc::ServerUnaryReactor* RegistrarService::Hello(
    grpc::CallbackServerContext* context, const v1::HelloRequest* /*request*/,
    v1::HelloReply* reply) {
  *reply->mutable_registrar() = options_.self;
  reply->set_default_lease_ms(ToLeaseMs(
      options_.store != nullptr
          ? options_.store->GrantedLease(options_.default_lease)
          : options_.default_lease));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistrarService::Register(
    grpc::CallbackServerContext* context, const v1::RegisterRequest* request,
    v1::RegisterReply* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (options_.members_only) {
    grpc::Status member = discovery::CheckMember(*context, "Register");
    if (!member.ok()) {
      reactor->Finish(member);
      return reactor;
    }
  }
  absl::StatusOr<absl::Duration> lease =
      AddRegistration(request->registration());
  if (!lease.ok()) {
    reactor->Finish(ToGrpcStatus(lease.status()));
    return reactor;
  }
  reply->set_lease_ms(ToLeaseMs(*lease));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistrarService::Unregister(
    grpc::CallbackServerContext* context, const v1::UnregisterRequest* request,
    v1::UnregisterReply* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (options_.members_only) {
    grpc::Status member = discovery::CheckMember(*context, "Unregister");
    if (!member.ok()) {
      reactor->Finish(member);
      return reactor;
    }
  }
  if (options_.store != nullptr) {
    bool local = false;
    {
      MutexLock lock(&mu_);
      local = entries_.contains(request->uuid());
    }
    if (!local) {
      absl::StatusOr<bool> removed = options_.store->Remove(request->uuid());
      if (!removed.ok()) {
        reactor->Finish(ToGrpcStatus(removed.status()));
        return reactor;
      }
      reply->set_found(*removed);
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
  }
  reply->set_found(RemoveRegistration(request->uuid()));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistrarService::Find(
    grpc::CallbackServerContext* context, const v1::FindRequest* request,
    v1::FindReply* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->name().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "Find: name is empty"));
    return reactor;
  }
  if (options_.store != nullptr) {
    absl::StatusOr<std::vector<v1::Registration>> read =
        ReadWithStore(&request->name());
    if (read.ok()) {
      for (v1::Registration& r : *read) *reply->add_registrations() = std::move(r);
    }
    reactor->Finish(ToGrpcStatus(read.status()));
    return reactor;
  }
  {
    MutexLock lock(&mu_);
    const absl::Time now = Now();
    SweepLocked(now);
    for (const Entry* entry : SortedLocked(&request->name(), now)) {
      *reply->add_registrations() = entry->registration;
      reply->add_lease_left_ms(LeaseLeftMs(*entry, now));
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistrarService::WaitFor(
    grpc::CallbackServerContext* context, const v1::FindRequest* request,
    v1::FindReply* reply) {
  if (request->name().empty()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "WaitFor: name is empty"));
    return reactor;
  }
  if (options_.store != nullptr) {
    return WaitForStore(context, request, reply);
  }
  MutexLock lock(&mu_);
  if (shutting_down_) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ShuttingDownStatus());
    return reactor;
  }
  const absl::Time now = Now();
  SweepLocked(now);
  std::vector<const Entry*> matches = SortedLocked(&request->name(), now);
  if (!matches.empty()) {
    for (const Entry* entry : matches) {
      *reply->add_registrations() = entry->registration;
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  absl::Time deadline = absl::InfiniteFuture();
  const auto call_deadline = context->deadline();
  if (call_deadline != std::chrono::system_clock::time_point::max()) {
    deadline =
        now + absl::FromChrono(call_deadline - std::chrono::system_clock::now());
  }
  auto* waiter = new WaitForReactor(this, request->name(), deadline, reply);
  waiters_.insert(waiter);
  if (deadline < sweeper_wake_) sweeper_cv_.Signal();
  VLOG(1) << "registrar: WaitFor('" << request->name() << "') pending";
  return waiter;
}

uint32_t RegistrarService::LeaseLeftMs(const Entry& entry, absl::Time now) {
  if (entry.expiry == absl::InfiniteFuture()) return 0;
  return static_cast<uint32_t>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(entry.expiry - now)));
}

grpc::ServerUnaryReactor* RegistrarService::WaitForStore(
    grpc::CallbackServerContext* context, const v1::FindRequest* request,
    v1::FindReply* reply) {
  const std::string& name = request->name();
  // One read of the name's entries, which also gives the revision to follow
  // the store from (a read of the whole table would cost as many entries
  // as are registered).
  int64_t revision = 0;
  absl::StatusOr<std::vector<v1::Registration>> matches =
      ReadWithStore(&name, &revision);
  if (!matches.ok() || !matches->empty()) {
    if (matches.ok()) {
      for (v1::Registration& r : *matches) {
        *reply->add_registrations() = std::move(r);
      }
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(matches.status()));
    return reactor;
  }
  // Nothing yet: follow the store from the revision after the read.
  const absl::Time now = Now();
  absl::Time deadline = absl::InfiniteFuture();
  const auto call_deadline = context->deadline();
  if (call_deadline != std::chrono::system_clock::time_point::max()) {
    deadline =
        now + absl::FromChrono(call_deadline - std::chrono::system_clock::now());
  }
  auto* waiter = new WaitForReactor(this, name, deadline, reply);
  mu_.Lock();
  if (shutting_down_) {
    mu_.Unlock();
    waiter->Finish(ShuttingDownStatus());
    return waiter;
  }
  waiters_.insert(waiter);
  if (deadline < sweeper_wake_) sweeper_cv_.Signal();
  // Under mu_: the callbacks wait for it, so `set_source` comes first.
  absl::StatusOr<std::unique_ptr<Store::Watch>> watch =
      options_.store->StartWatch(
          revision + 1,
          [this, waiter](v1::WatchEvent event) {
            OnStoreWaitEvent(waiter, event);
          },
          [this, waiter](absl::Status status) {
            EndWaiter(waiter, ToGrpcStatus(status));
          });
  if (!watch.ok()) {
    waiters_.erase(waiter);
    mu_.Unlock();
    waiter->Finish(ToGrpcStatus(watch.status()));
    return waiter;
  }
  waiter->set_source(*std::move(watch));
  mu_.Unlock();
  VLOG(1) << "registrar: WaitFor('" << name << "') pending on the store";
  return waiter;
}

void RegistrarService::OnStoreWaitEvent(WaitForReactor* waiter,
                                        const v1::WatchEvent& event) {
  if (event.kind() != v1::WatchEvent::ADDED ||
      event.registration().aid().name() != waiter->name()) {
    return;
  }
  {
    MutexLock lock(&mu_);
    if (!waiters_.contains(waiter)) return;
  }
  // Answer with every entry of that name, as Find would.
  absl::StatusOr<std::vector<v1::Registration>> matches =
      ReadWithStore(&waiter->name());
  {
    MutexLock lock(&mu_);
    if (waiters_.erase(waiter) == 0) return;
  }
  if (matches.ok() && !matches->empty()) {
    for (v1::Registration& r : *matches) {
      *waiter->reply()->add_registrations() = std::move(r);
    }
  } else {
    *waiter->reply()->add_registrations() = event.registration();
  }
  waiter->Finish(grpc::Status::OK);
}

void RegistrarService::EndWaiter(WaitForReactor* waiter, grpc::Status status) {
  {
    MutexLock lock(&mu_);
    if (waiters_.erase(waiter) == 0) return;
  }
  waiter->Finish(status);
}

grpc::ServerUnaryReactor* RegistrarService::List(
    grpc::CallbackServerContext* context, const v1::ListRequest* /*request*/,
    v1::ListReply* reply) {
  if (options_.store != nullptr) {
    absl::StatusOr<std::vector<v1::Registration>> read = ReadWithStore(nullptr);
    if (read.ok()) {
      for (v1::Registration& r : *read) *reply->add_registrations() = std::move(r);
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(read.status()));
    return reactor;
  }
  {
    MutexLock lock(&mu_);
    const absl::Time now = Now();
    SweepLocked(now);
    for (const Entry* entry : SortedLocked(nullptr, now)) {
      *reply->add_registrations() = entry->registration;
      reply->add_lease_left_ms(LeaseLeftMs(*entry, now));
    }
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RegistrarService::DeleteAddr(
    grpc::CallbackServerContext* context, const v1::DeleteAddrRequest* request,
    v1::DeleteAddrReply* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (options_.members_only) {
    grpc::Status member = discovery::CheckMember(*context, "DeleteAddr");
    if (!member.ok()) {
      reactor->Finish(member);
      return reactor;
    }
  }
  grpc::Status status = grpc::Status::OK;
  bool in_store = false;
  if (options_.store != nullptr) {
    MutexLock lock(&mu_);
    in_store = !addr_owner_.contains(request->addr());
  }
  if (in_store) {
    status = DeleteAddrInStore(reactor, request, reply);
    if (status.error_code() == grpc::StatusCode::ABORTED &&
        status.error_message() == kQueued) {
      return reactor;  // the checker finishes it
    }
    reactor->Finish(status);
    return reactor;
  }
  {
    MutexLock lock(&mu_);
    if (shutting_down_) {
      status = ShuttingDownStatus();
    } else {
      SweepLocked(Now());
      auto owner = addr_owner_.find(request->addr());
      if (owner != addr_owner_.end()) {
        const Entry& entry = entries_.at(owner->second);
        const uint64_t revision = entry.registration.revision();
        *reply->mutable_owner() = entry.registration.aid();
        reply->set_revision(revision);
        if (request->if_revision() != 0 &&
            request->if_revision() != revision) {
          reply->set_kept_because(absl::StrCat("revision ", revision,
                                               " is not ",
                                               request->if_revision()));
        } else {
          // The checker thread looks for evidence, then finishes the call.
          deletes_.push_back(
              {reactor, request->addr(), owner->second, revision, reply});
          checker_cv_.Signal();
          return reactor;
        }
      }
    }
  }
  reactor->Finish(status);
  return reactor;
}

grpc::Status RegistrarService::DeleteAddrInStore(
    grpc::ServerUnaryReactor* reactor, const v1::DeleteAddrRequest* request,
    v1::DeleteAddrReply* reply) {
  absl::StatusOr<std::optional<v1::Registration>> owner =
      options_.store->FindAddr(request->addr());
  if (!owner.ok()) return ToGrpcStatus(owner.status());
  if (!owner->has_value()) return grpc::Status::OK;
  const v1::Registration& entry = **owner;
  const uint64_t revision = entry.revision();
  *reply->mutable_owner() = entry.aid();
  reply->set_revision(revision);
  if (request->if_revision() != 0 && request->if_revision() != revision) {
    reply->set_kept_because(
        absl::StrCat("revision ", revision, " is not ", request->if_revision()));
    return grpc::Status::OK;
  }
  MutexLock lock(&mu_);
  if (shutting_down_) return ShuttingDownStatus();
  deletes_.push_back({reactor, request->addr(), entry.aid().uuid(), revision,
                      reply, /*in_store=*/true});
  checker_cv_.Signal();
  return grpc::Status(grpc::StatusCode::ABORTED, kQueued);
}

void RegistrarService::CheckerLoop() {
  mu_.Lock();
  for (;;) {
    while (deletes_.empty() && !stop_sweeper_) checker_cv_.Wait(&mu_);
    if (deletes_.empty()) break;
    PendingDelete d = std::move(deletes_.front());
    deletes_.pop_front();
    if (shutting_down_) {
      mu_.Unlock();
      d.reactor->Finish(ShuttingDownStatus());
      mu_.Lock();
      continue;
    }
    mu_.Unlock();
    discovery::AddrCheck check{discovery::Liveness::kGone,
                               "it is not an address"};
    if (absl::StatusOr<discovery::Address> addr =
            discovery::Address::Parse(d.addr);
        addr.ok()) {
      check = discovery::CheckActorAt(*addr, d.uuid, options_.delete_check);
    }
    if (d.in_store) {
      grpc::Status status = grpc::Status::OK;
      if (check.liveness != discovery::Liveness::kGone) {
        d.reply->set_kept_because(check.detail);
      } else {
        absl::StatusOr<Store::AddrDeletion> deleted =
            options_.store->DeleteAddrIf(d.addr, d.uuid, d.revision);
        if (!deleted.ok()) {
          status = ToGrpcStatus(deleted.status());
        } else {
          if (deleted->owner.has_value()) {
            *d.reply->mutable_owner() = *deleted->owner;
          } else {
            d.reply->clear_owner();
          }
          d.reply->set_found(deleted->deleted);
          d.reply->set_kept_because(deleted->kept_because);
          d.reply->set_revision(deleted->revision);
          if (deleted->deleted) {
            LOG(INFO) << "registrar: deleted address " << d.addr
                      << " of uuid " << d.uuid << " from "
                      << options_.store->Describe() << ": " << check.detail;
          }
        }
      }
      d.reactor->Finish(status);
      mu_.Lock();
      continue;
    }
    mu_.Lock();
    SweepLocked(Now());
    auto owner = addr_owner_.find(d.addr);
    if (owner == addr_owner_.end()) {
      d.reply->clear_owner();  // gone meanwhile (expired, unregistered)
    } else {
      Entry& entry = entries_.at(owner->second);
      *d.reply->mutable_owner() = entry.registration.aid();
      if (owner->second != d.uuid ||
          entry.registration.revision() != d.revision) {
        d.reply->set_kept_because(absl::StrCat(
            "the entry changed while the address was checked (revision ",
            entry.registration.revision(), ")"));
      } else if (check.liveness != discovery::Liveness::kGone) {
        d.reply->set_kept_because(check.detail);
      } else {
        LOG(INFO) << "registrar: deleted address " << d.addr << " of '"
                  << entry.registration.aid().name() << "' (" << d.uuid
                  << "): " << check.detail;
        RemoveAddrLocked(d.uuid, d.addr);
        d.reply->set_found(true);
      }
      auto left = entries_.find(d.uuid);
      d.reply->set_revision(
          left == entries_.end() ? 0 : left->second.registration.revision());
    }
    if (!d.reply->kept_because().empty()) {
      VLOG(1) << "registrar: kept address " << d.addr << " of uuid " << d.uuid
              << ": " << d.reply->kept_because();
    }
    mu_.Unlock();
    d.reactor->Finish(grpc::Status::OK);
    mu_.Lock();
  }
  mu_.Unlock();
}

grpc::ServerWriteReactor<v1::WatchEvent>* RegistrarService::WatchStore(
    const v1::WatchRequest& request) {
  int64_t from = static_cast<int64_t>(request.start_revision()) + 1;
  std::vector<v1::WatchEvent> snapshot;
  if (request.start_revision() == 0) {
    absl::StatusOr<Store::Read> read = options_.store->Get(nullptr);
    if (!read.ok()) {
      auto* watcher = new WatchReactor(this, 0);
      watcher->Close(ToGrpcStatus(read.status()));
      return watcher;
    }
    for (v1::Registration& registration : read->registrations) {
      v1::WatchEvent event;
      event.set_kind(v1::WatchEvent::ADDED);
      event.set_revision(static_cast<uint64_t>(read->revision));
      *event.mutable_registration() = std::move(registration);
      snapshot.push_back(std::move(event));
    }
    from = read->revision + 1;
  }
  MutexLock lock(&mu_);
  auto* watcher = new WatchReactor(this, snapshot.size());
  if (shutting_down_) {
    watcher->Close(ShuttingDownStatus());
    return watcher;
  }
  for (v1::WatchEvent& event : snapshot) watcher->Enqueue(std::move(event));
  absl::StatusOr<std::unique_ptr<Store::Watch>> watch =
      options_.store->StartWatch(
          from, [watcher](v1::WatchEvent event) {
            watcher->Enqueue(std::move(event));
          },
          [watcher](absl::Status status) {
            watcher->Close(ToGrpcStatus(status));
          });
  if (!watch.ok()) {
    watcher->Close(ToGrpcStatus(watch.status()));
    return watcher;
  }
  watcher->set_source(*std::move(watch));
  watchers_.insert(watcher);
  return watcher;
}

grpc::ServerWriteReactor<v1::WatchEvent>* RegistrarService::Watch(
    grpc::CallbackServerContext* /*context*/,
    const v1::WatchRequest* request) {
  if (options_.store != nullptr) return WatchStore(*request);
  MutexLock lock(&mu_);
  if (shutting_down_) {
    auto* watcher = new WatchReactor(this, 0);
    watcher->Close(ShuttingDownStatus());
    return watcher;
  }
  const absl::Time now = Now();
  SweepLocked(now);
  // Under the same lock as joining `watchers_`: no change is lost or seen
  // twice between the snapshot and the live events.
  std::vector<const Entry*> snapshot = SortedLocked(nullptr, now);
  auto* watcher = new WatchReactor(this, snapshot.size() + 1);
  if (request->start_revision() != 0) {
    // No history to resume from: the client starts over.
    v1::WatchEvent reset;
    reset.set_kind(v1::WatchEvent::RESET);
    reset.set_revision(next_revision_ - 1);
    watcher->Enqueue(std::move(reset));
  }
  for (const Entry* entry : snapshot) {
    v1::WatchEvent event;
    event.set_kind(v1::WatchEvent::ADDED);
    event.set_revision(next_revision_ - 1);
    *event.mutable_registration() = entry->registration;
    watcher->Enqueue(std::move(event));
  }
  watchers_.insert(watcher);
  return watcher;
}

}  // namespace tractor::registrar
