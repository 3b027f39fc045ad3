// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "discovery/mutex.h"
#include "glog/logging.h"

namespace tractor::discovery {
namespace {

// The installed configuration and the credentials made from it.
struct Installed {
  Mutex mu;
  Security security ABSL_GUARDED_BY(mu);
  std::shared_ptr<grpc::ChannelCredentials> channel ABSL_GUARDED_BY(mu);
  std::shared_ptr<grpc::ServerCredentials> server ABSL_GUARDED_BY(mu);
};

Installed& GetInstalled() {
  static auto* installed = new Installed;
  return *installed;
}

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : v;
}

std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

absl::StatusOr<std::string> ReadFile(const std::string& what,
                                     const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::unique_ptr<BIO, BioFree> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every PEM certificate in `pem`, in order.
std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::vector<X509Ptr> certs;
  auto bio = MemBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(x);
  }
  ERR_clear_error();
  return certs;
}

std::string AsnTime(const ASN1_TIME* t) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

// Checks that `cert` is within its validity period; `what` names it.
absl::Status CheckValidity(const std::string& what, X509* cert) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": expired on ", AsnTime(X509_get0_notAfter(cert))));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": not valid before ", AsnTime(X509_get0_notBefore(cert))));
  }
  return absl::OkStatus();
}

}  // namespace

const char* SecurityModeName(SecurityMode mode) {
  switch (mode) {
    case SecurityMode::kPlaintext:
      return "plaintext";
    case SecurityMode::kTls:
      return "TLS";
    case SecurityMode::kMutualTls:
      return "mTLS";
  }
  return "?";
}

SecurityMode TlsConfig::mode() const {
  if (require_client_cert) return SecurityMode::kMutualTls;
  if (empty()) return SecurityMode::kPlaintext;
  return SecurityMode::kTls;
}

absl::StatusOr<TlsConfig> TlsConfigFromEnv() {
  TlsConfig config;
  config.ca_file = Env(kTlsCaEnv);
  config.cert_file = Env(kTlsCertEnv);
  config.key_file = Env(kTlsKeyEnv);
  config.server_name = Env(kTlsServerNameEnv);
  const std::string require = absl::AsciiStrToLower(Env(kTlsRequireClientCertEnv));
  if (require == "1" || require == "true" || require == "yes") {
    config.require_client_cert = true;
  } else if (!(require.empty() || require == "0" || require == "false" ||
               require == "no")) {
    return absl::InvalidArgumentError(
        absl::StrCat(kTlsRequireClientCertEnv, "='", Env(kTlsRequireClientCertEnv),
                     "' is not a boolean (1, true, yes, 0, false, no)"));
  }
  return config;
}

