// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/gate.h"

#include <utility>

#include "actor/internal/scope.h"
#include "glog/logging.h"

namespace tractor::internal {

Gate::Holder& Gate::Holder::operator=(Holder&& other) noexcept {
  if (this != &other) {
    Leave();
    state_ = std::move(other.state_);
  }
  return *this;
}

void Gate::Holder::Leave() {
  if (!state_) return;
  std::shared_ptr<State> state = std::move(state_);
  MutexLock lock(&state->mu);
  if (--state->holders == 0) state->cv.SignalAll();
}

Gate::Gate() : state_(std::make_shared<State>()) {}

Gate::~Gate() {
  MutexLock lock(&state_->mu);
  CHECK_EQ(state_->holders, 0u)
      << "a gate was destroyed with holders inside";
}

std::optional<Gate::Holder> Gate::TryEnter() {
  MutexLock lock(&state_->mu);
  if (state_->closed) return std::nullopt;
  ++state_->holders;
  return Holder(state_);
}

void Gate::Close(CloseReason reason) {
  MutexLock lock(&state_->mu);
  if (!state_->closed) state_->closed = reason;
  state_->cv.SignalAll();
}

std::optional<CloseReason> Gate::close_reason() const {
  MutexLock lock(&state_->mu);
  return state_->closed;
}

size_t Gate::holders() const {
  MutexLock lock(&state_->mu);
  return state_->holders;
}

std::optional<CloseReason> Gate::WaitDrained(absl::Time deadline) {
  State& s = *state_;
  MutexLock lock(&s.mu);
  const bool drained = Wait(
      s.cv, s.mu,
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        return s.closed.has_value() && s.holders == 0;
      },
      deadline);
  if (!drained) return std::nullopt;
  return s.closed;
}

}  // namespace tractor::internal
