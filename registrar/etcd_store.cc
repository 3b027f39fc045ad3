// SPDX-License-Identifier: AGPL-3.0-or-later
#include "registrar/etcd_store.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "discovery/mutex.h"
#include "discovery/thread_name.h"
#include "glog/logging.h"

namespace tractor::registrar {

namespace pb = ::etcdserverpb;
namespace v1 = ::tractor::v1;

namespace {

// A registration as stored: without its revision (the key's mod_revision).
std::string Encode(v1::Registration registration) {
  registration.clear_revision();
  std::string value;
  registration.SerializeToString(&value);
  return value;
}

// Decodes the value of `kv`; nullopt for a value that is not a registration
// (a foreign key under the prefix).
std::optional<v1::Registration> Decode(const mvccpb::KeyValue& kv) {
  v1::Registration registration;
  if (!registration.ParseFromString(kv.value()) ||
      registration.aid().uuid().empty()) {
    VLOG(1) << "etcd store: key '" << kv.key()
            << "' does not hold a registration; ignored";
    return std::nullopt;
  }
  registration.set_revision(static_cast<uint64_t>(kv.mod_revision()));
  return registration;
}

pb::Compare ModRevisionIs(const std::string& key, int64_t revision) {
  pb::Compare compare;
  compare.set_result(pb::Compare::EQUAL);
  compare.set_target(pb::Compare::MOD);
  compare.set_key(key);
  compare.set_mod_revision(revision);
  return compare;
}

void AddPut(pb::TxnRequest* txn, const std::string& key,
            const std::string& value, int64_t lease) {
  pb::PutRequest* put = txn->add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
}

void AddDelete(pb::TxnRequest* txn, const std::string& key) {
  txn->add_success()->mutable_request_delete_range()->set_key(key);
}

// Reads `key`; nullopt when absent.
absl::StatusOr<std::optional<mvccpb::KeyValue>> ReadKey(
    EtcdClient* client, const std::string& key) {
  pb::RangeRequest request;
  request.set_key(key);
  pb::RangeResponse response;
  if (absl::Status s = client->Range(request, &response); !s.ok()) return s;
  if (response.kvs().empty()) return std::optional<mvccpb::KeyValue>();
  return std::optional<mvccpb::KeyValue>(response.kvs(0));
}

}  // namespace

// One etcd Watch stream over the prefix, on one member at a time: when the
// stream breaks (the member died, or lost its leader: the stream asks for
// one), it is opened again on the next member from the revision after the
// last event delivered, so nothing is lost or delivered twice.
class EtcdStore::EtcdWatch final : public Store::Watch {
 public:
  EtcdWatch(EtcdStore* store, int64_t from_revision,
            std::function<void(v1::WatchEvent)> on_event,
            std::function<void(absl::Status)> on_end)
      : store_(store),
        next_revision_(from_revision),
        on_event_(std::move(on_event)),
        on_end_(std::move(on_end)) {
    thread_ = std::thread([this] {
      discovery::NameThisThread("reg-etcd-watch");
      Run();
    });
  }

