// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tools/bench/registry_rows.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdlib.h>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "etcd/api/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "registrar/etcd_client.h"
#include "tests/registrar/etcd_cluster.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::bench {
namespace {

namespace v1 = ::tractor::v1;
namespace pb = ::etcdserverpb;
using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

void Check(const grpc::Status& status, const std::string& what) {
  if (!status.ok()) {
    throw std::runtime_error(
        absl::StrCat(what, ": ", status.error_message()));
  }
}

std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

v1::Registration Reg(const std::string& name, const std::string& uuid,
                     uint32_t lease_ms) {
  v1::Registration r;
  r.mutable_aid()->set_name(name);
  r.mutable_aid()->set_uuid(uuid);
  // Distinct per uuid: the in-memory registrar moves an address registered
  // by another uuid.
  r.add_addrs(absl::StrCat("unix:/tmp/tractor-bench-registry/", uuid));
  r.set_lease_ms(lease_ms);
  return r;
}

struct Registrar {
  std::string label;
  std::unique_ptr<testing::RegistrarDaemon> daemon;
  std::unique_ptr<v1::Registrar::Stub> stub;

  void Register(const v1::Registration& reg) {
    v1::RegisterRequest request;
    *request.mutable_registration() = reg;
    v1::RegisterReply reply;
    Check(stub->Register(Ctx(absl::Seconds(5)).get(), request, &reply),
          label + " registrar: Register");
  }
  // Returns the number of entries found.
  int Find(const std::string& name) {
    v1::FindRequest request;
    request.set_name(name);
    v1::FindReply reply;
    Check(stub->Find(Ctx(absl::Seconds(10)).get(), request, &reply),
          label + " registrar: Find");
    return reply.registrations_size();
  }
  void Hello() {
    v1::HelloReply reply;
    Check(stub->Hello(Ctx(absl::Seconds(5)).get(), v1::HelloRequest(), &reply),
          "Hello");
  }
};

Registrar StartRegistrar(const std::string& endpoints,
                         const std::string& prefix) {
  Registrar r;
  r.label = endpoints.empty() ? "in-memory" : "etcd";
  r.daemon = std::make_unique<testing::RegistrarDaemon>(endpoints, prefix);
  if (absl::Status s = r.daemon->Start(); !s.ok()) {
    throw std::runtime_error(absl::StrCat("registrar: ", s.message()));
  }
  r.stub = v1::Registrar::NewStub(grpc::CreateChannel(
      r.daemon->addr(), grpc::InsecureChannelCredentials()));
  return r;
}

// Watchers on one registrar, each a thread reading its stream; `Arrivals`
// waits for every watcher to see an event for `uuid` of `kind`.
class Watchers {
 public:
  Watchers(v1::Registrar::Stub* stub, int n) {
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Watcher>();
      w->ctx = Ctx(absl::Minutes(5));
      w->reader = stub->Watch(w->ctx.get(), v1::WatchRequest());
      Watcher* raw = w.get();
      w->thread = std::thread([this, raw] {
        v1::WatchEvent event;
        while (raw->reader->Read(&event)) {
          const auto now = Clock::now();
          absl::MutexLock lock(&mu_);
          raw->seen.push_back(
              {event.kind(), event.registration().aid().uuid(), now});
        }
      });
      watchers_.push_back(std::move(w));
    }
  }
  ~Watchers() {
    for (auto& w : watchers_) w->ctx->TryCancel();
    for (auto& w : watchers_) {
      w->thread.join();
      w->reader->Finish();
    }
  }

