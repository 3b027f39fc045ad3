// SPDX-License-Identifier: AGPL-3.0-or-later
// tractorctl: inspect and drive a running tractor mesh from the command line,
// using only the protos (no actor runtime in this process).
//
//   tractorctl [flags] ls | find NAME | info TARGET | tree TARGET | watch
//              | stats TARGET | call TARGET NS:FUNC [JSON]
//              | stream TARGET NS:FUNC [JSON] | cancel TARGET [--task CID]
//
// TARGET is an actor address (any form of discovery/address.h) or a name,
// looked up in the registries of `--registry`. Exit status: 0 ok, 1 remote
// error, 2 usage, 3 not found, unreachable or timed out. docs/cli.md
// describes every command and its output.
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "discovery/uuid.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/msg.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

ABSL_FLAG(std::vector<std::string>, registry,
          std::vector<std::string>(1, "127.0.0.1:1616"),
          "registrar addresses to ask, comma-separated (ls and watch use "
          "every one that answers; a name is looked up in each in turn)");
ABSL_FLAG(bool, json, false,
          "print JSON for scripts instead of tables (stream always prints "
          "JSON lines)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "bound on each request; for watch and stream, on the first "
          "answer (e.g. 500ms, 10s, 1m)");
ABSL_FLAG(std::string, task, "",
          "cancel: the cid of the one task to cancel (default: the whole "
          "actor)");
ABSL_FLAG(std::string, secret_file, "",
          "file holding the mesh secret, presented on cancel (a control "
          "call); unset: the TRACTOR_SECRET environment variable");
ABSL_FLAG(int32_t, events, 0,
          "watch: exit 0 after this many events (0: until interrupted)");

namespace tractor::ctl {
namespace {

namespace v1 = ::tractor::v1;
using google::protobuf::util::JsonPrintOptions;
using google::protobuf::util::JsonStringToMessage;
using google::protobuf::util::MessageToJsonString;

constexpr int kExitOk = 0;
constexpr int kExitRemoteError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;

constexpr char kUsage[] =
    "usage: tractorctl [flags] COMMAND [ARGS]\n"
    "commands:\n"
    "  ls                              every actor in the registry\n"
    "  find NAME                       the actors registered as NAME\n"
    "  info TARGET                     functions, children, parent\n"
    "  tree TARGET                     the actor tree below TARGET\n"
    "  watch                           registry events as they happen\n"
    "  stats TARGET                    tasks, dialogs, queues, threads, RSS\n"
    "  call TARGET NS:FUNC [JSON]      call a function, print its result\n"
    "  stream TARGET NS:FUNC [JSON]    open a context: print Started and\n"
    "                                  items as JSON lines, send each stdin\n"
    "                                  line as an item, end with the result\n"
    "  cancel TARGET [--task CID]      cancel the actor, or one task\n"
    "TARGET is an address (host:port, [v6]:port, unix:/path, a multiaddr)\n"
    "or an actor name looked up in the registry.\n"
    "flags:\n"
    "  --registry ADDR,...  registrars to ask (default 127.0.0.1:1616)\n"
    "  --json               JSON output for scripts\n"
    "  --timeout DURATION   bound on each request (default 10s)\n"
    "  --task CID           cancel: one task instead of the actor\n"
    "  --events N           watch: stop after N events\n"
    "exit status: 0 ok, 1 remote error, 2 usage, 3 not found, unreachable\n"
    "or timed out\n";

// Ends the command with an exit status and a message for stderr.
struct Exit {
  int code;
  std::string message;
};

[[noreturn]] void Fail(int code, std::string message) {
  throw Exit{code, std::move(message)};
}

bool Json() { return absl::GetFlag(FLAGS_json); }

absl::Time Deadline() { return absl::Now() + absl::GetFlag(FLAGS_timeout); }

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(absl::ToChronoTime(Deadline()));
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!MessageToJsonString(m, &out, options).ok()) return "null";
  return out;
}

// `s` as a JSON string literal.
std::string JsonString(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return ToJson(v);
}

// A payload as JSON: a value as itself; a protobuf message or raw bytes as
// an object naming them, base64-encoded.
std::string PayloadJson(const v1::Payload& p) {
  switch (p.kind_case()) {
    case v1::Payload::kValue:
      return ToJson(p.value());
    case v1::Payload::kMessage:
      return absl::StrCat("{\"@type\":\"", p.message().type_url(),
                          "\",\"base64\":\"",
                          absl::Base64Escape(p.message().value()), "\"}");
    case v1::Payload::kRaw:
      return absl::StrCat("{\"raw_base64\":\"", absl::Base64Escape(p.raw()),
                          "\"}");
    default:
      return "null";
  }
}

