// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/registry_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "discovery/channel.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "glog/logging.h"
#include "discovery/thread_name.h"

namespace tractor::discovery {
namespace {

namespace v1 = ::tractor::v1;

// A sockaddr for a TCP or unix address. DNS names are resolved (blocking).
struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
};

std::optional<SockAddr> ToSockAddr(const Address& addr) {
  SockAddr out;
  switch (addr.kind()) {
    case Address::Kind::kUnix: {
      auto* sun = reinterpret_cast<sockaddr_un*>(&out.storage);
      sun->sun_family = AF_UNIX;
      std::memcpy(sun->sun_path, addr.path().data(), addr.path().size());
      out.len = sizeof(sockaddr_un);
      return out;
    }
    case Address::Kind::kTcp6: {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(addr.port());
      if (inet_pton(AF_INET6, addr.host().c_str(), &sin6->sin6_addr) != 1) {
        return std::nullopt;
      }
      out.len = sizeof(sockaddr_in6);
      return out;
    }
    case Address::Kind::kTcp4: {
      auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(addr.port());
      if (inet_pton(AF_INET, addr.host().c_str(), &sin->sin_addr) == 1) {
        out.len = sizeof(sockaddr_in);
        return out;
      }
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      if (getaddrinfo(addr.host().c_str(), nullptr, &hints, &res) != 0 ||
          res == nullptr) {
        return std::nullopt;
      }
      std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
      out.len = res->ai_addrlen;
      freeaddrinfo(res);
      if (out.storage.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&out.storage)->sin_port =
            htons(addr.port());
      } else if (out.storage.ss_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(&out.storage)->sin6_port =
            htons(addr.port());
      }
      return out;
    }
  }
  return std::nullopt;
}

// Connects a plain stream socket to `addr` within `timeout` and closes it.
// Returns 0 when something accepted the connection, else the errno
// (ETIMEDOUT when the timeout passed).
int RawConnect(const Address& addr, absl::Duration timeout) {
  std::optional<SockAddr> sa = ToSockAddr(addr);
  if (!sa.has_value()) return EHOSTUNREACH;
  int fd = socket(sa->storage.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa->storage), sa->len) != 0) {
    err = errno;
    if (err == EINPROGRESS || err == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      int n = poll(&p, 1,
                   static_cast<int>(absl::ToInt64Milliseconds(timeout)));
      if (n == 0) {
        err = ETIMEDOUT;
      } else if (n < 0) {
        err = errno;
      } else {
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
    }
  }
  close(fd);
  return err;
}

ProbeResult ProbeOne(const Address& addr, absl::Time deadline) {
  ProbeResult out{addr, ProbeKind::kAbsent, {}, ""};
  if (addr.kind() != Address::Kind::kUnix && addr.port() == 0) {
    out.detail = "port 0 names no listener";
    return out;
  }
  const absl::Duration connect_timeout =
      std::max(absl::Milliseconds(10),
               std::min(kProbeConnectTimeout, deadline - absl::Now()));
  if (int err = RawConnect(addr, connect_timeout); err != 0) {
    out.detail = err == ETIMEDOUT ? "connect timed out" : std::strerror(err);
    return out;
  }
  // Something listens: ask it who it is, on a private channel.
  auto stub = v1::Registrar::NewStub(
      NewPrivateChannel(addr, ChannelPurpose::kRegistrar));
  grpc::Status status;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const absl::Duration left = deadline - absl::Now();
    if (attempt > 0 && left < absl::Milliseconds(50)) break;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(
        absl::Now() +
        std::max(absl::Milliseconds(50),
                 std::min(ScaleTimeout(kProbeAttemptTimeout), left))));
    // The socket accepted a connection, so something listens there: a
    // gRPC handshake that fails (a loaded registrar sends its SETTINGS
    // late) is retried within the attempt's deadline instead of failing
    // the attempt at once.
    ctx.set_wait_for_ready(true);
    v1::HelloRequest req;
    v1::HelloReply rep;
    status = stub->Hello(&ctx, req, &rep);
    if (status.ok()) {
      if (!rep.registrar().is_registrar()) {
        out.kind = ProbeKind::kOccupied;
        out.detail = "answered Hello but says it is not a registrar";
        return out;
      }
      out.kind = ProbeKind::kRegistrar;
      out.registrar = rep.registrar();
      return out;
    }
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) break;
  }
  out.kind = ProbeKind::kOccupied;
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    out.detail = "a gRPC server without the tractor.v1.Registrar service";
  } else {
    out.detail = absl::StrCat(
        "a listener that did not answer Registrar.Hello (",
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
            ? "no answer in time"
            : status.error_message(),
        ")");
  }
  return out;
}

}  // namespace

