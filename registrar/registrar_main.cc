// SPDX-License-Identifier: AGPL-3.0-or-later
// The standalone registrar daemon.
//
//   registrar --listen 127.0.0.1:1616,unix:/run/tractor/registrar.sock
//   (any address form of discovery/address.h, multiaddrs included)
//             [--name registrar] [--lease_ms 5000] [--max_lease_ms 60000]
//             [--loglevel info]
//             [--tls_ca ca.pem --tls_cert cert.pem --tls_key key.pem
//              [--tls_require_client_cert=true] [--tls_server_name NAME]]
//             [--secret_file FILE]
//
// Transport security and the mesh secret (docs/security.md): the --tls_*
// flags, else the TRACTOR_TLS_* environment variables; --secret_file, else
// TRACTOR_SECRET or TRACTOR_SECRET_FILE. With a secret or with client
// certificates required, only members of the mesh may Register, Unregister
// and DeleteAddr; with neither, anyone may (logged as a warning at start).
//
// Binds every address given (all or nothing), registers itself under its
// name, prints one line to stdout when ready:
//
//   registrar <uuid> listening on <addr1>,<addr2>
//
// (with the real port where port 0 was asked for), and serves until SIGINT
// or SIGTERM, then exits 0 and removes the unix socket files it created.
// Exit status 1: an address could not be bound; 2: bad command line, or a
// security configuration that does not load (the message names the file).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/marshalling.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "discovery/log_level.h"
#include "discovery/uuid.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "registrar/registrar_service.h"

// Transport security and membership (docs/security.md).
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA that peers' certificates are checked against");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM file of the registrar's certificate chain");
ABSL_FLAG(std::string, tls_key, "", "PEM file of the registrar's private key");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "mutual TLS: refuse clients without a certificate signed by the CA");
ABSL_FLAG(std::string, tls_server_name, "",
          "the name peers' certificates are checked against, instead of the "
          "host dialled");
ABSL_FLAG(std::string, secret_file, "",
          "file holding the mesh secret; members present it to Register, "
          "Unregister and DeleteAddr");

namespace tractor::registrar {
namespace {

constexpr int kExitBindFailed = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: registrar --listen ADDR[,ADDR...] [--name NAME] [--lease_ms MS]\n"
    "                 [--max_lease_ms MS] [--loglevel LEVEL]\n"
    "  ADDR is host:port ([v6]:port; port 0 picks a free port), "
    "unix:/path,\n"
    "  or a multiaddr: /ip4/H/tcp/P, /ip6/H/tcp/P, /dns4/NAME/tcp/P, "
    "/unix/PATH\n"
    "  LEVEL is one of critical, error, warning, info (the default), cancel,\n"
    "  io, runtime, devx, debug, transport; TRACTOR_LOGLEVEL overrides it\n"
    "security (docs/security.md): [--tls_ca FILE --tls_cert FILE --tls_key "
    "FILE\n"
    "  [--tls_require_client_cert=true] [--tls_server_name NAME]] "
    "[--secret_file FILE]\n"
    "  (else TRACTOR_TLS_CA, TRACTOR_TLS_CERT, TRACTOR_TLS_KEY,\n"
    "  TRACTOR_TLS_REQUIRE_CLIENT_CERT, TRACTOR_TLS_SERVER_NAME, "
    "TRACTOR_SECRET,\n"
    "  TRACTOR_SECRET_FILE)\n";

struct Flags {
  std::vector<discovery::Address> listen;
  std::string name = "registrar";
  uint32_t lease_ms = 5000;
  uint32_t max_lease_ms = 60000;
  std::string loglevel = "info";
};

// Parses `--flag value` and `--flag=value`. Returns an error message on bad
// input; `help` is set for --help.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv, bool* help) {
  Flags flags;
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return flags;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " needs a value"));
    }
    if (name == "listen") {
      // Every address form of discovery/address.h, printed canonically.
      absl::StatusOr<std::vector<discovery::Address>> addrs =
          discovery::ParseAddressList(value);
      if (!addrs.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--listen: ", addrs.status().message()));
      }
      flags.listen.insert(flags.listen.end(), addrs->begin(), addrs->end());
    } else if (name == "name") {
      flags.name = value;
    } else if (name == "lease_ms" || name == "max_lease_ms") {
      uint32_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " must be a positive integer, got '", value, "'"));
      }
      (name == "lease_ms" ? flags.lease_ms : flags.max_lease_ms) = ms;
    } else if (name == "tls_ca" || name == "tls_cert" || name == "tls_key" ||
               name == "tls_server_name" || name == "secret_file") {
      absl::Flag<std::string>& flag =
          name == "tls_ca"     ? FLAGS_tls_ca
          : name == "tls_cert" ? FLAGS_tls_cert
          : name == "tls_key"  ? FLAGS_tls_key
          : name == "secret_file" ? FLAGS_secret_file
                                  : FLAGS_tls_server_name;
      absl::SetFlag(&flag, value);
    } else if (name == "tls_require_client_cert") {
      bool require = false;
      std::string error;
      if (!absl::ParseFlag(value, &require, &error)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--tls_require_client_cert: '", value, "' is not a boolean"));
      }
      absl::SetFlag(&FLAGS_tls_require_client_cert, require);
    } else if (name == "loglevel") {
      if (absl::Status s = discovery::ParseLogLevel(value).status(); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--loglevel: ", s.message()));
      }
      flags.loglevel = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name));
    }
  }
  if (flags.listen.empty()) {
    return absl::InvalidArgumentError("--listen is required");
  }
  if (flags.name.empty()) {
    return absl::InvalidArgumentError("--name must not be empty");
  }
  return flags;
}

