// SPDX-License-Identifier: AGPL-3.0-or-later
// The benchmark suite: each row runs a raw gRPC baseline (same library, same
// build flags, loopback TCP or a unix socket) and the same job through the
// actor runtime, with raw and ours rounds interleaved so that machine drift
// (and other load on the machine) hits both alike. Rows 1-4 measure the raw
// side on both of gRPC's APIs, sync and callback, and compare ours with the
// faster one. See README.md for the rows and the latest table.
//
//   bazel run -c opt //tools/bench -- [--quick] [--json out.json]
//       [--raw_server PATH] [--only 1,3,...] [--side both|raw|ours]
//
// absl flags: `--flag=value` or `--flag value`; --helpfull lists them.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actor/cancel.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/payload.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "bench.grpc.pb.h"
#include "discovery/discovery.h"
#include "discovery/listen.h"
#include "grpcpp/grpcpp.h"
#include "registrar/registrar_service.h"
#include "tools/bench/raw_process.h"
#include "devx/throw_trace.h"
#include "tools/bench/registry_rows.h"
#include "tools/bench/report.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

ABSL_FLAG(bool, quick, false,
          "a short run (seconds, not minutes): fewer rounds, smaller sizes");
ABSL_FLAG(std::string, json, "", "also write the results as JSON to FILE");
ABSL_FLAG(std::string, raw_server, "",
          "path of the raw_server binary (default: next to the bench)");
ABSL_FLAG(std::vector<std::string>, only, {},
          "run only these rows, comma-separated ids (3 selects 3.64.bp etc.; "
          "6 selects 6 and 6b)");
ABSL_FLAG(std::string, tls, "",
          "run everything in mutual TLS with DIR/ca.pem, DIR/node.pem and "
          "DIR/node.key (tests/make_test_pki.sh DIR makes them); row ids get "
          ".mtls");
ABSL_FLAG(std::string, throughput_cpus, "split",
          "where row 3's processes run: split (the bench process, the client "
          "of both sides, on one half of its CPUs, the raw servers and the "
          "server actor on the other half) or any (wherever the scheduler "
          "puts them)");
ABSL_FLAG(int, rounds_scale, 1,
          "multiply the rounds of the latency rows 1, 2 and 4 (with --side, "
          "a long steady run to profile; 1 for the published figures)");
ABSL_FLAG(std::string, side, "both",
          "both, raw, raw_sync or ours: run one side of every row alone (for "
          "profiling); raw_sync is the raw side without the callback-API "
          "variants of rows 1, 2 and 4");

namespace tractor::bench {
namespace {

namespace pb = ::tractor::bench::v1;
using Clock = std::chrono::steady_clock;

// --tls DIR: the whole run in mutual TLS (the root actor's RootOptions.tls,
// the raw servers' --tls), with DIR/ca.pem, DIR/node.pem and DIR/node.key.
std::string g_tls_dir;

std::string ReadPem(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Credentials of the raw side's client channels: the same TLS settings as
// the runtime's (the CA, and the node's certificate as client certificate).
std::shared_ptr<grpc::ChannelCredentials> RawCredentials() {
  if (g_tls_dir.empty()) return grpc::InsecureChannelCredentials();
  static const auto* credentials = [] {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadPem(g_tls_dir + "/ca.pem");
    o.pem_cert_chain = ReadPem(g_tls_dir + "/node.pem");
    o.pem_private_key = ReadPem(g_tls_dir + "/node.key");
    return new std::shared_ptr<grpc::ChannelCredentials>(
        grpc::SslCredentials(o));
  }();
  return *credentials;
}

// raw_server's arguments, with --tls when the run is in TLS.
std::vector<std::string> RawArgs(std::vector<std::string> args) {
  if (!g_tls_dir.empty()) args.push_back("--tls=" + g_tls_dir);
  return args;
}

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}
double MillisSince(Clock::time_point t0) { return MicrosSince(t0) / 1e3; }
double SecondsSince(Clock::time_point t0) { return MicrosSince(t0) / 1e6; }

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what);
}

// ---------------------------------------------------------------------------
// Endpoints the child actors serve (namespace "bench"). Every child is this
// binary re-executed, so they are registered there too.

// Call round trip: returns its argument.
Payload Echo(const Payload& p) { return p; }
TRACTOR_EXPORT("bench:echo", Echo);

// Ping-pong: answers every stream item with itself; returns the count.
int64_t EchoStream(Context& ctx) {
  ctx.Started();
  MsgStream stream = ctx.OpenStream();
  int64_t n = 0;
  while (auto item = stream.Receive()) {
    stream.Send(*item);
    ++n;
  }
  return n;
}
TRACTOR_EXPORT("bench:echo_stream", EchoStream);

// The TCP address this actor accepts on: the `server` actor also accepts on
// a unix socket, which the nursery's portal prefers.
std::string TcpAddr() {
  for (const auto& a : AcceptAddrs()) {
    if (a.rfind("unix:", 0) != 0) return a;
  }
  throw std::runtime_error("this actor accepts on no TCP address");
}
TRACTOR_EXPORT("bench:tcp_addr", TcpAddr);

// Dialog open: reports Started and returns at once.
void Open(Context& ctx) { ctx.Started(); }
TRACTOR_EXPORT("bench:open", Open);

// One-way throughput and fan-in: counts the items of the caller's stream.
// `args`: {"policy": OverrunPolicy as a number, "buf": queue capacity}: the
// callee sets its queue itself, so the row does not depend on how the
// caller's ContextOptions::callee_stream reaches it.
int64_t Sink(Context& ctx, const Payload& args) {
  StreamOptions options;
  options.overrun = static_cast<OverrunPolicy>(args["policy"].AsInt());
  options.msg_buffer_size = static_cast<size_t>(args["buf"].AsInt());
  ctx.Started();
  MsgStream stream = ctx.OpenStream(options);
  int64_t n = 0;
  while (stream.Receive()) ++n;
  return n;
}
TRACTOR_EXPORT("bench:sink", Sink);

// Fan-in from many actors: connects to the collector actor named in `args`
// ({"addr", "uuid", "name", "n", "size"}), streams `n` items of `size` bytes
// into its bench:sink and returns the collector's count.
int64_t Push(const Payload& args) {
  ::tractor::v1::Aid collector;
  collector.set_name(args["name"].AsString());
  collector.set_uuid(args["uuid"].AsString());
  Portal portal = Portal::Connect(args["addr"].AsString(), collector);
  const int64_t n = args["n"].AsInt();
  const Payload item = Payload::Raw(std::string(args["size"].AsInt(), 'x'));
  const Payload sink_args = Payload::Object(
      {{"policy", static_cast<int>(OverrunPolicy::kBackpressure)},
       {"buf", 64}});
  Payload count = portal.OpenContext(
      "bench:sink", sink_args, [&](Context& ctx, const Payload&) {
        MsgStream stream = ctx.OpenStream();
        for (int64_t i = 0; i < n; ++i) stream.Send(item);
        stream.Close();
      });
  return count.AsInt();
}
TRACTOR_EXPORT("bench:push", Push);

constexpr int kTreeDepth = 3;
const ActorOptions kBenchNs = {.enable_modules = {"bench"}};

// Tree failure: a level of the tree, with an idle sibling and a child that
// goes one level deeper; the leaf (depth kTreeDepth) fails.
void Tree(int64_t depth) {
  OpenNursery([&](ActorNursery& an) {
    an.StartActor(absl::StrCat("idle", depth + 1), kBenchNs);
    if (depth + 1 >= kTreeDepth) {
      an.RunInActor("leaf", "bench:fail");
    } else {
      an.RunInActor(absl::StrCat("d", depth + 1), "bench:tree",
                    Payload(depth + 1));
    }
  });
}
TRACTOR_EXPORT("bench:tree", Tree);

constexpr char kFailStamp[] = "bench leaf failure at t_ns=";

void LeafFail() {
  throw std::runtime_error(
      absl::StrCat(kFailStamp, absl::ToUnixNanos(absl::Now())));
}
TRACTOR_EXPORT("bench:fail", LeafFail);

// ---------------------------------------------------------------------------
// The plan: how much each row does, per mode.

struct Plan {
  int call_rounds, call_iters;
  int pp_rounds, pp_iters;
  int tp_rounds, tp_small_msgs, tp_large_msgs;
  int open_rounds, open_iters;
  int spawn_pairs;
  int fanin_streams, fanin_rounds, fanin_msgs;
  int fanin_procs, fanin_proc_rounds, fanin_proc_msgs;
  int teardown_children, teardown_reps;
  int tree_reps;
  int mem_samples;
  int lookup_rounds, lookup_iters;
};

