// SPDX-License-Identifier: AGPL-3.0-or-later
#include "registrar/etcd_client.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "discovery/address.h"
#include "glog/logging.h"

namespace tractor::registrar {

namespace pb = ::etcdserverpb;

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read '", path, "'"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether another member may answer where this one did not: it is
// unreachable or too slow, has no leader, or failed in a way etcd does not
// classify (UNKNOWN, e.g. a proposal dropped by a member losing quorum).
// Every write the store sends may be sent twice: a transaction is
// conditioned on the revision it read, and a lease granted twice expires
// unused.
bool TryNextMember(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::UNKNOWN;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(
    const EtcdOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoint given");
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd: a client certificate and its key go together (--etcd_cert "
        "and --etcd_key)");
  }
  if (!options.cert_file.empty() && options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd: a client certificate needs the CA bundle too (--etcd_ca)");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadFile(options.ca_file, "--etcd_ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert =
          ReadFile(options.cert_file, "--etcd_cert");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key =
          ReadFile(options.key_file, "--etcd_key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  }
  std::vector<Endpoint> endpoints;
  for (const std::string& text : options.endpoints) {
    absl::StatusOr<discovery::Address> addr = discovery::Address::Parse(text);
    if (!addr.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint '", text, "': ", addr.status().message()));
    }
    if (addr->kind() == discovery::Address::Kind::kUnix) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint '", text, "': etcd listens on TCP (host:port)"));
    }
    Endpoint endpoint;
    endpoint.addr = addr->ToString();
    grpc::ChannelArguments args;
    // Reconnect to a returning member within about a second; give a
    // connection attempt as long (etcd accepts connections before it serves
    // them). No keepalive pings: etcd refuses pings more often than every
    // 5 s, and every call has its own deadline anyway.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(64 << 20);
    endpoint.channel = grpc::CreateCustomChannel(
        addr->GrpcTarget(),
        credentials != nullptr ? credentials
                               : grpc::InsecureChannelCredentials(),
        args);
    endpoint.kv = pb::KV::NewStub(endpoint.channel);
    endpoint.lease = pb::Lease::NewStub(endpoint.channel);
    endpoint.watch = pb::Watch::NewStub(endpoint.channel);
    endpoints.push_back(std::move(endpoint));
  }
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(std::move(endpoints), options.deadline));
}

EtcdClient::EtcdClient(std::vector<Endpoint> endpoints,
                       absl::Duration deadline)
    : endpoints_(std::move(endpoints)), deadline_(deadline) {
  std::vector<std::string> addrs;
  for (const Endpoint& e : endpoints_) addrs.push_back(e.addr);
  description_ = absl::StrCat("etcd at ", absl::StrJoin(addrs, ","));
  // A blocking call drives its connection attempt only while it waits; an
  // attempt that outlives the call (a member that was starting up) then
  // progresses only when some thread polls. In a process with no gRPC
  // server of its own nothing else does, so this thread waits on an idle
  // completion queue, which polls gRPC's file descriptors.
  poller_ = std::thread([this] {
    for (;;) {
      void* tag = nullptr;
      bool ok = false;
      const auto status = poll_queue_.AsyncNext(
          &tag, &ok,
          std::chrono::system_clock::now() + std::chrono::milliseconds(200));
      if (status == grpc::CompletionQueue::SHUTDOWN) return;
    }
  });
}

EtcdClient::~EtcdClient() {
  poll_queue_.Shutdown();
  poller_.join();
}

std::string EtcdClient::PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

template <typename Attempt>
absl::Status EtcdClient::Call(const char* what, Attempt attempt) {
  const absl::Time deadline = absl::Now() + deadline_;
  const size_t n = endpoints_.size();
  const size_t first = preferred_.load();
  std::string last_error;
  for (size_t k = 0;; ++k) {
    const absl::Duration remaining = deadline - absl::Now();
    if (remaining <= absl::ZeroDuration()) break;
    // In the first round a member gets an equal share of what is left, but
    // at least 1 s (a large read takes a while), so one member that hangs
    // (no quorum on its side) cannot use it all up.
    const absl::Duration share =
        k + 1 < n ? std::min(remaining,
                             std::max(absl::Seconds(1),
                                      remaining / static_cast<int64_t>(n - k)))
                  : remaining;
    const size_t i = (first + k) % n;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + share));
    const absl::Time started = absl::Now();
    grpc::Status status = attempt(endpoints_[i], &context);
    if (status.ok()) {
      if (i != first) preferred_.store(i);
      return absl::OkStatus();
    }
    if (!TryNextMember(status.error_code())) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat(description_, ": ", what, " at ",
                                       endpoints_[i].addr, ": ",
                                       status.error_message()));
    }
    last_error = absl::StrCat(endpoints_[i].addr, ": ",
                              status.error_message());
    VLOG(1) << "etcd: " << what << " at " << endpoints_[i].addr
            << " failed (" << status.error_message() << "), trying the next";
    // Every member refused at once (all down): do not spin.
    if (k + 1 >= n && absl::Now() - started < absl::Milliseconds(20)) {
      absl::SleepFor(std::min(absl::Milliseconds(50), deadline - absl::Now()));
    }
  }
  return absl::UnavailableError(absl::StrCat(
      description_, ": no quorum: no member answered ", what, " within ",
      absl::FormatDuration(deadline_), " (last: ", last_error, ")"));
}

