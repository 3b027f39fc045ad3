// SPDX-License-Identifier: AGPL-3.0-or-later
// Plaintext on an address off loopback is allowed, and logged as a warning
// once per process (docs/security.md): never for loopback or unix
// addresses, never with TLS, once for the first plaintext off-loopback
// bind, and not again. In a process of its own: the warning is once per
// process.
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "discovery/address.h"
#include "discovery/credentials.h"
#include "discovery/listen.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/test_pki.h"

namespace tractor::discovery {
namespace {

// Collects the warnings glog logs.
class WarningSink : public google::LogSink {
 public:
  WarningSink() { google::AddLogSink(this); }
  ~WarningSink() override { google::RemoveLogSink(this); }

  void send(google::LogSeverity severity, const char* /*full_filename*/,
            const char* /*base_filename*/, int /*line*/,
            const google::LogMessageTime& /*time*/, const char* message,
            size_t message_len) override {
    if (severity != google::GLOG_WARNING) return;
    std::lock_guard<std::mutex> lock(mu_);
    warnings_.emplace_back(message, message_len);
  }

  // The warnings about plaintext serving so far.
  std::vector<std::string> Plaintext() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& w : warnings_) {
      if (absl::StrContains(w, "in plaintext, off loopback")) out.push_back(w);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> warnings_;
};

// Binds `addrs` with the process's credentials (the server is never
// started: the warning comes with the bind).
void Bind(const std::vector<std::string>& addrs) {
  std::vector<Address> parsed;
  for (const auto& a : addrs) {
    absl::StatusOr<Address> p = Address::Parse(a);
    ASSERT_TRUE(p.ok()) << p.status();
    parsed.push_back(*p);
  }
  grpc::ServerBuilder builder;
  absl::StatusOr<ListeningPorts> ports = BindAll(builder, parsed);
  ASSERT_TRUE(ports.ok()) << ports.status();
}

TEST(PlaintextWarningTest, LoggedOnceForThePlaintextBindOffLoopback) {
  WarningSink sink;
  const testing::TestPki pki = testing::TestPki::Make();

  // TLS: no warning, whatever the address.
  absl::StatusOr<TlsMaterial> tls = LoadTls(pki.Config("node", false));
  ASSERT_TRUE(tls.ok()) << tls.status();
  InstallSecurity({*tls, ""});
  Bind({"0.0.0.0:0", "[::]:0"});
  EXPECT_TRUE(sink.Plaintext().empty());

  // Plaintext on loopback and unix sockets: no warning.
  InstallSecurity({});
  Bind({"127.0.0.1:0", "[::1]:0",
        absl::StrCat("unix:/tmp/tr-plaintext-warning-", getpid(), ".sock")});
  EXPECT_TRUE(sink.Plaintext().empty());

  // Plaintext off loopback: one warning naming the address.
  Bind({"0.0.0.0:0"});
  std::vector<std::string> warned = sink.Plaintext();
  ASSERT_EQ(warned.size(), 1u);
  EXPECT_TRUE(absl::StrContains(warned[0], "serving 0.0.0.0:"))
      << warned[0];
  EXPECT_TRUE(absl::StrContains(warned[0], "docs/security.md")) << warned[0];

  // And never again in this process.
  Bind({"0.0.0.0:0", "[::]:0"});
  EXPECT_EQ(sink.Plaintext().size(), 1u);
  InstallSecurity({});
}

}  // namespace
}  // namespace tractor::discovery