  ~EtcdWatch() override {
    {
      MutexLock lock(&mu_);
      stopped_ = true;
      if (context_ != nullptr) context_->TryCancel();
      cv_.Signal();
    }
    // A callback may end the call whose reactor owns this watch; gRPC then
    // destroys it on another thread, but never join the running thread.
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

 private:
  void Run() {
    EtcdClient* client = store_->client_.get();
    size_t member = client->preferred();
    const std::string& prefix = store_->options_.prefix;
    while (true) {
      auto context = std::make_unique<grpc::ClientContext>();
      // A member without a leader ends the stream instead of going silent.
      context->AddMetadata("hasleader", "true");
      {
        MutexLock lock(&mu_);
        if (stopped_) return;
        context_ = context.get();
      }
      auto stream = client->watch_stub(member)->Watch(context.get());
      pb::WatchRequest request;
      pb::WatchCreateRequest* create = request.mutable_create_request();
      create->set_key(prefix);
      create->set_range_end(EtcdClient::PrefixEnd(prefix));
      create->set_start_revision(next_revision_);
      create->set_prev_kv(true);
      pb::WatchResponse response;
      bool end = false;
      if (stream->Write(request)) {
        while (stream->Read(&response)) {
          if (response.compact_revision() > 0) {
            end = true;
            EndWith(absl::OutOfRangeError(absl::StrCat(
                store_->Describe(), ": revision ", next_revision_,
                " was compacted (oldest kept: ", response.compact_revision(),
                "); watch again from revision 0")));
            break;
          }
          if (response.canceled()) break;
          for (const mvccpb::Event& event : response.events()) {
            if (!store_->IsIndexKey(event.kv().key())) Deliver(event);
            next_revision_ = event.kv().mod_revision() + 1;
          }
        }
      }
      context->TryCancel();
      grpc::Status status = stream->Finish();
      MutexLock lock(&mu_);
      context_ = nullptr;
      if (stopped_ || end) return;
      VLOG(1) << "etcd store: watch on " << client->endpoint(member)
              << " ended (" << status.error_message()
              << "); resuming on the next member from revision "
              << next_revision_;
      member = (member + 1) % client->endpoint_count();
      cv_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
      if (stopped_) return;
    }
  }

  void Deliver(const mvccpb::Event& event) {
    v1::WatchEvent out;
    out.set_revision(static_cast<uint64_t>(event.kv().mod_revision()));
    if (event.type() == mvccpb::Event::PUT) {
      std::optional<v1::Registration> registration = Decode(event.kv());
      if (!registration.has_value()) return;
      out.set_kind(v1::WatchEvent::ADDED);
      *out.mutable_registration() = *std::move(registration);
    } else {
      std::optional<v1::Registration> registration;
      if (event.has_prev_kv()) registration = Decode(event.prev_kv());
      if (!registration.has_value()) {
        v1::Registration bare;
        bare.mutable_aid()->set_uuid(
            event.kv().key().substr(store_->options_.prefix.size()));
        registration = bare;
      }
      registration->set_revision(0);
      // An expiry deletes the key with its lease; a deletion leaves the
      // lease to run out.
      bool expired = false;
      if (event.has_prev_kv() && event.prev_kv().lease() != 0) {
        pb::LeaseTimeToLiveRequest request;
        request.set_id(event.prev_kv().lease());
        pb::LeaseTimeToLiveResponse response;
        expired = store_->client_->LeaseTimeToLive(request, &response).ok() &&
                  response.ttl() < 0;
      }
      out.set_kind(expired ? v1::WatchEvent::EXPIRED
                           : v1::WatchEvent::REMOVED);
      *out.mutable_registration() = *std::move(registration);
    }
    on_event_(std::move(out));
  }

  void EndWith(absl::Status status) {
    if (on_end_) on_end_(std::move(status));
  }

  EtcdStore* const store_;
  int64_t next_revision_;  // touched by the watch thread only
  const std::function<void(v1::WatchEvent)> on_event_;
  const std::function<void(absl::Status)> on_end_;
  Mutex mu_;
  CondVar cv_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Create(
    Options options) {
  if (options.prefix.empty()) {
    return absl::InvalidArgumentError(
        "etcd store: the key prefix must not be empty");
  }
  if (options.min_lease < absl::Seconds(1)) options.min_lease = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<EtcdClient>> client =
      EtcdClient::Create(options.etcd);
  if (!client.ok()) return client.status();
  return std::unique_ptr<EtcdStore>(
      new EtcdStore(std::move(options), *std::move(client)));
}

EtcdStore::EtcdStore(Options options, std::unique_ptr<EtcdClient> client)
    : options_(std::move(options)), client_(std::move(client)) {}

std::string EtcdStore::Describe() const {
  return absl::StrCat(client_->Describe(), " (prefix ", options_.prefix, ")");
}

absl::Duration EtcdStore::GrantedLease(absl::Duration lease) const {
  const int64_t seconds = std::max<int64_t>(
      absl::ToInt64Seconds(absl::Ceil(options_.min_lease, absl::Seconds(1))),
      absl::ToInt64Seconds(absl::Ceil(lease, absl::Seconds(1))));
  return absl::Seconds(seconds);
}

absl::StatusOr<absl::Duration> EtcdStore::Put(
    const v1::Registration& registration, absl::Duration lease) {
  const absl::Duration granted = GrantedLease(lease);
  const int64_t ttl = absl::ToInt64Seconds(granted);
  v1::Registration stored = registration;
  stored.set_lease_ms(static_cast<uint32_t>(ttl * 1000));
  const std::string key = Key(registration.aid().uuid());
  const std::string value = Encode(stored);
  // A lost race (another registrar wrote the key between the read and the
  // transaction) is retried against the new state; a few rounds settle it.
  for (int round = 0; round < 5; ++round) {
    absl::StatusOr<std::optional<mvccpb::KeyValue>> current =
        ReadKey(client_.get(), key);
    if (!current.ok()) return current.status();
    int64_t seen_revision = 0;
    int64_t old_lease = 0;
    if (current->has_value()) {
      const mvccpb::KeyValue& kv = **current;
      seen_revision = kv.mod_revision();
      old_lease = kv.lease();
      std::optional<v1::Registration> existing = Decode(kv);
      if (old_lease != 0 && existing.has_value() &&
          existing->lease_ms() == stored.lease_ms()) {
        absl::StatusOr<int64_t> renewed = client_->KeepAliveOnce(old_lease);
        if (!renewed.ok()) return renewed.status();
        if (*renewed > 0) {
          if (kv.value() == value) return granted;  // a refresh
          pb::TxnRequest txn;
          *txn.add_compare() = ModRevisionIs(key, seen_revision);
          AddWrites(&txn, existing, stored, value, old_lease);
          pb::TxnResponse response;
          if (absl::Status s = client_->Txn(txn, &response); !s.ok()) return s;
          if (response.succeeded()) return granted;
          continue;
        }
      }
    }
    pb::LeaseGrantRequest grant;
    grant.set_ttl(ttl);
    pb::LeaseGrantResponse lease_response;
    if (absl::Status s = client_->LeaseGrant(grant, &lease_response); !s.ok()) {
      return s;
    }
    if (!lease_response.error().empty()) {
      return absl::UnavailableError(absl::StrCat(
          Describe(), ": LeaseGrant: ", lease_response.error()));
    }
    const int64_t new_lease = lease_response.id();
    pb::TxnRequest txn;
    *txn.add_compare() = ModRevisionIs(key, seen_revision);
    std::optional<v1::Registration> existing;
    if (current->has_value()) existing = Decode(**current);
    AddWrites(&txn, existing, stored, value, new_lease);
    pb::TxnResponse response;
    absl::Status s = client_->Txn(txn, &response);
    const bool written = s.ok() && response.succeeded();
    // Revoke whichever lease no key uses any more: ours when the write lost
    // (or failed), the replaced one when it won.
    const int64_t orphan = written ? old_lease : new_lease;
    if (orphan != 0) {
      pb::LeaseRevokeRequest revoke;
      revoke.set_id(orphan);
      pb::LeaseRevokeResponse revoked;
      if (absl::Status r = client_->LeaseRevoke(revoke, &revoked);
          !r.ok() && r.code() != absl::StatusCode::kNotFound) {
        LOG(WARNING) << "etcd store: could not revoke unused lease " << orphan
                     << " (it expires by itself): " << r;
      }
    }
    if (!s.ok()) return s;
    if (written) return granted;
  }
  return absl::AbortedError(absl::StrCat(
      Describe(), ": registration of ", registration.aid().uuid(),
      " kept losing races with concurrent writes; try again"));
}

absl::StatusOr<bool> EtcdStore::Remove(const std::string& uuid) {
  const std::string key = Key(uuid);
  for (int round = 0; round < 5; ++round) {
    absl::StatusOr<std::optional<mvccpb::KeyValue>> current =
        ReadKey(client_.get(), key);
    if (!current.ok()) return current.status();
    if (!current->has_value()) return false;
    pb::TxnRequest txn;
    *txn.add_compare() = ModRevisionIs(key, (*current)->mod_revision());
    AddDelete(&txn, key);
    if (std::optional<v1::Registration> r = Decode(**current); r.has_value()) {
      AddDelete(&txn, IndexKey(r->aid().name(), uuid));
    }
    pb::TxnResponse response;
    if (absl::Status s = client_->Txn(txn, &response); !s.ok()) return s;
    if (response.succeeded()) return true;
  }
  return absl::AbortedError(absl::StrCat(
      Describe(), ": Unregister of ", uuid,
      " kept losing races with concurrent writes; try again"));
}

void EtcdStore::AddWrites(pb::TxnRequest* txn,
                          const std::optional<v1::Registration>& before,
                          const v1::Registration& after,
                          const std::string& value, int64_t lease) const {
  const std::string& uuid = after.aid().uuid();
  AddPut(txn, Key(uuid), value, lease);
  AddPut(txn, IndexKey(after.aid().name(), uuid), value, lease);
  if (before.has_value() && before->aid().name() != after.aid().name()) {
    AddDelete(txn, IndexKey(before->aid().name(), uuid));
  }
}

std::string EtcdStore::IndexKey(const std::string& name,
                                const std::string& uuid) const {
  return absl::StrCat(options_.prefix, kIndex, name, "/", uuid);
}

bool EtcdStore::IsIndexKey(const std::string& key) const {
  return absl::StartsWith(key, absl::StrCat(options_.prefix, kIndex));
}

absl::StatusOr<Store::Read> EtcdStore::Get(const std::string* name) {
  // One name: its index keys, which hold the registration too.
  const std::string range =
      name == nullptr ? options_.prefix
                      : absl::StrCat(options_.prefix, kIndex, *name, "/");
  pb::RangeRequest request;
  request.set_key(range);
  request.set_range_end(EtcdClient::PrefixEnd(range));
  request.set_sort_order(pb::RangeRequest::ASCEND);
  request.set_sort_target(pb::RangeRequest::CREATE);
  pb::RangeResponse response;
  if (absl::Status s = client_->Range(request, &response); !s.ok()) return s;
  Read read;
  read.revision = response.header().revision();
  for (const mvccpb::KeyValue& kv : response.kvs()) {
    if (name == nullptr && IsIndexKey(kv.key())) continue;
    std::optional<v1::Registration> registration = Decode(kv);
    if (!registration.has_value()) continue;
    if (name != nullptr && registration->aid().name() != *name) continue;
    read.registrations.push_back(*std::move(registration));
  }
  return read;
}

absl::StatusOr<std::optional<v1::Registration>> EtcdStore::FindAddr(
    const std::string& addr) {
  absl::StatusOr<Read> read = Get(nullptr);
  if (!read.ok()) return read.status();
  for (v1::Registration& registration : read->registrations) {
    for (const std::string& a : registration.addrs()) {
      if (a == addr) return std::optional<v1::Registration>(registration);
    }
  }
  return std::optional<v1::Registration>();
}

absl::StatusOr<Store::AddrDeletion> EtcdStore::DeleteAddrIf(
    const std::string& addr, const std::string& uuid, uint64_t revision) {
  const std::string key = Key(uuid);
  AddrDeletion result;
  absl::StatusOr<std::optional<mvccpb::KeyValue>> current =
      ReadKey(client_.get(), key);
  if (!current.ok()) return current.status();
  if (!current->has_value()) return result;  // gone meanwhile
  const mvccpb::KeyValue& kv = **current;
  std::optional<v1::Registration> registration = Decode(kv);
  if (!registration.has_value()) return result;
  result.owner = registration->aid();
  result.revision = static_cast<uint64_t>(kv.mod_revision());
  if (result.revision != revision) {
    result.kept_because = absl::StrCat(
        "the entry changed while the address was checked (revision ",
        result.revision, ")");
    return result;
  }
  v1::Registration left = *registration;
  left.clear_addrs();
  bool held = false;
  for (const std::string& a : registration->addrs()) {
    if (a == addr) {
      held = true;
    } else {
      left.add_addrs(a);
    }
  }
  if (!held) {
    result.owner.reset();
    return result;
  }
  pb::TxnRequest txn;
  *txn.add_compare() = ModRevisionIs(key, kv.mod_revision());
  if (left.addrs().empty()) {
    AddDelete(&txn, key);
    AddDelete(&txn, IndexKey(left.aid().name(), uuid));
  } else {
    AddWrites(&txn, *registration, left, Encode(left), kv.lease());
  }
  pb::TxnResponse response;
  if (absl::Status s = client_->Txn(txn, &response); !s.ok()) return s;
  if (!response.succeeded()) {
    result.kept_because =
        "the entry changed while the address was being deleted";
    return result;
  }
  result.deleted = true;
  result.revision = left.addrs().empty()
                        ? 0
                        : static_cast<uint64_t>(response.header().revision());
  return result;
}

absl::StatusOr<std::unique_ptr<Store::Watch>> EtcdStore::StartWatch(
    int64_t from_revision, std::function<void(v1::WatchEvent)> on_event,
    std::function<void(absl::Status)> on_end) {
  if (from_revision <= 0) {
    return absl::InvalidArgumentError("etcd store: watch from revision 0");
  }
  return std::unique_ptr<Store::Watch>(new EtcdWatch(
      this, from_revision, std::move(on_event), std::move(on_end)));
}

}  // namespace tractor::registrar