absl::Status EtcdClient::Range(const pb::RangeRequest& request,
                               pb::RangeResponse* response) {
  return Call("Range", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.kv->Range(context, request, response);
  });
}

absl::Status EtcdClient::Put(const pb::PutRequest& request,
                             pb::PutResponse* response) {
  return Call("Put", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.kv->Put(context, request, response);
  });
}

absl::Status EtcdClient::Txn(const pb::TxnRequest& request,
                             pb::TxnResponse* response) {
  return Call("Txn", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.kv->Txn(context, request, response);
  });
}

absl::Status EtcdClient::LeaseGrant(const pb::LeaseGrantRequest& request,
                                    pb::LeaseGrantResponse* response) {
  return Call("LeaseGrant", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.lease->LeaseGrant(context, request, response);
  });
}

absl::Status EtcdClient::LeaseRevoke(const pb::LeaseRevokeRequest& request,
                                     pb::LeaseRevokeResponse* response) {
  return Call("LeaseRevoke", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.lease->LeaseRevoke(context, request, response);
  });
}

absl::Status EtcdClient::LeaseTimeToLive(
    const pb::LeaseTimeToLiveRequest& request,
    pb::LeaseTimeToLiveResponse* response) {
  return Call("LeaseTimeToLive",
              [&](Endpoint& e, grpc::ClientContext* context) {
                return e.lease->LeaseTimeToLive(context, request, response);
              });
}

absl::Status EtcdClient::LeaseLeases(pb::LeaseLeasesResponse* response) {
  return Call("LeaseLeases", [&](Endpoint& e, grpc::ClientContext* context) {
    return e.lease->LeaseLeases(context, pb::LeaseLeasesRequest(), response);
  });
}

absl::StatusOr<int64_t> EtcdClient::KeepAliveOnce(int64_t id) {
  pb::LeaseKeepAliveResponse response;
  absl::Status status =
      Call("LeaseKeepAlive", [&](Endpoint& e, grpc::ClientContext* context) {
        auto stream = e.lease->LeaseKeepAlive(context);
        pb::LeaseKeepAliveRequest request;
        request.set_id(id);
        if (stream->Write(request) && stream->Read(&response)) {
          stream->WritesDone();
          context->TryCancel();  // one round trip is all we want
          stream->Finish();
          return grpc::Status::OK;
        }
        return stream->Finish();
      });
  if (!status.ok()) return status;
  return response.ttl();
}

}  // namespace tractor::registrar
