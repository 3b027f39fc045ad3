// SPDX-License-Identifier: AGPL-3.0-or-later
// Transport security and membership: the one place that decides which
// credentials every tractor server and channel uses, and who is a member of
// the mesh (docs/security.md).
//
// A process has one security configuration, installed once at boot
// (`InstallSecurity`) by the root actor (from `RootOptions` or the
// environment), by a spawned child (from its `SpawnSpec`) or by the
// registrar daemon (from its flags). `NewChannel` (discovery/channel.h) and
// `BindAll` (discovery/listen.h) use it whenever they are not given
// credentials explicitly, so every actor server, child link, portal,
// registry client, `FindActor` and registrar uses the same mode:
//
//   mode         set by                    server                client
//   plaintext    no TLS file named         no TLS                no TLS
//   TLS          ca, cert and key          TLS; verifies a       TLS; verifies the
//                                          client certificate    server against ca;
//                                          when one is offered   presents cert
//   mutual TLS   + require_client_cert     refuses a client      as TLS
//                                          without a certificate
//                                          signed by ca
//
// A *member* is a peer that presented a client certificate signed by the
// configured CA, or the mesh secret (call metadata `tractor-secret`). Only
// members may call the control RPCs (`CancelActor`, `CancelTask`, the
// registrar's `Register`, `Unregister` and `DeleteAddr`); `CheckMember`
// answers the others with PERMISSION_DENIED.
#ifndef TRACTOR_DISCOVERY_CREDENTIALS_H_
#define TRACTOR_DISCOVERY_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "discovery/address.h"
#include "grpcpp/grpcpp.h"

namespace tractor::discovery {

// The environment variables any actor binary (and the registrar daemon)
// reads when its program did not configure TLS or a secret itself.
inline constexpr char kTlsCaEnv[] = "TRACTOR_TLS_CA";
inline constexpr char kTlsCertEnv[] = "TRACTOR_TLS_CERT";
inline constexpr char kTlsKeyEnv[] = "TRACTOR_TLS_KEY";
// "1", "true" or "yes": mutual TLS (require client certificates).
inline constexpr char kTlsRequireClientCertEnv[] =
    "TRACTOR_TLS_REQUIRE_CLIENT_CERT";
// The name every peer's certificate is checked against, instead of the host
// of the address dialled.
inline constexpr char kTlsServerNameEnv[] = "TRACTOR_TLS_SERVER_NAME";
inline constexpr char kSecretEnv[] = "TRACTOR_SECRET";
inline constexpr char kSecretFileEnv[] = "TRACTOR_SECRET_FILE";

// The call metadata key that carries the mesh secret.
inline constexpr char kSecretMetadataKey[] = "tractor-secret";

// Which transport security a configuration selects.
enum class SecurityMode {
  // No TLS: today's default, meant for loopback and unix sockets.
  kPlaintext,
  // TLS: every server is authenticated by a certificate signed by the CA;
  // clients present theirs.
  kTls,
  // TLS, and servers refuse clients without a certificate signed by the CA.
  kMutualTls,
};

// Returns "plaintext", "TLS" or "mTLS".
const char* SecurityModeName(SecurityMode mode);

// File paths of a TLS configuration (never key material: these are what
// children inherit). All empty: plaintext. Otherwise `ca_file`, `cert_file`
// and `key_file` must all be set. Copyable value type.
struct TlsConfig {
  // PEM file of the CA certificate(s) peers' certificates are checked
  // against.
  std::string ca_file;
  // PEM file of this process's certificate chain, served to clients and
  // presented to servers.
  std::string cert_file;
  // PEM file of the private key of `cert_file`.
  std::string key_file;
  // Mutual TLS: servers refuse a client without a certificate signed by
  // `ca_file`.
  bool require_client_cert = false;
  // When set, every peer's certificate must be valid for this name instead
  // of the host of the address dialled (unix socket addresses are checked as
  // "localhost"). For a mesh that shares one certificate name.
  std::string server_name;

