// SPDX-License-Identifier: AGPL-3.0-or-later
#include "tests/test_pki.h"

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace tractor::testing {

TestPki TestPki::Make() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/pki.XXXXXX");
  CHECK(mkdtemp(templ.data()) != nullptr) << "mkdtemp " << templ;
  // The test's working directory is its runfiles tree.
  const std::string cmd =
      absl::StrCat("tests/make_test_pki.sh '", templ, "'");
  const int rc = system(cmd.c_str());
  CHECK_EQ(rc, 0) << cmd << " failed (is openssl installed? tools/setup.sh)";
  return TestPki(templ);
}

discovery::TlsConfig TestPki::Config(const std::string& name,
                                     bool mutual) const {
  discovery::TlsConfig config;
  config.ca_file = Path("ca.pem");
  config.cert_file = Path(name + ".pem");
  config.key_file = Path(name + ".key");
  config.require_client_cert = mutual;
  return config;
}

std::string TestPki::Read(const std::string& name) const {
  std::ifstream in(Path(name));
  CHECK(in) << "cannot read " << Path(name);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace tractor::testing
