// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/discovery.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actor/cancel.h"
#include "actor/errors.h"
#include "actor/runtime.h"
#include "actor/task_waiter.h"
#include "discovery/address.h"
#include "discovery/mutex.h"
#include "discovery/registry_client.h"
#include "glog/logging.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

// How long WaitForActor waits before asking a registrar again after an
// error or a stale answer.
constexpr absl::Duration kWaitRetry = absl::Milliseconds(200);

Address ParseOrThrow(const std::string& text, const char* what) {
  auto parsed = Address::Parse(text);
  if (!parsed.ok()) {
    throw UsageError(absl::StrCat(what, ": ", parsed.status().message()));
  }
  return *std::move(parsed);
}

// The registrars to ask: `given`, or the current actor's registry list.
std::vector<Address> Registrars(const std::vector<std::string>& given) {
  const std::vector<std::string> texts =
      given.empty() ? RegistryAddrs() : given;
  std::vector<Address> out;
  for (const auto& t : texts) out.push_back(ParseOrThrow(t, "registry address"));
  if (out.empty()) {
    throw RuntimeFailure("this actor has no registry addresses to ask");
  }
  return out;
}

Address OneRegistrar(const std::string& given) {
  if (!given.empty()) return ParseOrThrow(given, "registry address");
  const std::vector<std::string> list = RegistryAddrs();
  if (list.empty()) {
    throw RuntimeFailure("this actor has no registry addresses to ask");
  }
  return ParseOrThrow(list.front(), "registry address");
}

// The addresses of `reg` worth dialling, best first (PreferAddress order),
// paired with the text the registrar stored (for DeleteAddr).
std::vector<std::pair<Address, std::string>> Candidates(
    const v1::Registration& reg, bool registrar_is_local) {
  std::vector<std::pair<Address, std::string>> left;
  for (const auto& text : reg.addrs()) {
    auto parsed = Address::Parse(text);
    if (!parsed.ok()) continue;
    // A unix or loopback entry from another host's registrar names a
    // socket over there, not here.
    if (!registrar_is_local && (parsed->kind() == Address::Kind::kUnix ||
                                parsed->IsLoopback())) {
      continue;
    }
    left.emplace_back(*parsed, text);
  }
  std::vector<std::pair<Address, std::string>> out;
  while (!left.empty()) {
    std::vector<Address> addrs;
    for (const auto& [a, t] : left) addrs.push_back(a);
    const Address best = *PreferAddress(addrs);
    auto it = std::find_if(left.begin(), left.end(),
                           [&](const auto& p) { return p.first == best; });
    out.push_back(*it);
    left.erase(it);
  }
  return out;
}

// Connects to the actor of one registration, trying its addresses best
// first. An address is deleted from `registrar` only on positive evidence
// that the actor is gone from it (another actor answers there, or a fresh
// connection is refused), never because this process's own channel to it
// failed (it may still be backing off after a partition), and only while the
// entry keeps the revision this lookup saw; the registrar checks the
// evidence again itself.
std::optional<Portal> ConnectToOne(const v1::Registration& reg,
                                   const Address& registrar,
                                   bool* saw_stale) {
  const bool local = registrar.IsLocalHost();
  // The entry's revision as this lookup knows it; a deletion of one of its
  // addresses gives it a new one.
  uint64_t revision = reg.revision();
  for (const auto& [addr, text] : Candidates(reg, local)) {
    std::string why;
    try {
      // The identity is checked with an Info call, unless this actor's
      // live connection to that address already did.
      const std::string target = addr.ToString();
      const bool known = KnowsLiveActorAt(target, reg.aid().uuid());
      Portal p = Portal::Connect(target, known ? reg.aid() : v1::Aid(),
                                 kConnectTimeout);
      if (p.aid().uuid() == reg.aid().uuid()) return p;
      why = absl::StrCat("now served by another actor ('", p.aid().name(),
                         "' ", p.aid().uuid(), ")");
    } catch (const TransportClosed& e) {
      const AddrCheck check = CheckActorAt(addr, reg.aid().uuid());
      if (check.liveness != Liveness::kGone) {
        LOG(INFO) << "discovery: cannot reach '" << reg.aid().name() << "' ("
                  << reg.aid().uuid() << ") at " << text << " (" << e.what()
                  << "), but there is no evidence it is gone ("
                  << check.detail << "); keeping its entry";
        continue;
      }
      why = check.detail;
    }
    LOG(INFO) << "discovery: stale entry for '" << reg.aid().name() << "' ("
              << reg.aid().uuid() << ") at " << text << " from registrar "
              << registrar << ": " << why << "; deleting it (revision "
              << revision << ")";
    *saw_stale = true;
    v1::DeleteAddrReply reply;
    grpc::Status st = DeleteAddr(registrar, text, revision, &reply);
    if (st.ok() && reply.found()) revision = reply.revision();
    if (!st.ok()) {
      VLOG(1) << "discovery: DeleteAddr(" << text << ") on " << registrar
              << ": " << st.error_message();
    } else if (!reply.kept_because().empty()) {
      VLOG(1) << "discovery: registrar " << registrar << " kept " << text
              << ": " << reply.kept_because();
    }
  }
  return std::nullopt;
}

