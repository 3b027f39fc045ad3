// SPDX-License-Identifier: AGPL-3.0-or-later
#include "discovery/listen.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "discovery/credentials.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/impl/server_initializer.h"

namespace tractor::discovery {
namespace {

// The health service (listen.h) is part of libgrpc++ and costs nothing
// until a server is built; it is enabled at program start, before any
// builder exists.
bool EnableHealthService() {
  grpc::EnableDefaultHealthCheckService(true);
  return true;
}
[[maybe_unused]] const bool kHealthService = EnableHealthService();

// Loads gRPC's plugin library `lib` (libgrpc++_reflection or
// libgrpcpp_channelz) of the gRPC version this program runs with, and calls
// its plugin initialiser `init` (a mangled C++ name: both are `void f()`),
// which adds the plugin to the process-wide list every ServerBuilder
// constructed afterwards takes its plugins from.
absl::Status LoadPlugin(absl::string_view service, absl::string_view lib,
                        const char* init) {
  // grpc::Version() is "1.51.1"; the library's soname ends in "1.51".
  const std::string version = grpc::Version();
  std::vector<absl::string_view> v = absl::StrSplit(version, '.');
  std::vector<std::string> names;
  if (v.size() >= 2) names.push_back(absl::StrCat(lib, ".so.", v[0], ".", v[1]));
  names.push_back(absl::StrCat(lib, ".so"));
  std::string errors;
  for (const auto& name : names) {
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (handle == nullptr) {
      const char* e = dlerror();
      absl::StrAppend(&errors, errors.empty() ? "" : "; ", e ? e : name);
      continue;
    }
    auto* fn = reinterpret_cast<void (*)()>(dlsym(handle, init));
    if (fn == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot serve ", service, ": ", name, " has no ", init,
                       " (", kStandardServicesEnv, "=none turns it off)"));
    }
    fn();
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot serve ", service, ": its library cannot be loaded: ",
                   errors, " (", kStandardServicesEnv, "=none turns it off)"));
}

// Set once `LoadStandardServicesOnce` loaded what was asked for: every
// ServerBuilder constructed afterwards registers the real services.
std::atomic<bool> plugins_loaded{false};

absl::Status LoadStandardServicesOnce() {
  absl::StatusOr<StandardServices> which = RequestedStandardServices();
  if (!which.ok()) return which.status();
  if (which->reflection) {
    absl::Status st =
        LoadPlugin("reflection", "libgrpc++_reflection",
                   "_ZN4grpc10reflection38InitProtoReflectionServerBuilderPluginEv");
    if (!st.ok()) return st;
  }
  if (which->channelz) {
    absl::Status st =
        LoadPlugin("channelz", "libgrpcpp_channelz",
                   "_ZN4grpc8channelz12experimental19InitChannelzServiceEv");
    if (!st.ok()) return st;
  }
  plugins_loaded.store(true, std::memory_order_release);
  return absl::OkStatus();
}

constexpr char kReflectionService[] = "grpc.reflection.v1alpha.ServerReflection";
constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
constexpr char kChannelzService[] = "grpc.channelz.v1.Channelz";
constexpr char kChannelzPrefix[] = "/grpc.channelz.v1.Channelz/";

// Records the list of services of the server being built, when it is
// built (`Finish` runs at the end of BuildAndStart, as for reflection's
// own plugin).
class ServiceListPlugin final : public grpc::ServerBuilderPlugin {
 public:
  explicit ServiceListPlugin(std::shared_ptr<LazyStandardServices> lazy)
      : lazy_(std::move(lazy)) {}
  std::string name() override { return "tractor_service_list"; }
  // Runs where the real services' plugins register them: after the
  // builder's services, before those the server adds when it starts
  // (gRPC's default health service).
  void InitServer(grpc::ServerInitializer* si) override {
    const std::vector<std::string>* list = si->GetServiceList();
    registered_ = list != nullptr ? list->size() : 0;
  }
  void Finish(grpc::ServerInitializer* si) override {
    const std::vector<std::string>* list = si->GetServiceList();
    lazy_->SetServiceList(
        list != nullptr ? *list : std::vector<std::string>(), registered_);
  }
  void ChangeArguments(const std::string&, void*) override {}

