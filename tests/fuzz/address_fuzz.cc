// SPDX-License-Identifier: AGPL-3.0-or-later
// Fuzzes the address parser (discovery/address.h) with arbitrary text.
// Checks, beyond "no crash": an accepted address is canonical (parsing its
// text and its multiaddr form gives it back, and every string it renders
// is accepted again); `WithPort` keeps it valid; the list parser agrees
// with the single parser on a one-element list.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "discovery/address.h"

namespace {

using tractor::discovery::Address;

void Require(bool ok, const char* what, const std::string& input) {
  if (ok) return;
  std::fprintf(stderr, "address fuzz: %s for input \"%s\"\n", what,
               input.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Address> a = Address::Parse(text);
  absl::StatusOr<std::vector<Address>> list =
      tractor::discovery::ParseAddressList(text);
  if (!a.ok()) {
    Require(!a.status().message().empty(), "an error without a message", text);
    return 0;
  }
  const std::string canonical = a->ToString();
  absl::StatusOr<Address> again = Address::Parse(canonical);
  Require(again.ok() && *again == *a, "ToString does not parse back", text);
  absl::StatusOr<Address> multi = Address::Parse(a->ToMultiaddr());
  Require(multi.ok() && *multi == *a, "ToMultiaddr does not parse back", text);
  (void)a->GrpcTarget();
  (void)a->ListenString();
  (void)a->IsLoopback();
  if (a->kind() != Address::Kind::kUnix) {
    Address other = a->WithPort(65535 - a->port());
    Require(other.port() == 65535 - a->port(), "WithPort lost the port", text);
    absl::StatusOr<Address> reparsed = Address::Parse(other.ToString());
    Require(reparsed.ok() && *reparsed == other,
            "WithPort gave an address that does not parse back", text);
  } else {
    Require(a->path().size() <= Address::kMaxUnixPathLength &&
                !a->path().empty() && a->path()[0] == '/',
            "a unix path that is not absolute or too long", text);
  }
  // The list parser trims each element; on text without a comma it
  // agrees with Parse on the trimmed text.
  if (text.find(',') == std::string::npos) {
    absl::StatusOr<Address> trimmed =
        Address::Parse(absl::StripAsciiWhitespace(text));
    if (trimmed.ok()) {
      Require(list.ok() && list->size() == 1 && (*list)[0] == *trimmed,
              "the list parser disagrees with Parse", text);
    } else {
      Require(!list.ok() || list->empty(),
              "the list parser accepts what Parse refuses", text);
    }
  }
  return 0;
}