std::shared_ptr<grpc::Channel> RegistrarChannel(const Address& addr) {
  struct Channels {
    Mutex mu;
    std::map<std::string, std::shared_ptr<grpc::Channel>> by_addr
        ABSL_GUARDED_BY(mu);
  };
  static auto* channels = new Channels;
  MutexLock lock(&channels->mu);
  auto& ch = channels->by_addr[addr.ToString()];
  if (!ch) ch = NewChannel(addr, ChannelPurpose::kRegistrar);
  return ch;
}

std::vector<ProbeResult> ProbeRegistryAddrs(const std::vector<Address>& addrs,
                                            absl::Duration budget) {
  // The answer to Hello comes from a process that runs several times slower
  // under the sanitizer configurations: the budget and each attempt's
  // deadline are scaled there. The connection attempt is not (the kernel
  // accepts it, however slow the listener).
  const absl::Time deadline = absl::Now() + ScaleTimeout(budget);
  std::vector<std::optional<ProbeResult>> results(addrs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < addrs.size(); ++i) {
    threads.emplace_back(
        [&, i] {
          NameThisThread("probe");
          results[i] = ProbeOne(addrs[i], deadline);
        });
  }
  for (auto& t : threads) t.join();
  std::vector<ProbeResult> out;
  for (auto& r : results) out.push_back(*std::move(r));
  return out;
}

AddrCheck CheckActorAt(const Address& addr, const std::string& uuid,
                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (addr.kind() != Address::Kind::kUnix) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc =
        getaddrinfo(addr.host().c_str(), nullptr, &hints, &res);
    if (res != nullptr) freeaddrinfo(res);
    if (rc == EAI_NONAME) {
      return {Liveness::kGone, "its host name does not resolve"};
    }
    if (rc != 0) {
      return {Liveness::kUnknown,
              absl::StrCat("cannot resolve its host: ", gai_strerror(rc))};
    }
  }
  const int err = RawConnect(
      addr, std::min(kProbeConnectTimeout,
                     std::max(absl::Milliseconds(10), deadline - absl::Now())));
  if (err == ECONNREFUSED || err == ENOENT || err == ECONNRESET) {
    return {Liveness::kGone,
            absl::StrCat("it refuses connections (", std::strerror(err), ")")};
  }
  if (err != 0) {
    return {Liveness::kUnknown,
            absl::StrCat("no answer to a connection attempt (",
                         err == ETIMEDOUT ? "timed out" : std::strerror(err),
                         ")")};
  }
  auto stub =
      v1::Actor::NewStub(NewPrivateChannel(addr, ChannelPurpose::kActor));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(
      std::max(deadline, absl::Now() + absl::Milliseconds(100))));
  ctx.set_wait_for_ready(true);
  v1::ActorInfo info;
  const grpc::Status status = stub->Info(&ctx, v1::InfoRequest(), &info);
  if (status.ok()) {
    if (info.aid().uuid() == uuid) return {Liveness::kAlive, "it answers"};
    return {Liveness::kGone,
            absl::StrCat("another actor answers there ('", info.aid().name(),
                         "' ", info.aid().uuid(), ")")};
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return {Liveness::kGone, "a server that is not an actor answers there"};
  }
  return {Liveness::kUnknown,
          absl::StrCat("no answer to Actor.Info (", status.error_message(),
                       ")")};
}