// The security configuration of the flags, else of the environment.
absl::StatusOr<discovery::Security> LoadSecurity() {
  discovery::TlsConfig tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.require_client_cert = absl::GetFlag(FLAGS_tls_require_client_cert);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (tls.empty()) {
    absl::StatusOr<discovery::TlsConfig> env = discovery::TlsConfigFromEnv();
    if (!env.ok()) return env.status();
    tls = *std::move(env);
  }
  absl::StatusOr<discovery::TlsMaterial> material = discovery::LoadTls(tls);
  if (!material.ok()) return material.status();
  discovery::Security security;
  security.tls = *std::move(material);
  const std::string secret_file = absl::GetFlag(FLAGS_secret_file);
  absl::StatusOr<std::string> secret =
      secret_file.empty() ? discovery::SecretFromEnv()
                          : discovery::ReadSecretFile(secret_file);
  if (!secret.ok()) return secret.status();
  security.secret = *std::move(secret);
  return security;
}

int Main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so every thread
  // inherits the mask and only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  bool help = false;
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv, &help);
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (!flags.ok()) {
    std::cerr << "registrar: " << flags.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (absl::Status s = discovery::ApplyLogLevel(flags->loglevel); !s.ok()) {
    std::cerr << "registrar: " << s.message() << "\n" << kUsage;
    return kExitUsage;
  }

  absl::StatusOr<discovery::Security> security = LoadSecurity();
  if (!security.ok()) {
    std::cerr << "registrar: " << security.status().message() << std::endl;
    return kExitUsage;
  }
  const bool members_only =
      !security->secret.empty() ||
      security->tls.mode == discovery::SecurityMode::kMutualTls;
  LOG(INFO) << "registrar: "
            << discovery::SecurityModeName(security->tls.mode)
            << (security->secret.empty() ? ", no mesh secret"
                                         : ", with a mesh secret");
  if (!members_only) {
    LOG(WARNING) << "registrar: no mesh secret and no client certificates "
                    "required: any client may Register, Unregister and "
                    "DeleteAddr (see docs/security.md)";
  }
  discovery::InstallSecurity(*std::move(security));

  RegistrarService::Options options;
  options.members_only = members_only;
  options.self.set_name(flags->name);
  options.self.set_uuid(discovery::NewUuid());
  options.self.set_pid(getpid());
  options.self.set_is_registrar(true);
  options.default_lease = absl::Milliseconds(flags->lease_ms);
  options.max_lease = absl::Milliseconds(flags->max_lease_ms);
  // Declared before the server: it must outlive it.
  RegistrarService service(options);

  grpc::ServerBuilder builder;
  discovery::ApplyServerArgs(builder);
  absl::StatusOr<discovery::ListeningPorts> ports = discovery::BindAll(
      builder, flags->listen, {.create_parent_dirs = true});
  if (!ports.ok()) {
    std::cerr << "registrar: " << ports.status().message() << std::endl;
    return kExitBindFailed;
  }
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  absl::StatusOr<std::vector<discovery::Address>> accept =
      ports->Resolve(server.get());
  if (!accept.ok()) {
    std::cerr << "registrar: " << accept.status().message() << std::endl;
    if (server != nullptr) {
      server->Shutdown();
      server->Wait();
      ports->RemoveSocketFiles();
    }
    return kExitBindFailed;
  }

  std::vector<std::string> bound;
  for (const discovery::Address& addr : *accept) {
    bound.push_back(addr.ToString());
  }
  v1::Registration self;
  *self.mutable_aid() = options.self;
  for (const std::string& addr : bound) self.add_addrs(addr);
  if (absl::Status s = service.AddPinnedRegistration(self); !s.ok()) {
    LOG(ERROR) << "registrar: cannot register itself: " << s;
  }

  std::cout << "registrar " << options.self.uuid() << " listening on "
            << absl::StrJoin(bound, ",") << std::endl;
  LOG(INFO) << "registrar '" << flags->name << "' (" << options.self.uuid()
            << ") listening on " << absl::StrJoin(bound, ",");

  int signo = 0;
  while (sigwait(&signals, &signo) != 0) {
  }
  LOG(INFO) << "registrar: received " << strsignal(signo) << ", shutting down";
  service.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  server.reset();
  ports->RemoveSocketFiles();
  LOG(INFO) << "registrar: stopped";
  return 0;
}

}  // namespace
}  // namespace tractor::registrar

int main(int argc, char** argv) {
  return tractor::registrar::Main(argc, argv);
}
