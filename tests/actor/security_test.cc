// SPDX-License-Identifier: AGPL-3.0-or-later
// Transport security and authorization of a real actor tree
// (docs/security.md): a tree in mutual TLS works across the API (spawn
// tree, calls, contexts and streams, discovery, the registrar daemon) and
// refuses clients without a certificate of its CA; the control RPCs are
// refused to non-members; `Link` needs the per-spawn secret; a bad
// configuration fails boot naming the file. Certificates are made at run
// time with openssl (tests/make_test_pki.sh).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actor/context.h"
#include "actor/errors.h"
#include "actor/export.h"
#include "actor/nursery.h"
#include "actor/portal.h"
#include "actor/runtime.h"
#include "discovery/credentials.h"
#include "discovery/discovery.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/actor/with_child.h"
#include "tests/discovery/test_procs.h"
#include "tests/process_fixture.h"
#include "tests/test_pki.h"
#include "tractor/v1/actor.grpc.pb.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor {
namespace {

using ::testing::HasSubstr;
using testing::TestPki;

int64_t Echo(int64_t n) { return n; }
TRACTOR_EXPORT("sec:echo", Echo);

// Echoes every item until the caller closes; returns the count.
int64_t Echoer(Context& ctx) {
  ctx.Started();
  auto stream = ctx.OpenStream();
  int64_t n = 0;
  for (const auto& v : stream) {
    stream.Send(v);
    ++n;
  }
  return n;
}
TRACTOR_EXPORT("sec:echoer", Echoer);

// Spawns a grandchild, finds it by name through the registrar and calls it:
// the inherited configuration reaches a second generation and discovery.
int64_t SpawnAndFind(int64_t n) {
  int64_t got = -1;
  OpenNursery([&](ActorNursery& an) {
    an.StartActor("grandchild", {.enable_modules = {"sec"}});
    std::optional<Portal> found = FindActor("grandchild");
    if (found) got = found->Run<int64_t>("sec:echo", n);
    an.Cancel();
  });
  return got;
}
TRACTOR_EXPORT("sec:spawn_and_find", SpawnAndFind);

// Cancels the actor registered as `name` (a sibling); returns the ack.
bool CancelByName(const std::string& name) {
  std::optional<Portal> p = FindActor(name);
  return p.has_value() && p->CancelActor(absl::Seconds(5));
}
TRACTOR_EXPORT("sec:cancel_by_name", CancelByName);

const ActorOptions kSec = {.enable_modules = {"sec"}};

const TestPki& Pki() {
  static const TestPki* pki = new TestPki(TestPki::Make());
  return *pki;
}

std::string PemOf(const std::string& name) { return Pki().Read(name); }

// Client credentials of a foreign client: trust the CA, present `identity`
// ("" for none).
std::shared_ptr<grpc::ChannelCredentials> ClientCreds(
    const std::string& identity) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = PemOf("ca.pem");
  if (!identity.empty()) {
    o.pem_cert_chain = PemOf(identity + ".pem");
    o.pem_private_key = PemOf(identity + ".key");
  }
  return grpc::SslCredentials(o);
}

std::unique_ptr<v1::Actor::Stub> ActorStub(
    const std::string& addr,
    std::shared_ptr<grpc::ChannelCredentials> creds) {
  return v1::Actor::NewStub(grpc::CreateChannel(addr, std::move(creds)));
}

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

grpc::Status CallInfo(v1::Actor::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(5));
  v1::InfoRequest req;
  v1::ActorInfo info;
  return stub.Info(&ctx, req, &info);
}

grpc::Status CallCancelTask(v1::Actor::Stub& stub, const std::string& secret) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(5));
  if (!secret.empty()) {
    ctx.AddMetadata(discovery::kSecretMetadataKey, secret);
  }
  v1::CancelTaskRequest req;
  req.set_cid("no-such-dialog");
  v1::CancelTaskReply reply;
  return stub.CancelTask(&ctx, req, &reply);
}

grpc::Status CallCancelActor(v1::Actor::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(5));
  v1::CancelActorRequest req;
  req.mutable_requester()->set_name("intruder");
  v1::CancelActorReply reply;
  return stub.CancelActor(&ctx, req, &reply);
}