std::optional<std::string> LocalIpToward(const Address& to) {
  if (to.kind() == Address::Kind::kUnix) return std::nullopt;
  std::optional<SockAddr> sa = ToSockAddr(to);
  if (!sa.has_value()) return std::nullopt;
  int fd = socket(sa->storage.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> out;
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa->storage), sa->len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (local.ss_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr,
                buf, sizeof(buf));
      out = buf;
    } else if (local.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr,
                buf, sizeof(buf));
      out = buf;
    }
  }
  close(fd);
  return out;
}

// ---------------------------------------------------------------------------
// Registrant.

Registrant::Registrant(Options options) : options_(std::move(options)) {
  for (const Address& r : options_.registrars) {
    Target t{r, {}, absl::ZeroDuration(), false};
    const bool local = r.IsLocalHost();
    for (const std::string& a : options_.addrs) {
      auto parsed = Address::Parse(a);
      if (!local && parsed.ok() &&
          (parsed->kind() == Address::Kind::kUnix || parsed->IsLoopback())) {
        continue;  // unreachable from another host
      }
      t.addrs.push_back(a);
    }
    if (!t.addrs.empty()) targets_.push_back(std::move(t));
  }
}

Registrant::~Registrant() { Stop(); }

size_t Registrant::RegisterRound(absl::Duration timeout) {
  std::vector<size_t> all(targets_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return RegisterRound(timeout, all, /*wait_for_ready=*/false);
}

size_t Registrant::RegisterRound(absl::Duration timeout,
                                 const std::vector<size_t>& which,
                                 bool wait_for_ready) {
  using Call = UnaryCall<v1::RegisterRequest, v1::RegisterReply>;
  const CallOptions call_options{.deadline = absl::Now() + timeout};
  // Concurrent: start every call, then await each. The stubs outlive the
  // calls.
  std::vector<std::unique_ptr<v1::Registrar::Stub>> stubs;
  std::vector<std::unique_ptr<Call>> calls;
  for (size_t index : which) {
    const Target& t = targets_[index];
    v1::RegisterRequest req;
    v1::Registration* reg = req.mutable_registration();
    *reg->mutable_aid() = options_.aid;
    for (const auto& a : t.addrs) reg->add_addrs(a);
    reg->set_lease_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(options_.lease)));
    stubs.push_back(v1::Registrar::NewStub(RegistrarChannel(t.registrar)));
    v1::Registrar::Stub* stub = stubs.back().get();
    calls.push_back(Call::Start(
        [&](auto* ctx, auto* request, auto* reply, auto done) {
          AttachSecret(ctx);
          if (wait_for_ready) ctx->set_wait_for_ready(true);
          StartDriven(stub->PrepareAsyncRegister(ctx, *request, DrivenQueue()),
                      reply, std::move(done));
        },
        std::move(req), call_options));
  }
  std::vector<grpc::Status> statuses;
  for (auto& call : calls) statuses.push_back(call->Await());
  size_t ok = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    Target& t = targets_[which[i]];
    const bool was_ok = t.ok;
    t.ok = statuses[i].ok();
    t.last_code = statuses[i].error_code();
    if (t.ok) {
      ++ok;
      t.granted = absl::Milliseconds(calls[i]->reply().lease_ms());
      if (!was_ok) {
        VLOG(1) << "actor '" << options_.aid.name() << "' registered with "
                << t.registrar << " (lease " << t.granted << ")";
      }
    } else if (was_ok || t.granted == absl::ZeroDuration()) {
      LOG_IF(WARNING, was_ok)
          << "actor '" << options_.aid.name() << "' cannot refresh its "
          << "registration with " << t.registrar << ": "
          << statuses[i].error_message();
      VLOG(1) << "actor '" << options_.aid.name() << "' cannot register with "
              << t.registrar << ": " << statuses[i].error_message();
    }
  }
  return ok;
}

