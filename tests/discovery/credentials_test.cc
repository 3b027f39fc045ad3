// SPDX-License-Identifier: AGPL-3.0-or-later
// Tests of discovery/credentials.h: configuration errors name the file and
// the problem; a mutual-TLS server refuses clients without a certificate of
// the mesh CA at the handshake; hostname checking; membership of the
// registrar's control RPCs by secret and by client certificate. The
// certificates are made at run time by tests/make_test_pki.sh.
#include "discovery/credentials.h"

#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "discovery/address.h"
#include "discovery/channel.h"
#include "discovery/listen.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "registrar/registrar_service.h"
#include "tests/test_pki.h"
#include "tractor/v1/registrar.grpc.pb.h"

namespace tractor::discovery {
namespace {

using ::testing::HasSubstr;
using testing::TestPki;

const TestPki& Pki() {
  static const TestPki* pki = new TestPki(TestPki::Make());
  return *pki;
}

TlsMaterial MustLoad(const TlsConfig& config) {
  absl::StatusOr<TlsMaterial> m = LoadTls(config);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : TlsMaterial{};
}

// --- Configuration errors ---

TEST(LoadTlsTest, EmptyConfigurationIsPlaintext) {
  absl::StatusOr<TlsMaterial> m = LoadTls({});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->mode, SecurityMode::kPlaintext);
}

TEST(LoadTlsTest, ValidFilesSelectTlsOrMutualTls) {
  EXPECT_EQ(MustLoad(Pki().Config("node", false)).mode, SecurityMode::kTls);
  EXPECT_EQ(MustLoad(Pki().Config("node", true)).mode,
            SecurityMode::kMutualTls);
}

TEST(LoadTlsTest, MissingFileIsNamed) {
  TlsConfig config = Pki().Config("node", true);
  config.cert_file = Pki().Path("absent.pem");
  absl::StatusOr<TlsMaterial> m = LoadTls(config);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.status().message(),
              HasSubstr(absl::StrCat("TLS certificate file ",
                                     Pki().Path("absent.pem"),
                                     ": cannot read")));
}

TEST(LoadTlsTest, KeyThatDoesNotMatchTheCertificateIsRefused) {
  TlsConfig config = Pki().Config("node", true);
  config.key_file = Pki().Path("client.key");
  absl::StatusOr<TlsMaterial> m = LoadTls(config);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr(absl::StrCat("TLS key file ", Pki().Path("client.key"),
                                     ": does not match the certificate in ",
                                     Pki().Path("node.pem"))));
}

TEST(LoadTlsTest, ExpiredCertificateIsRefused) {
  absl::StatusOr<TlsMaterial> m = LoadTls(Pki().Config("expired", true));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr(absl::StrCat("TLS certificate file ",
                                     Pki().Path("expired.pem"),
                                     ": expired on Jan  2 00:00:00 2020")));
}

TEST(LoadTlsTest, CertificateOfAnotherCaIsRefused) {
  absl::StatusOr<TlsMaterial> m = LoadTls(Pki().Config("rogue", true));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr(absl::StrCat(Pki().Path("rogue.pem"),
                                     ": not signed by the CA in ",
                                     Pki().Path("ca.pem"))));
}

TEST(LoadTlsTest, FileWithoutPemIsRefused) {
  const std::string junk = Pki().Path("junk.pem");
  std::ofstream(junk) << "not a certificate\n";
  TlsConfig config = Pki().Config("node", false);
  config.ca_file = junk;
  absl::StatusOr<TlsMaterial> m = LoadTls(config);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              HasSubstr(absl::StrCat("TLS CA file ", junk,
                                     ": holds no PEM certificate")));
}

TEST(LoadTlsTest, IncompleteConfigurationIsRefused) {
  TlsConfig config;
  config.ca_file = Pki().Path("ca.pem");
  absl::StatusOr<TlsMaterial> m = LoadTls(config);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("no certificate file"));
  TlsConfig only_mutual;
  only_mutual.require_client_cert = true;
  EXPECT_FALSE(LoadTls(only_mutual).ok());
}

TEST(TlsConfigFromEnvTest, ReadsTheVariablesAndRefusesABadBoolean) {
  setenv(kTlsCaEnv, "/a/ca.pem", 1);
  setenv(kTlsCertEnv, "/a/cert.pem", 1);
  setenv(kTlsKeyEnv, "/a/key.pem", 1);
  setenv(kTlsRequireClientCertEnv, "yes", 1);
  absl::StatusOr<TlsConfig> config = TlsConfigFromEnv();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca_file, "/a/ca.pem");
  EXPECT_EQ(config->cert_file, "/a/cert.pem");
  EXPECT_EQ(config->key_file, "/a/key.pem");
  EXPECT_EQ(config->mode(), SecurityMode::kMutualTls);
  setenv(kTlsRequireClientCertEnv, "maybe", 1);
  config = TlsConfigFromEnv();
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("TRACTOR_TLS_REQUIRE_CLIENT_CERT='maybe'"));
  for (const char* v : {kTlsCaEnv, kTlsCertEnv, kTlsKeyEnv,
                        kTlsRequireClientCertEnv}) {
    unsetenv(v);
  }
}

