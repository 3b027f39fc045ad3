// SPDX-License-Identifier: AGPL-3.0-or-later
// The client side of the registrar protocol, without the actor runtime
// (docs/design.md#discovery-and-addresses): probing registry addresses at
// boot, keeping one actor registered under a lease, and raw lookups
// (hedged, or on every registrar at once).
//
// The runtime (//actor) uses this library to elect a registrar and to
// register every actor; //discovery:discovery builds the user API
// (FindActor, WaitForActor, ...) on top of it. Nothing here depends on the
// runtime, so nothing here is a cancellation checkpoint: callers that must be
// cancellable wait on `Lookup::mu()`/`cv()` with the runtime's own wait, or
// pass a `CallWaiter` (discovery/blocking_call.h) to the one-shot calls.
#ifndef TRACTOR_DISCOVERY_REGISTRY_CLIENT_H_
#define TRACTOR_DISCOVERY_REGISTRY_CLIENT_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/blocking_call.h"
// PrepareUnixListenPath moved to discovery/listen.h; included here until
// every user includes it directly.
#include "discovery/listen.h"
#include "discovery/mutex.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/msg.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {

// Returns a gRPC channel to the registrar at `addr`, shared by every caller
// in this process (one per canonical address), made with
// `NewChannel(addr, ChannelPurpose::kRegistrar)` (discovery/channel.h). It
// reconnects with a short backoff (100 ms to 1 s), so a restarted registrar
// is reached again within about a second. Thread-safe.
std::shared_ptr<grpc::Channel> RegistrarChannel(const Address& addr);

// What answers at one registry address
// (docs/behaviour.md#registrar-election).
enum class ProbeKind {
  // A `tractor.v1.Registrar` answered `Hello`.
  kRegistrar,
  // Something listens there but it is not a registrar: a gRPC server
  // without the Registrar service, or a listener that does not speak gRPC.
  kOccupied,
  // Nothing listens there (connection refused, no socket file, port 0).
  kAbsent,
};

struct ProbeResult {
  Address addr;
  ProbeKind kind = ProbeKind::kAbsent;
  // The registrar's identity (kRegistrar only).
  v1::Aid registrar;
  // Why it was classified so, for error messages.
  std::string detail;
};

// How long `ProbeRegistryAddrs` waits for one `Hello` answer.
inline constexpr absl::Duration kProbeAttemptTimeout = absl::Seconds(1);
// How long `ProbeRegistryAddrs` waits for a connection to be accepted: an
// address that stays silent that long (a partitioned or vanished host drops
// the connection attempt) is reported absent.
inline constexpr absl::Duration kProbeConnectTimeout = absl::Milliseconds(200);

// Probes every address concurrently: a plain socket connect, given at most
// `kProbeConnectTimeout`, tells absent (refused, or silent) from listening;
// a listener then gets `Registrar.Hello` with a `kProbeAttemptTimeout`
// deadline (waiting for ready: a gRPC handshake that fails is retried within
// it), retried once on a timeout while `budget` lasts (both scaled by
// `ScaleTimeout`, discovery/listen.h). Returns one result per address, in
// order. Blocks at most about `budget`, and at most
// about `kProbeConnectTimeout` when every address is a registrar that
// answers, refuses, or is silent. Thread-safe.
std::vector<ProbeResult> ProbeRegistryAddrs(
    const std::vector<Address>& addrs, absl::Duration budget = absl::Seconds(2));

// Returns the IP address of the local interface that routes toward `to` (a
// TCP address), e.g. "10.77.1.2" for a registrar on the same subnet, or
// nullopt for unix addresses, DNS names and unroutable targets. Sends no
// packet (a connected UDP socket is only asked for its local address).
std::optional<std::string> LocalIpToward(const Address& to);

// What a check of one registered address found (`CheckActorAt`).
enum class Liveness {
  // Positive evidence that the actor is no longer there: the address refuses
  // connections (for a unix socket: no socket file), its host name does not
  // resolve, or something else answers there (an actor with another uuid,
  // or a server that is not an actor).
  kGone,
  // The actor answered there.
  kAlive,
  // No evidence either way: the connection attempt or the identity question
  // got no answer in time (a partition, an overloaded host).
  kUnknown,
};

struct AddrCheck {
  Liveness liveness = Liveness::kUnknown;
  // What was found, for logs and replies.
  std::string detail;
};

