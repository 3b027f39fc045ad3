// SPDX-License-Identifier: AGPL-3.0-or-later
// The standalone registrar daemon.
//
//   registrar --listen 127.0.0.1:1616,unix:/run/tractor/registrar.sock
//   (any address form of discovery/address.h, multiaddrs included)
//             [--name registrar] [--lease_ms 5000] [--max_lease_ms 60000]
//             [--loglevel info]
//             [--store memory|etcd --etcd_endpoints h1:p,h2:p,h3:p
//              --etcd_prefix /tractor/ --etcd_ca F --etcd_cert F --etcd_key F]
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
// With --store=etcd the registrations live in an etcd cluster shared with
// other registrars (docs/registry.md).
// It does not wait for etcd: until the cluster answers, calls that need it
// fail with UNAVAILABLE. Exit status 1: an address could not be bound; 2: bad
// command line (one line on stderr), or a security configuration that does
// not load (the message names the file).
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/marshalling.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "discovery/address.h"
#include "discovery/allocator.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "discovery/log_level.h"
#include "discovery/process_usage.h"
#include "discovery/uuid.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "registrar/etcd_store.h"
#include "registrar/registrar_service.h"

// --- Command-line flags: every flag of the daemon is defined here. ---
ABSL_FLAG(std::string, listen, "",
          "Addresses to serve on, comma-separated (required): host:port "
          "([v6]:port; port 0 picks a free port), unix:/path, or a "
          "multiaddr: /ip4/H/tcp/P, /ip6/H/tcp/P, /dns4/NAME/tcp/P, "
          "/unix/PATH");
ABSL_FLAG(std::string, name, "registrar", "The registrar's actor name");
ABSL_FLAG(uint32_t, lease_ms, 5000,
          "Lease granted to a registration that names none, in ms");
ABSL_FLAG(uint32_t, max_lease_ms, 60000, "Longest lease granted, in ms");
ABSL_FLAG(std::string, loglevel, "info",
          "One of critical, error, warning, info, cancel, io, runtime, devx, "
          "debug, transport; TRACTOR_LOGLEVEL overrides it");
// Where registrations live.
ABSL_FLAG(std::string, store, "memory",
          "memory (this process's own table) or etcd (a cluster shared with "
          "other registrars; needs --etcd_endpoints)");
ABSL_FLAG(std::string, etcd_endpoints, "",
          "With --store=etcd: the cluster's client endpoints, host:port, "
          "comma-separated");
ABSL_FLAG(std::string, etcd_prefix, "/tractor/",
          "With --store=etcd: the prefix of every key");
ABSL_FLAG(std::string, etcd_ca, "",
          "With --store=etcd: CA bundle (PEM) for TLS to etcd; unset: "
          "plaintext");
ABSL_FLAG(std::string, etcd_cert, "",
          "With --store=etcd: client certificate (PEM) for TLS to etcd");
ABSL_FLAG(std::string, etcd_key, "",
          "With --store=etcd: client key (PEM) for TLS to etcd");
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
    "                 [--store memory|etcd] [--etcd_endpoints H:P[,H:P...]]\n"
    "                 [--etcd_prefix PREFIX] [--etcd_ca F] [--etcd_cert F]\n"
    "                 [--etcd_key F]\n"
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

// absl::ParseCommandLine reports a bad command line on stderr, in several
// lines, and exits with status 1. This daemon answers one line and status
// 2: while it parses, stderr goes to a memory file, and an exit handler
// turns Abseil's first error into that line.
int saved_stderr = -1;
int captured_stderr = -1;

void ExitDuringParse() {
  if (captured_stderr < 0) return;
  std::string text;
  char buf[4096];
  lseek(captured_stderr, 0, SEEK_SET);
  for (ssize_t n; (n = read(captured_stderr, buf, sizeof(buf))) > 0;) {
    text.append(buf, static_cast<size_t>(n));
  }
  std::string line;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&l, "ERROR: ")) {
      line = std::string(l);
      break;
    }
  }
  if (line.empty()) {  // --help and the like, answered on stdout
    (void)!write(saved_stderr, text.data(), text.size());
    _exit(0);
  }
  // "... for flag 'lease_ms'" reads "... for flag --lease_ms".
  for (size_t at; (at = line.find("flag '")) != std::string::npos;) {
    const size_t close = line.find('\'', at + 6);
    if (close == std::string::npos) break;
    line = absl::StrCat(line.substr(0, at), "flag --",
                        line.substr(at + 6, close - at - 6),
                        line.substr(close + 1));
  }
  const std::string out = absl::StrCat("registrar: ", line, "\n");
  (void)!write(saved_stderr, out.data(), out.size());
  _exit(kExitUsage);
}

struct Flags {
  std::vector<discovery::Address> listen;
  std::string name;
  uint32_t lease_ms = 0;
  uint32_t max_lease_ms = 0;
  std::string loglevel;
  // Null: the in-memory table.
  std::shared_ptr<Store> store;
};

