// SPDX-License-Identifier: AGPL-3.0-or-later
// Receive-side flow control of one stream (docs/design.md#flow-control,
// docs/behaviour.md#overruns). Included by `actor/context.h`.
#ifndef TRACTOR_ACTOR_STREAM_OPTIONS_H_
#define TRACTOR_ACTOR_STREAM_OPTIONS_H_

#include <cstddef>

namespace tractor {

// What a side does when its receive queue is full.
enum class OverrunPolicy {
  // Default: the reader stops pulling when its queue is full; the sender
  // blocks. Bounded memory, nothing lost.
  kBackpressure,
  // A full queue drops the message and the sender gets `StreamOverrun`.
  kError,
  // Queue without bound.
  kUnbounded,
};

struct StreamOptions {
  // Receive queue capacity in messages.
  size_t msg_buffer_size = 64;
  OverrunPolicy overrun = OverrunPolicy::kBackpressure;
  // With kBackpressure: the sender has at most `msg_buffer_size` items in
  // flight to this side (queued at the sender, on the wire and in this
  // side's queue), counted by credits this side grants as its task takes
  // items (`Credit` in the wire protocol). Without it, HTTP/2 flow control
  // stops the sender only once its window is full: thousands of small items
  // (docs/design.md#flow-control). Costs one small message back per half
  // queue of items taken.
  bool strict = false;
};

}  // namespace tractor

#endif  // TRACTOR_ACTOR_STREAM_OPTIONS_H_