 private:
  const std::shared_ptr<LazyStandardServices> lazy_;
  size_t registered_ = 0;
};

class ServiceListOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(std::shared_ptr<LazyStandardServices> lazy)
      : lazy_(std::move(lazy)) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(
      std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins)
      override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(lazy_));
  }

 private:
  const std::shared_ptr<LazyStandardServices> lazy_;
};

struct BackendServer {
  absl::Status status;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
};

std::atomic<bool> backend_ready{false};

// Loads the libraries and builds the in-process server; never destroyed
// (its threads wait until the process exits).
BackendServer* MakeBackend() {
  auto* b = new BackendServer;
  b->status = LoadStandardServices();
  if (!b->status.ok()) return b;
  grpc::ServerBuilder builder;
  ApplyServerArgs(builder);
  // Neither gRPC's default health service (on the callback API) nor a
  // channelz entry of its own: channelz lists the process's real servers
  // and channels only.
  builder.SetOption(
      std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
  builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  // One thread serves the calls: a client rarely has more than one open.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS,
                              1);
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 1);
  b->server = builder.BuildAndStart();
  if (b->server == nullptr) {
    b->status = absl::InternalError(
        "cannot serve reflection and channelz: their in-process server did "
        "not start");
    return b;
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  b->channel = b->server->InProcessChannel(args);
  return b;
}

constexpr size_t kSunPathMax = sizeof(sockaddr_un{}.sun_path) - 1;
static_assert(static_cast<size_t>(Address::kMaxUnixPathLength) <= kSunPathMax,
              "Address admits unix paths that do not fit sockaddr_un");

std::string CannotListen(const Address& addr) {
  return absl::StrCat("cannot listen on ", addr.ToString(), ": ");
}

// Connects to the unix socket at `path` without blocking. Returns 0 when a
// process accepts (or queues) the connection, else the errno.
int ProbeUnixSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
    err = errno;
    // A full backlog (EAGAIN) or a pending connection still means a
    // listener.
    if (err == EAGAIN || err == EINPROGRESS) err = 0;
  }
  close(fd);
  return err;
}

// Finds out why binding the TCP address `addr` fails, by binding a socket of
// our own the way gRPC does (SO_REUSEADDR, no SO_REUSEPORT). Returns the
// errno, 0 when the bind works now, or nullopt when `addr` is not an IP
// literal (DNS names are not resolved here).
std::optional<int> ProbeTcpBind(const Address& addr) {
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (addr.kind() == Address::Kind::kTcp6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(addr.port());
    if (inet_pton(AF_INET6, addr.host().c_str(), &sin6->sin6_addr) != 1) {
      return std::nullopt;
    }
    len = sizeof(sockaddr_in6);
  } else if (addr.kind() == Address::Kind::kTcp4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(addr.port());
    if (inet_pton(AF_INET, addr.host().c_str(), &sin->sin_addr) != 1) {
      return std::nullopt;
    }
    len = sizeof(sockaddr_in);
  } else {
    return std::nullopt;
  }
  int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int err = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&storage), len) != 0) err = errno;
  close(fd);
  return err;
}

absl::Status BindFailure(const Address& addr) {
  std::optional<int> err = ProbeTcpBind(addr);
  if (err.has_value() && *err == EADDRINUSE) {
    return absl::AlreadyExistsError(
        absl::StrCat(CannotListen(addr), "address already in use"));
  }
  if (err.has_value() && *err != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(CannotListen(addr), std::strerror(*err)));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      CannotListen(addr),
      "bind failed (address already in use, or not a local address)"));
}

}  // namespace

absl::StatusOr<StandardServices> ParseStandardServices(absl::string_view text) {
  StandardServices out;
  text = absl::StripAsciiWhitespace(text);
  if (text == "0" || text == "none") return out;
  if (text.empty() || text == "1" || text == "all") {
    out.reflection = out.channelz = true;
    return out;
  }
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item == "reflection") {
      out.reflection = true;
    } else if (item == "channelz") {
      out.channelz = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          kStandardServicesEnv, "='", text, "': unknown service '", item,
          "' (expected all, none, or a comma-separated list of reflection "
          "and channelz)"));
    }
  }
  return out;
}