size_t Registrant::Start() {
  if (targets_.empty()) return 0;
  size_t ok = RegisterRound(ScaleTimeout(options_.first_timeout));
  // No registrar listed the actor, and some failed because their channel
  // could not connect (UNAVAILABLE) while their address accepts
  // connections: the connection attempt may have given up before the
  // handshake completed (a registrar channel gives an attempt 100 ms at
  // first, and a TLS handshake on a loaded machine takes longer). Those are
  // registered with again, waiting for the channel to connect (its
  // attempts get longer with its backoff), so that the actor is listed
  // somewhere before it goes on (a child links to its parent only then):
  // otherwise no lookup could find it. Once one registrar listed it, a
  // registrar that is slow, hung (it accepts connections and never
  // answers), down (refused) or silent is not waited for.
  if (ok == 0) {
    std::vector<size_t> slow;
    for (size_t i = 0; i < targets_.size(); ++i) {
      const Target& t = targets_[i];
      if (!t.ok && t.last_code == grpc::StatusCode::UNAVAILABLE &&
          RawConnect(t.registrar, ScaleTimeout(kProbeConnectTimeout)) == 0) {
        slow.push_back(i);
      }
    }
    if (!slow.empty()) {
      VLOG(1) << "actor '" << options_.aid.name() << "' registers again with "
              << slow.size() << " registrar(s) that listen but could not be "
              << "connected to in time";
      ok += RegisterRound(ScaleTimeout(options_.slow_connect_timeout), slow,
                          /*wait_for_ready=*/true);
    }
  }
  thread_ = std::thread([this] {
    NameThisThread("registrant");
    RefreshLoop();
  });
  return ok;
}

void Registrant::RefreshLoop() {
  for (;;) {
    // Refresh at a third of the shortest lease granted; retry a registrar
    // that is down (or never answered) every 0.5 s.
    absl::Duration period = absl::InfiniteDuration();
    bool any_failed = false;
    for (const Target& t : targets_) {
      if (!t.ok || t.granted <= absl::ZeroDuration()) {
        any_failed = true;
      } else {
        period = std::min(period, t.granted / 3);
      }
    }
    if (any_failed) period = std::min(period, absl::Milliseconds(500));
    if (period == absl::InfiniteDuration()) period = absl::Seconds(1);
    {
      MutexLock lock(&mu_);
      const absl::Time wake = absl::Now() + period;
      while (!stopping_ && !cv_.WaitWithDeadline(&mu_, wake)) {
      }
      if (stopping_) return;
    }
    const size_t ok =
        RegisterRound(std::clamp(period, absl::Milliseconds(200),
                                 absl::Seconds(2)));
    MutexLock lock(&mu_);
    if (ok == targets_.size()) ++good_rounds_;
  }
}

