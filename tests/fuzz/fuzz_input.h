// SPDX-License-Identifier: AGPL-3.0-or-later
// Splits a fuzz input into small integers and length-prefixed byte
// strings, the way every fuzz target here reads its input. Never reads past
// the end: an exhausted input yields zeros and empty strings.
#ifndef TRACTOR_TESTS_FUZZ_FUZZ_INPUT_H_
#define TRACTOR_TESTS_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace tractor::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }

  // The next byte, or 0 at the end.
  uint8_t Byte() { return empty() ? 0 : data_[pos_++]; }

  // A byte string of up to 65535 bytes, prefixed by its length (two bytes,
  // little-endian); shorter when the input ends first.
  std::string Bytes() {
    size_t n = Byte();
    n |= static_cast<size_t>(Byte()) << 8;
    if (n > size_ - pos_) n = size_ - pos_;
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // Everything not read yet.
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace tractor::fuzz

#endif  // TRACTOR_TESTS_FUZZ_FUZZ_INPUT_H_