// Parses the command line with Abseil, then checks what Abseil cannot.
// Exits 2 on a bad command line.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  saved_stderr = dup(STDERR_FILENO);
  captured_stderr = memfd_create("registrar-flags", MFD_CLOEXEC);
  if (saved_stderr >= 0 && captured_stderr >= 0) {
    std::atexit(ExitDuringParse);
    dup2(captured_stderr, STDERR_FILENO);
  } else {
    captured_stderr = -1;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (captured_stderr >= 0) {
    dup2(saved_stderr, STDERR_FILENO);
    close(captured_stderr);
    captured_stderr = -1;
  }
  if (positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", positional[1], "'"));
  }
  Flags flags;
  absl::StatusOr<std::vector<discovery::Address>> addrs =
      discovery::ParseAddressList(absl::GetFlag(FLAGS_listen));
  if (absl::GetFlag(FLAGS_listen).empty()) {
    return absl::InvalidArgumentError("--listen is required");
  }
  if (!addrs.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen: ", addrs.status().message()));
  }
  flags.listen = *std::move(addrs);
  flags.name = absl::GetFlag(FLAGS_name);
  if (flags.name.empty()) {
    return absl::InvalidArgumentError("--name must not be empty");
  }
  flags.lease_ms = absl::GetFlag(FLAGS_lease_ms);
  flags.max_lease_ms = absl::GetFlag(FLAGS_max_lease_ms);
  if (flags.lease_ms == 0 || flags.max_lease_ms == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.lease_ms == 0 ? "--lease_ms" : "--max_lease_ms",
        " must be a positive integer, got '0'"));
  }
  flags.loglevel = absl::GetFlag(FLAGS_loglevel);
  if (absl::Status s = discovery::ParseLogLevel(flags.loglevel).status();
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--loglevel: ", s.message()));
  }
  const std::string store = absl::GetFlag(FLAGS_store);
  const bool etcd_flags_given =
      !absl::GetFlag(FLAGS_etcd_endpoints).empty() ||
      !absl::GetFlag(FLAGS_etcd_ca).empty() ||
      !absl::GetFlag(FLAGS_etcd_cert).empty() ||
      !absl::GetFlag(FLAGS_etcd_key).empty();
  if (store == "memory") {
    if (etcd_flags_given) {
      return absl::InvalidArgumentError(
          "--etcd_* flags need --store=etcd (the store is memory)");
    }
  } else if (store == "etcd") {
    EtcdStore::Options options;
    for (absl::string_view e :
         absl::StrSplit(absl::GetFlag(FLAGS_etcd_endpoints), ',',
                        absl::SkipWhitespace())) {
      options.etcd.endpoints.emplace_back(absl::StripAsciiWhitespace(e));
    }
    if (options.etcd.endpoints.empty()) {
      return absl::InvalidArgumentError(
          "--store=etcd needs --etcd_endpoints (host:port,...)");
    }
    options.etcd.ca_file = absl::GetFlag(FLAGS_etcd_ca);
    options.etcd.cert_file = absl::GetFlag(FLAGS_etcd_cert);
    options.etcd.key_file = absl::GetFlag(FLAGS_etcd_key);
    options.prefix = absl::GetFlag(FLAGS_etcd_prefix);
    absl::StatusOr<std::unique_ptr<EtcdStore>> etcd =
        EtcdStore::Create(std::move(options));
    if (!etcd.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--store=etcd: ", etcd.status().message()));
    }
    flags.store = *std::move(etcd);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store must be memory or etcd, got '", store, "'"));
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
  discovery::TuneAllocatorForMessages();
  // Block the shutdown signals, and SIGUSR1 (print this process's usage),
  // before any thread starts, so every thread inherits the mask and only
  // sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  FLAGS_logtostderr = true;
  discovery::InitLogging(argv[0]);

  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::cerr << "registrar: " << flags.status().message() << std::endl;
    return kExitUsage;
  }
  if (absl::Status s = discovery::ApplyLogLevel(flags->loglevel); !s.ok()) {
    std::cerr << "registrar: " << s.message() << std::endl;
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
  options.store = flags->store;
  if (options.store != nullptr) {
    LOG(INFO) << "registrar: registrations live in "
              << options.store->Describe();
  }
  // Declared before the server: it must outlive it.
  RegistrarService service(options);

  if (absl::Status st = discovery::LoadStandardServices(); !st.ok()) {
    std::cerr << "registrar: " << st.message() << std::endl;
    return kExitUsage;
  }
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

  discovery::SetLogActor(flags->name, options.self.uuid());
  std::cout << "registrar " << options.self.uuid() << " listening on "
            << absl::StrJoin(bound, ",") << std::endl;
  LOG(INFO) << "registrar '" << flags->name << "' (" << options.self.uuid()
            << ") listening on " << absl::StrJoin(bound, ",");

  // Waits for a shutdown signal. Every second in between, free memory
  // above kReleaseAbove goes back to the kernel (a burst of large requests
  // leaves no more than that behind for longer; discovery/allocator.h).
  constexpr size_t kReleaseAbove = 16 << 20;
  const timespec kTick = {1, 0};
  int signo = 0;
  for (;;) {
    signo = sigtimedwait(&signals, nullptr, &kTick);
    if (signo < 0) {  // the tick (EAGAIN), or EINTR
      discovery::ReleaseFreeMemoryAbove(kReleaseAbove);
      continue;
    }
    if (signo != SIGUSR1) break;
    // One line on stdout, for an operator or a test watching the process's
    // memory: "usage threads=N rss_bytes=N heap_bytes=N".
    std::cout << "usage "
              << discovery::FormatProcessUsage(discovery::ReadProcessUsage())
              << std::endl;
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