struct Registrant::Unregistering {
  struct Call {
    std::unique_ptr<v1::Registrar::Stub> stub;
    grpc::ClientContext ctx;
    v1::UnregisterReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::UnregisterReply>>
        reader;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
};

void Registrant::BeginStop() {
  MutexLock stop_lock(&stop_mu_);
  if (stop_begun_) return;
  stop_begun_ = true;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
  // Each call carries its deadline, so each completes by then, answered or
  // not: Stop needs no timer of its own.
  const auto deadline = absl::ToChronoTime(
      absl::Now() + ScaleTimeout(options_.unregister_timeout));
  auto u = std::make_unique<Unregistering>();
  for (size_t i = 0; i < targets_.size(); ++i) {
    auto call = std::make_unique<Unregistering::Call>();
    call->stub = v1::Registrar::NewStub(RegistrarChannel(targets_[i].registrar));
    call->ctx.set_deadline(deadline);
    AttachSecret(&call->ctx);
    v1::UnregisterRequest req;
    req.set_uuid(options_.aid.uuid());
    call->reader = call->stub->AsyncUnregister(&call->ctx, req, &u->cq);
    call->reader->Finish(&call->reply, &call->status,
                         reinterpret_cast<void*>(i));
    u->calls.push_back(std::move(call));
  }
  unregistering_ = std::move(u);
}

void Registrant::Stop() {
  BeginStop();
  MutexLock stop_lock(&stop_mu_);
  std::unique_ptr<Unregistering> u = std::move(unregistering_);
  if (u == nullptr) return;
  for (size_t n = 0; n < u->calls.size(); ++n) {
    void* tag = nullptr;
    bool ok = false;
    if (!u->cq.Next(&tag, &ok)) break;
    const size_t i = reinterpret_cast<uintptr_t>(tag);
    const grpc::Status& status = u->calls[i]->status;
    VLOG(1) << "actor '" << options_.aid.name() << "' unregister from "
            << targets_[i].registrar << ": "
            << (status.ok() ? "ok" : status.error_message());
  }
  u->cq.Shutdown();
  void* tag;
  bool ok;
  while (u->cq.Next(&tag, &ok)) {
  }
}

size_t Registrant::good_rounds() const {
  MutexLock lock(&mu_);
  return good_rounds_;
}

// ---------------------------------------------------------------------------
// Lookup.

namespace {

// What this process's Find calls taught it: recent answer times (for the
// hedge delay) and the registrar of the last positive answer.
struct FindHistory {
  Mutex mu;
  absl::Duration samples[kHedgeSamples] ABSL_GUARDED_BY(mu);
  size_t count ABSL_GUARDED_BY(mu) = 0;  // samples filled
  size_t next ABSL_GUARDED_BY(mu) = 0;   // the oldest, overwritten next
  std::optional<Address> preferred ABSL_GUARDED_BY(mu);
};

FindHistory& History() {
  static FindHistory* history = new FindHistory;
  return *history;
}

// Records one Find answer: its time (`took`, or nullopt when the call
// also had to connect, which says nothing of the registrar's answer time),
// and whether `registrar` gave the lookup's first positive answer.
void RecordFindAnswer(const Address& registrar,
                      std::optional<absl::Duration> took, bool first_positive) {
  FindHistory& h = History();
  MutexLock lock(&h.mu);
  if (took.has_value()) {
    h.samples[h.next] = *took;
    h.next = (h.next + 1) % kHedgeSamples;
    h.count = std::min(h.count + 1, kHedgeSamples);
  }
  if (first_positive &&
      (!h.preferred.has_value() || !(*h.preferred == registrar))) {
    h.preferred = registrar;
  }
}

}  // namespace

absl::Duration HedgeDelay() {
  absl::Duration samples[kHedgeSamples];
  size_t count = 0;
  {
    FindHistory& h = History();
    MutexLock lock(&h.mu);
    count = h.count;
    std::copy(h.samples, h.samples + count, samples);
  }
  if (count == 0) return kHedgeCeiling;
  std::nth_element(samples, samples + count / 2, samples + count);
  return std::clamp(kHedgeMultiple * samples[count / 2], kHedgeFloor,
                    kHedgeCeiling);
}

size_t PreferredRegistrar(const std::vector<Address>& registrars) {
  FindHistory& h = History();
  MutexLock lock(&h.mu);
  if (!h.preferred.has_value()) return 0;
  for (size_t i = 0; i < registrars.size(); ++i) {
    if (registrars[i] == *h.preferred) return i;
  }
  return 0;
}

struct Lookup::Call {
  size_t index = 0;
  std::unique_ptr<v1::Registrar::Stub> stub;
  grpc::ClientContext ctx;
  v1::FindRequest req;
  v1::FindReply rep;
  absl::Time started;
  // The channel was connected when the call started.
  bool connected = false;
};

Lookup::Lookup(std::vector<Address> registrars, std::string name, Mode mode,
               absl::Time deadline, std::optional<Hedge> hedge)
    : state_(std::make_shared<State>(std::move(registrars), std::move(name),
                                     mode, deadline)) {
  const size_t n = state_->registrars.size();
  std::vector<size_t> start;
  {
    MutexLock lock(&state_->mu);  // not shared yet; for the analysis
    state_->calls.resize(n);
    if (hedge.has_value() && mode == Mode::kFind && n > 1 && hedge->first < n) {
      start.push_back(hedge->first);
      for (size_t i = 0; i < n; ++i) {
        if (i != hedge->first) state_->held.push_back(i);
      }
      state_->hedge_at = absl::Now() + hedge->delay;
    } else {
      for (size_t i = 0; i < n; ++i) start.push_back(i);
    }
    state_->in_flight += start.size();
  }
  for (size_t i : start) StartCall(state_, i);
}

Lookup::~Lookup() { Cancel(); }

std::vector<size_t> Lookup::TakeHeldLocked(State& state) {
  std::vector<size_t> out = std::move(state.held);
  state.held.clear();
  state.hedge_at = absl::InfiniteFuture();
  state.in_flight += out.size();
  return out;
}

void Lookup::FinishLocked(State& state, LookupResult result,
                          std::vector<size_t>* ask) {
  --state.in_flight;
  const bool find = state.mode == Mode::kFind;
  const bool positive = result.status.ok() && !result.registrations.empty();
  // A miss or an error on the registrar asked first: ask the others now.
  if (find && !positive && !state.held.empty()) *ask = TakeHeldLocked(state);
  // A Find waiter wants the first entry: a miss or an error wakes it only
  // once no other answer is to come (it is queued, and read then).
  const bool wake = !find || positive || state.in_flight == 0;
  state.results.push_back(std::move(result));
  if (wake) state.cv.SignalAll();
}

void Lookup::StartCall(const std::shared_ptr<State>& state, size_t index) {
  const Address& addr = state->registrars[index];
  const bool find = state->mode == Mode::kFind;
  auto call = std::make_shared<Call>();
  call->index = index;
  call->req.set_name(state->name);
  if (state->deadline != absl::InfiniteFuture()) {
    call->ctx.set_deadline(absl::ToChronoTime(state->deadline));
  }
  if (!find) call->ctx.set_wait_for_ready(true);
  std::shared_ptr<grpc::Channel> channel = RegistrarChannel(addr);
  call->stub = v1::Registrar::NewStub(channel);
  std::vector<size_t> ask;
  bool answered = false;
  {
    MutexLock lock(&state->mu);
    std::optional<grpc::Status> now;  // an answer without the RPC
    if (state->cancelled) {
      now = grpc::Status(grpc::StatusCode::CANCELLED, "lookup cancelled");
    } else if (find && absl::Now() >= state->deadline) {
      now = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                         "lookup deadline passed");
    } else if (find) {
      const grpc_connectivity_state channel_state =
          channel->GetState(/*try_to_connect=*/true);
      call->connected = channel_state == GRPC_CHANNEL_READY;
      // A Find on a channel that is failing to connect would fail at once
      // (no wait_for_ready): answer that without the RPC. The channel keeps
      // reconnecting in the background.
      if (channel_state == GRPC_CHANNEL_TRANSIENT_FAILURE) {
        now = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "registrar unreachable (connection failing)");
      }
    }
    if (now.has_value()) {
      FinishLocked(*state, LookupResult{index, addr.ToString(), *now, {}},
                   &ask);
    } else {
      state->calls[index] = call;
    }
    answered = now.has_value();
  }
  if (answered) {
    for (size_t i : ask) StartCall(state, i);
    return;
  }
  call->started = absl::Now();
  auto done = [state, call, find](grpc::Status s) {
    const absl::Duration took = absl::Now() - call->started;
    const bool r_ok = s.ok();
    LookupResult r{call->index, state->registrars[call->index].ToString(),
                   std::move(s), {}};
    if (r.status.ok()) {
      r.registrations.assign(call->rep.registrations().begin(),
                             call->rep.registrations().end());
    }
    const bool positive = !r.registrations.empty();
    std::vector<size_t> ask;
    {
      MutexLock lock(&state->mu);
      if (state->calls[call->index] == call) state->calls[call->index].reset();
      const bool first_positive = positive && !state->answered_positively;
      if (positive) state->answered_positively = true;
      // Recorded before the waiter wakes: the caller's next lookup asks
      // this registrar first.
      if (find && r_ok) {
        RecordFindAnswer(state->registrars[call->index],
                         call->connected ? std::optional<absl::Duration>(took)
                                         : std::nullopt,
                         first_positive);
      }
      FinishLocked(*state, std::move(r), &ask);
    }
    for (size_t i : ask) StartCall(state, i);
  };
  if (find) {
    StartDriven(call->stub->PrepareAsyncFind(&call->ctx, call->req,
                                             DrivenQueue()),
                &call->rep, std::function<void(grpc::Status)>(done));
  } else {
    StartDriven(call->stub->PrepareAsyncWaitFor(&call->ctx, call->req,
                                                DrivenQueue()),
                &call->rep, std::function<void(grpc::Status)>(done));
  }
}