// Parses a JSON argument into a value payload; a usage error otherwise.
v1::Payload ParsePayload(const std::string& json, const std::string& what) {
  v1::Payload p;
  if (!JsonStringToMessage(json, p.mutable_value()).ok()) {
    Fail(kExitUsage, absl::StrCat(what, " is not JSON: ", json));
  }
  return p;
}

std::string DescribeAid(const v1::Aid& aid) {
  return absl::StrCat("'", aid.name(), "' ", aid.uuid());
}

// A remote error as people read it: type, origin, message, traceback.
std::string DescribeError(const v1::Error& e) {
  std::string out = absl::StrCat(e.boxed_type(), " from actor ",
                                 DescribeAid(e.src()));
  if (e.src_type() != e.boxed_type() && !e.src_type().empty()) {
    absl::StrAppend(&out, " (raised as ", e.src_type(), ")");
  }
  absl::StrAppend(&out, ": ", e.message());
  if (!e.canceller().uuid().empty()) {
    absl::StrAppend(&out, "\ncancelled by ", DescribeAid(e.canceller()));
  }
  if (!e.traceback().empty()) {
    absl::StrAppend(&out, "\ntraceback:\n", e.traceback());
  }
  return out;
}

// A failed RPC: 3 when the peer is unreachable, gone or too slow; 1 when it
// answered with an error of its own.
[[noreturn]] void FailRpc(const std::string& what, const grpc::Status& s) {
  const bool unavailable =
      s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      s.error_code() == grpc::StatusCode::NOT_FOUND ||
      s.error_code() == grpc::StatusCode::CANCELLED;
  std::string why = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED
                        ? absl::StrCat("timed out after ",
                                       absl::FormatDuration(
                                           absl::GetFlag(FLAGS_timeout)))
                        : s.error_message();
  Fail(unavailable ? kExitUnavailable : kExitRemoteError,
       absl::StrCat(what, ": ", why, " (status ", s.error_code(), ")"));
}

v1::Aid Requester() {
  v1::Aid aid;
  aid.set_name("tractorctl");
  aid.set_uuid(discovery::NewUuid());
  return aid;
}

// ---------------------------------------------------------------------------
// Output

// Prints rows as columns separated by two spaces, the first row a header.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) {
        line.append(width[i] - row[i].size() + 2, ' ');
      }
    }
    std::cout << line << "\n";
  }
}

std::string Millis(uint64_t ms) {
  return absl::FormatDuration(absl::Milliseconds(ms));
}

std::string Bytes(uint64_t n) {
  if (n >= (1u << 20)) return absl::StrFormat("%.1f MiB", n / 1048576.0);
  if (n >= 1024) return absl::StrFormat("%.1f KiB", n / 1024.0);
  return absl::StrCat(n, " B");
}

// ---------------------------------------------------------------------------
// Registry

struct Registry {
  std::string addr;
  std::unique_ptr<v1::Registrar::Stub> stub;
};

std::vector<Registry> Registries() {
  std::vector<Registry> out;
  for (const std::string& text : absl::GetFlag(FLAGS_registry)) {
    absl::StatusOr<discovery::Address> addr = discovery::Address::Parse(text);
    if (!addr.ok()) {
      Fail(kExitUsage, absl::StrCat("--registry: ", addr.status().message()));
    }
    // An actor channel: a refused connection fails at once, while a slow
    // handshake (a loaded host) has the whole --timeout, not the registrar
    // purpose's 100 ms per connection attempt.
    out.push_back({addr->ToString(),
                   v1::Registrar::NewStub(discovery::NewChannel(
                       *addr, discovery::ChannelPurpose::kActor))});
  }
  if (out.empty()) Fail(kExitUsage, "--registry: no address given");
  return out;
}