// A TCP proxy on 127.0.0.1 in front of `upstream_port` whose every
// connection gets the server's first bytes `delay` after it was accepted:
// a TLS handshake through it takes at least `delay`, as one with a server
// slowed by a loaded machine does. Bytes are forwarded both ways as they
// come otherwise.
class SlowHandshakeProxy {
 public:
  SlowHandshakeProxy(int upstream_port, absl::Duration delay)
      : upstream_port_(upstream_port), delay_(delay) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
        listen(listen_fd_, 64) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
      ADD_FAILURE() << "proxy: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(sin.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~SlowHandshakeProxy() {
    stop_.store(true);
    if (acceptor_.joinable()) acceptor_.join();
    for (std::thread& t : pumps_) t.join();
    close(listen_fd_);
  }
  std::string addr() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  void Accept() {
    while (!stop_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      pumps_.emplace_back([this, client] { Pump(client); });
    }
  }
  // Forwards between `client` and a new connection upstream until either
  // side closes or the proxy stops.
  void Pump(int client) {
    const absl::Time accepted = absl::Now();
    const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(upstream_port_);
    if (connect(server, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
      close(server);
      close(client);
      return;
    }
    std::string held;  // server bytes not yet forwarded
    bool open = true;
    while (open && !stop_.load()) {
      const bool release = absl::Now() >= accepted + delay_;
      if (release && !held.empty()) {
        if (write(client, held.data(), held.size()) < 0) break;
        held.clear();
      }
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      // Wakes when the delay is over, to forward what it held.
      const int wait_ms =
          release ? 50
                  : std::max<int64_t>(1, absl::ToInt64Milliseconds(
                                             accepted + delay_ - absl::Now()));
      if (poll(p, 2, std::min(wait_ms, 50)) < 0) break;
      char buf[16384];
      for (int i = 0; i < 2 && open; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = read(p[i].fd, buf, sizeof buf);
        if (n <= 0) {
          open = false;
        } else if (i == 0) {
          open = write(server, buf, n) == n;
        } else if (absl::Now() < accepted + delay_) {
          held.append(buf, n);
        } else {
          open = write(client, buf, n) == n;
        }
      }
    }
    close(server);
    close(client);
  }

  const int upstream_port_;
  const absl::Duration delay_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // touched by the acceptor thread only
};

class SecurityTest : public testing::ProcessTest {
 protected:
  absl::Duration TestTimeout() const override { return absl::Seconds(90); }
};

TEST_F(SecurityTest, MutualTlsTreeWorksAcrossTheApi) {
  RootOptions root;
  root.enable_modules = {"sec"};
  root.tls = Pki().Config("node", /*mutual=*/true);
  OpenRootActor(root, [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal a = an.StartActor("a", kSec);
      Portal b = an.StartActor("b", kSec);
      EXPECT_EQ(a.Run<int64_t>("sec:echo", int64_t{41}), 41);
      // A context with a stream both ways.
      Payload count = a.OpenContext(
          "sec:echoer", Payload(), [](Context& ctx, const Payload&) {
            auto stream = ctx.OpenStream();
            for (int i = 0; i < 5; ++i) {
              stream.Send(i);
              std::optional<Payload> got = stream.Receive();
              ASSERT_TRUE(got.has_value());
              EXPECT_EQ(got->AsInt(), i);
            }
            stream.Close();
          });
      EXPECT_EQ(count.AsInt(), 5);
      // A grandchild, found through the (embedded) registrar.
      EXPECT_EQ(a.Run<int64_t>("sec:spawn_and_find", int64_t{7}), 7);
      // Foreign clients: a certificate of the CA is enough to call; none,
      // or one of another CA, is refused at the handshake.
      EXPECT_TRUE(CallInfo(*ActorStub(a.addr(), ClientCreds("client"))).ok());
      grpc::Status none = CallInfo(*ActorStub(a.addr(), ClientCreds("")));
      EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAVAILABLE)
          << none.error_message();
      grpc::Status rogue = CallInfo(*ActorStub(a.addr(), ClientCreds("rogue")));
      EXPECT_EQ(rogue.error_code(), grpc::StatusCode::UNAVAILABLE)
          << rogue.error_message();
      EXPECT_EQ(CallInfo(*ActorStub(a.addr(), grpc::InsecureChannelCredentials()))
                    .error_code(),
                grpc::StatusCode::UNAVAILABLE);
      // A client certificate makes a member: CancelTask is honoured.
      EXPECT_TRUE(CallCancelTask(*ActorStub(a.addr(), ClientCreds("client")), "")
                      .ok());
      // A sibling cancels `a`, found by name.
      EXPECT_TRUE(b.Run<bool>("sec:cancel_by_name", std::string("a")));
    });
  });
}