Plan FullPlan() {
  Plan p;
  p.call_rounds = 16, p.call_iters = 300;
  p.pp_rounds = 16, p.pp_iters = 300;
  p.tp_rounds = 8, p.tp_small_msgs = 60000, p.tp_large_msgs = 15000;
  p.open_rounds = 16, p.open_iters = 60;
  p.spawn_pairs = 16;
  p.fanin_streams = 64, p.fanin_rounds = 8, p.fanin_msgs = 500;
  p.fanin_procs = 64, p.fanin_proc_rounds = 8, p.fanin_proc_msgs = 500;
  p.teardown_children = 25, p.teardown_reps = 5;
  p.tree_reps = 5;
  p.mem_samples = 3;
  p.lookup_rounds = 16, p.lookup_iters = 150;
  return p;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

Plan QuickPlan() {
  Plan p;
  p.call_rounds = 4, p.call_iters = 50;
  p.pp_rounds = 4, p.pp_iters = 50;
  p.tp_rounds = 2, p.tp_small_msgs = 4000, p.tp_large_msgs = 1000;
  p.open_rounds = 4, p.open_iters = 20;
  p.spawn_pairs = 3;
  p.fanin_streams = 64, p.fanin_rounds = 2, p.fanin_msgs = 50;
  p.fanin_procs = 64, p.fanin_proc_rounds = 2, p.fanin_proc_msgs = 50;
  // A sanitized actor needs several times the CPU and memory to start: 64
  // of them starve the collector they link to on a small machine. The quick
  // run checks that every row runs, not its figures; the row's name says
  // how many actors it ran.
  if (kSanitized) p.fanin_procs = 16;
  p.teardown_children = 25, p.teardown_reps = 1;
  p.tree_reps = 1;
  p.mem_samples = 1;
  p.lookup_rounds = 4, p.lookup_iters = 20;
  return p;
}

// One transport's ends of the long-lived servers: the raw server on each
// gRPC API and the `server` actor.
struct Endpoints {
  bool uds = false;
  // Why this transport cannot be measured; empty when it can.
  std::string unavailable;
  // Sync client stub to the sync-API raw server.
  std::unique_ptr<pb::Bench::Stub> raw_sync;
  // Stub to the callback-API raw server. Rows 1-4 call it with the callback
  // client API; rows 6 and 6b stream into it with the sync client API.
  std::unique_ptr<pb::Bench::Stub> raw_callback;
  Portal actor;

  // Throws (the row becomes n/a) when the transport is unavailable.
  void Check() const {
    if (!unavailable.empty()) Fail(unavailable);
  }
  // Appended to row names.
  std::string label() const { return uds ? " over UDS" : ""; }
};

// What every row may use: the long-lived raw servers (one process per gRPC
// API, each serving loopback TCP and a unix socket) and the `server` actor
// (one process, both transports), idle while the other side runs.
struct Env {
  Plan plan;
  std::string raw_server_path;
  // The server processes: both raw servers and the `server` actor.
  std::vector<pid_t> server_pids;
  bool split_cpus = true;  // --throughput_cpus=split
  Endpoints tcp;
  Endpoints uds;
};

// Which sides run (--side, for profiling one side alone).
enum class Side { kBoth, kRaw, kRawSync, kOurs };
Side g_side = Side::kBoth;

// One side of a row: a raw baseline or ours. `fn(record)` runs one round
// and keeps its samples only when `record` is set.
struct Variant {
  bool raw;
  std::function<void(bool record)> fn;
  bool callback = false;  // a raw variant on gRPC's callback API
};
Variant Raw(std::function<void(bool)> fn) { return {true, std::move(fn)}; }
Variant RawCallback(std::function<void(bool)> fn) {
  return {true, std::move(fn), true};
}
Variant Ours(std::function<void(bool)> fn) { return {false, std::move(fn)}; }

// Runs every variant once as a warm-up (dropped), then `rounds` rounds of
// all variants: forward order on even rounds, reverse order on odd ones
// (A B, B A, ...), so raw and ours alternate and drift hits both alike.
void Interleave(int rounds, const std::vector<Variant>& all) {
  std::vector<const Variant*> variants;
  for (const auto& v : all) {
    const bool run = g_side == Side::kBoth ||
                     (g_side == Side::kOurs && !v.raw) ||
                     (g_side == Side::kRaw && v.raw) ||
                     (g_side == Side::kRawSync && v.raw && !v.callback);
    if (run) variants.push_back(&v);
  }
  for (const auto* v : variants) v->fn(false);
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      for (size_t i = 0; i < variants.size(); ++i) variants[i]->fn(true);
    } else {
      for (size_t i = variants.size(); i-- > 0;) variants[i]->fn(true);
    }
  }
}

// Summaries of both sides; a side that did not run (--side) stays empty.
void SetStats(Row& row, const std::vector<double>& raw,
              const std::vector<double>& ours, bool with_p99) {
  if (!raw.empty()) row.raw = Summarize(raw, with_p99);
  if (!ours.empty()) row.ours = Summarize(ours, with_p99);
}

Target RatioMax(double b) { return {Target::Kind::kRatioMax, b}; }
Target RatioMin(double b) { return {Target::Kind::kRatioMin, b}; }
Target AbsMax(double b) { return {Target::Kind::kAbsMax, b}; }

// ---------------------------------------------------------------------------
// Rows 1-4: the raw side on both gRPC APIs.

// Waits for one callback-API completion.
class Completion {
 public:
  void Done(grpc::Status st) {
    // Notified under the lock: the waiter may destroy this object as soon
    // as it sees `done_`, which it cannot before the lock is released.
    std::lock_guard<std::mutex> lk(mu_);
    status_ = std::move(st);
    done_ = true;
    cv_.notify_one();
  }
  grpc::Status Wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    return status_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  grpc::Status status_;
};

// Fills `best` with ours against the faster raw API ("best raw": the lower
// median for latency rows, the higher for throughput rows) and `other` with
// ours against the slower one. A side that did not run (--side) stays
// empty; a tie goes to sync.
void SetBestRaw(Row& best, Row& other, const std::vector<double>& sync,
                const std::vector<double>& callback,
                const std::vector<double>& ours, bool latency) {
  std::optional<Stat> s, c;
  if (!sync.empty()) s = Summarize(sync, latency);
  if (!callback.empty()) c = Summarize(callback, latency);
  if (s || c) {
    bool sync_wins = !c || (s && (latency ? s->median <= c->median
                                          : s->median >= c->median));
    best.raw = sync_wins ? s : c;
    best.raw_api = sync_wins ? "sync" : "callback";
    best.raw_best = true;
    other.raw = sync_wins ? c : s;
    if (other.raw) other.raw_api = sync_wins ? "callback" : "sync";
  }
  if (!ours.empty()) best.ours = other.ours = Summarize(ours, latency);
}

// A PingPong call on the callback API, driven by the calling thread one
// round trip at a time: the write and the read are started together, and
// the round trip ends when both have completed (as the sync client's Write
// and Read do).
class PingPongClient final
    : public grpc::ClientBidiReactor<pb::Blob, pb::Blob> {
 public:
  explicit PingPongClient(pb::Bench::Stub* stub) {
    stub->async()->PingPong(&ctx_, this);
    AddHold();  // the call cannot end before Finish, whatever fails
    StartCall();
  }
  // Sends `ping` and reads the answer into `pong`; false if the stream
  // broke.
  bool RoundTrip(const pb::Blob& ping, pb::Blob* pong) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      pending_ = 2;
      ok_ = true;
    }
    StartWrite(&ping);
    StartRead(pong);
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return pending_ == 0; });
    return ok_;
  }
  // Half-closes and waits for the end of the call.
  grpc::Status Finish() {
    StartWritesDone();
    RemoveHold();
    return done_.Wait();
  }
  void OnWriteDone(bool ok) override { Complete(ok); }
  void OnReadDone(bool ok) override { Complete(ok); }
  void OnDone(const grpc::Status& st) override { done_.Done(st); }

 private:
  void Complete(bool ok) {
    std::lock_guard<std::mutex> lk(mu_);
    ok_ = ok_ && ok;
    if (--pending_ == 0) cv_.notify_one();
  }

  grpc::ClientContext ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  int pending_ = 0;
  bool ok_ = true;
  Completion done_;
};

// Row 1 (`id` "1", or "1.uds" over the unix socket): call round trip.
std::vector<Row> CallRoundTrip(Env& env, Endpoints& ep, const std::string& id) {
  ep.Check();
  Row row{.id = id,
          .name = absl::StrCat("call round trip", ep.label(), ", 16 B payload"),
          .unit = "us"};
  Row ref{.id = id + ".ref",
          .name = absl::StrCat("call round trip", ep.label(),
                               ", other raw API (ref)"),
          .unit = "us"};
  row.target = RatioMax(1.2);
  row.target.p99_bound = 1.5;
  const std::string data(16, 'x');
  pb::Blob req;
  req.set_data(data);
  const Payload arg = Payload::Raw(data);
  const int iters = env.plan.call_iters;
  std::vector<double> sync, callback, ours;
  Interleave(env.plan.call_rounds, {
      Raw([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          grpc::ClientContext ctx;
          pb::Blob reply;
          grpc::Status st = ep.raw_sync->Echo(&ctx, req, &reply);
          double us = MicrosSince(t0);
          if (!st.ok() || reply.data() != data) {
            Fail("raw sync Echo failed: " + st.error_message());
          }
          if (record) sync.push_back(us);
        }
      }),
      RawCallback([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          grpc::ClientContext ctx;
          pb::Blob reply;
          Completion done;
          ep.raw_callback->async()->Echo(
              &ctx, &req, &reply, [&done](grpc::Status st) { done.Done(st); });
          grpc::Status st = done.Wait();
          double us = MicrosSince(t0);
          if (!st.ok() || reply.data() != data) {
            Fail("raw callback Echo failed: " + st.error_message());
          }
          if (record) callback.push_back(us);
        }
      }),
      Ours([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          Payload r = ep.actor.Run("bench:echo", arg);
          double us = MicrosSince(t0);
          if (!r.IsRaw() || r.AsRaw() != data) Fail("bench:echo answered wrong");
          if (record) ours.push_back(us);
        }
      }),
  });
  SetBestRaw(row, ref, sync, callback, ours, /*latency=*/true);
  row.note = absl::StrCat(
      "raw: unary Echo, sync client on the sync server or callback client on "
      "the callback server (waiting thread woken), whichever is faster; "
      "ours: Portal::Run(\"bench:echo\") (one unary Actor.Call)",
      ep.uds ? "; both over a unix-domain socket" : "");
  ref.note = "reference: ours against the slower of the two raw APIs";
  return {row, ref};
}