absl::StatusOr<StandardServices> RequestedStandardServices() {
  static const absl::StatusOr<StandardServices>* const which = [] {
    const char* env = std::getenv(kStandardServicesEnv);
    return new absl::StatusOr<StandardServices>(
        ParseStandardServices(env == nullptr ? "" : env));
  }();
  return *which;
}

std::shared_ptr<LazyStandardServices> LazyStandardServices::AttachTo(
    grpc::ServerBuilder& builder) {
  absl::StatusOr<StandardServices> which = RequestedStandardServices();
  if (!which.ok() || (!which->reflection && !which->channelz)) return nullptr;
  if (plugins_loaded.load(std::memory_order_acquire)) return nullptr;
  auto lazy = std::make_shared<LazyStandardServices>(*which);
  builder.SetOption(std::make_unique<ServiceListOption>(lazy));
  return lazy;
}

LazyStandardServices::LazyStandardServices(StandardServices which)
    : which_(which) {}

bool LazyStandardServices::Serves(absl::string_view method) const {
  return (which_.reflection && method == kReflectionMethod) ||
         (which_.channelz && absl::StartsWith(method, kChannelzPrefix));
}

bool LazyStandardServices::IsReflection(absl::string_view method) {
  return method == kReflectionMethod;
}

void LazyStandardServices::SetServiceList(
    const std::vector<std::string>& services, size_t standard_at) {
  std::vector<std::string> standard;
  if (which_.reflection) standard.push_back(kReflectionService);
  if (which_.channelz) standard.push_back(kChannelzService);
  MutexLock lock(&mu_);
  services_ = services;
  services_.insert(services_.begin() + std::min(standard_at, services.size()),
                   standard.begin(), standard.end());
}

std::optional<std::string> LazyStandardServices::AnswerListServices(
    const std::string& request) const {
  // The request as gRPC's reflection service reads it (proto3): the last
  // `host` and the last field of the oneof win; a field with an unexpected
  // wire type is kept as an unknown field, and so is every other number.
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(request)) return std::nullopt;
  std::string host, list_services;
  int oneof = 0;
  google::protobuf::UnknownFieldSet unknown;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    const bool bytes =
        f.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED;
    if (bytes && f.number() == 1) {
      host = f.length_delimited();
    } else if (bytes && f.number() >= 3 && f.number() <= 7) {
      oneof = f.number();
      list_services = f.length_delimited();
    } else {
      unknown.AddField(f);
    }
  }
  if (oneof != 7) return std::nullopt;
  // Strings that are not UTF-8 fail the real service's parse: let it answer.
  if (!google::protobuf::internal::IsStructurallyValidUTF8(host) ||
      !google::protobuf::internal::IsStructurallyValidUTF8(list_services)) {
    return std::nullopt;
  }
  // The original request as the real service re-encodes it.
  google::protobuf::UnknownFieldSet original;
  if (!host.empty()) original.AddLengthDelimited(1, host);
  original.AddLengthDelimited(7, list_services);
  original.MergeFrom(unknown);
  google::protobuf::UnknownFieldSet list;
  {
    MutexLock lock(&mu_);
    for (const std::string& name : services_) {
      google::protobuf::UnknownFieldSet service;
      service.AddLengthDelimited(1, name);
      service.SerializeToString(list.AddLengthDelimited(1));
    }
  }
  google::protobuf::UnknownFieldSet response;
  if (!host.empty()) response.AddLengthDelimited(1, host);  // valid_host
  original.SerializeToString(response.AddLengthDelimited(2));
  list.SerializeToString(response.AddLengthDelimited(6));
  std::string out;
  response.SerializeToString(&out);
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> LazyStandardServices::Backend() {
  static BackendServer* const backend = MakeBackend();
  backend_ready.store(true, std::memory_order_release);
  if (!backend->status.ok()) return backend->status;
  return backend->channel;
}

bool LazyStandardServices::BackendReady() {
  return backend_ready.load(std::memory_order_acquire);
}

absl::Status LoadStandardServices() {
  static absl::once_flag once;
  static absl::Status* status = nullptr;
  absl::call_once(once, [] {
    status = new absl::Status(LoadStandardServicesOnce());
  });
  return *status;
}

void ApplyServerArgs(grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 200);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                             kFlowControlWindowBytes);
}