// Connects to the actor of one registration, newest registrations first.
// Returns the first portal that works.
std::optional<Portal> ConnectToAny(const LookupResult& answer,
                                   const Address& registrar,
                                   bool* saw_stale) {
  for (auto it = answer.registrations.rbegin();
       it != answer.registrations.rend(); ++it) {
    if (auto p = ConnectToOne(*it, registrar, saw_stale)) return p;
  }
  return std::nullopt;
}

// What a lookup that found no live actor says: which registrars answered
// that they list none, and which did not answer (`unanswered`, one
// "address: why" each), so a registrar that could not be asked is not
// taken for one that does not list the actor.
RuntimeFailure NoneFound(const std::string& name,
                         const std::vector<Address>& registrars,
                         const std::vector<std::string>& unanswered) {
  if (unanswered.empty()) {
    std::vector<std::string> texts;
    for (const auto& r : registrars) texts.push_back(r.ToString());
    return RuntimeFailure(absl::StrCat("no actor '", name,
                                       "' is registered with [",
                                       absl::StrJoin(texts, ", "), "]"));
  }
  std::vector<std::string> answered;
  for (const auto& r : registrars) {
    const std::string text = r.ToString();
    const bool failed = std::any_of(
        unanswered.begin(), unanswered.end(), [&](const std::string& u) {
          return absl::StartsWith(u, text + ": ");
        });
    if (!failed) answered.push_back(text);
  }
  if (answered.empty()) {
    return RuntimeFailure(absl::StrCat(
        "cannot tell whether an actor '", name,
        "' is registered: no registrar answered (",
        absl::StrJoin(unanswered, "; "), ")"));
  }
  return RuntimeFailure(absl::StrCat(
      "no actor '", name, "' is registered with [",
      absl::StrJoin(answered, ", "), "]; these did not answer: ",
      absl::StrJoin(unanswered, "; ")));
}

// Waits (a checkpoint) for the next answer of `lookup` until `until`; asks
// the registrars a hedged lookup held back when they are due. With
// `stop_when_idle`, returns nullopt once every registrar has answered.
std::optional<LookupResult> NextAnswer(Lookup& lookup, absl::Time until,
                                       bool stop_when_idle) {
  for (;;) {
    {
      MutexLock lock(&lookup.mu());
      internal::Wait(
          lookup.cv(), lookup.mu(),
          [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lookup.mu()) {
            return lookup.HasResultLocked() ||
                   (stop_when_idle && lookup.IdleLocked()) ||
                   lookup.HedgeDueLocked(absl::Now());
          },
          std::min(until, lookup.HedgeAtLocked()));
      if (lookup.HasResultLocked()) return lookup.PopLocked();
      if (!lookup.HedgeDueLocked(absl::Now())) return std::nullopt;
    }
    lookup.AskHeld();
  }
}

}  // namespace

std::optional<Portal> FindActor(const std::string& name,
                                const std::vector<std::string>& registry_addrs,
                                absl::Duration timeout, bool raise_on_none) {
  const std::vector<Address> registrars = Registrars(registry_addrs);
  // Hedged: the registrar of the last positive answer first, the others
  // after a miss, an error or the hedge delay.
  Lookup lookup(registrars, name, Lookup::Mode::kFind, absl::Now() + timeout,
                Lookup::Hedge{.first = PreferredRegistrar(registrars),
                              .delay = HedgeDelay()});
  std::vector<std::string> unanswered;
  for (;;) {
    std::optional<LookupResult> answer =
        NextAnswer(lookup, absl::InfiniteFuture(), /*stop_when_idle=*/true);
    if (!answer.has_value()) {  // every registrar answered
      if (raise_on_none) throw NoneFound(name, registrars, unanswered);
      LOG_IF(WARNING, unanswered.size() == registrars.size())
          << "FindActor('" << name << "'): no registrar answered ("
          << absl::StrJoin(unanswered, "; ") << ")";
      return std::nullopt;
    }
    if (!answer->status.ok()) {
      VLOG(1) << "discovery: registrar " << answer->registrar
              << " did not answer Find(" << name
              << "): " << answer->status.error_message();
      unanswered.push_back(absl::StrCat(answer->registrar, ": ",
                                        answer->status.error_message()));
      continue;
    }
    bool stale = false;
    if (auto p = ConnectToAny(*answer, registrars[answer->index], &stale)) {
      return p;
    }
  }
}