// Row 2 (`id` "2", or "2.uds" over the unix socket): ping-pong on an open
// stream.
std::vector<Row> PingPong(Env& env, Endpoints& ep, const std::string& id) {
  ep.Check();
  Row row{.id = id,
          .name = absl::StrCat("ping-pong round trip on an open stream",
                               ep.label()),
          .unit = "us"};
  Row ref{.id = id + ".ref",
          .name =
              absl::StrCat("ping-pong", ep.label(), ", other raw API (ref)"),
          .unit = "us"};
  row.target = RatioMax(1.2);
  const std::string data(16, 'x');
  pb::Blob ping;
  ping.set_data(data);
  const Payload item = Payload::Raw(data);
  const int iters = env.plan.pp_iters;
  std::vector<double> sync, callback, ours;
  Interleave(env.plan.pp_rounds, {
      Raw([&](bool record) {
        grpc::ClientContext ctx;
        auto stream = ep.raw_sync->PingPong(&ctx);
        pb::Blob pong;
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          if (!stream->Write(ping) || !stream->Read(&pong)) {
            Fail("raw sync PingPong broke");
          }
          double us = MicrosSince(t0);
          if (record) sync.push_back(us);
        }
        stream->WritesDone();
        grpc::Status st = stream->Finish();
        if (!st.ok()) Fail("raw sync PingPong: " + st.error_message());
      }),
      RawCallback([&](bool record) {
        PingPongClient client(ep.raw_callback.get());
        pb::Blob pong;
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          bool ok = client.RoundTrip(ping, &pong);
          double us = MicrosSince(t0);
          if (!ok) {
            Fail("raw callback PingPong broke: " +
                 client.Finish().error_message());
          }
          if (record) callback.push_back(us);
        }
        grpc::Status st = client.Finish();
        if (!st.ok()) Fail("raw callback PingPong: " + st.error_message());
      }),
      Ours([&](bool record) {
        Payload n = ep.actor.OpenContext(
            "bench:echo_stream", Payload(),
            [&](Context& ctx, const Payload&) {
              MsgStream stream = ctx.OpenStream();
              for (int i = 0; i < iters; ++i) {
                auto t0 = Clock::now();
                stream.Send(item);
                auto pong = stream.Receive();
                double us = MicrosSince(t0);
                if (!pong) Fail("bench:echo_stream ended early");
                if (record) ours.push_back(us);
              }
              stream.Close();
            });
        if (n.AsInt() != iters) Fail("bench:echo_stream miscounted");
      }),
  });
  SetBestRaw(row, ref, sync, callback, ours, /*latency=*/true);
  row.note = absl::StrCat(
      "raw: bidi PingPong, sync Write+Read on the sync server or callback "
      "StartWrite+StartRead (waiting thread woken when both are done) on the "
      "callback server, whichever is faster; ours: MsgStream Send+Receive in "
      "OpenContext(\"bench:echo_stream\")",
      ep.uds ? "; both over a unix-domain socket" : "");
  ref.note = "reference: ours against the slower of the two raw APIs";
  return {row, ref};
}

// ---------------------------------------------------------------------------
// Row 3: one-way stream throughput.

// Sets the CPU affinity of every thread of `pid` (twice, for threads
// started meanwhile; a thread started later inherits its creator's mask).
// Returns false if `pid` has no thread left or one could not be set.
bool SetProcessAffinity(pid_t pid, const cpu_set_t& set) {
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  bool ok = true;
  int seen = 0;
  for (int pass = 0; pass < 2; ++pass) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return false;
    while (dirent* e = readdir(d)) {
      int tid = 0;
      if (!absl::SimpleAtoi(e->d_name, &tid) || tid <= 0) continue;
      ++seen;
      // A thread that ended meanwhile (ESRCH) is no failure.
      if (sched_setaffinity(tid, sizeof(set), &set) != 0 && errno != ESRCH) {
        ok = false;
      }
    }
    closedir(d);
  }
  return ok && seen > 0;
}

// For the duration of row 3: the bench process (the client of every
// variant) on one half of its CPUs, the server processes of both sides on
// the other half, so that a producer and its consumer never share a core by
// the scheduler's chance (which made a run's throughput bimodal: the one
// core's CPU per item, or the pipeline's rate on two). Restores the
// bench's mask on every process when it goes. `placement()` says what was
// done, for the rows' notes.
class SplitCpus {
 public:
  explicit SplitCpus(const Env& env) {
    if (!env.split_cpus) {
      placement_ = "processes placed by the scheduler (--throughput_cpus=any)";
      return;
    }
    if (sched_getaffinity(0, sizeof(all_), &all_) != 0) {
      placement_ = absl::StrCat("processes placed by the scheduler (",
                                "sched_getaffinity: ", std::strerror(errno),
                                ")");
      return;
    }
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &all_)) cpus.push_back(c);
    }
    if (cpus.size() < 2) {
      placement_ = "processes placed by the scheduler (one CPU)";
      return;
    }
    cpu_set_t client, server;
    CPU_ZERO(&client);
    CPU_ZERO(&server);
    const size_t half = cpus.size() / 2;
    for (size_t i = 0; i < cpus.size(); ++i) {
      CPU_SET(cpus[i], i < half ? &client : &server);
    }
    bool ok = SetProcessAffinity(getpid(), client);
    for (pid_t pid : env.server_pids) {
      ok = SetProcessAffinity(pid, server) && ok;
    }
    pids_ = env.server_pids;
    pinned_ = true;
    if (!ok) {
      Restore();
      placement_ = "processes placed by the scheduler (setting the CPU "
                   "affinity failed)";
      return;
    }
    placement_ = absl::StrCat("client process on CPU ", cpus[0],
                              half > 1 ? absl::StrCat("-", cpus[half - 1]) : "",
                              ", server processes on CPU ", cpus[half],
                              cpus.size() - half > 1
                                  ? absl::StrCat("-", cpus.back())
                                  : "");
  }
  ~SplitCpus() { Restore(); }
  SplitCpus(const SplitCpus&) = delete;
  SplitCpus& operator=(const SplitCpus&) = delete;
  const std::string& placement() const { return placement_; }

 private:
  void Restore() {
    if (!pinned_) return;
    pinned_ = false;
    SetProcessAffinity(getpid(), all_);
    for (pid_t pid : pids_) SetProcessAffinity(pid, all_);
  }

  cpu_set_t all_;
  std::vector<pid_t> pids_;
  bool pinned_ = false;
  std::string placement_;
};

// A client-streaming Sink call on the callback API: one write outstanding,
// every write corked, as the runtime's dialogs write.
class CorkedSinkWriter final : public grpc::ClientWriteReactor<pb::Blob> {
 public:
  CorkedSinkWriter(pb::Bench::Stub* stub, const pb::Blob& blob, int n)
      : blob_(blob), left_(n) {
    stub->async()->Sink(&ctx_, &count_, this);
    Next();
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (ok) Next();  // else OnDone follows
  }
  void OnDone(const grpc::Status& st) override { done_.Done(st); }
  // Returns the messages the server counted; throws on an RPC error.
  int64_t Wait() {
    grpc::Status st = done_.Wait();
    if (!st.ok()) Fail("raw callback Sink: " + st.error_message());
    return count_.messages();
  }

 private:
  void Next() {
    if (left_-- > 0) {
      StartWrite(&blob_, grpc::WriteOptions().set_buffer_hint());
    } else {
      StartWritesDone();
    }
  }

  grpc::ClientContext ctx_;
  pb::Count count_;
  const pb::Blob& blob_;
  int left_;
  Completion done_;
};