void ApplyServerKeepalive(grpc::ServerBuilder& builder,
                          absl::Duration hang_timeout) {
  const absl::Duration hang = ScaleTimeout(hang_timeout);
  const absl::Duration every = std::min(absl::Seconds(1), hang / 3);
  const absl::Duration answer_within = std::max(absl::Milliseconds(50), hang / 2);
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(every)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(answer_within)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

absl::Duration ScaleTimeout(absl::Duration d) {
  static const double scale = [] {
    const char* env = std::getenv("TRACTOR_TIMEOUT_SCALE");
    double v = 1;
    if (env == nullptr || !absl::SimpleAtod(env, &v) || !(v > 0)) return 1.0;
    return v;
  }();
  return d * scale;
}

absl::Status PrepareUnixListenPath(const Address& addr,
                                   bool create_parent_dir) {
  if (addr.kind() != Address::Kind::kUnix) return absl::OkStatus();
  const std::string& path = addr.path();
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(CannotListen(addr), "empty socket path"));
  }
  if (path.size() > kSunPathMax) {
    return absl::InvalidArgumentError(
        absl::StrCat(CannotListen(addr), "unix socket path is ", path.size(),
                     " bytes long; the limit is ", kSunPathMax));
  }
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat(CannotListen(addr), std::strerror(errno)));
    }
    if (!create_parent_dir) return absl::OkStatus();
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) return absl::OkStatus();
    const std::string dir = path.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat(CannotListen(addr), "cannot create ", dir, ": ",
                       std::strerror(errno)));
    }
    return absl::OkStatus();
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(CannotListen(addr), path, " exists and is not a socket"));
  }
  const int err = ProbeUnixSocket(path);
  if (err == 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        CannotListen(addr), "address already in use (a process listens on ",
        path, ")"));
  }
  if (err == ENOENT) return absl::OkStatus();  // removed meanwhile
  if (err != ECONNREFUSED) {
    return absl::FailedPreconditionError(absl::StrCat(
        CannotListen(addr), "probing ", path, ": ", std::strerror(err)));
  }
  LOG(INFO) << "removing stale socket file " << path;
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(
        absl::StrCat(CannotListen(addr), "cannot remove stale ", path, ": ",
                     std::strerror(errno)));
  }
  return absl::OkStatus();
}

ListeningPorts::ListeningPorts(std::vector<Address> requested)
    : requested_(std::move(requested)),
      selected_(new int[requested_.size()]()) {}

absl::StatusOr<ListeningPorts> BindAll(grpc::ServerBuilder& builder,
                                       std::vector<Address> addrs,
                                       BindOptions options) {
  if (addrs.empty()) {
    return absl::InvalidArgumentError("no address to listen on");
  }
  for (const Address& addr : addrs) {
    absl::Status s = PrepareUnixListenPath(addr, options.create_parent_dirs);
    if (!s.ok()) return s;
  }
  if (options.credentials == nullptr) {
    options.credentials = ProcessServerCredentials();
    for (const Address& addr : addrs) WarnIfPlaintextOffLoopback(addr);
  }
  ListeningPorts ports(std::move(addrs));
  for (size_t i = 0; i < ports.requested_.size(); ++i) {
    builder.AddListeningPort(ports.requested_[i].ListenString(),
                             options.credentials, &ports.selected_[i]);
  }
  return ports;
}

absl::StatusOr<std::vector<Address>> ListeningPorts::Resolve(
    const grpc::Server* server) const {
  if (server == nullptr) {
    // The builder binds in order and stops at the first failure, whose
    // selected port stays 0.
    size_t failed = 0;
    while (failed < requested_.size() && selected_[failed] != 0) ++failed;
    RemoveSocketFiles();
    if (failed == requested_.size()) {
      return absl::FailedPreconditionError(
          "the gRPC server did not start (every address was bound)");
    }
    return BindFailure(requested_[failed]);
  }
  std::vector<Address> bound;
  for (size_t i = 0; i < requested_.size(); ++i) {
    const Address& addr = requested_[i];
    if (addr.kind() == Address::Kind::kUnix) {
      bound.push_back(addr);
    } else if (selected_[i] <= 0) {
      return BindFailure(addr);
    } else {
      bound.push_back(addr.WithPort(selected_[i]));
    }
  }
  return bound;
}

