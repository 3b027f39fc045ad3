// The standalone registrar daemon.
//
//   registrar --listen 127.0.0.1:1616,unix:/run/tractor/registrar.sock
//   (any address form of discovery/address.h, multiaddrs included)
//             [--name registrar] [--lease_ms 5000] [--max_lease_ms 60000]
//             [--loglevel info]
//
// Binds every address given (all or nothing), registers itself under its
// name, prints one line to stdout when ready:
//
//   registrar <uuid> listening on <addr1>,<addr2>
//
// (with the real port where port 0 was asked for), and serves until SIGINT
// or SIGTERM, then exits 0 and removes the unix socket files it created.
// Exit status 1: an address could not be bound; 2: bad command line.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "discovery/address.h"
#include "grpcpp/grpcpp.h"
#include "registrar/registrar_service.h"

namespace tractor::registrar {
namespace {

constexpr int kExitBindFailed = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: registrar --listen ADDR[,ADDR...] [--name NAME] [--lease_ms MS]\n"
    "                 [--max_lease_ms MS] [--loglevel "
    "trace|debug|info|warning|error]\n"
    "  ADDR is host:port ([v6]:port; port 0 picks a free port), "
    "unix:/path,\n"
    "  or a multiaddr: /ip4/H/tcp/P, /ip6/H/tcp/P, /dns4/NAME/tcp/P, "
    "/unix/PATH\n";

struct Flags {
  std::vector<std::string> listen;
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
      for (const discovery::Address& addr : *addrs) {
        flags.listen.push_back(addr.ToString());
      }
    } else if (name == "name") {
      flags.name = value;
    } else if (name == "lease_ms" || name == "max_lease_ms") {
      uint32_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", name, " must be a positive integer, got '", value, "'"));
      }
      (name == "lease_ms" ? flags.lease_ms : flags.max_lease_ms) = ms;
    } else if (name == "loglevel") {
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

// Sets glog's thresholds for a tractor log level name.
absl::Status ApplyLogLevel(const std::string& level) {
  if (level == "trace") {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 2;
  } else if (level == "debug") {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 1;
  } else if (level == "info") {
    FLAGS_minloglevel = google::GLOG_INFO;
  } else if (level == "warning" || level == "warn") {
    FLAGS_minloglevel = google::GLOG_WARNING;
  } else if (level == "error") {
    FLAGS_minloglevel = google::GLOG_ERROR;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --loglevel '", level, "'"));
  }
  return absl::OkStatus();
}

std::string NewUuid4() {
  absl::BitGen gen;
  uint64_t hi = absl::Uniform<uint64_t>(gen);
  uint64_t lo = absl::Uniform<uint64_t>(gen);
  hi = (hi & ~0xF000ull) | 0x4000ull;                   // version 4
  lo = (lo & ~(0xC000ull << 48)) | (0x8000ull << 48);  // RFC 4122 variant
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                         (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48,
                         lo & 0xFFFFFFFFFFFFull);
}

// Returns the filesystem path of a "unix:" address, or nullopt for any
// other address.
std::optional<std::string> UnixPath(const std::string& addr) {
  absl::string_view rest = addr;
  if (!absl::ConsumePrefix(&rest, "unix:")) return std::nullopt;
  // "unix:///abs/path" is the URI form of "unix:/abs/path".
  if (absl::StartsWith(rest, "//")) rest.remove_prefix(2);
  return std::string(rest);
}

// Makes `path` ready to be bound: checks its length, creates its directory,
// and removes a stale socket file nobody listens on. Refuses a path another
// process is listening on (gRPC would unlink it and steal the address).
absl::Status PrepareUnixPath(const std::string& addr, const std::string& path) {
  constexpr size_t kMaxPath = sizeof(sockaddr_un{}.sun_path) - 1;
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on ", addr, ": empty socket path"));
  }
  if (path.size() > kMaxPath) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot listen on ", addr, ": unix socket path is ", path.size(),
        " bytes long; the limit is ", kMaxPath));
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot listen on ", addr, ": ", std::strerror(errno)));
    }
    // Create the parent directory when missing (one level is enough for
    // the usual /run/tractor/... layout; deeper paths must exist).
    if (size_t slash = path.rfind('/'); slash != std::string::npos &&
                                        slash > 0) {
      std::string dir = path.substr(0, slash);
      if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot listen on ", addr, ": cannot create ", dir,
                         ": ", std::strerror(errno)));
      }
    }
    return absl::OkStatus();
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot listen on ", addr, ": ", path, " exists and is not a socket"));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("socket(AF_UNIX): ", std::strerror(errno)));
  }
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun));
  int connect_errno = errno;
  close(fd);
  if (rc == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("cannot listen on ", addr,
                     ": address already in use (a process listens on ", path,
                     ")"));
  }
  if (connect_errno != ECONNREFUSED) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on ", addr, ": probing ", path, ": ",
                     std::strerror(connect_errno)));
  }
  LOG(INFO) << "registrar: removing stale socket file " << path;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on ", addr, ": cannot remove stale ",
                     path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Replaces a requested port 0 in "host:0" by the port gRPC picked.