TEST(SecretTest, SecretFileIsReadAndAnEmptyOneRefused) {
  const std::string file = Pki().Path("secret");
  std::ofstream(file) << "s3cret\n";
  absl::StatusOr<std::string> secret = ReadSecretFile(file);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "s3cret");
  std::ofstream(file, std::ios::trunc) << "\n";
  secret = ReadSecretFile(file);
  ASSERT_FALSE(secret.ok());
  EXPECT_THAT(secret.status().message(), HasSubstr(file + ": is empty"));
  EXPECT_NE(NewSecret(), NewSecret());
  EXPECT_EQ(NewSecret().size(), 64u);
}

// --- Handshakes and membership ---

// A registrar served in this process with explicit server credentials and
// membership checks on.
class Server {
 public:
  Server(std::shared_ptr<grpc::ServerCredentials> credentials,
         const std::string& listen = "127.0.0.1:0") {
    registrar::RegistrarService::Options o;
    o.self.set_name("registrar");
    o.self.set_uuid("reg-under-test");
    o.members_only = true;
    service_ = std::make_unique<registrar::RegistrarService>(o);
    grpc::ServerBuilder builder;
    ApplyServerArgs(builder);
    auto ports = BindAll(builder, {*Address::Parse(listen)},
                         {.credentials = std::move(credentials)});
    EXPECT_TRUE(ports.ok()) << ports.status();
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    auto bound = ports->Resolve(server_.get());
    EXPECT_TRUE(bound.ok()) << bound.status();
    addr_ = bound->at(0);
    ports_ = std::make_unique<ListeningPorts>(*std::move(ports));
  }
  ~Server() {
    service_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(200));
    server_->Wait();
    ports_->RemoveSocketFiles();
  }
  const Address& addr() const { return addr_; }

 private:
  std::unique_ptr<registrar::RegistrarService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<ListeningPorts> ports_;
  Address addr_ = Address::Unix("/unused");
};