// The registrations of every registry that answers (`name` empty: all),
// merged by uuid in the order they came, with what is left of each lease.
// Exit 3 when no registry answers.
v1::ListReply Lookup(const std::string& name) {
  v1::ListReply out;
  std::set<std::string> seen;
  std::vector<std::string> errors;
  bool answered = false;
  for (Registry& r : Registries()) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s;
    v1::ListReply reply;
    if (name.empty()) {
      s = r.stub->List(&ctx, v1::ListRequest(), &reply);
    } else {
      v1::FindRequest req;
      req.set_name(name);
      v1::FindReply found;
      s = r.stub->Find(&ctx, req, &found);
      *reply.mutable_registrations() = found.registrations();
      *reply.mutable_lease_left_ms() = found.lease_left_ms();
    }
    if (!s.ok()) {
      errors.push_back(absl::StrCat(r.addr, ": ", s.error_message()));
      continue;
    }
    answered = true;
    for (int i = 0; i < reply.registrations_size(); ++i) {
      const v1::Registration& reg = reply.registrations(i);
      if (!seen.insert(reg.aid().uuid()).second) continue;
      *out.add_registrations() = reg;
      // 0 (unknown) from a registrar that does not send it.
      out.add_lease_left_ms(
          i < reply.lease_left_ms_size() ? reply.lease_left_ms(i) : 0);
    }
  }
  if (!answered) {
    Fail(kExitUnavailable, absl::StrCat("no registry answered (",
                                        absl::StrJoin(errors, "; "), ")"));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Targets

struct Target {
  std::string label;  // what to call it in messages
  discovery::Address addr;
};

// The address to dial among an actor's addresses (canonical text), or
// nullopt when none parses.
std::optional<discovery::Address> Preferred(
    const google::protobuf::RepeatedPtrField<std::string>& addrs) {
  std::vector<discovery::Address> parsed;
  for (const std::string& a : addrs) {
    absl::StatusOr<discovery::Address> addr = discovery::Address::Parse(a);
    if (addr.ok()) parsed.push_back(*addr);
  }
  return discovery::PreferAddress(parsed);
}

// An address as itself; anything else is a name looked up in the registry
// (the most recent registration wins).
Target Resolve(const std::string& text) {
  absl::StatusOr<discovery::Address> addr = discovery::Address::Parse(text);
  if (addr.ok()) return {addr->ToString(), *addr};
  if (text.empty() || absl::StartsWith(text, "/") ||
      absl::StartsWith(text, "unix:")) {
    Fail(kExitUsage, std::string(addr.status().message()));
  }
  v1::ListReply found = Lookup(text);
  const auto& regs = found.registrations();
  if (regs.empty()) {
    Fail(kExitUnavailable,
         absl::StrCat("no actor named '", text, "' in the registry (",
                      absl::StrJoin(absl::GetFlag(FLAGS_registry), ","),
                      ")"));
  }
  const v1::Registration& reg = regs[regs.size() - 1];
  std::optional<discovery::Address> best = Preferred(reg.addrs());
  if (!best) {
    Fail(kExitUnavailable, absl::StrCat("actor '", text,
                                        "' is registered with no usable "
                                        "address"));
  }
  return {absl::StrCat("'", text, "' at ", best->ToString()), *best};
}

std::unique_ptr<v1::Actor::Stub> ActorStub(const discovery::Address& addr) {
  return v1::Actor::NewStub(discovery::NewChannel(addr));
}

v1::ActorInfo GetInfo(const Target& t) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ActorInfo info;
  grpc::Status s = ActorStub(t.addr)->Info(&ctx, v1::InfoRequest(), &info);
  if (!s.ok()) FailRpc(absl::StrCat("Info of ", t.label), s);
  return info;
}

// ---------------------------------------------------------------------------
// Commands

std::vector<std::string> RegistrationRow(const v1::Registration& r,
                                         uint32_t lease_left_ms) {
  std::string lease = "-", age = "-";
  if (r.lease_ms() > 0) {
    lease = Millis(r.lease_ms());
    if (lease_left_ms > 0 && lease_left_ms <= r.lease_ms()) {
      age = Millis(r.lease_ms() - lease_left_ms);
    }
  }
  return {r.aid().name(), r.aid().uuid(), absl::StrCat(r.aid().pid()),
          absl::StrJoin(r.addrs(), ","), lease, age};
}

void PrintRegistrations(const v1::ListReply& regs) {
  if (Json()) {
    std::cout << ToJson(regs) << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "UUID", "PID", "ADDRESSES", "LEASE", "AGE"}};
  for (int i = 0; i < regs.registrations_size(); ++i) {
    rows.push_back(
        RegistrationRow(regs.registrations(i), regs.lease_left_ms(i)));
  }
  PrintTable(rows);
}