// Asks whether the actor `uuid` still accepts at `addr`: a plain socket
// connect (at most 200 ms), then `Actor.Info` over a private connection
// (never a shared channel, whose reconnect backoff would fail the call at
// once) within what is left of `timeout`. Blocks at most about `timeout`.
// Thread-safe.
AddrCheck CheckActorAt(const Address& addr, const std::string& uuid,
                       absl::Duration timeout = absl::Milliseconds(700));

// Keeps one actor's addresses registered with a list of registrars.
//
// `Start` registers with every registrar concurrently (bounded by
// `first_timeout`; a registrar channel gives up a connection attempt that
// gets no answer after 100 ms, so a silent registrar costs about that;
// when none accepted, it waits longer for those that accept connections,
// whose handshake may be slow, see `Start`) and starts a thread that refreshes each registration every
// third of the lease it was granted, so a registrar that restarted (and lost
// its table) gets the entry back within a third of the lease plus gRPC's
// reconnect backoff. A registrar that is down is retried every 0.5 s. `Stop`
// ends the thread and unregisters from every registrar concurrently, bounded
// by `unregister_timeout` in total. Both bounds are stretched by
// TRACTOR_TIMEOUT_SCALE (`ScaleTimeout`), like the runtime's other timeouts.
//
// Unix and loopback addresses are registered only with registrars on this
// host (`Address::IsLocalHost`): another host cannot reach them (its
// "127.0.0.1" is itself), and `PreferAddress` relies on unix entries being
// host-local. A registrar that would get no address at all is skipped.
//
// Every registrar in the list is kept, whether or not it answered at boot:
// one that was down or partitioned is registered with as soon as it
// answers.
//
// Thread-safe. `Stop` is idempotent and called by the destructor.
class Registrant {
 public:
  struct Options {
    // The actor: name and uuid are the registration key.
    v1::Aid aid;
    // Its accept addresses (canonical text).
    std::vector<std::string> addrs;
    // Where to register.
    std::vector<Address> registrars;
    // Lease to ask for; zero asks for the registrar's default.
    absl::Duration lease = absl::ZeroDuration();
    absl::Duration first_timeout = absl::Seconds(1);
    // How long `Start` then waits for the registrars that accept
    // connections but whose channel failed to connect within the first
    // round, when none accepted (see `Start`).
    absl::Duration slow_connect_timeout = absl::Seconds(5);
    absl::Duration unregister_timeout = absl::Milliseconds(500);
  };

  explicit Registrant(Options options);
  Registrant(const Registrant&) = delete;
  Registrant& operator=(const Registrant&) = delete;
  ~Registrant();

  // Registers once with every registrar (concurrently; blocks at most
  // `first_timeout`), then starts refreshing in the background. When no
  // registrar accepted, those whose channel failed to connect although
  // their address accepts connections (a TLS handshake slower than the
  // channel's first connection attempts allow, on a loaded machine) are
  // registered with again, waiting for the connection, for at most
  // `slow_connect_timeout` more; registrars that are down or silent are not
  // waited for, nor is any once one accepted. Returns how many registrars
  // accepted; the others are retried.
  size_t Start();

  // Stops refreshing and sends the unregistration to every registrar,
  // without waiting for the answers: an actor on its way out goes on with
  // its teardown meanwhile, and `Stop` collects them. No thread is started
  // (a thread's creation is a sizeable part of an exit's cost). Idempotent.
  void BeginStop() ABSL_LOCKS_EXCLUDED(mu_, stop_mu_);

  // `BeginStop` if not done yet, then waits for every registrar's answer
  // (at most `unregister_timeout` after `BeginStop`, each call's deadline).
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_, stop_mu_);

  // Number of completed refresh rounds in which every registrar accepted
  // (for tests).
  size_t good_rounds() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Target {
    Address registrar;
    std::vector<std::string> addrs;  // filtered for this registrar
    absl::Duration granted;          // last lease granted; zero: none yet
    bool ok = false;                 // last Register succeeded
    // The status code of the last Register.
    grpc::StatusCode last_code = grpc::StatusCode::OK;
  };

  // Registers with every target concurrently; returns how many accepted.
  size_t RegisterRound(absl::Duration timeout);
  // Registers with the targets `which` concurrently, the calls waiting for
  // their channel to connect with `wait_for_ready`; returns how many
  // accepted.
  size_t RegisterRound(absl::Duration timeout, const std::vector<size_t>& which,
                       bool wait_for_ready);
  void RefreshLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  std::vector<Target> targets_;  // touched by Start, then by the thread only

  // The unregistration calls `BeginStop` sent, on a queue of their own.
  struct Unregistering;

  mutable Mutex mu_;
  CondVar cv_;  // signalled when stopping_ is set
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Serialises BeginStop and Stop; after BeginStop, `unregistering_` holds
  // the calls until Stop has collected them.
  Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  bool stop_begun_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::unique_ptr<Unregistering> unregistering_ ABSL_GUARDED_BY(stop_mu_);
  size_t good_rounds_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// Hedged lookups (docs/design.md#hedged-lookups). A `Find` goes first to