std::vector<Portal> FindActors(const std::string& name,
                               const std::vector<std::string>& registry_addrs,
                               absl::Duration timeout, bool raise_on_none) {
  const std::vector<Address> registrars = Registrars(registry_addrs);
  Lookup lookup(registrars, name, Lookup::Mode::kFind, absl::Now() + timeout);
  // Every registration, with the registrar that listed it.
  std::vector<std::pair<v1::Registration, size_t>> regs;
  std::vector<std::string> unanswered;
  for (;;) {
    std::optional<LookupResult> answer =
        NextAnswer(lookup, absl::InfiniteFuture(), /*stop_when_idle=*/true);
    if (!answer.has_value()) break;  // every registrar answered
    if (!answer->status.ok()) {
      VLOG(1) << "discovery: registrar " << answer->registrar
              << " did not answer Find(" << name
              << "): " << answer->status.error_message();
      unanswered.push_back(absl::StrCat(answer->registrar, ": ",
                                        answer->status.error_message()));
      continue;
    }
    // Each registrar lists its registrations oldest first.
    for (auto it = answer->registrations.rbegin();
         it != answer->registrations.rend(); ++it) {
      regs.emplace_back(*it, answer->index);
    }
  }
  std::vector<Portal> out;
  std::set<std::string> seen;
  for (const auto& [reg, index] : regs) {
    if (seen.count(reg.aid().uuid())) continue;
    bool stale = false;
    if (auto p = ConnectToOne(reg, registrars[index], &stale)) {
      seen.insert(reg.aid().uuid());
      out.push_back(*std::move(p));
    }
  }
  if (out.empty() && raise_on_none) {
    throw NoneFound(name, registrars, unanswered);
  }
  return out;
}

Portal WaitForActor(const std::string& name,
                    const std::vector<std::string>& registry_addrs) {
  const std::vector<Address> registrars = Registrars(registry_addrs);
  Lookup lookup(registrars, name, Lookup::Mode::kWaitFor);
  std::vector<absl::Time> retry_at(registrars.size(), absl::InfiniteFuture());
  size_t gave_up = 0;
  for (;;) {
    const absl::Time now = absl::Now();
    absl::Time next_retry = absl::InfiniteFuture();
    for (size_t i = 0; i < retry_at.size(); ++i) {
      if (retry_at[i] <= now) {
        retry_at[i] = absl::InfiniteFuture();
        lookup.Reissue(i);
      }
      next_retry = std::min(next_retry, retry_at[i]);
    }
    std::optional<LookupResult> answer =
        NextAnswer(lookup, next_retry, /*stop_when_idle=*/false);
    if (!answer.has_value()) continue;  // time to retry someone
    const size_t i = answer->index;
    if (!answer->status.ok()) {
      if (answer->status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        LOG(WARNING) << "discovery: " << answer->registrar
                     << " is not a registrar; WaitForActor ignores it";
        if (++gave_up == registrars.size()) {
          throw RuntimeFailure(absl::StrCat(
              "WaitForActor('", name, "'): none of the registry addresses "
              "serves a registrar"));
        }
        continue;
      }
      VLOG(1) << "discovery: WaitFor(" << name << ") on " << answer->registrar
              << ": " << answer->status.error_message() << "; retrying";
      retry_at[i] = absl::Now() + kWaitRetry;
      continue;
    }
    bool stale = false;
    if (auto p = ConnectToAny(*answer, registrars[i], &stale)) return *p;
    retry_at[i] = absl::Now() + kWaitRetry;
  }
}

std::optional<std::string> QueryActor(const std::string& name,
                                      const std::string& registry_addr) {
  const Address registrar = OneRegistrar(registry_addr);
  Lookup lookup({registrar}, name, Lookup::Mode::kFind,
                absl::Now() + absl::Seconds(1));
  std::optional<LookupResult> answer =
      NextAnswer(lookup, absl::InfiniteFuture(), /*stop_when_idle=*/true);
  if (!answer.has_value() || !answer->status.ok()) {
    throw TransportClosed(absl::StrCat(
        "registrar at ", registrar.ToString(), " does not answer: ",
        answer.has_value() ? answer->status.error_message() : "no answer"));
  }
  if (answer->registrations.empty()) return std::nullopt;
  const auto candidates =
      Candidates(answer->registrations.back(), registrar.IsLocalHost());
  if (candidates.empty()) return std::nullopt;
  return candidates.front().first.ToString();
}

std::vector<v1::Registration> GetRegistry(const std::string& registry_addr) {
  const Address registrar = OneRegistrar(registry_addr);
  TaskWaiter waiter;
  std::vector<v1::Registration> out;
  grpc::Status status =
      ListRegistrations(registrar, &out, absl::Seconds(1), &waiter);
  if (!status.ok()) {
    throw TransportClosed(absl::StrCat("registrar at ", registrar.ToString(),
                                       " does not answer: ",
                                       status.error_message()));
  }
  return out;
}

}  // namespace tractor::discovery