int Ls() {
  PrintRegistrations(Lookup(""));
  return kExitOk;
}

int Find(const std::string& name) {
  if (name.empty()) Fail(kExitUsage, "find: the name is empty");
  v1::ListReply regs = Lookup(name);
  if (regs.registrations().empty()) {
    Fail(kExitUnavailable,
         absl::StrCat("no actor named '", name, "' in the registry"));
  }
  PrintRegistrations(regs);
  return kExitOk;
}

std::string SignatureText(const v1::FunctionSignature& sig) {
  std::vector<std::string> params;
  for (const auto& p : sig.params()) {
    params.push_back(p.name().empty() ? p.type()
                                      : absl::StrCat(p.name(), ": ", p.type()));
  }
  return absl::StrCat("(", absl::StrJoin(params, ", "), ") -> ",
                      sig.result_type());
}

int Info(const std::string& text) {
  v1::ActorInfo info = GetInfo(Resolve(text));
  if (Json()) {
    std::cout << ToJson(info) << "\n";
    return kExitOk;
  }
  std::string parent = "-";
  if (!info.parent().uuid().empty()) {
    parent = DescribeAid(info.parent());
    if (info.parent_addrs_size() > 0) {
      absl::StrAppend(&parent, " at ", absl::StrJoin(info.parent_addrs(), ","));
    }
  }
  PrintTable({{"name", info.aid().name()},
              {"uuid", info.aid().uuid()},
              {"pid", absl::StrCat(info.aid().pid())},
              {"addresses", absl::StrJoin(info.accept_addrs(), ",")},
              {"parent", parent},
              {"modules", absl::StrJoin(info.enable_modules(), ",")},
              {"protocol", absl::StrCat(info.protocol_version())}});
  std::cout << "functions:\n";
  std::vector<std::vector<std::string>> rows;
  std::set<std::string> described;
  for (const auto& sig : info.signatures()) {
    described.insert(sig.name());
    rows.push_back({"  " + sig.name(),
                    sig.kind() == v1::FUNC_TYPE_CONTEXT ? "context"
                                                        : "function",
                    SignatureText(sig)});
  }
  for (const auto& f : info.functions()) {
    if (!described.count(f)) rows.push_back({"  " + f, "?", ""});
  }
  PrintTable(rows);
  std::cout << "children:\n";
  rows.clear();
  for (int i = 0; i < info.children_size(); ++i) {
    std::string addrs;
    if (i < info.child_addrs_size()) {
      addrs = absl::StrJoin(info.child_addrs(i).accept_addrs(), ",");
    }
    rows.push_back({"  " + info.children(i).name(), info.children(i).uuid(),
                    addrs});
  }
  PrintTable(rows);
  return kExitOk;
}

// Walks the tree below `t` through Info; returns the node as JSON, or
// prints it (indented by `depth`).
std::string TreeNode(const Target& t, const v1::Aid& expected, int depth,
                     std::set<std::string>* seen) {
  const std::string indent(2 * depth, ' ');
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ActorInfo info;
  grpc::Status s = ActorStub(t.addr)->Info(&ctx, v1::InfoRequest(), &info);
  if (!s.ok()) {
    if (depth == 0) FailRpc(absl::StrCat("Info of ", t.label), s);
    const std::string why = absl::StrCat("unreachable: ", s.error_message());
    if (!Json()) {
      std::cout << indent << expected.name() << "  " << expected.uuid()
                << "  " << t.addr.ToString() << "  (" << why << ")\n";
    }
    return absl::StrCat("{\"aid\":", ToJson(expected), ",\"addr\":",
                        JsonString(t.addr.ToString()),
                        ",\"error\":", JsonString(why), "}");
  }
  if (!Json()) {
    std::cout << indent << info.aid().name() << "  " << info.aid().uuid()
              << "  " << absl::StrJoin(info.accept_addrs(), ",") << "\n";
  }
  std::vector<std::string> children;
  if (seen->insert(info.aid().uuid()).second) {
    for (const v1::ChildAddrs& c : info.child_addrs()) {
      std::optional<discovery::Address> addr = Preferred(c.accept_addrs());
      if (!addr) continue;
      children.push_back(TreeNode({DescribeAid(c.aid()), *addr}, c.aid(),
                                  depth + 1, seen));
    }
  }
  return absl::StrCat("{\"aid\":", ToJson(info.aid()), ",\"accept_addrs\":[",
                      absl::StrJoin(info.accept_addrs(), ",",
                                    [](std::string* out, const std::string& a) {
                                      absl::StrAppend(out, JsonString(a));
                                    }),
                      "],\"children\":[", absl::StrJoin(children, ","), "]}");
}