// one registrar only; the others are asked when it answers with no entry or
// an error, when its channel is known to be failing (no RPC: at once), or
// when it has not answered within the hedge delay. On 2 cores two
// registrars answering at once cost a lookup nearly twice one answer, and a
// healthy registrar answers in a few hundred microseconds, so the second is
// asked only in the tail.
//
// The hedge delay is `kHedgeMultiple` times the median of the last
// `kHedgeSamples` answer times of `Find` calls in this process (OK answers,
// positive or not, on a channel already connected), clamped to
// [`kHedgeFloor`, `kHedgeCeiling`]; `kHedgeCeiling` before any answer. The floor is above the p99 of one
// `Find` on a loaded 2-core machine (0.5-0.95 ms at load 5-14), so a
// healthy registrar rarely triggers the hedge; the ceiling bounds what a
// silent or partitioned registrar asked first adds to a lookup.
inline constexpr int kHedgeMultiple = 4;
inline constexpr size_t kHedgeSamples = 32;
inline constexpr absl::Duration kHedgeFloor = absl::Milliseconds(1);
inline constexpr absl::Duration kHedgeCeiling = absl::Milliseconds(5);

// The current hedge delay (see above). Thread-safe.
absl::Duration HedgeDelay();

// The position in `registrars` of the registrar that gave the first
// positive `Find` answer (one with an entry) of this process's last lookup
// that had one, or 0 when it is not in the list. Thread-safe.
size_t PreferredRegistrar(const std::vector<Address>& registrars);

// One registrar's answer to a lookup.
struct LookupResult {
  // Position of the registrar in the list given to `Lookup`.
  size_t index = 0;
  // The registrar's canonical address.
  std::string registrar;
  grpc::Status status;
  // Entries with the name, oldest registration first (empty on error).
  std::vector<v1::Registration> registrations;
};

// `Find` or `WaitFor` calls on several registrars; each answer is queued as
// it arrives, so the caller can act on the first positive one.
//
// Without `Hedge`, every registrar is asked at once. With it (kFind only),
// `hedge.first` is asked alone and the others are held: they are asked
// together, at once, when the first answers with no entry or an error
// (including "unreachable" without an RPC), and otherwise when the caller
// finds `HedgeDueLocked` true (the hedge delay passed, or every answer was
// popped with no call in flight) and calls `AskHeld` (`Next` does both).
//
// Thread-safe. Waiting is left to the caller: lock `mu()`, wait on `cv()`
// until `ReadyLocked()` or `HedgeDueLocked()` (with a deadline of
// `HedgeAtLocked()`), then `PopLocked()` or `AskHeld()`; or call `Next`. In
// kFind mode a miss or an error is queued without waking waiters while
// other calls are in flight or held (a waiter wakes for an entry, or for the
// last answer). The destructor cancels the calls still in flight (they end
// soon after, on gRPC's threads) and held registrars are never asked.
class Lookup {
 public:
  enum class Mode {
    // `Registrar.Find`: answers at once; fails fast when the registrar is
    // unreachable.
    kFind,
    // `Registrar.WaitFor`: blocks until an entry exists; waits for an
    // unreachable registrar to come up (wait_for_ready).
    kWaitFor,
  };

  // How a kFind lookup is hedged.
  struct Hedge {
    // The registrar asked first (a position in the list).
    size_t first = 0;
    // How long the others wait for its answer.
    absl::Duration delay = kHedgeCeiling;
  };

  // Starts the calls (all of them, or `hedge->first` alone); each ends by
  // `deadline` at the latest.
  Lookup(std::vector<Address> registrars, std::string name, Mode mode,
         absl::Time deadline = absl::InfiniteFuture(),
         std::optional<Hedge> hedge = std::nullopt);
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;
  ~Lookup();

  // Starts the call to registrar `index` again (after its answer was
  // popped).
  void Reissue(size_t index);
  // Cancels every call in flight (they answer CANCELLED); held registrars
  // are not asked any more.
  void Cancel();
  // Asks every held registrar now (nothing when none is held).
  void AskHeld() ABSL_LOCKS_EXCLUDED(state_->mu);