TEST_F(SecurityTest, PlaintextControlRpcsNeedTheMeshSecret) {
  RootOptions root;
  root.secret = "mesh-secret-for-test";
  OpenRootActor(root, [&] {
    OpenNursery([&](ActorNursery& an) {
      Portal p = an.StartActor("target", kSec);
      auto stub = ActorStub(p.addr(), grpc::InsecureChannelCredentials());
      grpc::Status actor = CallCancelActor(*stub);
      EXPECT_EQ(actor.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(actor.error_message(),
                  HasSubstr("CancelActor refused: the caller is not a member "
                            "of this mesh (it sent no mesh secret)"));
      grpc::Status task = CallCancelTask(*stub, "");
      EXPECT_EQ(task.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(task.error_message(), HasSubstr("CancelTask refused"));
      grpc::Status wrong = CallCancelTask(*stub, "guess");
      EXPECT_EQ(wrong.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(wrong.error_message(), HasSubstr("secret it sent is wrong"));
      // The actor still serves, and a member (the secret) is honoured.
      EXPECT_EQ(p.Run<int64_t>("sec:echo", int64_t{3}), 3);
      EXPECT_TRUE(CallInfo(*stub).ok());
      EXPECT_TRUE(CallCancelTask(*stub, "mesh-secret-for-test").ok());
      an.Cancel();
    });
  });
}

TEST_F(SecurityTest, LinkWithoutThePerSpawnSecretIsRefused) {
  OpenRootActor({}, [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      Portal p = an.StartActor("child", kSec);
      // Pose as the child on the parent's Link, without its secret.
      auto stub = ActorStub(AcceptAddrs().at(0),
                            grpc::InsecureChannelCredentials());
      grpc::ClientContext ctx;
      ctx.set_deadline(In(5));
      auto link = stub->Link(&ctx);
      v1::LinkMsg hello;
      *hello.mutable_hello()->mutable_aid() = p.aid();
      hello.mutable_hello()->set_link_secret("forged");
      ASSERT_TRUE(link->Write(hello));
      v1::LinkMsg reply;
      EXPECT_FALSE(link->Read(&reply));
      grpc::Status status = link->Finish();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(status.error_message(),
                  HasSubstr(absl::StrCat("Link refused: the child ",
                                         p.aid().uuid(),
                                         " did not present the per-spawn "
                                         "secret")));
      // The real child is unaffected.
      EXPECT_EQ(p.Run<int64_t>("sec:echo", int64_t{5}), 5);
    });
  });
}

TEST_F(SecurityTest, EmbeddedRegistrarChangesOnlyForMembers) {
  RootOptions root;
  root.secret = "registry-secret";
  OpenRootActor(root, [&] {
    auto stub = v1::Registrar::NewStub(grpc::CreateChannel(
        RegistryAddrs().at(0), grpc::InsecureChannelCredentials()));
    auto call = [&](const std::string& secret, auto&& rpc) {
      grpc::ClientContext ctx;
      ctx.set_deadline(In(5));
      if (!secret.empty()) {
        ctx.AddMetadata(discovery::kSecretMetadataKey, secret);
      }
      return rpc(&ctx);
    };
    v1::RegisterRequest reg;
    reg.mutable_registration()->mutable_aid()->set_name("squatter");
    reg.mutable_registration()->mutable_aid()->set_uuid("squatter-uuid");
    reg.mutable_registration()->add_addrs("127.0.0.1:9");
    v1::RegisterReply reg_reply;
    v1::UnregisterRequest unreg;
    unreg.set_uuid(CurrentActor().uuid());
    v1::UnregisterReply unreg_reply;
    v1::DeleteAddrRequest del;
    del.set_addr(AcceptAddrs().at(0));
    v1::DeleteAddrReply del_reply;
    grpc::Status s = call("", [&](grpc::ClientContext* c) {
      return stub->Register(c, reg, &reg_reply);
    });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("Register refused"));
    s = call("", [&](grpc::ClientContext* c) {
      return stub->Unregister(c, unreg, &unreg_reply);
    });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("Unregister refused"));
    s = call("", [&](grpc::ClientContext* c) {
      return stub->DeleteAddr(c, del, &del_reply);
    });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("DeleteAddr refused"));
    // Lookups stay open; the root is still listed.
    v1::FindRequest find;
    find.set_name("root");
    v1::FindReply found;
    s = call("", [&](grpc::ClientContext* c) {
      return stub->Find(c, find, &found);
    });
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(found.registrations_size(), 1);
    // A member may register.
    s = call("registry-secret", [&](grpc::ClientContext* c) {
      return stub->Register(c, reg, &reg_reply);
    });
    EXPECT_TRUE(s.ok()) << s.error_message();
  });
}