void Lookup::Reissue(size_t index) {
  {
    MutexLock lock(&state_->mu);
    ++state_->in_flight;
  }
  StartCall(state_, index);
}

void Lookup::AskHeld() {
  std::vector<size_t> ask;
  {
    MutexLock lock(&state_->mu);
    ask = TakeHeldLocked(*state_);
  }
  for (size_t i : ask) StartCall(state_, i);
}

void Lookup::Cancel() {
  std::vector<std::shared_ptr<Call>> calls;
  {
    MutexLock lock(&state_->mu);
    state_->cancelled = true;
    state_->held.clear();
    state_->hedge_at = absl::InfiniteFuture();
    for (auto& c : state_->calls) {
      if (c) calls.push_back(c);
    }
    state_->cv.SignalAll();
  }
  for (auto& c : calls) c->ctx.TryCancel();
}

std::optional<LookupResult> Lookup::PopLocked() {
  if (state_->results.empty()) return std::nullopt;
  LookupResult r = std::move(state_->results.front());
  state_->results.pop_front();
  return r;
}

std::optional<LookupResult> Lookup::Next(absl::Time until) {
  for (;;) {
    {
      MutexLock lock(&state_->mu);
      for (;;) {
        if (HasResultLocked()) return PopLocked();
        const absl::Time now = absl::Now();
        if (HedgeDueLocked(now)) break;
        if (IdleLocked() || now >= until) return std::nullopt;
        const absl::Time wake = std::min(until, HedgeAtLocked());
        if (wake == absl::InfiniteFuture()) {
          state_->cv.Wait(&state_->mu);
        } else {
          state_->cv.WaitWithDeadline(&state_->mu, wake);
        }
      }
    }
    AskHeld();
  }
}