  bool empty() const {
    return ca_file.empty() && cert_file.empty() && key_file.empty() &&
           !require_client_cert && server_name.empty();
  }
  SecurityMode mode() const;
};

// Reads the TLS configuration from the TRACTOR_TLS_* variables. Returns an
// empty configuration when none is set, INVALID_ARGUMENT for a
// TRACTOR_TLS_REQUIRE_CLIENT_CERT that is not a boolean.
absl::StatusOr<TlsConfig> TlsConfigFromEnv();

// The PEM contents of a validated configuration.
struct TlsMaterial {
  SecurityMode mode = SecurityMode::kPlaintext;
  TlsConfig config;  // the paths, made absolute
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

// Reads and checks the files of `config`: each is readable and holds PEM of
// the right kind, the certificate is within its validity period, the key
// matches the certificate and the certificate is signed by the CA. Every
// error names the file and the problem ("TLS certificate file
// /etc/tractor/node.pem: expired on Jan  2 00:00:00 2020 GMT"), with
// INVALID_ARGUMENT (incomplete configuration) or FAILED_PRECONDITION (bad
// file). Thread-safe.
absl::StatusOr<TlsMaterial> LoadTls(const TlsConfig& config);

// Returns the mesh secret named by the environment: TRACTOR_SECRET, else the
// contents of the file TRACTOR_SECRET_FILE names (trailing white space
// dropped), else "" (none). An error names the file that cannot be read or
// is empty.
absl::StatusOr<std::string> SecretFromEnv();

// Reads a secret file (trailing white space dropped). An error names the
// file and why: unreadable, empty.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

// Returns a new random secret (32 bytes from the operating system, hex).
std::string NewSecret();

// The security of this process. Copyable value type.
struct Security {
  TlsMaterial tls;
  // The mesh secret; empty: none, then every peer counts as a member unless
  // mutual TLS is on (the registrar daemon without a configured secret).
  std::string secret;
};

// Installs `security` as this process's configuration, replacing the
// previous one (channels and servers made before keep theirs). Thread-safe.
void InstallSecurity(Security security);
// Returns a copy of this process's configuration (plaintext and no secret
// until one is installed). Thread-safe.
Security CurrentSecurity();

// Credentials for a client channel / a server port of `tls` (plaintext:
// insecure ones). A server in mutual TLS requires a client certificate
// signed by the CA; in TLS it asks for one and verifies it when given.
// Thread-safe.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(
    const TlsMaterial& tls);
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(
    const TlsMaterial& tls);

// Credentials for a client channel / a server port of this process's
// configuration. Thread-safe.
std::shared_ptr<grpc::ChannelCredentials> ProcessChannelCredentials();
std::shared_ptr<grpc::ServerCredentials> ProcessServerCredentials();
// Adds the channel arguments the configuration needs (the TLS name
// override) to `args`. Thread-safe.
void AddSecurityChannelArgs(grpc::ChannelArguments& args);

// Adds this process's mesh secret, if it has one, to a call's metadata.
// Call on the control RPCs only. Thread-safe.
void AttachSecret(grpc::ClientContext* ctx);

// Returns OK when the caller of `ctx` is a member of this mesh: it
// presented a client certificate that was verified against the configured
// CA, or the mesh secret as call metadata, or this process has neither a
// secret nor mutual TLS (membership is then not checked). Otherwise logs a
// warning and returns PERMISSION_DENIED saying that `what` was refused and
// why. Thread-safe.
grpc::Status CheckMember(const grpc::ServerContextBase& ctx,
                         absl::string_view what);

// True when `a` and `b` are equal, in time independent of where they
// differ.
bool SecretsEqual(absl::string_view a, absl::string_view b);

// Logs, once per process, a warning that `addr` is served in plaintext when
// this process is in plaintext mode and `addr` is neither a loopback nor a
// unix socket address. Thread-safe.
void WarnIfPlaintextOffLoopback(const Address& addr);

}  // namespace tractor::discovery

#endif  // TRACTOR_DISCOVERY_CREDENTIALS_H_
