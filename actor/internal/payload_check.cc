// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/payload_check.h"

#include "absl/strings/str_cat.h"
#include "actor/internal/error_codec.h"
#include "actor/payload.h"

namespace tractor::internal {

v1::Error MakeMsgTypeError(const v1::Aid& self, const std::string& cid,
                           const std::string& kind, const v1::Payload& got,
                           const std::string& spec) {
  Payload value(got);
  v1::Error e = MakeError(
      self, "MsgTypeError",
      absl::StrCat("invalid `", kind, "` msg payload: ", value.ToJson(),
                   " has type ", value.TypeName(),
                   " and does not match type-spec `", kind, ".pld: ", spec,
                   "`"),
      cid);
  e.set_expected_msg_type(kind);
  e.set_bad_msg(value.ToJson());
  return e;
}

v1::Error MakeArgsTypeError(const v1::Aid& self, const std::string& cid,
                            const std::string& func, const v1::Payload& got,
                            const std::string& problem) {
  Payload value(got);
  v1::Error e = MakeError(
      self, "MsgTypeError",
      absl::StrCat("invalid `Start` msg payload: ", value.ToJson(),
                   " does not fit the parameters of '", func, "': ", problem),
      cid);
  e.set_expected_msg_type("Start");
  e.set_bad_msg(value.ToJson());
  return e;
}

}  // namespace tractor::internal