void ListeningPorts::RemoveSocketFiles() const {
  for (size_t i = 0; i < requested_.size(); ++i) {
    const Address& addr = requested_[i];
    if (addr.kind() != Address::Kind::kUnix || selected_[i] == 0) continue;
    struct stat st;
    if (lstat(addr.path().c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
      continue;
    }
    if (unlink(addr.path().c_str()) != 0 && errno != ENOENT) {
      LOG(WARNING) << "cannot remove " << addr.path() << ": "
                   << std::strerror(errno);
    }
  }
}

namespace {

// The paths of the unix sockets bound in this network namespace under
// `dir` + "/" (the last column of /proc/net/unix; bound, listening or not).
// Nullopt when the table cannot be read.
std::optional<std::set<std::string>> BoundUnixPaths(const std::string& dir) {
  std::ifstream table("/proc/net/unix");
  if (!table) return std::nullopt;
  const std::string prefix = dir + "/";
  std::set<std::string> out;
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path: the path, when there
    // is one, is what follows the seventh field.
    const size_t at = line.find(prefix);
    if (at != std::string::npos) out.insert(line.substr(at));
  }
  return out;
}

}  // namespace

std::string PrivateSocketDir() {
  return absl::StrCat("/tmp/tractor-", geteuid());
}

size_t SweepStaleSocketFiles(const std::string& dir, absl::Duration min_age) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    VLOG(1) << "socket sweep: cannot open " << dir << ": "
            << std::strerror(errno);
    return 0;
  }
  std::optional<std::set<std::string>> bound;  // read when first needed
  const absl::Time newest = absl::Now() - min_age;
  size_t removed = 0;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (!absl::EndsWith(name, ".sock")) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    if (path.size() > kSunPathMax) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISSOCK(st.st_mode) || st.st_uid != geteuid() ||
        absl::TimeFromTimespec(st.st_mtim) > newest) {
      continue;
    }
    if (!bound.has_value()) {
      bound = BoundUnixPaths(dir);
      if (!bound.has_value()) {
        VLOG(1) << "socket sweep: cannot read /proc/net/unix";
        break;
      }
    }
    if (bound->count(path) != 0) continue;  // bound here: alive
    if (ProbeUnixSocket(path) != ECONNREFUSED) continue;
    // Still the file that was probed (not replaced meanwhile).
    struct stat again;
    if (fstatat(dirfd(d), e->d_name, &again, AT_SYMLINK_NOFOLLOW) != 0 ||
        again.st_ino != st.st_ino || again.st_dev != st.st_dev) {
      continue;
    }
    if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
      ++removed;
    } else if (errno != ENOENT) {
      VLOG(1) << "socket sweep: cannot remove " << path << ": "
              << std::strerror(errno);
    }
  }
  closedir(d);
  VLOG_IF(1, removed > 0) << "socket sweep: removed " << removed
                          << " stale socket file(s) from " << dir;
  return removed;
}

bool RemoveSocketFileOfEndedActor(const std::string& local_addr,
                                  const std::string& uuid) {
  if (local_addr.empty() || uuid.empty()) return false;
  const std::string path = absl::StrCat(PrivateSocketDir(), "/", uuid, ".sock");
  if (local_addr != absl::StrCat("unix:", path)) return false;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) ||
      st.st_uid != geteuid()) {
    return false;
  }
  if (ProbeUnixSocket(path) != ECONNREFUSED) return false;
  if (unlink(path.c_str()) != 0) return false;
  VLOG(1) << "removed the socket file " << path << " of an ended actor";
  return true;
}

std::optional<Address> PrivateSocketAddress(const std::string& name,
                                            const std::string& dir_in) {
  const std::string dir = dir_in.empty() ? PrivateSocketDir() : dir_in;
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    VLOG(1) << "no private socket: cannot make " << dir << ": "
            << strerror(errno);
    return std::nullopt;
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    VLOG(1) << "no private socket: " << dir
            << " is not a directory private to this user";
    return std::nullopt;
  }
  auto addr = Address::Parse(absl::StrCat("unix:", dir, "/", name, ".sock"));
  if (!addr.ok()) return std::nullopt;
  SweepStaleSocketFiles(dir);
  return *addr;
}

}  // namespace tractor::discovery