std::vector<Row> Throughput(Env& env, int size, int msgs) {
  Endpoints& ep = env.tcp;
  const std::string data(size, 'x');
  pb::Blob blob;
  blob.set_data(data);
  const Payload item = Payload::Raw(data);
  std::vector<double> plain, corked_sync, corked_callback, bp, err, unb;
  SplitCpus split(env);

  // A sync client streaming into the sync server.
  auto raw_run = [&](bool cork, std::vector<double>* out) {
    return [&, cork, out](bool record) {
      auto t0 = Clock::now();
      grpc::ClientContext ctx;
      pb::Count count;
      auto writer = ep.raw_sync->Sink(&ctx, &count);
      grpc::WriteOptions options;
      if (cork) options.set_buffer_hint();
      for (int i = 0; i < msgs; ++i) {
        if (!writer->Write(blob, options)) break;
      }
      writer->WritesDone();
      grpc::Status st = writer->Finish();
      double s = SecondsSince(t0);
      if (!st.ok() || count.messages() != msgs) {
        Fail(absl::StrCat("raw sync Sink got ", count.messages(), " of ", msgs,
                          ": ", st.error_message()));
      }
      if (record) out->push_back(msgs / s);
    };
  };
  auto ours_run = [&](OverrunPolicy policy, std::vector<double>* out) {
    return [&, policy, out](bool record) {
      StreamOptions so;
      so.overrun = policy;
      // kError: a queue big enough for the whole round, so nothing overruns.
      so.msg_buffer_size = policy == OverrunPolicy::kError ? msgs + 64 : 64;
      Payload args = Payload::Object(
          {{"policy", static_cast<int>(policy)},
           {"buf", static_cast<int64_t>(so.msg_buffer_size)}});
      auto t0 = Clock::now();
      Payload n = ep.actor.OpenContext(
          "bench:sink", args,
          [&](Context& ctx, const Payload&) {
            MsgStream stream = ctx.OpenStream();
            for (int i = 0; i < msgs; ++i) stream.Send(item);
            stream.Close();
          },
          ContextOptions{.callee_stream = so});
      double s = SecondsSince(t0);
      if (n.AsInt() != msgs) {
        Fail(absl::StrCat("bench:sink got ", n.AsInt(), " of ", msgs));
      }
      if (record) out->push_back(msgs / s);
    };
  };
  Interleave(env.plan.tp_rounds, {
      Raw(raw_run(false, &plain)),
      Ours(ours_run(OverrunPolicy::kBackpressure, &bp)),
      Raw(raw_run(true, &corked_sync)),
      Ours(ours_run(OverrunPolicy::kError, &err)),
      Ours(ours_run(OverrunPolicy::kUnbounded, &unb)),
      Raw([&](bool record) {
        auto t0 = Clock::now();
        CorkedSinkWriter writer(ep.raw_callback.get(), blob, msgs);
        int64_t n = writer.Wait();
        double s = SecondsSince(t0);
        if (n != msgs) Fail("raw callback Sink miscounted");
        if (record) corked_callback.push_back(msgs / s);
      }),
  });
  std::string sz = size >= 1024 ? absl::StrCat(size / 1024, " KiB")
                                 : absl::StrCat(size, " B");
  std::string id = absl::StrCat("3.", size);
  auto make = [&](const std::string& suffix, const std::string& name,
                  Target target) {
    Row r{.id = id + suffix, .name = name, .unit = "msg/s"};
    r.message_bytes = size;
    r.target = target;
    return r;
  };
  Row plain_row =
      make(".plain",
           absl::StrCat("stream ", sz, ": kBackpressure vs raw plain (ref)"),
           Target{});
  SetStats(plain_row, plain, bp, false);
  if (plain_row.raw) plain_row.raw_api = "sync";
  plain_row.note = absl::StrCat(
      msgs, " msgs per run; reference row: ratio vs the uncorked sync Write; ",
      split.placement());
  Row bp_row =
      make(".bp", absl::StrCat("stream ", sz, ": kBackpressure vs raw corked"),
           RatioMin(0.9));
  Row ref_row = make(
      ".ref",
      absl::StrCat("stream ", sz, ": kBackpressure, other raw API (ref)"),
      Target{});
  SetBestRaw(bp_row, ref_row, corked_sync, corked_callback, bp,
             /*latency=*/false);
  bp_row.note =
      "raw corked: sync client Write(m, buffer_hint) on the sync server, or "
      "callback client with one corked write outstanding (as the runtime "
      "writes) on the callback server, whichever is faster; " +
      split.placement();
  ref_row.note = "reference: kBackpressure against the slower raw API";
  // .err and .unb against the same best raw as .bp.
  Row err_row = make(
      ".err", absl::StrCat("stream ", sz, ": kError (big queue) vs raw corked"),
      RatioMin(0.9));
  Row unb_row = make(
      ".unb", absl::StrCat("stream ", sz, ": kUnbounded vs raw corked"),
      RatioMin(0.9));
  for (auto [r, ours] :
       {std::pair{&err_row, &err}, std::pair{&unb_row, &unb}}) {
    r->raw = bp_row.raw;
    r->raw_api = bp_row.raw_api;
    r->raw_best = bp_row.raw_best;
    if (!ours->empty()) r->ours = Summarize(*ours, false);
  }
  return {plain_row, bp_row, err_row, unb_row, ref_row};
}

// ---------------------------------------------------------------------------
// Row 4: dialog open latency.

std::vector<Row> DialogOpen(Env& env) {
  Endpoints& ep = env.tcp;
  Row row{.id = "4", .name = "dialog open (to first answer / Started)",
          .unit = "us"};
  Row ref{.id = "4.ref", .name = "dialog open, other raw API (ref)",
          .unit = "us"};
  row.target = RatioMax(1.3);
  pb::Blob ping;
  ping.set_data("x");
  const int iters = env.plan.open_iters;
  std::vector<double> sync, callback, ours;
  Interleave(env.plan.open_rounds, {
      Raw([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          grpc::ClientContext ctx;
          auto stream = ep.raw_sync->PingPong(&ctx);
          pb::Blob pong;
          if (!stream->Write(ping) || !stream->Read(&pong)) {
            Fail("raw sync PingPong broke");
          }
          double us = MicrosSince(t0);
          stream->WritesDone();
          stream->Finish();
          if (record) sync.push_back(us);
        }
      }),
      RawCallback([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          PingPongClient client(ep.raw_callback.get());
          pb::Blob pong;
          bool ok = client.RoundTrip(ping, &pong);
          double us = MicrosSince(t0);
          grpc::Status st = client.Finish();
          if (!ok) Fail("raw callback PingPong broke: " + st.error_message());
          if (record) callback.push_back(us);
        }
      }),
      Ours([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          double us = -1;
          auto t0 = Clock::now();
          ep.actor.OpenContext("bench:open", Payload(),
                               [&](Context&, const Payload&) {
                                 us = MicrosSince(t0);
                               });
          if (us < 0) Fail("OpenContext body never ran");
          if (record) ours.push_back(us);
        }
      }),
  });
  SetBestRaw(row, ref, sync, callback, ours, /*latency=*/true);
  row.note = "raw: new PingPong bidi stream + first message answered, sync "
             "client on the sync server or callback client on the callback "
             "server, whichever is faster; ours: OpenContext until its body "
             "is entered (Start, Started); stream close/Result not timed";
  ref.note = "reference: ours against the slower of the two raw APIs";
  return {row, ref};
}

// ---------------------------------------------------------------------------
// Row 5: spawn.

Row Spawn(Env& env) {
  Row row{.id = "5", .name = "spawn + first call answered", .unit = "ms"};
  row.target = RatioMax(1.25);
  pb::Blob req;
  req.set_data("x");
  const Payload arg = Payload::Raw("x");
  std::vector<double> raw, ours, ours_cancel;
  int n = 0;
  Interleave(env.plan.spawn_pairs, {
      Raw([&](bool record) {
        auto t0 = Clock::now();
        auto proc = RawServerProcess::Start(
            env.raw_server_path, RawArgs({"--api=callback", "--once"}));
        auto stub = pb::Bench::NewStub(
            grpc::CreateChannel(proc->addr(), RawCredentials()));
        grpc::ClientContext ctx;
        pb::Blob reply;
        grpc::Status st = stub->Echo(&ctx, req, &reply);
        double ms = MillisSince(t0);
        if (!st.ok()) Fail("raw_server --once: " + st.error_message());
        proc->WaitExit(2000);
        if (record) raw.push_back(ms);
      }),
      Ours([&](bool record) {
        OpenNursery([&](ActorNursery& an) {
          auto t0 = Clock::now();
          Portal p = an.StartActor(absl::StrCat("spawned", n++), kBenchNs);
          Payload r = p.Run("bench:echo", arg);
          double ms = MillisSince(t0);
          auto t1 = Clock::now();
          an.Cancel();
          if (record) {
            ours.push_back(ms);
            ours_cancel.push_back(MillisSince(t1));
          }
        });
      }),
  });
  SetStats(row, raw, ours, true);
  row.note = absl::StrFormat(
      "raw: fork+exec raw_server --api=callback --once, read its port, one "
      "sync Echo; ours: StartActor + first Run (cancel not timed: median "
      "%.1f ms)",
      Summarize(ours_cancel, false).median);
  return row;
}

// ---------------------------------------------------------------------------
// Row 6: fan-in.

