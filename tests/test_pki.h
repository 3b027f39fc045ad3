// SPDX-License-Identifier: AGPL-3.0-or-later
// A throw-away PKI for TLS tests, made at run time by tests/make_test_pki.sh
// (openssl): no key is ever committed.
#ifndef TRACTOR_TESTS_TEST_PKI_H_
#define TRACTOR_TESTS_TEST_PKI_H_

#include <string>
#include <utility>

#include "discovery/credentials.h"

namespace tractor::testing {

// The files of one test PKI (see tests/make_test_pki.sh for what each is).
class TestPki {
 public:
  // Makes a new PKI in a fresh directory under TEST_TMPDIR (or /tmp).
  // CHECK-fails when openssl fails: the test cannot run without it.
  static TestPki Make();

  const std::string& dir() const { return dir_; }
  // The path of `name` (e.g. "node.pem") in the PKI's directory.
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // The configuration of an actor with the identity `name` ("node",
  // "client", "rogue", ...) and the mesh CA; mutual TLS when `mutual`.
  discovery::TlsConfig Config(const std::string& name, bool mutual) const;

  // The PEM text of `name`.
  std::string Read(const std::string& name) const;

 private:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace tractor::testing

#endif  // TRACTOR_TESTS_TEST_PKI_H_