int Tree(const std::string& text) {
  std::set<std::string> seen;
  std::string json = TreeNode(Resolve(text), v1::Aid(), 0, &seen);
  if (Json()) std::cout << json << "\n";
  return kExitOk;
}

int Stats(const std::string& text) {
  Target t = Resolve(text);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::ActorStats stats;
  grpc::Status s = ActorStub(t.addr)->Stats(&ctx, v1::StatsRequest(), &stats);
  if (!s.ok()) FailRpc(absl::StrCat("Stats of ", t.label), s);
  if (Json()) {
    std::cout << ToJson(stats) << "\n";
    return kExitOk;
  }
  PrintTable({{"actor", DescribeAid(stats.aid())},
              {"pid", absl::StrCat(stats.aid().pid())},
              {"running tasks",
               absl::StrCat(stats.running_tasks(), " of ", stats.max_tasks())},
              {"open dialogs", absl::StrCat(stats.open_dialogs())},
              {"overruns", absl::StrCat(stats.overruns())},
              {"threads", absl::StrCat(stats.threads())},
              {"rss", Bytes(stats.rss_bytes())},
              {"heap", Bytes(stats.heap_bytes())},
              {"children", absl::StrCat(stats.children())}});
  std::cout << "tasks:\n";
  std::vector<std::vector<std::string>> rows = {
      {"  CID", "FUNC", "CALLER", "KIND", "RECV QUEUE", "SEND QUEUE"}};
  for (const auto& task : stats.tasks()) {
    rows.push_back(
        {"  " + task.cid(), task.func(), task.caller().name(),
         task.dialog() ? "dialog" : "call",
         task.dialog() ? absl::StrCat(task.recv_queue(), "/",
                                      task.recv_capacity())
                       : "-",
         task.dialog() ? absl::StrCat(task.send_queue()) : "-"});
  }
  PrintTable(rows);
  return kExitOk;
}

v1::Msg StartMsg(const std::string& func, const std::string& json,
                 v1::FuncType expect) {
  if (func.find(':') == std::string::npos) {
    Fail(kExitUsage,
         absl::StrCat("function '", func, "' is not of the form ns:func"));
  }
  v1::Msg m;
  v1::Start* start = m.mutable_start();
  start->set_cid(discovery::NewUuid());
  start->set_func(func);
  *start->mutable_args() =
      json.empty() ? ParsePayload("null", "the argument")
                   : ParsePayload(json, "the argument");
  *start->mutable_caller() = Requester();
  start->set_expect(expect);
  start->set_no_ack(true);
  return m;
}

int PrintTerminal(const v1::Msg& m) {
  if (m.has_returned()) {
    const std::string v = PayloadJson(m.returned().payload());
    std::cout << (Json() ? absl::StrCat("{\"result\":", v, "}") : v) << "\n";
    return kExitOk;
  }
  if (m.has_error()) {
    if (Json()) {
      std::cout << "{\"error\":" << ToJson(m.error()) << "}\n";
    } else {
      std::cerr << "tractorctl: " << DescribeError(m.error()) << "\n";
    }
    return kExitRemoteError;
  }
  Fail(kExitRemoteError, "the actor answered with neither Return nor Error: " +
                             m.ShortDebugString());
}

int Call(const std::string& text, const std::string& func,
         const std::string& json) {
  v1::Msg request = StartMsg(func, json, v1::FUNC_TYPE_FUNCTION);
  Target t = Resolve(text);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::Msg reply;
  grpc::Status s = ActorStub(t.addr)->Call(&ctx, request, &reply);
  if (!s.ok()) {
    // ActorTooBusy comes as a status whose details hold the Error.
    v1::Msg boxed;
    if (!s.error_details().empty() &&
        boxed.mutable_error()->ParseFromString(s.error_details())) {
      return PrintTerminal(boxed);
    }
    FailRpc(absl::StrCat("Call of ", func, " on ", t.label), s);
  }
  return PrintTerminal(reply);
}