  Mutex& mu() ABSL_LOCK_RETURNED(state_->mu) { return state_->mu; }
  // Signalled when an answer is queued (see above).
  CondVar& cv() { return state_->cv; }
  // True when an answer is queued, or no call is in flight or held.
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return !state_->results.empty() || IdleLocked();
  }
  // True when an answer is queued.
  bool HasResultLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return !state_->results.empty();
  }
  // True when no call is in flight and no registrar is held.
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return state_->in_flight == 0 && state_->held.empty();
  }
  // When the held registrars are due (`InfiniteFuture` when none is held).
  absl::Time HedgeAtLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return state_->held.empty() ? absl::InfiniteFuture() : state_->hedge_at;
  }
  // True when held registrars should be asked: the hedge delay passed at
  // `now`, or nothing is in flight and no answer is queued (the first
  // answered positively, and the caller wants more).
  bool HedgeDueLocked(absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return !state_->held.empty() &&
           (now >= state_->hedge_at ||
            (state_->in_flight == 0 && state_->results.empty()));
  }
  // Removes the oldest queued answer, or nullopt.
  std::optional<LookupResult> PopLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu);
  // Calls in flight (not counting held registrars).
  size_t InFlightLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return state_->in_flight;
  }

  // Blocks (not a checkpoint) until an answer is queued, no call is in
  // flight or held, or `until`; asks the held registrars when they are due.
  // Returns the answer or nullopt.
  std::optional<LookupResult> Next(absl::Time until)
      ABSL_LOCKS_EXCLUDED(state_->mu);

  size_t size() const { return state_->registrars.size(); }
  const Address& registrar(size_t index) const {
    return state_->registrars[index];
  }

 private:
  struct Call;
  // Shared with the calls' callbacks, which may run after the `Lookup` is
  // gone.
  struct State {
    State(std::vector<Address> registrars, std::string name, Mode mode,
          absl::Time deadline)
        : registrars(std::move(registrars)),
          name(std::move(name)),
          mode(mode),
          deadline(deadline) {}
    const std::vector<Address> registrars;
    const std::string name;
    const Mode mode;
    const absl::Time deadline;

    Mutex mu;
    CondVar cv;
    std::deque<LookupResult> results ABSL_GUARDED_BY(mu);
    // Calls started or reserved (see `Reserve`) and not yet answered.
    size_t in_flight ABSL_GUARDED_BY(mu) = 0;
    // By index; the latest call.
    std::vector<std::shared_ptr<Call>> calls ABSL_GUARDED_BY(mu);
    // Registrars not asked yet (hedged), and when they are due.
    std::vector<size_t> held ABSL_GUARDED_BY(mu);
    absl::Time hedge_at ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
    // A call answered with an entry.
    bool answered_positively ABSL_GUARDED_BY(mu) = false;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
  };

  // Moves the held registrars out, counted in flight. Returns them.
  static std::vector<size_t> TakeHeldLocked(State& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu);
  // Starts the call to registrar `index`, already counted in `in_flight`.
  static void StartCall(const std::shared_ptr<State>& state, size_t index)
      ABSL_LOCKS_EXCLUDED(state->mu);
  // Queues the answer of a call counted in `in_flight`; in kFind mode a
  // negative one releases the held registrars into `*ask`.
  static void FinishLocked(State& state, LookupResult result,
                           std::vector<size_t>* ask)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu);

  std::shared_ptr<State> state_;
};

// Runs `Registrar.DeleteAddr(addr, if_revision)` on `registrar` (0: any
// revision) and fills `*reply` if given; waits at most `timeout` (the
// registrar checks the address before deleting it), and returns CANCELLED
// when `waiter` (if any) gives up first (see discovery/blocking_call.h).
// Thread-safe.
grpc::Status DeleteAddr(const Address& registrar, const std::string& addr,
                        uint64_t if_revision = 0,
                        v1::DeleteAddrReply* reply = nullptr,
                        absl::Duration timeout = absl::Milliseconds(1500),
                        CallWaiter* waiter = nullptr);

// Runs `Registrar.List` on `registrar` and, on OK, replaces `*out` with the
// entries; waits at most `timeout`, and returns CANCELLED when `waiter` (if
// any) gives up first. Thread-safe.
grpc::Status ListRegistrations(const Address& registrar,
                               std::vector<v1::Registration>* out,
                               absl::Duration timeout = absl::Seconds(1),
                               CallWaiter* waiter = nullptr);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_REGISTRY_CLIENT_H_