// 64 (or `streams`) concurrent client streams into the raw server, corked.
// Returns messages per second.
double RawFanIn(Env& env, int streams, int msgs, const pb::Blob& blob) {
  std::atomic<int64_t> total{0};
  std::mutex mu;
  std::string error;
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&] {
      grpc::ClientContext ctx;
      pb::Count count;
      auto writer = env.tcp.raw_callback->Sink(&ctx, &count);
      grpc::WriteOptions options;
      options.set_buffer_hint();
      for (int i = 0; i < msgs; ++i) {
        if (!writer->Write(blob, options)) break;
      }
      writer->WritesDone();
      grpc::Status st = writer->Finish();
      if (!st.ok()) {
        std::lock_guard<std::mutex> lk(mu);
        error = st.error_message();
      }
      total += count.messages();
    });
  }
  for (auto& t : threads) t.join();
  double s = SecondsSince(t0);
  if (total != int64_t{streams} * msgs) {
    Fail(absl::StrCat("raw fan-in got ", total.load(), " of ", streams * msgs,
                      " ", error));
  }
  return total / s;
}

Row FanInStreams(Env& env) {
  const int streams = env.plan.fanin_streams, msgs = env.plan.fanin_msgs;
  Row row{.id = "6",
          .name = absl::StrCat("fan-in: ", streams, " streams into one actor"),
          .unit = "msg/s"};
  row.target = RatioMin(1.0);
  row.message_bytes = 64;
  const std::string data(64, 'x');
  pb::Blob blob;
  blob.set_data(data);
  const Payload item = Payload::Raw(data);
  const Payload args = Payload::Object(
      {{"policy", static_cast<int>(OverrunPolicy::kBackpressure)}, {"buf", 64}});
  std::vector<double> raw, ours;
  Interleave(env.plan.fanin_rounds, {
      Raw([&](bool record) {
        double rate = RawFanIn(env, streams, msgs, blob);
        if (record) raw.push_back(rate);
      }),
      Ours([&](bool record) {
        std::atomic<int64_t> total{0};
        auto t0 = Clock::now();
        TaskGroup::Open([&](TaskGroup& tg) {
          for (int s = 0; s < streams; ++s) {
            tg.Spawn([&] {
              Payload n = env.tcp.actor.OpenContext(
                  "bench:sink", args, [&](Context& ctx, const Payload&) {
                    MsgStream stream = ctx.OpenStream();
                    for (int i = 0; i < msgs; ++i) stream.Send(item);
                    stream.Close();
                  });
              total += n.AsInt();
            });
          }
        });
        double s = SecondsSince(t0);
        if (total != int64_t{streams} * msgs) Fail("fan-in miscounted");
        if (record) ours.push_back(total / s);
      }),
  });
  SetStats(row, raw, ours, false);
  row.note = absl::StrCat(
      "same topology both sides: one client process (raw: ", streams,
      " threads, corked sync Sink streams on one channel into the callback "
      "raw server; ours: ", streams,
      " root tasks, each an OpenContext stream) into one server process; ",
      msgs, " x 64 B per stream per round");
  return row;
}

Row FanInActors(Env& env) {
  const int procs = env.plan.fanin_procs, msgs = env.plan.fanin_proc_msgs;
  Row row{.id = "6b",
          .name = absl::StrCat("fan-in: ", procs, " actors into a collector actor"),
          .unit = "msg/s"};
  row.target = RatioMin(1.0);
  row.message_bytes = 64;
  pb::Blob blob;
  blob.set_data(std::string(64, 'x'));
  std::vector<double> raw, ours;
  double spawn_s = 0, cancel_s = 0;
  OpenNursery([&](ActorNursery& an) {
    auto t0 = Clock::now();
    Portal collector = an.StartActor("collector", kBenchNs);
    std::vector<Portal> producers(procs);
    TaskGroup::Open([&](TaskGroup& tg) {
      for (int i = 0; i < procs; ++i) {
        tg.Spawn([&, i] {
          producers[i] = an.StartActor(absl::StrCat("producer", i), kBenchNs);
        });
      }
    });
    spawn_s = SecondsSince(t0);
    const Payload args = Payload::Object({{"addr", collector.addr()},
                                          {"uuid", collector.aid().uuid()},
                                          {"name", collector.aid().name()},
                                          {"n", msgs},
                                          {"size", 64}});
    Interleave(env.plan.fanin_proc_rounds, {
        Raw([&](bool record) {
          double rate = RawFanIn(env, procs, msgs, blob);
          if (record) raw.push_back(rate);
        }),
        Ours([&](bool record) {
          std::atomic<int64_t> total{0};
          auto t0 = Clock::now();
          TaskGroup::Open([&](TaskGroup& tg) {
            for (int i = 0; i < procs; ++i) {
              tg.Spawn([&, i] {
                total += producers[i].Run("bench:push", args).AsInt();
              });
            }
          });
          double s = SecondsSince(t0);
          if (total != int64_t{procs} * msgs) Fail("actor fan-in miscounted");
          if (record) ours.push_back(total / s);
        }),
    });
    auto t1 = Clock::now();
    an.Cancel();
    cancel_s = SecondsSince(t1);
  });
  SetStats(row, raw, ours, false);
  row.note = absl::StrFormat(
      "ours: %d producer actors (processes) each Portal::Connect to a sibling "
      "collector actor and stream %d x 64 B into its bench:sink, started "
      "concurrently by %d root tasks (Run); raw: %d corked Sink streams from "
      "one process; spawning the %d took %.1f s, cancelling them %.1f s "
      "(not timed)",
      procs, msgs, procs, procs, procs + 1, spawn_s, cancel_s);
  return row;
}

// ---------------------------------------------------------------------------
// Row 7: teardown (ours only).

Row Teardown(Env& env) {
  const int children = env.plan.teardown_children;
  Row row{.id = "7a",
          .name = absl::StrCat("teardown: cancel a ", children, "-child nursery"),
          .unit = "ms"};
  row.target = AbsMax(100);
  std::vector<double> ours, spawn;
  for (int rep = 0; rep < env.plan.teardown_reps; ++rep) {
    OpenNursery([&](ActorNursery& an) {
      auto t0 = Clock::now();
      for (int i = 0; i < children; ++i) {
        an.StartActor(absl::StrCat("t", i), kBenchNs);
      }
      spawn.push_back(MillisSince(t0));
      auto t1 = Clock::now();
      an.Cancel();
      ours.push_back(MillisSince(t1));
    });
  }
  row.ours = Summarize(ours, false);
  row.note = absl::StrFormat(
      "ours only; ActorNursery::Cancel() until every child is reaped; "
      "max %.0f ms over %d reps (sequential spawn of the %d: %.0f ms)",
      row.ours->max, row.ours->samples, children,
      Summarize(spawn, false).median);
  return row;
}

// Returns the failure time stamped by bench:fail in `e` or its group.
std::optional<int64_t> FindFailStamp(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ActorErrorGroup& g) {
    for (const auto& inner : g.errors()) {
      if (auto t = FindFailStamp(inner)) return t;
    }
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    auto pos = what.find(kFailStamp);
    if (pos != std::string::npos) {
      int64_t ns;
      std::string digits;
      for (size_t i = pos + std::strlen(kFailStamp);
           i < what.size() && std::isdigit(static_cast<unsigned char>(what[i]));
           ++i) {
        digits += what[i];
      }
      if (absl::SimpleAtoi(digits, &ns)) return ns;
    }
  } catch (...) {
  }
  return std::nullopt;
}

Row TreeFailure(Env& env) {
  Row row{.id = "7b",
          .name = absl::StrCat("depth-", kTreeDepth,
                               " tree failure to root, all reaped"),
          .unit = "ms"};
  row.target = AbsMax(30);
  std::vector<double> ours, total;
  for (int rep = 0; rep < env.plan.tree_reps; ++rep) {
    auto t0 = Clock::now();
    std::exception_ptr error;
    try {
      OpenNursery([&](ActorNursery& an) {
        an.StartActor("idle1", kBenchNs);
        an.RunInActor("d1", "bench:tree", Payload(int64_t{1}));
      });
    } catch (...) {
      error = std::current_exception();
    }
    int64_t now_ns = absl::ToUnixNanos(absl::Now());
    total.push_back(MillisSince(t0));
    if (!error) Fail("the tree did not fail");
    auto stamp = FindFailStamp(error);
    if (!stamp) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        Fail(absl::StrCat("the root got an error without the leaf's stamp: ",
                          e.what()));
      }
    }
    ours.push_back((now_ns - *stamp) / 1e6);
  }
  row.ours = Summarize(ours, false);
  row.note = absl::StrFormat(
      "ours only; root -> d1 -> d2 -> leaf, each level with an idle sibling "
      "(6 children); from the leaf's throw (wall clock stamp in the error) "
      "until the root's OpenNursery rethrows with every process reaped; "
      "whole run incl. spawning: %.0f ms",
      Summarize(total, false).median);
  return row;
}

// ---------------------------------------------------------------------------
// Row 8: idle memory.