TEST_F(SecurityTest, BadConfigurationFailsBootNamingTheFile) {
  auto boot_error = [](const RootOptions& root) -> std::string {
    try {
      OpenRootActor(root, [] {});
    } catch (const RuntimeFailure& e) {
      return e.what();
    }
    return "booted";
  };
  RootOptions missing;
  missing.tls = Pki().Config("node", true);
  missing.tls.key_file = Pki().Path("nope.key");
  EXPECT_THAT(boot_error(missing),
              HasSubstr(absl::StrCat("TLS key file ", Pki().Path("nope.key"),
                                     ": cannot read")));
  RootOptions expired;
  expired.tls = Pki().Config("expired", true);
  EXPECT_THAT(boot_error(expired), HasSubstr("expired on"));
  RootOptions mismatched;
  mismatched.tls = Pki().Config("node", true);
  mismatched.tls.key_file = Pki().Path("client.key");
  EXPECT_THAT(boot_error(mismatched), HasSubstr("does not match the certificate"));
  // The environment configures a program that sets nothing itself.
  setenv(discovery::kTlsCaEnv, Pki().Path("ca.pem").c_str(), 1);
  setenv(discovery::kTlsCertEnv, Pki().Path("rogue.pem").c_str(), 1);
  setenv(discovery::kTlsKeyEnv, Pki().Path("rogue.key").c_str(), 1);
  EXPECT_THAT(boot_error({}), HasSubstr("not signed by the CA"));
  setenv(discovery::kSecretFileEnv, Pki().Path("no-secret-here").c_str(), 1);
  unsetenv(discovery::kTlsCaEnv);
  unsetenv(discovery::kTlsCertEnv);
  unsetenv(discovery::kTlsKeyEnv);
  EXPECT_THAT(boot_error({}),
              HasSubstr(absl::StrCat("secret file ",
                                     Pki().Path("no-secret-here"))));
  unsetenv(discovery::kSecretFileEnv);
  EXPECT_EQ(boot_error({}), "booted");
}

// The registrar daemon on 127.0.0.1 in mutual TLS with the test PKI's
// node certificate, requiring client certificates.
std::optional<testing::Daemon> StartMutualTlsRegistrar(std::string* error) {
  return testing::StartRegistrar(
      "127.0.0.1:0",
      {"--tls_ca", Pki().Path("ca.pem"), "--tls_cert", Pki().Path("node.pem"),
       "--tls_key", Pki().Path("node.key"), "--tls_require_client_cert=true"},
      error);
}