// ---------------------------------------------------------------------------
// One-shot calls.

grpc::Status DeleteAddr(const Address& registrar, const std::string& addr,
                        uint64_t if_revision, v1::DeleteAddrReply* reply,
                        absl::Duration timeout, CallWaiter* waiter) {
  auto stub = v1::Registrar::NewStub(RegistrarChannel(registrar));
  v1::DeleteAddrRequest req;
  req.set_addr(addr);
  req.set_if_revision(if_revision);
  v1::DeleteAddrReply local;
  v1::DeleteAddrReply& rep = reply != nullptr ? *reply : local;
  return BlockingUnaryCall(
      [&](auto* ctx, auto* request, auto* reply, auto done) {
        AttachSecret(ctx);
        StartDriven(stub->PrepareAsyncDeleteAddr(ctx, *request, DrivenQueue()),
                    reply, std::move(done));
      },
      std::move(req), &rep,
      {.deadline = absl::Now() + timeout, .waiter = waiter});
}

grpc::Status ListRegistrations(const Address& registrar,
                               std::vector<v1::Registration>* out,
                               absl::Duration timeout, CallWaiter* waiter) {
  auto stub = v1::Registrar::NewStub(RegistrarChannel(registrar));
  v1::ListReply rep;
  grpc::Status s = BlockingUnaryCall(
      [&](auto* ctx, auto* request, auto* reply, auto done) {
        StartDriven(stub->PrepareAsyncList(ctx, *request, DrivenQueue()), reply,
                    std::move(done));
      },
      v1::ListRequest(), &rep,
      {.deadline = absl::Now() + timeout, .waiter = waiter});
  if (s.ok()) {
    out->assign(rep.registrations().begin(), rep.registrations().end());
  }
  return s;
}

}  // namespace tractor::discovery