std::string BoundAddress(const std::string& addr, int selected_port) {
  if (UnixPath(addr).has_value() || selected_port <= 0) return addr;
  if (absl::EndsWith(addr, ":0")) {
    return absl::StrCat(addr.substr(0, addr.size() - 1), selected_port);
  }
  return addr;
}

void RemoveSocketFile(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    if (unlink(path.c_str()) != 0) {
      LOG(WARNING) << "registrar: cannot remove " << path << ": "
                   << std::strerror(errno);
    }
  }
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
  if (absl::Status s = ApplyLogLevel(flags->loglevel); !s.ok()) {
    std::cerr << "registrar: " << s.message() << "\n" << kUsage;
    return kExitUsage;
  }

  std::vector<std::string> socket_paths;
  for (const std::string& addr : flags->listen) {
    std::optional<std::string> path = UnixPath(addr);
    if (!path.has_value()) continue;
    if (absl::Status s = PrepareUnixPath(addr, *path); !s.ok()) {
      std::cerr << "registrar: " << s.message() << std::endl;
      return kExitBindFailed;
    }
    socket_paths.push_back(*path);
  }

  RegistrarService::Options options;
  options.self.set_name(flags->name);
  options.self.set_uuid(NewUuid4());
  options.self.set_pid(getpid());
  options.self.set_is_registrar(true);
  options.default_lease = absl::Milliseconds(flags->lease_ms);
  options.max_lease = absl::Milliseconds(flags->max_lease_ms);
  // Declared before the server: it must outlive it.
  RegistrarService service(options);

  grpc::ServerBuilder builder;
  // Without this, gRPC binds with SO_REUSEPORT and a second server on the
  // same port would "succeed" and split the traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<int> ports(flags->listen.size(), 0);
  for (size_t i = 0; i < flags->listen.size(); ++i) {
    builder.AddListeningPort(flags->listen[i],
                             grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    // gRPC binds in order and stops at the first failure, leaving its
    // selected port at 0.
    std::string failed = flags->listen.front();
    for (size_t i = 0; i < ports.size(); ++i) {
      if (ports[i] == 0) {
        failed = flags->listen[i];
        break;
      }
    }
    std::cerr << "registrar: cannot listen on " << failed
              << ": bind failed (address already in use, or not a local "
                 "address)"
              << std::endl;
    for (const std::string& path : socket_paths) RemoveSocketFile(path);
    return kExitBindFailed;
  }

  std::vector<std::string> bound;
  for (size_t i = 0; i < flags->listen.size(); ++i) {
    bound.push_back(BoundAddress(flags->listen[i], ports[i]));
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
  for (const std::string& path : socket_paths) RemoveSocketFile(path);
  LOG(INFO) << "registrar: stopped";
  return 0;
}

}  // namespace
}  // namespace tractor::registrar

int main(int argc, char** argv) {
  return tractor::registrar::Main(argc, argv);
}