// The registrar daemon with mutual TLS: a tree in mTLS registers with it
// and finds through it; a client without a certificate is refused.
TEST_F(SecurityTest, RegistrarDaemonInMutualTls) {
  std::string error;
  std::optional<testing::Daemon> daemon = StartMutualTlsRegistrar(&error);
  ASSERT_TRUE(daemon.has_value()) << error;
  const std::string addr = daemon->addrs.front();
  RootOptions root;
  root.registry_addrs = {addr};
  root.tls = Pki().Config("node", true);
  OpenRootActor(root, [&] {
    testing::OpenNurseryThenCancel([&](ActorNursery& an) {
      an.StartActor("listed", kSec);
      std::optional<Portal> found = FindActor("listed");
      ASSERT_TRUE(found.has_value());
      EXPECT_EQ(found->Run<int64_t>("sec:echo", int64_t{9}), 9);
    });
  });
  auto stub = v1::Registrar::NewStub(grpc::CreateChannel(addr, ClientCreds("")));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(5));
  v1::HelloRequest req;
  v1::HelloReply reply;
  EXPECT_EQ(stub->Hello(&ctx, req, &reply).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  daemon->proc->Signal(SIGTERM);
  std::optional<int> status = daemon->proc->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

// The registrar daemon in mutual TLS, reached through a proxy that makes
// every TLS handshake with it take 300 ms: longer than a registrar
// channel's first connection attempts allow (100 ms), as a handshake on a
// heavily loaded machine does. A child registers before it links to its
// parent all the same, so it is found at once when StartActor returns.
TEST_F(SecurityTest, AChildIsFoundAtOnceThoughTheRegistrarsHandshakeIsSlow) {
  std::string error;
  std::optional<testing::Daemon> daemon = StartMutualTlsRegistrar(&error);
  ASSERT_TRUE(daemon.has_value()) << error;
  const std::string addr = daemon->addrs.front();
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(addr.substr(addr.rfind(':') + 1), &port))
      << addr;
  {
    SlowHandshakeProxy proxy(port, absl::Milliseconds(300));
    RootOptions root;
    root.registry_addrs = {proxy.addr()};
    root.tls = Pki().Config("node", true);
    OpenRootActor(root, [&] {
      testing::OpenNurseryThenCancel([&](ActorNursery& an) {
        for (const std::string name : {"first", "second"}) {
          Portal p = an.StartActor(name, kSec);
          std::optional<Portal> found =
              FindActor(name, {}, discovery::kFindTimeout, true);
          ASSERT_TRUE(found.has_value()) << name;
          EXPECT_EQ(found->aid().uuid(), p.aid().uuid());
        }
      });
    });
  }
  daemon->proc->Signal(SIGTERM);
  std::optional<int> status = daemon->proc->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

TEST_F(SecurityTest, RegistrarDaemonWithASecretAndABadFile) {
  const std::string bin = testing::RunfilePath("registrar/registrar");
  ASSERT_FALSE(bin.empty());
  const std::string secret_file = Pki().Path("daemon.secret");
  std::ofstream(secret_file) << "daemon-secret\n";
  auto daemon = testing::Proc::Spawn({bin, "--listen", "127.0.0.1:0",
                                      "--loglevel", "error", "--secret_file",
                                      secret_file});
  ASSERT_NE(daemon, nullptr);
  std::optional<std::string> ready =
      daemon->ReadLineStartingWith("registrar ", absl::Seconds(20));
  ASSERT_TRUE(ready.has_value());
  const std::string addr = std::vector<std::string>(
      absl::StrSplit(*ready, ' ')).back();
  auto stub = v1::Registrar::NewStub(
      grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  v1::RegisterRequest reg;
  reg.mutable_registration()->mutable_aid()->set_name("x");
  reg.mutable_registration()->mutable_aid()->set_uuid("x-uuid");
  reg.mutable_registration()->add_addrs("127.0.0.1:9");
  for (const std::string secret : {"", "daemon-secret"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(5));
    if (!secret.empty()) ctx.AddMetadata(discovery::kSecretMetadataKey, secret);
    v1::RegisterReply reply;
    grpc::Status s = stub->Register(&ctx, reg, &reply);
    if (secret.empty()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    } else {
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
  }
  daemon->Signal(SIGTERM);
  ASSERT_TRUE(daemon->Wait(absl::Seconds(10)).has_value());
  // A certificate that does not load: exit 2 at once.
  auto bad = testing::Proc::Spawn(
      {bin, "--listen", "127.0.0.1:0", "--tls_ca", Pki().Path("ca.pem"),
       "--tls_cert", Pki().Path("expired.pem"), "--tls_key",
       Pki().Path("expired.key")});
  ASSERT_NE(bad, nullptr);
  std::optional<int> status = bad->Wait(absl::Seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2);
}

}  // namespace
}  // namespace tractor