Row IdleMemory(Env& env) {
  Row row{.id = "8", .name = "idle process memory (VmRSS)", .unit = "MiB"};
  row.target = RatioMax(1.2);
  const auto settle = absl::Milliseconds(300);
  pb::Blob req;
  req.set_data("x");
  std::vector<double> raw, ours;
  Interleave(env.plan.mem_samples, {
      Raw([&](bool record) {
        auto proc =
            RawServerProcess::Start(env.raw_server_path,
                                    RawArgs({"--api=callback"}));
        auto stub = pb::Bench::NewStub(
            grpc::CreateChannel(proc->addr(), RawCredentials()));
        grpc::ClientContext ctx;
        pb::Blob reply;
        if (!stub->Echo(&ctx, req, &reply).ok()) Fail("raw_server Echo failed");
        absl::SleepFor(settle);
        long kib = VmRssKiB(proc->pid());
        proc->Stop();
        if (kib <= 0) Fail("cannot read the raw server's VmRSS");
        if (record) raw.push_back(kib / 1024.0);
      }),
      Ours([&](bool record) {
        OpenNursery([&](ActorNursery& an) {
          Portal p = an.StartActor("idle", kBenchNs);
          p.Run("bench:echo", Payload::Raw("x"));
          absl::SleepFor(settle);
          long kib = VmRssKiB(p.aid().pid());
          an.Cancel();
          if (kib <= 0) Fail("cannot read the child actor's VmRSS");
          if (record) ours.push_back(kib / 1024.0);
        });
      }),
  });
  SetStats(row, raw, ours, false);
  row.note = "raw: raw_server --api=callback after one Echo; ours: a child "
             "actor after one Run; both read 300 ms later from "
             "/proc/<pid>/status";
  return row;
}

// ---------------------------------------------------------------------------
// Row 9: lookup.

namespace rpb = ::tractor::v1;

// Lease of the entries row 9 registers: longer than any run (the watchdog
// ends a full run at 9 min), so no entry expires while the row measures.
constexpr absl::Duration kLookupLease = absl::Minutes(10);

// Row 9's registrars, one per child actor: starts a `tractor.v1.Registrar`
// (registrar/registrar_service.h, the library the runtime embeds and the
// registrar daemon serves) on its own gRPC server on 127.0.0.1:<random port>
// in this process, once (later calls answer the same one), and returns its
// address. It serves until the actor's process ends: it is never shut down
// or destroyed (the child runtime ends with _exit).
std::string ServeRegistrar(const std::string& uuid) {
  static const std::string* const addr = [&] {
    registrar::RegistrarService::Options options;
    options.self.set_name("registrar");
    options.self.set_uuid(uuid);
    options.max_lease = kLookupLease;
    auto* service = new registrar::RegistrarService(options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port <= 0) Fail("cannot start a registrar");
    (void)server.release();  // serves until the process ends
    return new std::string(absl::StrCat("127.0.0.1:", port));
  }();
  return *addr;
}
TRACTOR_EXPORT("bench:registrar", ServeRegistrar);

// Returns a 127.0.0.1 port that nothing listens on: bound to port 0, read
// back, closed.
int ClosedLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    Fail("cannot bind a loopback port: " + why);
  }
  close(fd);
  return ntohs(sin.sin_port);
}

// True when a TCP connect to 127.0.0.1:`port` is refused (nothing listens).
bool RefusesConnections(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(static_cast<uint16_t>(port));
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  int err = errno;
  close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

// Registers `aid` at `addr` with the registrar at `registrar` through the
// Register RPC, under kLookupLease.
void RegisterWith(const std::string& registrar, const rpb::Aid& aid,
                  const std::string& addr) {
  auto stub = rpb::Registrar::NewStub(
      grpc::CreateChannel(registrar, RawCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rpb::RegisterRequest req;
  rpb::Registration* reg = req.mutable_registration();
  *reg->mutable_aid() = aid;
  reg->add_addrs(addr);
  reg->set_lease_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(kLookupLease)));
  rpb::RegisterReply rep;
  grpc::Status st = stub->Register(&ctx, req, &rep);
  if (!st.ok()) {
    Fail(absl::StrCat("Register with ", registrar, ": ", st.error_message()));
  }
  if (absl::Milliseconds(rep.lease_ms()) < kLookupLease) {
    Fail(absl::StrCat("registrar ", registrar, " granted a lease of ",
                      rep.lease_ms(), " ms only"));
  }
}

// Row 9 with its registrar actors started in `an`.
std::vector<Row> MeasureLookup(Env& env, ActorNursery& an) {
  const int iters = env.plan.lookup_iters;
  const rpb::Aid target = env.tcp.actor.aid();
  const std::string name = target.name();
  const std::string target_addr = env.tcp.actor.addr();

  // Two live registrars, each in its own child actor (process), both
  // knowing the `server` actor, and one registry address where nothing
  // listens.
  std::string reg_a, reg_b;
  TaskGroup::Open([&](TaskGroup& tg) {
    tg.Spawn([&] {
      reg_a = an.StartActor("registrar-a", kBenchNs)
                  .Run("bench:registrar", Payload("bench-registrar-a"))
                  .AsString();
    });
    tg.Spawn([&] {
      reg_b = an.StartActor("registrar-b", kBenchNs)
                  .Run("bench:registrar", Payload("bench-registrar-b"))
                  .AsString();
    });
  });
  const int down_port = ClosedLoopbackPort();
  const std::string down = absl::StrCat("127.0.0.1:", down_port);
  if (!RefusesConnections(down_port)) {
    Fail(absl::StrCat("something listens on the 'down' address ", down));
  }
  RegisterWith(reg_a, target, target_addr);
  RegisterWith(reg_b, target, target_addr);
  // The down address first: its refusal is then usually the first answer
  // FindActor gets, before the positive ones.
  const std::vector<std::string> three = {down, reg_a, reg_b};
  const std::vector<std::string> two = {reg_a, reg_b};
  const std::vector<std::string> one = {reg_a};

  auto raw_registrar = rpb::Registrar::NewStub(
      grpc::CreateChannel(reg_a, RawCredentials()));
  auto raw_actor = rpb::Actor::NewStub(
      grpc::CreateChannel(target_addr, RawCredentials()));
  rpb::FindRequest find_req;
  find_req.set_name(name);
  // One raw Registrar.Find; checks that it names the server actor.
  auto raw_find = [&] {
    grpc::ClientContext ctx;
    rpb::FindReply reply;
    grpc::Status st = raw_registrar->Find(&ctx, find_req, &reply);
    if (!st.ok() || reply.registrations_size() != 1 ||
        reply.registrations(0).aid().uuid() != target.uuid()) {
      Fail(absl::StrCat("raw Registrar.Find('", name, "') answered ",
                        reply.registrations_size(),
                        " entries, not the server actor: ",
                        st.error_message()));
    }
    return reply;
  };

  std::vector<double> raw, raw_info, ours3, ours2, ours1, query;
  auto find_actor = [&](const std::vector<std::string>* registrars,
                        std::vector<double>* out) {
    return [&, registrars, out](bool record) {
      for (int i = 0; i < iters; ++i) {
        auto t0 = Clock::now();
        std::optional<Portal> p = discovery::FindActor(name, *registrars);
        double us = MicrosSince(t0);
        if (!p || p->aid().uuid() != target.uuid()) {
          Fail(absl::StrCat("FindActor('", name, "') over ",
                            registrars->size(),
                            " registrars did not find the server actor"));
        }
        if (record) out->push_back(us);
      }
    };
  };
  Interleave(env.plan.lookup_rounds, {
      Raw([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          raw_find();
          double us = MicrosSince(t0);
          if (record) raw.push_back(us);
        }
      }),
      Ours(find_actor(&three, &ours3)),
      Ours(find_actor(&two, &ours2)),
      // What FindActor does, with plain stubs: Find on one registrar, then
      // Actor.Info on the address it names (one reused channel each).
      Raw([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          raw_find();
          grpc::ClientContext ctx;
          rpb::ActorInfo info;
          grpc::Status st = raw_actor->Info(&ctx, rpb::InfoRequest(), &info);
          double us = MicrosSince(t0);
          if (!st.ok() || info.aid().uuid() != target.uuid()) {
            Fail("raw Actor.Info failed: " + st.error_message());
          }
          if (record) raw_info.push_back(us);
        }
      }),
      Ours(find_actor(&one, &ours1)),
      Ours([&](bool record) {
        for (int i = 0; i < iters; ++i) {
          auto t0 = Clock::now();
          std::optional<std::string> a =
              discovery::QueryActor(name, reg_a);
          double us = MicrosSince(t0);
          if (!a || *a != target_addr) {
            Fail(absl::StrCat("QueryActor('", name, "') answered ",
                              a ? *a : "nothing", ", not ", target_addr));
          }
          if (record) query.push_back(us);
        }
      }),
  });
  if (!RefusesConnections(down_port)) {
    Fail(absl::StrCat("something started listening on the 'down' address ",
                      down, " during the row"));
  }

  Row row{.id = "9", .name = "lookup: FindActor over 3 registrars, 1 down",
          .unit = "us"};
  row.target = RatioMax(1.5);
  SetStats(row, raw, ours3, true);
  row.note = absl::StrCat(
      "raw: sync unary Registrar.Find on one registrar; ours: FindActor(\"",
      name, "\") over {down, A, B}, hedged: Find on the registrar of the "
      "last positive answer (A) alone, the others after a miss, an error, a "
      "failing channel or the hedge delay (1-5 ms), then Portal::Connect "
      "(Info round trip unless already verified) to the actor; A and B are RegistrarService on their own gRPC server, each in "
      "a child actor process; nothing listens on the down address");
  Row live{.id = "9.live", .name = "lookup: FindActor, 2 live registrars (ref)",
           .unit = "us"};
  SetStats(live, raw, ours2, true);
  live.note = "reference: FindActor over {A, B} only; 9 minus this is what "
              "the down address costs";
  Row one_row{.id = "9.one",
              .name = "lookup: FindActor, 1 reg, vs raw Find+Info (ref)",
              .unit = "us"};
  SetStats(one_row, raw_info, ours1, true);
  one_row.note = "reference: the same job on both sides: raw sync Find on A, "
                 "then sync Actor.Info on the actor (two round trips to two "
                 "processes); ours FindActor over {A}";
  Row q{.id = "9.query", .name = "lookup: QueryActor, no connect (ref)",
        .unit = "us"};
  SetStats(q, raw, query, true);
  q.note = "reference: QueryActor on A alone: the runtime's Find (callback "
           "API, cancellation-checkpoint wait) and PreferAddress, no "
           "connection to the actor";
  return {row, live, one_row, q};
}