  // Per watcher: when it saw `kind` for `uuid`. Waits up to `timeout`.
  std::vector<Clock::time_point> Arrivals(v1::WatchEvent::Kind kind,
                                          const std::string& uuid,
                                          absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      std::vector<Clock::time_point> out;
      {
        absl::MutexLock lock(&mu_);
        for (auto& w : watchers_) {
          for (const auto& s : w->seen) {
            if (s.kind == kind && s.uuid == uuid) {
              out.push_back(s.at);
              break;
            }
          }
        }
      }
      if (out.size() == watchers_.size()) return out;
      if (absl::Now() > deadline) {
        throw std::runtime_error(absl::StrCat(
            "only ", out.size(), " of ", watchers_.size(),
            " watchers saw the event for ", uuid, " within ",
            absl::FormatDuration(timeout)));
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
  }

 private:
  struct Seen {
    v1::WatchEvent::Kind kind;
    std::string uuid;
    Clock::time_point at;
  };
  struct Watcher {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader;
    std::thread thread;
    std::vector<Seen> seen;
  };
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
};

// Fills `prefix` with `n` registrations named "fill-<i>" straight into
// etcd, 50 entries (100 keys) a transaction, under one lease.
void FillEtcd(pb::KV::Stub* kv, pb::Lease::Stub* lease,
              const std::string& prefix, int n) {
  pb::LeaseGrantRequest grant;
  grant.set_ttl(600);
  pb::LeaseGrantResponse granted;
  Check(lease->LeaseGrant(Ctx(absl::Seconds(5)).get(), grant, &granted),
        "LeaseGrant");
  for (int i = 0; i < n;) {
    pb::TxnRequest txn;
    for (int k = 0; k < 50 && i < n; ++k, ++i) {
      v1::Registration r = Reg(absl::StrCat("fill-", i),
                               absl::StrCat("fill-uuid-", i), 600000);
      // The etcd store's layout (registrar/etcd_store.h): the entry and its
      // name index.
      for (const std::string& key :
           {prefix + r.aid().uuid(),
            absl::StrCat(prefix, "names/", r.aid().name(), "/",
                         r.aid().uuid())}) {
        pb::PutRequest* put = txn.add_success()->mutable_request_put();
        put->set_key(key);
        r.SerializeToString(put->mutable_value());
        put->set_lease(granted.id());
      }
    }
    pb::TxnResponse response;
    Check(kv->Txn(Ctx(absl::Seconds(10)).get(), txn, &response), "fill Txn");
  }
}

Row Latency(const std::string& id, const std::string& name,
            std::vector<double> raw, std::vector<double> ours, Target target,
            std::string note) {
  Row row{.id = id, .name = name, .unit = "us"};
  if (!raw.empty()) row.raw = Summarize(std::move(raw), true);
  row.ours = Summarize(std::move(ours), true);
  row.target = target;
  row.note = std::move(note);
  return row;
}

}  // namespace

std::vector<Row> RegistryRowShells() {
  return {
      {.id = "10.reg", .name = "registrations/s, etcd registrar"},
      {.id = "10.reg.mem", .name = "registrations/s, in-memory registrar"},
      {.id = "10.find.10", .name = "Find, 10 names, etcd registrar"},
      {.id = "10.find.10000", .name = "Find, 10,000 names, etcd registrar"},
      {.id = "10.find.scale",
       .name = "Find, 10,000 names against 10, etcd registrar"},
      {.id = "10.find.mem.10", .name = "Find, 10 names, in-memory"},
      {.id = "10.find.mem.10000", .name = "Find, 10,000 names, in-memory"},
      {.id = "10.watch", .name = "Watch delivery to 100 watchers"},
      {.id = "10.expiry", .name = "lease expiry detection, 2 s lease"},
  };
}