absl::StatusOr<TlsMaterial> LoadTls(const TlsConfig& config) {
  TlsMaterial m;
  m.mode = config.mode();
  if (m.mode == SecurityMode::kPlaintext) return m;
  m.config = config;
  m.config.ca_file = Absolute(config.ca_file);
  m.config.cert_file = Absolute(config.cert_file);
  m.config.key_file = Absolute(config.key_file);
  for (const auto& [name, value] :
       {std::pair<const char*, const std::string*>{"CA file", &config.ca_file},
        {"certificate file", &config.cert_file},
        {"key file", &config.key_file}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "incomplete TLS configuration: no ", name,
          " (TLS needs a CA file, a certificate file and a key file)"));
    }
  }
  const std::string ca_what = absl::StrCat("TLS CA file ", m.config.ca_file);
  const std::string cert_what =
      absl::StrCat("TLS certificate file ", m.config.cert_file);
  const std::string key_what = absl::StrCat("TLS key file ", m.config.key_file);
  absl::StatusOr<std::string> ca = ReadFile("TLS CA file", m.config.ca_file);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert =
      ReadFile("TLS certificate file", m.config.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile("TLS key file", m.config.key_file);
  if (!key.ok()) return key.status();

  std::vector<X509Ptr> cas = ParseCertificates(*ca);
  if (cas.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(ca_what, ": holds no PEM certificate"));
  }
  for (const X509Ptr& c : cas) {
    if (absl::Status s = CheckValidity(ca_what, c.get()); !s.ok()) return s;
  }
  std::vector<X509Ptr> chain = ParseCertificates(*cert);
  if (chain.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(cert_what, ": holds no PEM certificate"));
  }
  if (absl::Status s = CheckValidity(cert_what, chain[0].get()); !s.ok()) {
    return s;
  }
  std::unique_ptr<EVP_PKEY, KeyFree> pkey;
  {
    auto bio = MemBio(*key);
    pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
  }
  if (pkey == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(key_what, ": holds no PEM private key"));
  }
  if (X509_check_private_key(chain[0].get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(
        key_what, ": does not match the certificate in ", m.config.cert_file));
  }
  // The certificate must chain to the CA, or no peer will accept it.
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const X509Ptr& c : cas) X509_STORE_add_cert(store.get(), c.get());
  std::unique_ptr<STACK_OF(X509), StackFree> intermediates(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) {
    X509_up_ref(chain[i].get());
    sk_X509_push(intermediates.get(), chain[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> verify(X509_STORE_CTX_new());
  X509_STORE_CTX_init(verify.get(), store.get(), chain[0].get(),
                      intermediates.get());
  if (X509_verify_cert(verify.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(verify.get());
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(
        cert_what, ": not signed by the CA in ", m.config.ca_file, " (",
        X509_verify_cert_error_string(err), ")"));
  }
  m.ca_pem = *std::move(ca);
  m.cert_pem = *std::move(cert);
  m.key_pem = *std::move(key);
  return m;
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile("secret file", path);
  if (!text.ok()) return text.status();
  std::string secret(absl::StripTrailingAsciiWhitespace(*text));
  if (secret.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("secret file ", path, ": is empty"));
  }
  return secret;
}

absl::StatusOr<std::string> SecretFromEnv() {
  if (std::string secret = Env(kSecretEnv); !secret.empty()) return secret;
  if (std::string file = Env(kSecretFileEnv); !file.empty()) {
    return ReadSecretFile(file);
  }
  return std::string();
}

std::string NewSecret() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      CHECK_EQ(errno, EINTR) << "getrandom: " << std::strerror(errno);
      continue;
    }
    got += static_cast<size_t>(n);
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(
    const TlsMaterial& tls) {
  if (tls.mode == SecurityMode::kPlaintext) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions client;
  client.pem_root_certs = tls.ca_pem;
  client.pem_private_key = tls.key_pem;
  client.pem_cert_chain = tls.cert_pem;
  return grpc::SslCredentials(client);
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(
    const TlsMaterial& tls) {
  if (tls.mode == SecurityMode::kPlaintext) {
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(
      tls.mode == SecurityMode::kMutualTls
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls.ca_pem;
  options.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  return grpc::SslServerCredentials(options);
}

void InstallSecurity(Security security) {
  std::shared_ptr<grpc::ChannelCredentials> channel =
      ChannelCredentialsFor(security.tls);
  std::shared_ptr<grpc::ServerCredentials> server =
      ServerCredentialsFor(security.tls);
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  installed.security = std::move(security);
  installed.channel = std::move(channel);
  installed.server = std::move(server);
}

Security CurrentSecurity() {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  return installed.security;
}

std::shared_ptr<grpc::ChannelCredentials> ProcessChannelCredentials() {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  if (installed.channel == nullptr) return grpc::InsecureChannelCredentials();
  return installed.channel;
}

std::shared_ptr<grpc::ServerCredentials> ProcessServerCredentials() {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  if (installed.server == nullptr) return grpc::InsecureServerCredentials();
  return installed.server;
}

void AddSecurityChannelArgs(grpc::ChannelArguments& args) {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  const TlsMaterial& tls = installed.security.tls;
  if (tls.mode != SecurityMode::kPlaintext && !tls.config.server_name.empty()) {
    args.SetSslTargetNameOverride(tls.config.server_name);
  }
}

void AttachSecret(grpc::ClientContext* ctx) {
  Installed& installed = GetInstalled();
  MutexLock lock(&installed.mu);
  if (!installed.security.secret.empty()) {
    ctx->AddMetadata(kSecretMetadataKey, installed.security.secret);
  }
}

bool SecretsEqual(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

grpc::Status CheckMember(const grpc::ServerContextBase& ctx,
                         absl::string_view what) {
  SecurityMode mode;
  std::string secret;
  {
    Installed& installed = GetInstalled();
    MutexLock lock(&installed.mu);
    mode = installed.security.tls.mode;
    secret = installed.security.secret;
  }
  if (secret.empty() && mode != SecurityMode::kMutualTls) {
    return grpc::Status::OK;  // membership is not checked
  }
  if (mode != SecurityMode::kPlaintext) {
    // gRPC verified any client certificate against the CA during the
    // handshake; a verified one makes the peer authenticated.
    std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
    if (auth != nullptr && auth->IsPeerAuthenticated()) return grpc::Status::OK;
  }
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find(kSecretMetadataKey);
  const bool presented = it != metadata.end();
  if (presented && !secret.empty() &&
      SecretsEqual(absl::string_view(it->second.data(), it->second.size()),
                   secret)) {
    return grpc::Status::OK;
  }
  const std::string message = absl::StrCat(
      what, " refused: the caller is not a member of this mesh (",
      presented ? "the mesh secret it sent is wrong"
                : "it sent no mesh secret",
      mode == SecurityMode::kPlaintext
          ? ")"
          : " and presented no client certificate signed by the mesh CA)");
  LOG(WARNING) << message << "; peer " << ctx.peer();
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, message);
}

void WarnIfPlaintextOffLoopback(const Address& addr) {
  if (addr.kind() == Address::Kind::kUnix || addr.IsLoopback()) return;
  if (CurrentSecurity().tls.mode != SecurityMode::kPlaintext) return;
  static absl::once_flag once;
  absl::call_once(once, [&addr] {
    LOG(WARNING) << "serving " << addr.ToString()
                 << " in plaintext, off loopback: any host that reaches it "
                    "can read the traffic and call the actor's functions "
                    "(configure TLS, see docs/security.md)";
  });
}

}  // namespace tractor::discovery
