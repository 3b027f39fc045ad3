// SPDX-License-Identifier: AGPL-3.0-or-later
// The error a payload that does not match its declared type becomes
// (docs/behaviour.md#payload-types): a `MsgTypeError` naming the
// message kind, the value and the type-spec it failed.
#ifndef TRACTOR_ACTOR_INTERNAL_PAYLOAD_CHECK_H_
#define TRACTOR_ACTOR_INTERNAL_PAYLOAD_CHECK_H_

#include <string>

#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// A MsgTypeError raised in actor `self` for a `kind` message ("Started",
// "Yield", "Return", "Start") whose payload does not match `spec`.
v1::Error MakeMsgTypeError(const v1::Aid& self, const std::string& cid,
                           const std::string& kind, const v1::Payload& got,
                           const std::string& spec);

// A MsgTypeError raised in actor `self` for the `Start` of `func`, whose
// arguments `got` do not fit its named parameters: `problem` says how
// (see `SplitNamedArgs`).
v1::Error MakeArgsTypeError(const v1::Aid& self, const std::string& cid,
                            const std::string& func, const v1::Payload& got,
                            const std::string& problem);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_PAYLOAD_CHECK_H_