// Runs `fn` once `deadline` passes unless `Disarm()` came first.
class Watchdog {
 public:
  Watchdog(absl::Time deadline, std::function<void()> fn)
      : thread_([this, deadline, fn] {
          std::unique_lock<std::mutex> lk(mu_);
          if (!cv_.wait_until(lk, absl::ToChronoTime(deadline),
                              [this] { return disarmed_; })) {
            fired_ = true;
            lk.unlock();
            fn();
          }
        }) {}
  ~Watchdog() { Stop(); }
  // Disarms the watchdog and joins its thread (also before an exit that
  // runs no destructors: a finished thread nobody joined is a leak).
  void Stop() {
    Disarm();
    if (thread_.joinable()) thread_.join();
  }
  void Disarm() {
    std::lock_guard<std::mutex> lk(mu_);
    disarmed_ = true;
    cv_.notify_all();
  }
  bool fired() {
    std::lock_guard<std::mutex> lk(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// Prints `message` (if any) as main() would and exits with `code` at once,
// running no destructors.
[[noreturn]] void ExitNow(int code, const std::string& message) {
  if (!message.empty()) {
    std::cerr << "tractorctl: " << message << "\n";
    if (code == kExitUsage) {
      std::cerr << "run 'tractorctl --help' for the commands and flags\n";
    }
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  _exit(code);
}

void PrintLine(const std::string& line) {
  std::cout << line << "\n" << std::flush;
}

int Stream(const std::string& text, const std::string& func,
           const std::string& json) {
  v1::Msg start = StartMsg(func, json, v1::FUNC_TYPE_CONTEXT);
  Target t = Resolve(text);
  auto stub = ActorStub(t.addr);
  grpc::ClientContext ctx;
  auto rw = stub->Open(&ctx);
  Watchdog first_answer(Deadline(), [&ctx] { ctx.TryCancel(); });

  // Writes from the stdin thread and the end of the dialog are serialized;
  // nothing is written once the dialog ended.
  std::mutex write_mu;
  bool ended = false;
  std::string bad_input;  // guarded by write_mu
  auto write = [&](const v1::Msg& m) {
    std::lock_guard<std::mutex> lk(write_mu);
    return !ended && rw->Write(m);
  };
  write(start);

  std::thread input;
  int code = -1;
  v1::Msg m;
  while (code < 0 && rw->Read(&m)) {
    first_answer.Disarm();
    switch (m.kind_case()) {
      case v1::Msg::kStarted:
        PrintLine(absl::StrCat("{\"started\":",
                               PayloadJson(m.started().payload()), "}"));
        // Each stdin line is an item; EOF closes this side (Stop).
        input = std::thread([&] {
          std::string line;
          int n = 0;
          while (std::getline(std::cin, line)) {
            ++n;
            if (absl::StripAsciiWhitespace(line).empty()) continue;
            v1::Msg item;
            if (!JsonStringToMessage(line,
                                     item.mutable_yielded()
                                         ->mutable_payload()
                                         ->mutable_value())
                     .ok()) {
              {
                std::lock_guard<std::mutex> lk(write_mu);
                bad_input = absl::StrCat("stdin line ", n, " is not JSON: ",
                                         line);
              }
              ctx.TryCancel();
              return;
            }
            if (!write(item)) return;
          }
          v1::Msg stop;
          stop.mutable_stop();
          std::lock_guard<std::mutex> lk(write_mu);
          if (!ended) {
            rw->Write(stop);
            rw->WritesDone();
          }
        });
        input.detach();
        break;
      case v1::Msg::kYielded:
        PrintLine(absl::StrCat("{\"yield\":",
                               PayloadJson(m.yielded().payload()), "}"));
        break;
      case v1::Msg::kBatch:
        for (const auto& y : m.batch().items()) {
          PrintLine(absl::StrCat("{\"yield\":", PayloadJson(y.payload()), "}"));
        }
        break;
      case v1::Msg::kReturned:
        PrintLine(absl::StrCat("{\"result\":",
                               PayloadJson(m.returned().payload()), "}"));
        code = kExitOk;
        break;
      case v1::Msg::kError:
        PrintLine(absl::StrCat("{\"error\":", ToJson(m.error()), "}"));
        if (!Json()) std::cerr << "tractorctl: " << DescribeError(m.error())
                               << "\n";
        code = kExitRemoteError;
        break;
      default:  // StartAck, Stop: nothing to show
        break;
    }
  }
  std::string bad;
  {
    std::lock_guard<std::mutex> lk(write_mu);
    ended = true;
    bad = bad_input;
  }
  // The stdin thread may still run (blocked on a read, or just cancelling
  // the call): the process exits from here without unwinding what it uses.
  std::string message;
  if (code < 0) try {
    first_answer.Disarm();
    grpc::Status s = rw->Finish();
    if (!bad.empty()) Fail(kExitUsage, bad);
    if (first_answer.fired()) {
      Fail(kExitUnavailable,
           absl::StrCat(t.label, ": no answer to Start within ",
                        absl::FormatDuration(absl::GetFlag(FLAGS_timeout))));
    }
    if (s.ok()) {
      Fail(kExitRemoteError, absl::StrCat(t.label,
                                          ": the dialog ended without a "
                                          "result"));
    }
    FailRpc(absl::StrCat("Open of ", func, " on ", t.label), s);
  } catch (const Exit& e) {
    code = e.code;
    message = e.message;
  }
  // The watchdog is disarmed: join it. The stdin thread cannot be joined
  // (it may be blocked on a read): it is let go.
  first_answer.Stop();
  if (input.joinable()) input.detach();
  ExitNow(code, message);
}

// Presents the mesh secret (--secret_file, else TRACTOR_SECRET) on a
// control call: actors honour CancelActor and CancelTask only from members
// of the mesh (docs/security.md).
void AddSecret(grpc::ClientContext* ctx) {
  std::string secret;
  const std::string file = absl::GetFlag(FLAGS_secret_file);
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) Fail(kExitUsage, absl::StrCat("cannot read --secret_file ", file));
    std::getline(in, secret);
  } else if (const char* env = std::getenv("TRACTOR_SECRET")) {
    secret = env;
  }
  secret = std::string(absl::StripAsciiWhitespace(secret));
  if (!secret.empty()) ctx->AddMetadata("tractor-secret", secret);
}

int Cancel(const std::string& text) {
  Target t = Resolve(text);
  auto stub = ActorStub(t.addr);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  AddSecret(&ctx);
  const std::string cid = absl::GetFlag(FLAGS_task);
  if (cid.empty()) {
    v1::CancelActorRequest req;
    *req.mutable_requester() = Requester();
    v1::CancelActorReply reply;
    grpc::Status s = stub->CancelActor(&ctx, req, &reply);
    if (!s.ok()) FailRpc(absl::StrCat("CancelActor of ", t.label), s);
    if (Json()) {
      std::cout << ToJson(reply) << "\n";
    } else {
      std::cout << "cancelled " << t.label
                << (reply.ok() ? "" : " (some tasks had not finished)")
                << "\n";
    }
    return kExitOk;
  }
  v1::CancelTaskRequest req;
  req.set_cid(cid);
  *req.mutable_requester() = Requester();
  v1::CancelTaskReply reply;
  grpc::Status s = stub->CancelTask(&ctx, req, &reply);
  if (!s.ok()) FailRpc(absl::StrCat("CancelTask on ", t.label), s);
  if (Json()) std::cout << ToJson(reply) << "\n";
  if (!reply.found()) {
    Fail(kExitUnavailable,
         absl::StrCat("no task ", cid, " is running on ", t.label));
  }
  if (!Json()) std::cout << "cancelled task " << cid << " on " << t.label << "\n";
  return kExitOk;
}

const char* KindName(v1::WatchEvent::Kind k) {
  switch (k) {
    case v1::WatchEvent::ADDED:
      return "ADDED";
    case v1::WatchEvent::REMOVED:
      return "REMOVED";
    case v1::WatchEvent::EXPIRED:
      return "EXPIRED";
    default:
      return "UNKNOWN";
  }
}

int Watch() {
  const int limit = absl::GetFlag(FLAGS_events);
  if (limit < 0) Fail(kExitUsage, "--events must not be negative");
  std::vector<std::string> errors;
  for (Registry& r : Registries()) {
    grpc::ClientContext ctx;
    auto reader = r.stub->Watch(&ctx, v1::WatchRequest());
    Watchdog first_event(Deadline(), [&ctx] { ctx.TryCancel(); });
    v1::WatchEvent ev;
    int count = 0;
    while (reader->Read(&ev)) {
      first_event.Disarm();
      if (Json()) {
        PrintLine(ToJson(ev));
      } else {
        PrintLine(absl::StrCat(KindName(ev.kind()), "  ",
                               ev.registration().aid().name(), "  ",
                               ev.registration().aid().uuid(), "  ",
                               absl::StrJoin(ev.registration().addrs(), ",")));
      }
      if (limit > 0 && ++count >= limit) {
        ctx.TryCancel();
        reader->Finish();
        return kExitOk;
      }
    }
    first_event.Disarm();
    grpc::Status s = reader->Finish();
    if (count > 0 || s.ok()) {
      // The registrar ended the stream (it is shutting down).
      Fail(kExitUnavailable,
           absl::StrCat(r.addr, ": the watch ended: ",
                        s.ok() ? "registrar closed it" : s.error_message()));
    }
    errors.push_back(absl::StrCat(
        r.addr, ": ",
        first_event.fired() ? "no answer in time" : s.error_message()));
  }
  Fail(kExitUnavailable, absl::StrCat("no registry answered (",
                                      absl::StrJoin(errors, "; "), ")"));
}

// Sets the tractorctl flags from `argv` (anywhere before "--") and returns
// the other arguments. Flags are absl flags; parsing them here keeps a bad
// one a usage error (status 2).
std::vector<std::string> ParseArgs(int argc, char** argv) {
  std::vector<std::string> positional;
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positional || !absl::StartsWith(arg, "--")) {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    if (arg == "--help" || arg == "--helpfull") {
      std::cout << kUsage;
      std::exit(kExitOk);
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr ||
        !absl::StrContains(flag->Filename(), "tractorctl")) {
      Fail(kExitUsage, absl::StrCat("unknown flag --", name));
    }
    if (flag->IsOfType<bool>()) {
      if (!has_value) value = negated ? "false" : "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        Fail(kExitUsage, absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      Fail(kExitUsage, absl::StrCat("--", name, ": ", error));
    }
  }
  if (absl::GetFlag(FLAGS_timeout) <= absl::ZeroDuration()) {
    Fail(kExitUsage, "--timeout must be positive");
  }
  return positional;
}

int Run(int argc, char** argv) {
  std::vector<std::string> args = ParseArgs(argc, argv);
  if (args.empty()) Fail(kExitUsage, "no command given");
  const std::string cmd = args[0];
  auto want = [&](size_t min, size_t max, const char* form) {
    if (args.size() - 1 < min || args.size() - 1 > max) {
      Fail(kExitUsage, absl::StrCat("usage: tractorctl ", form));
    }
  };
  if (cmd != "cancel" && !absl::GetFlag(FLAGS_task).empty()) {
    Fail(kExitUsage, "--task is for cancel only");
  }
  if (cmd == "ls") {
    want(0, 0, "ls");
    return Ls();
  }
  if (cmd == "find") {
    want(1, 1, "find NAME");
    return Find(args[1]);
  }
  if (cmd == "info") {
    want(1, 1, "info NAME|ADDR");
    return Info(args[1]);
  }
  if (cmd == "tree") {
    want(1, 1, "tree NAME|ADDR");
    return Tree(args[1]);
  }
  if (cmd == "watch") {
    want(0, 0, "watch [--events N]");
    return Watch();
  }
  if (cmd == "stats") {
    want(1, 1, "stats NAME|ADDR");
    return Stats(args[1]);
  }
  if (cmd == "call") {
    want(2, 3, "call NAME|ADDR ns:func [JSON]");
    return Call(args[1], args[2], args.size() > 3 ? args[3] : "");
  }
  if (cmd == "stream") {
    want(2, 3, "stream NAME|ADDR ns:func [JSON]");
    return Stream(args[1], args[2], args.size() > 3 ? args[3] : "");
  }
  if (cmd == "cancel") {
    want(1, 1, "cancel NAME|ADDR [--task CID]");
    return Cancel(args[1]);
  }
  Fail(kExitUsage, absl::StrCat("unknown command '", cmd, "'"));
}

}  // namespace
}  // namespace tractor::ctl

int main(int argc, char** argv) {
  try {
    return tractor::ctl::Run(argc, argv);
  } catch (const tractor::ctl::Exit& e) {
    std::cerr << "tractorctl: " << e.message << "\n";
    if (e.code == tractor::ctl::kExitUsage) {
      std::cerr << "run 'tractorctl --help' for the commands and flags\n";
    }
    return e.code;
  }
}