// Row 9: the registrar actors live for the row only.
std::vector<Row> LookupRows(Env& env) {
  std::vector<Row> rows;
  OpenNursery([&](ActorNursery& an) {
    rows = MeasureLookup(env, an);
    an.Cancel();
  });
  return rows;
}

// ---------------------------------------------------------------------------
// Row 10: throw-site capture (devx/throw_trace.h). In-process; "raw" is the
// same loop with capture turned off.

__attribute__((noinline)) int64_t MaybeThrow(int64_t i, int64_t limit) {
  if (i > limit) throw std::runtime_error("over the limit");
  return i * 3;
}

__attribute__((noinline)) int64_t Middle(int64_t i, int64_t limit) {
  return MaybeThrow(i, limit) + 1;
}

// Nanoseconds per iteration of `iters` calls through a try block; with
// `limit` below the arguments every call throws.
double TryLoopNs(int iters, int64_t limit) {
  volatile int64_t sink = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) {
    try {
      sink = sink + Middle(i, limit);
    } catch (const std::exception&) {
      sink = sink + 1;
    }
  }
  return MicrosSince(t0) * 1000.0 / iters;
}

std::vector<Row> ThrowTrace(Env& env) {
  const bool quick = env.plan.call_iters < 100;
  const int rounds = env.plan.call_rounds;
  const int calls = quick ? 200000 : 2000000;
  const int throws = quick ? 2000 : 20000;
  std::vector<double> raw, ours, raw_throw, ours_throw;
  for (int r = 0; r < rounds; ++r) {
    if (g_side != Side::kOurs) {
      devx::SetThrowCapture(false);
      raw.push_back(TryLoopNs(calls, INT64_MAX));
      raw_throw.push_back(TryLoopNs(throws, -1));
    }
    if (g_side != Side::kRaw && g_side != Side::kRawSync) {
      devx::SetThrowCapture(true);
      ours.push_back(TryLoopNs(calls, INT64_MAX));
      ours_throw.push_back(TryLoopNs(throws, -1));
    }
  }
  devx::SetThrowCapture(true);
  Row row{.id = "11", .name = "throw trace: code that does not throw",
          .unit = "ns"};
  row.target = RatioMax(1.1);
  SetStats(row, raw, ours, false);
  row.note = absl::StrCat(
      "a call two frames deep inside a try block that never throws, ", calls,
      " per sample; raw: throw-site capture off, ours: on (the interposed "
      "__cxa_throw runs only when something is thrown)");
  Row thrown{.id = "11.throw", .name = "throw trace: throw + catch (ref)",
             .unit = "ns"};
  SetStats(thrown, raw_throw, ours_throw, false);
  thrown.note = "reference: the same loop when every call throws "
                "std::runtime_error; ours adds one stack walk (backtrace) "
                "and a table entry per throw";
  return {row, thrown};
}

// ---------------------------------------------------------------------------
// Driver.

struct Flags {
  bool quick = false;
  std::string json;
  std::string raw_server;
  std::vector<std::string> only;
  std::string side = "both";
  std::string tls;
  int rounds_scale = 1;
  std::string throughput_cpus = "split";
};

// Reads the absl flags (defined at the top of this file) once
// absl::ParseCommandLine has run. Returns false for a bad --side.
bool ReadFlags(Flags* f) {
  f->quick = absl::GetFlag(FLAGS_quick);
  f->json = absl::GetFlag(FLAGS_json);
  f->raw_server = absl::GetFlag(FLAGS_raw_server);
  f->only = absl::GetFlag(FLAGS_only);
  f->side = absl::GetFlag(FLAGS_side);
  f->tls = absl::GetFlag(FLAGS_tls);
  f->rounds_scale = absl::GetFlag(FLAGS_rounds_scale);
  f->throughput_cpus = absl::GetFlag(FLAGS_throughput_cpus);
  if (f->throughput_cpus != "split" && f->throughput_cpus != "any") {
    std::fprintf(stderr,
                 "bench: --throughput_cpus must be split or any, not '%s'\n",
                 f->throughput_cpus.c_str());
    return false;
  }
  if (f->rounds_scale < 1) {
    std::fprintf(stderr, "bench: --rounds_scale must be at least 1\n");
    return false;
  }
  if (f->side != "both" && f->side != "raw" && f->side != "raw_sync" &&
      f->side != "ours") {
    std::fprintf(stderr,
                 "bench: --side must be both, raw, raw_sync or ours, got "
                 "'%s'\n",
                 f->side.c_str());
    return false;
  }
  return true;
}

// A private directory for the run's unix sockets, under /tmp so that the
// paths stay far below sun_path's 107 bytes. Removed, with whatever is left
// in it, when destroyed (after every process that listened there ended).
class SocketDir {
 public:
  SocketDir() {
    char tmpl[] = "/tmp/tb.XXXXXX";
    if (mkdtemp(tmpl) != nullptr) {
      path_ = tmpl;
    } else {
      error_ = absl::StrCat("mkdtemp(", tmpl, "): ", std::strerror(errno));
    }
  }
  ~SocketDir() {
    if (path_.empty()) return;
    if (DIR* d = opendir(path_.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") unlink(Path(name).c_str());
      }
      closedir(d);
    }
    rmdir(path_.c_str());
  }
  SocketDir(const SocketDir&) = delete;
  SocketDir& operator=(const SocketDir&) = delete;