std::vector<Row> RegistryRows(bool quick) {
  const int kRounds = quick ? 2 : 5;
  const int kPutsPerRound = quick ? 50 : 300;
  const int kFinds = quick ? 100 : 1000;
  const int kWatchRounds = quick ? 3 : 20;
  const int kExpiries = quick ? 1 : 3;
  std::vector<Row> rows;

  // The children's logs, removed with the directory at the end.
  char log_dir[] = "/tmp/tb-etcd.XXXXXX";
  if (mkdtemp(log_dir) == nullptr) {
    throw std::runtime_error("mkdtemp for the etcd and registrar logs failed");
  }
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } remove_log_dir{log_dir};
  testing::SetLogDir(log_dir);

  testing::EtcdCluster cluster(3);
  if (absl::Status s = cluster.Start(); !s.ok()) {
    throw std::runtime_error(std::string(s.message()).substr(0, 300));
  }
  const std::string endpoints = cluster.Endpoints();
  // Raw etcd stubs on the member the registrars call first.
  auto channel = grpc::CreateChannel(cluster.EndpointList()[0],
                                     grpc::InsecureChannelCredentials());
  auto kv = pb::KV::NewStub(channel);
  auto lease = pb::Lease::NewStub(channel);

  Registrar etcd_put = StartRegistrar(endpoints, "/bench/put/");
  Registrar etcd = StartRegistrar(endpoints, "/bench/reg/");
  Registrar mem_put = StartRegistrar("", "");
  Registrar mem = StartRegistrar("", "");

  std::fprintf(stderr, "[bench] 10: %s\n", "registrations");
  // --- Registrations per second: new actors, one at a time. Raw: what a
  // leased key costs a plain etcd client, LeaseGrant + Put.
  {
    std::vector<double> raw, ours, ours_mem;
    int next = 0;
    for (int round = 0; round < kRounds; ++round) {
      auto t0 = Clock::now();
      for (int i = 0; i < kPutsPerRound; ++i, ++next) {
        pb::LeaseGrantRequest grant;
        grant.set_ttl(60);
        pb::LeaseGrantResponse granted;
        Check(lease->LeaseGrant(Ctx(absl::Seconds(5)).get(), grant, &granted),
              "raw LeaseGrant");
        pb::PutRequest put;
        put.set_key(absl::StrCat("/bench/raw/", next));
        Reg("raw", absl::StrCat("raw-", next), 60000)
            .SerializeToString(put.mutable_value());
        put.set_lease(granted.id());
        pb::PutResponse put_response;
        Check(kv->Put(Ctx(absl::Seconds(5)).get(), put, &put_response),
              "raw Put");
      }
      raw.push_back(kPutsPerRound / (MicrosSince(t0) / 1e6));
      t0 = Clock::now();
      for (int i = 0; i < kPutsPerRound; ++i) {
        etcd_put.Register(
            Reg("put", absl::StrCat("put-", round, "-", i), 60000));
      }
      ours.push_back(kPutsPerRound / (MicrosSince(t0) / 1e6));
      t0 = Clock::now();
      for (int i = 0; i < kPutsPerRound; ++i) {
        mem_put.Register(
            Reg("put", absl::StrCat("put-", round, "-", i), 60000));
      }
      ours_mem.push_back(kPutsPerRound / (MicrosSince(t0) / 1e6));
    }
    const std::string how =
        "raw: etcd LeaseGrant + Put per key, sync stubs; ours: Register of a "
        "new uuid, one at a time";
    Row reg{.id = "10.reg", .name = "registrations/s, etcd registrar",
            .unit = "reg/s"};
    reg.raw = Summarize(raw, false);
    reg.ours = Summarize(ours, false);
    reg.target = {.kind = Target::Kind::kRatioMin, .bound = 0.5};
    reg.note = how;
    Row reg_mem{.id = "10.reg.mem",
                .name = "registrations/s, in-memory registrar (ref)",
                .unit = "reg/s"};
    reg_mem.raw = Summarize(raw, false);
    reg_mem.ours = Summarize(ours_mem, false);
    reg_mem.note = how;
    rows.push_back(reg);
    rows.push_back(reg_mem);
  }

  // --- Find latency with 10 and with 10,000 names. Two tables side by
  // side in the same etcd cluster (and in two in-memory registrars), each
  // behind a registrar of its own, looked up in the same rounds: every
  // lookup of one table is followed by one of the other, so the machine's
  // drift (other builds, etcd's own background work) hits both alike and
  // 10.find.scale compares the table sizes alone. Raw floor: one etcd Range
  // of one key plus one registrar round trip (Hello), per lookup.
  std::fprintf(stderr, "[bench] 10: %s\n", "find 10 and 10000");
  {
    const int kSmall = 10;
    const int kBig = 10000;
    Registrar etcd_small = StartRegistrar(endpoints, "/bench/small/");
    Registrar mem_small = StartRegistrar("", "");
    FillEtcd(kv.get(), lease.get(), "/bench/small/", kSmall);
    FillEtcd(kv.get(), lease.get(), "/bench/reg/", kBig);
    for (int i = 0; i < kSmall; ++i) {
      mem_small.Register(Reg(absl::StrCat("fill-", i),
                             absl::StrCat("fill-uuid-", i), 600000));
    }
    for (int i = 0; i < kBig; ++i) {
      mem.Register(Reg(absl::StrCat("fill-", i), absl::StrCat("fill-uuid-", i),
                       600000));
    }
    std::vector<double> raw, small, big, small_mem, big_mem;
    auto find = [](Registrar& r, std::vector<double>& samples) {
      const auto t0 = Clock::now();
      if (r.Find("fill-3") != 1) {
        throw std::runtime_error(r.label + " registrar: Find('fill-3') missed");
      }
      samples.push_back(MicrosSince(t0));
    };
    for (int i = 0; i < kFinds; ++i) {
      pb::RangeRequest range;
      range.set_key("/bench/reg/fill-uuid-3");
      pb::RangeResponse range_response;
      const auto t0 = Clock::now();
      Check(kv->Range(Ctx(absl::Seconds(5)).get(), range, &range_response),
            "raw Range");
      mem.Hello();
      raw.push_back(MicrosSince(t0));
      // Alternate which table goes first.
      if (i % 2 == 0) {
        find(etcd_small, small);
        find(etcd, big);
      } else {
        find(etcd, big);
        find(etcd_small, small);
      }
      find(mem_small, small_mem);
      find(mem, big_mem);
    }
    auto how = [](int names) {
      return absl::StrCat(
          "raw: one etcd Range of one key + one registrar Hello round trip; "
          "ours: Find of one name among ",
          names, " (both table sizes looked up in the same rounds)");
    };
    const Target floor_target{.kind = Target::Kind::kRatioMax, .bound = 1.5};
    rows.push_back(Latency("10.find.10", "Find, 10 names, etcd registrar", raw,
                           small, floor_target, how(kSmall)));
    rows.push_back(Latency("10.find.10000",
                           "Find, 10,000 names, etcd registrar", raw, big,
                           floor_target, how(kBig)));
    rows.push_back(Latency("10.find.scale",
                           "Find, 10,000 names against 10, etcd registrar",
                           small, big, floor_target,
                           "raw column: Find with 10 names; ours: Find with "
                           "10,000 names, in the same rounds"));
    rows.push_back(Latency("10.find.mem.10",
                           "Find, 10 names, in-memory registrar (ref)", raw,
                           small_mem, {}, how(kSmall)));
    rows.push_back(Latency("10.find.mem.10000",
                           "Find, 10,000 names, in-memory registrar (ref)",
                           raw, big_mem, {}, how(kBig)));
  }

  std::fprintf(stderr, "[bench] 10: %s\n", "watch");
  // --- Watch delivery to 100 watchers, and lease expiry detection, on
  // registrars of their own (a Watch starts with a snapshot of the table).
  // The raw column is the in-memory registrar.
  {
    Registrar etcd = StartRegistrar(endpoints, "/bench/watch/");
    Registrar mem = StartRegistrar("", "");
    std::vector<double> mem_latency, etcd_latency;
    Watchers mem_watchers(mem.stub.get(), 100);
    Watchers etcd_watchers(etcd.stub.get(), 100);
    for (int round = 0; round < kWatchRounds; ++round) {
      for (Registrar* r : {&mem, &etcd}) {
        const std::string uuid = absl::StrCat("watch-", round);
        Watchers& w = r == &mem ? mem_watchers : etcd_watchers;
        const auto t0 = Clock::now();
        r->Register(Reg("watched", uuid, 60000));
        for (auto at : w.Arrivals(v1::WatchEvent::ADDED, uuid,
                                  absl::Seconds(20))) {
          (r == &mem ? mem_latency : etcd_latency)
              .push_back(std::chrono::duration<double, std::micro>(at - t0)
                             .count());
        }
      }
    }
    rows.push_back(Latency(
        "10.watch", "Watch delivery to 100 watchers", mem_latency,
        etcd_latency, {},
        "from Register sent to each watcher's event; raw column: the "
        "in-memory registrar, ours: the etcd registrar"));

    std::vector<double> mem_expiry, etcd_expiry;
    for (int i = 0; i < kExpiries; ++i) {
      for (Registrar* r : {&mem, &etcd}) {
        const std::string uuid = absl::StrCat("expire-", i);
        Watchers& w = r == &mem ? mem_watchers : etcd_watchers;
        r->Register(Reg("expiring", uuid, 2000));
        const auto t0 = Clock::now();
        std::vector<Clock::time_point> at =
            w.Arrivals(v1::WatchEvent::EXPIRED, uuid, absl::Seconds(20));
        (r == &mem ? mem_expiry : etcd_expiry)
            .push_back(std::chrono::duration<double, std::milli>(
                           *std::min_element(at.begin(), at.end()) - t0)
                           .count());
      }
    }
    Row expiry{.id = "10.expiry",
               .name = "lease expiry detection, 2 s lease",
               .unit = "ms"};
    expiry.raw = Summarize(mem_expiry, false);
    expiry.ours = Summarize(etcd_expiry, false);
    expiry.note =
        "from the Register reply to the first EXPIRED event; raw column: the "
        "in-memory registrar, ours: the etcd registrar";
    rows.push_back(expiry);
  }

  return rows;
}

}  // namespace tractor::bench
