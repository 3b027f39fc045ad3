// SPDX-License-Identifier: AGPL-3.0-or-later
// The template members of `Portal` (actor/portal.h), kept out of the public
// header's text. Included only at the end of actor/portal.h.
#ifndef TRACTOR_ACTOR_INTERNAL_PORTAL_IMPL_H_
#define TRACTOR_ACTOR_INTERNAL_PORTAL_IMPL_H_

#include <string>

#include "actor/errors.h"
#include "actor/internal/payload_check.h"
#include "actor/payload.h"

namespace tractor {

template <class R>
R Portal::Run(const std::string& func, const Payload& args) {
  Payload result = Run(func, args);
  if (!PayloadCodec<R>::Matches(result.proto())) {
    throw MsgTypeError(internal::MakeMsgTypeError(
        CurrentActorOrEmpty(), "", "Return", result.proto(),
        PayloadCodec<R>::Spec()));
  }
  return PayloadCodec<R>::Decode(result.proto());
}

template <class R, class A>
R Portal::Run(const std::string& func, const A& args) {
  return Run<R>(func, Payload(PayloadCodec<A>::Encode(args)));
}

}  // namespace tractor

#endif  // TRACTOR_ACTOR_INTERNAL_PORTAL_IMPL_H_