  bool ok() const { return !path_.empty(); }
  // Why there is no directory.
  const std::string& error() const { return error_; }
  // The path of socket `name` in the directory.
  std::string Path(const std::string& name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
  std::string error_;
};

// Ends the process if the run takes far longer than planned, so that a hang
// never leaves a test (or a CI run) waiting; children die with us
// (PR_SET_PDEATHSIG, and raw servers end on stdin EOF).
class Watchdog {
 public:
  explicit Watchdog(absl::Duration limit)
      : thread_([this, limit] {
          std::unique_lock<std::mutex> lk(mu_);
          if (!cv_.wait_for(lk, absl::ToChronoNanoseconds(limit),
                            [&] { return done_; })) {
            std::fprintf(stderr, "bench: watchdog: run exceeded %s, aborting\n",
                         absl::FormatDuration(limit).c_str());
            std::fflush(stderr);
            _exit(3);
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

int BenchMain(int argc, char** argv) {
  Flags flags;
  absl::SetProgramUsageMessage(
      "the benchmark suite: raw gRPC baselines against the actor runtime\n"
      "  bench [--quick] [--json=FILE] [--raw_server=PATH] [--only=ID,...] "
      "[--side=both|raw|raw_sync|ours] [--throughput_cpus=split|any]");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "bench: unexpected argument '%s'\n", positional[1]);
    return 2;
  }
  if (!ReadFlags(&flags)) return 2;
  g_side = flags.side == "raw"        ? Side::kRaw
           : flags.side == "raw_sync" ? Side::kRawSync
           : flags.side == "ours"     ? Side::kOurs
                                      : Side::kBoth;
  // Stretched like the runtime's timeouts under the sanitizer
  // configurations (TRACTOR_TIMEOUT_SCALE).
  Watchdog watchdog(discovery::ScaleTimeout(flags.quick ? absl::Seconds(50)
                                                        : absl::Minutes(9)));
  // --only 3 selects 3.64.bp etc.; --only 6 selects 6 and 6b.
  auto wanted = [&](const std::string& id) {
    if (flags.only.empty()) return true;
    for (const auto& o : flags.only) {
      if (id.rfind(o, 0) != 0) continue;
      if (id.size() == o.size() || id[o.size()] == '.' ||
          std::isalpha(static_cast<unsigned char>(id[o.size()]))) {
        return true;
      }
    }
    return false;
  };
  RunInfo info = CollectRunInfo(flags.quick);
  auto started = Clock::now();
  std::vector<Row> rows;
  // Runs one row (or group of rows); a failure becomes an explicit n/a.
  auto run = [&](const std::vector<Row>& shells,
                 const std::function<std::vector<Row>()>& fn) {
    bool any = false;
    for (const auto& s : shells) any = any || wanted(s.id);
    if (!any) return;
    auto t0 = Clock::now();
    std::fprintf(stderr, "[bench] %s %s ...\n", shells[0].id.c_str(),
                 shells[0].name.c_str());
    std::vector<Row> out;
    try {
      out = fn();
    } catch (const std::exception& e) {
      out = shells;
      for (auto& r : out) r.na = absl::StrCat("failed: ", e.what());
    }
    std::fprintf(stderr, "[bench] %s done in %.1f s\n", shells[0].id.c_str(),
                 SecondsSince(t0));
    rows.insert(rows.end(), out.begin(), out.end());
  };
  auto one = [](std::function<Row()> fn) {
    return [fn] { return std::vector<Row>{fn()}; };
  };

  Env env;
  env.plan = flags.quick ? QuickPlan() : FullPlan();
  env.plan.call_rounds *= flags.rounds_scale;
  env.plan.pp_rounds *= flags.rounds_scale;
  env.plan.open_rounds *= flags.rounds_scale;
  env.split_cpus = flags.throughput_cpus == "split";
  try {
    env.raw_server_path = FindRawServer(flags.raw_server);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench: %s\n", e.what());
    return 2;
  }

  // Declared before the root actor: removed after every process is gone.
  SocketDir socket_dir;
  g_tls_dir = flags.tls;
  // A registrar of its own on a random port, as every root had before the
  // well-known default registry: the bench measures the runtime alone.
  RootOptions root_options{.name = "bench", .registry_addrs = {"127.0.0.1:0"}};
  // Rows 6b and 7 put 26-66 processes on the machine at once, on purpose: a
  // child starved of CPU that long is not a hung child.
  root_options.hang_timeout = absl::Seconds(10);
  if (!g_tls_dir.empty()) {
    root_options.tls.ca_file = g_tls_dir + "/ca.pem";
    root_options.tls.cert_file = g_tls_dir + "/node.pem";
    root_options.tls.key_file = g_tls_dir + "/node.key";
    root_options.tls.require_client_cert = true;
  }
  OpenRootActor(root_options, [&] {
    // The raw servers: one process per gRPC API, each on loopback TCP and,
    // when there is a socket directory, a unix socket.
    auto start_raw = [&](const std::string& api) {
      std::vector<std::string> args = {"--api=" + api};
      if (socket_dir.ok()) {
        args.push_back("--unix=" + socket_dir.Path("raw-" + api));
      }
      return RawServerProcess::Start(env.raw_server_path, RawArgs(args));
    };
    auto raw_sync = start_raw("sync");
    auto raw_callback = start_raw("callback");
    grpc::ChannelArguments ch_args;
    ch_args.SetMaxReceiveMessageSize(64 << 20);
    ch_args.SetMaxSendMessageSize(64 << 20);
    auto stub = [&](const std::string& target) {
      return pb::Bench::NewStub(grpc::CreateCustomChannel(
          target, RawCredentials(), ch_args));
    };
    env.tcp.raw_sync = stub(raw_sync->addr());
    env.tcp.raw_callback = stub(raw_callback->addr());
    env.uds.uds = true;
    if (socket_dir.ok()) {
      env.uds.raw_sync = stub("unix:" + socket_dir.Path("raw-sync"));
      env.uds.raw_callback = stub("unix:" + socket_dir.Path("raw-callback"));
    } else {
      env.uds.unavailable =
          "no directory for the unix sockets: " + socket_dir.error();
    }

    OpenNursery([&](ActorNursery& an) {
      // One `server` actor on both transports. The nursery's portal dials
      // the address PreferAddress picks (the unix socket), so each transport
      // gets a portal of its own.
      ActorOptions server_options = kBenchNs;
      server_options.bind_addrs = {"127.0.0.1:0"};
      const std::string ours_uds =
          socket_dir.ok() ? "unix:" + socket_dir.Path("ours") : "";
      if (!ours_uds.empty()) server_options.bind_addrs.push_back(ours_uds);
      Portal server = an.StartActor("server", server_options);
      env.server_pids = {raw_sync->pid(), raw_callback->pid(),
                         static_cast<pid_t>(server.aid().pid())};
      env.tcp.actor = Portal::Connect(server.Run("bench:tcp_addr").AsString(),
                                      server.aid());
      if (!ours_uds.empty()) {
        env.uds.actor = Portal::Connect(ours_uds, server.aid());
      }
      for (Endpoints* ep : {&env.tcp, &env.uds}) {
        const std::string id = ep->uds ? "1.uds" : "1";
        run({{.id = id,
              .name = absl::StrCat("call round trip", ep->label())},
             {.id = id + ".ref",
              .name = absl::StrCat("call round trip", ep->label(),
                                   ", other raw API (ref)")}},
            [&, ep, id] { return CallRoundTrip(env, *ep, id); });
      }
      for (Endpoints* ep : {&env.tcp, &env.uds}) {
        const std::string id = ep->uds ? "2.uds" : "2";
        run({{.id = id,
              .name = absl::StrCat("ping-pong round trip", ep->label())},
             {.id = id + ".ref",
              .name = absl::StrCat("ping-pong", ep->label(),
                                   ", other raw API (ref)")}},
            [&, ep, id] { return PingPong(env, *ep, id); });
      }
      for (int size : {64, 4096}) {
        std::string id = absl::StrCat("3.", size);
        std::vector<Row> shells;
        for (const char* s : {".plain", ".bp", ".err", ".unb", ".ref"}) {
          shells.push_back({.id = id + s,
                            .name = absl::StrCat("stream throughput ", size,
                                                 " B ", s + 1),
                            .unit = "msg/s"});
        }
        int msgs = size == 64 ? env.plan.tp_small_msgs : env.plan.tp_large_msgs;
        run(shells, [&, size, msgs] { return Throughput(env, size, msgs); });
      }
      run({{.id = "4", .name = "dialog open"},
           {.id = "4.ref", .name = "dialog open, other raw API (ref)"}},
          [&] { return DialogOpen(env); });
      run({{.id = "6", .name = "fan-in streams"}},
          one([&] { return FanInStreams(env); }));
      run({{.id = "6b", .name = "fan-in actors into a collector"}},
          one([&] { return FanInActors(env); }));
      run({{.id = "9", .name = "lookup: FindActor over 3 registrars, 1 down"},
           {.id = "9.live", .name = "lookup: FindActor, 2 live registrars"},
           {.id = "9.one", .name = "lookup: FindActor, 1 registrar"},
           {.id = "9.query", .name = "lookup: QueryActor"}},
          [&] { return LookupRows(env); });
      an.Cancel();
    });
    run({{.id = "5", .name = "spawn"}}, one([&] { return Spawn(env); }));
    if (g_side != Side::kRaw && g_side != Side::kRawSync) {  // ours-only rows
      run({{.id = "7a", .name = "teardown"}},
          one([&] { return Teardown(env); }));
      run({{.id = "7b", .name = "tree failure"}},
          one([&] { return TreeFailure(env); }));
    }
    run({{.id = "8", .name = "idle memory"}},
        one([&] { return IdleMemory(env); }));
    run({{.id = "11", .name = "throw trace: code that does not throw"},
         {.id = "11.throw", .name = "throw trace: throw + catch"}},
        [&] { return ThrowTrace(env); });
    // Row 10 starts an etcd cluster and six registrar daemons and waits
    // for leases to run out: longer than the whole quick run may take.
    run(RegistryRowShells(), [&] {
      if (!flags.quick) return RegistryRows(/*quick=*/false);
      std::vector<Row> rows = RegistryRowShells();
      for (Row& r : rows) {
        r.na = "not in --quick (it starts an etcd cluster): run --only 10";
      }
      return rows;
    });
    raw_callback->Stop();
    raw_sync->Stop();
  });

  if (!g_tls_dir.empty()) {
    for (Row& r : rows) {
      r.id += ".mtls";
      r.name += " (mTLS)";
    }
  }
  // Table order follows the row numbers.
  auto key = [](const Row& r) {
    double k = 0;
    absl::SimpleAtod(r.id.substr(0, r.id.find_first_not_of("0123456789")), &k);
    return k;
  };
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const Row& a, const Row& b) { return key(a) < key(b); });
  info.seconds = SecondsSince(started);
  PrintTable(info, rows, stdout);
  if (!flags.json.empty() && !WriteJson(info, rows, flags.json)) {
    std::fprintf(stderr, "bench: cannot write %s\n", flags.json.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tractor::bench

int main(int argc, char** argv) {
  return tractor::Main(argc, argv, [&] {
    return tractor::bench::BenchMain(argc, argv);
  });
}