grpc::Status Hello(const Address& addr,
                   std::shared_ptr<grpc::ChannelCredentials> credentials,
                   const std::string& name_override = "") {
  grpc::ChannelArguments args = ClientChannelArgs(ChannelPurpose::kRegistrar);
  if (!name_override.empty()) args.SetSslTargetNameOverride(name_override);
  auto stub = v1::Registrar::NewStub(grpc::CreateCustomChannel(
      addr.GrpcTarget(), std::move(credentials), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::HelloRequest req;
  v1::HelloReply reply;
  return stub->Hello(&ctx, req, &reply);
}

// Registers "name" at `addr` over `credentials`, with `secret` as metadata
// when it is not empty.
grpc::Status Register(const Address& addr,
                      std::shared_ptr<grpc::ChannelCredentials> credentials,
                      const std::string& secret) {
  auto stub = v1::Registrar::NewStub(grpc::CreateCustomChannel(
      addr.GrpcTarget(), std::move(credentials),
      ClientChannelArgs(ChannelPurpose::kRegistrar)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!secret.empty()) ctx.AddMetadata(kSecretMetadataKey, secret);
  v1::RegisterRequest req;
  req.mutable_registration()->mutable_aid()->set_name("name");
  req.mutable_registration()->mutable_aid()->set_uuid("uuid-1");
  req.mutable_registration()->add_addrs("127.0.0.1:1");
  v1::RegisterReply reply;
  return stub->Register(&ctx, req, &reply);
}

// Client credentials that trust the mesh CA and present no certificate.
std::shared_ptr<grpc::ChannelCredentials> CaOnly() {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = Pki().Read("ca.pem");
  return grpc::SslCredentials(o);
}

class MembershipTest : public ::testing::Test {
 protected:
  void TearDown() override { InstallSecurity({}); }
};

TEST_F(MembershipTest, MutualTlsServerAcceptsOnlyCertificatesOfItsCa) {
  const TlsMaterial node = MustLoad(Pki().Config("node", true));
  Server server(ServerCredentialsFor(node));
  // Signed by the CA: accepted.
  EXPECT_TRUE(Hello(server.addr(), ChannelCredentialsFor(node)).ok());
  // No client certificate: refused at the handshake.
  grpc::Status none = Hello(server.addr(), CaOnly());
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAVAILABLE)
      << none.error_message();
  // A certificate of another CA: refused at the handshake.
  grpc::SslCredentialsOptions rogue;
  rogue.pem_root_certs = Pki().Read("ca.pem");
  rogue.pem_cert_chain = Pki().Read("rogue.pem");
  rogue.pem_private_key = Pki().Read("rogue.key");
  grpc::Status other = Hello(server.addr(), grpc::SslCredentials(rogue));
  EXPECT_EQ(other.error_code(), grpc::StatusCode::UNAVAILABLE)
      << other.error_message();
  // Plaintext: refused.
  EXPECT_EQ(Hello(server.addr(), grpc::InsecureChannelCredentials())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(MembershipTest, ServerCertificateForAnotherNameIsRefused) {
  const TlsMaterial wrong = MustLoad(Pki().Config("wrongname", false));
  Server server(ServerCredentialsFor(wrong));
  const TlsMaterial node = MustLoad(Pki().Config("node", false));
  grpc::Status refused = Hello(server.addr(), ChannelCredentialsFor(node));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.error_message();
  // The name the certificate is for: accepted.
  EXPECT_TRUE(
      Hello(server.addr(), ChannelCredentialsFor(node), "other.example").ok());
}

TEST_F(MembershipTest, ServerCertificateOfAnotherCaIsRefused) {
  grpc::SslServerCredentialsOptions o;
  o.pem_key_cert_pairs.push_back(
      {Pki().Read("rogue.key"), Pki().Read("rogue.pem")});
  Server server(grpc::SslServerCredentials(o));
  const TlsMaterial node = MustLoad(Pki().Config("node", false));
  EXPECT_EQ(Hello(server.addr(), ChannelCredentialsFor(node)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(MembershipTest, TlsWorksOverUnixSocketsAsLocalhost) {
  const TlsMaterial node = MustLoad(Pki().Config("node", true));
  // Under /tmp: TEST_TMPDIR is too long a path for a unix socket.
  Server server(ServerCredentialsFor(node),
                absl::StrCat("unix:/tmp/tractor-tls-test-", getpid(), ".sock"));
  EXPECT_TRUE(Hello(server.addr(), ChannelCredentialsFor(node)).ok());
  EXPECT_EQ(Hello(server.addr(), CaOnly()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(MembershipTest, PlaintextRegisterNeedsTheSecret) {
  InstallSecurity({TlsMaterial{}, "the-secret"});
  Server server(grpc::InsecureServerCredentials());
  auto plain = grpc::InsecureChannelCredentials();
  grpc::Status none = Register(server.addr(), plain, "");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(none.error_message(),
              HasSubstr("Register refused: the caller is not a member of "
                        "this mesh (it sent no mesh secret)"));
  grpc::Status wrong = Register(server.addr(), plain, "not-the-secret");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(wrong.error_message(), HasSubstr("the mesh secret it sent is wrong"));
  EXPECT_TRUE(Register(server.addr(), plain, "the-secret").ok());
  // Lookups stay open.
  auto stub = v1::Registrar::NewStub(NewChannel(server.addr()));
  grpc::ClientContext ctx;
  v1::FindRequest find;
  find.set_name("name");
  v1::FindReply found;
  ASSERT_TRUE(stub->Find(&ctx, find, &found).ok());
  EXPECT_EQ(found.registrations_size(), 1);
}

TEST_F(MembershipTest, ClientCertificateMakesAMemberWithoutTheSecret) {
  // TLS that asks for (but does not require) client certificates, and a
  // secret: a client with a certificate of the CA is a member, one without
  // needs the secret.
  const TlsMaterial node = MustLoad(Pki().Config("node", false));
  InstallSecurity({node, "the-secret"});
  Server server(ServerCredentialsFor(node));
  EXPECT_TRUE(Register(server.addr(), ChannelCredentialsFor(node), "").ok());
  grpc::Status anonymous = Register(server.addr(), CaOnly(), "");
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(anonymous.error_message(),
              HasSubstr("presented no client certificate signed by the mesh "
                        "CA"));
  EXPECT_TRUE(Register(server.addr(), CaOnly(), "the-secret").ok());
}

TEST_F(MembershipTest, ProcessConfigurationReachesNewChannelAndBindAll) {
  const TlsMaterial node = MustLoad(Pki().Config("node", true));
  InstallSecurity({node, ""});
  Server server(nullptr);  // BindAll: the process's credentials
  auto stub = v1::Registrar::NewStub(NewChannel(server.addr()));
  grpc::ClientContext ctx;
  v1::HelloRequest req;
  v1::HelloReply reply;
  EXPECT_TRUE(stub->Hello(&ctx, req, &reply).ok());
  EXPECT_EQ(Hello(server.addr(), grpc::InsecureChannelCredentials())
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // Mutual TLS without a secret: every connected client is a member.
  EXPECT_TRUE(Register(server.addr(), ChannelCredentialsFor(node), "").ok());
}

}  // namespace
}  // namespace tractor::discovery
