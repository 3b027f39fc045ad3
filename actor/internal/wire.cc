// SPDX-License-Identifier: AGPL-3.0-or-later
#include "actor/internal/wire.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"

namespace tractor::internal {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::io::CodedInputStream;
using google::protobuf::internal::WireFormatLite;

// Protobuf's default recursion limit: how deep messages may nest when
// parsed (the outermost message is depth 0).
constexpr int kRecursionLimit = 100;
// How many field names of a nested path an explanation shows.
constexpr size_t kMaxPathShown = 6;

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF): what protobuf requires of a proto3 `string`.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c == 0xE0) {
      len = 3;
      lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      len = 3;
    } else if (c == 0xED) {
      len = 3;
      hi = 0x9F;
    } else if (c == 0xF0) {
      len = 4;
      lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = 4;
    } else if (c == 0xF4) {
      len = 4;
      hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    const unsigned char c1 = s[i + 1];
    if (c1 < lo || c1 > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      const unsigned char ck = s[i + k];
      if (ck < 0x80 || ck > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

// Walks the wire data of one message up to the stream's current limit the
// way protobuf's parser does, and says why it fails.
class Walker {
 public:
  Walker(CodedInputStream* in, const Descriptor& root)
      : in_(in), root_(root) {}

  // Returns the first reason the message of `type` at `depth` does not
  // decode, or "" when none was found.
  std::string Walk(const Descriptor& type, int depth) {
    while (in_->BytesUntilLimit() > 0) {
      const int at = in_->CurrentPosition();
      const uint32_t tag = in_->ReadTag();
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      if (number == 0) {
        return absl::StrCat("malformed protobuf wire data at byte ", at,
                            " (an invalid field tag) in ", Path(nullptr));
      }
      const FieldDescriptor* field = type.FindFieldByNumber(number);
      if (WireFormatLite::GetTagWireType(tag) !=
          WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        if (!WireFormatLite::SkipField(in_, tag)) {
          return absl::StrCat("malformed protobuf wire data at byte ", at,
                              " (field ", number, ") in ", Path(field));
        }
        continue;
      }
      uint32_t length;
      if (!in_->ReadVarint32(&length)) {
        return absl::StrCat("malformed protobuf wire data at byte ", at,
                            " (a truncated length) in ", Path(field));
      }
      const int remaining = in_->BytesUntilLimit();
      if (length > static_cast<uint32_t>(remaining)) {
        return absl::StrCat("field ", number, " at byte ", at, " in ",
                            Path(field), " declares ", length,
                            " bytes but only ", remaining, " remain");
      }
      if (field != nullptr && field->type() == FieldDescriptor::TYPE_MESSAGE) {
        if (depth + 1 > kRecursionLimit) {
          return absl::StrCat(
              "messages nest deeper than protobuf's recursion limit (",
              kRecursionLimit, ") at ", Path(field));
        }
        const CodedInputStream::Limit limit = in_->PushLimit(length);
        path_.push_back(field);
        std::string why = Walk(*field->message_type(), depth + 1);
        if (!why.empty()) return why;
        path_.pop_back();
        in_->PopLimit(limit);
        continue;
      }
      if (field != nullptr && field->type() == FieldDescriptor::TYPE_STRING &&
          field->file()->syntax() == FileDescriptor::SYNTAX_PROTO3) {
        std::string value;
        in_->ReadString(&value, length);
        if (!IsValidUtf8(value)) {
          return absl::StrCat("string field ", field->full_name(), " (",
                              Path(field),
                              ") holds invalid UTF-8 (a string field must "
                              "be UTF-8; binary data belongs in bytes)");
        }
        continue;
      }
      in_->Skip(length);
    }
    return "";
  }

 private:
  // "tractor.v1.Msg.start.args...", the path to `last` (or to the current
  // message when null).
  std::string Path(const FieldDescriptor* last) const {
    std::string out = root_.full_name();
    const size_t n = path_.size() + (last != nullptr ? 1 : 0);
    for (size_t i = 0; i < n && i < kMaxPathShown; ++i) {
      absl::StrAppend(&out, ".", i < path_.size() ? path_[i]->name()
                                                  : last->name());
    }
    if (n > kMaxPathShown) {
      absl::StrAppend(&out, "... (", n, " fields deep)");
    }
    return out;
  }

  CodedInputStream* in_;
  const Descriptor& root_;
  std::vector<const FieldDescriptor*> path_;
};

}  // namespace

std::string DescribeUndecodable(absl::string_view bytes,
                                const Descriptor& type) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  in.PushLimit(static_cast<int>(bytes.size()));
  std::string why = Walker(&in, type).Walk(type, 0);
  if (!why.empty()) return why;
  return absl::StrCat("the bytes are not a valid ", type.full_name());
}

bool ParseFromByteBuffer(const grpc::ByteBuffer& buffer,
                         google::protobuf::Message* msg, std::string* why) {
  {
    // The reader only reads the buffer's slices.
    grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(&buffer));
    if (reader.status().ok() && msg->ParseFromZeroCopyStream(&reader)) {
      return true;
    }
  }
  msg->Clear();
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (buffer.Valid() && buffer.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  const Descriptor& type = *msg->GetDescriptor();
  *why = absl::StrCat("a ", bytes.size(), "-byte message does not decode as ",
                      type.full_name(), ": ", DescribeUndecodable(bytes, type));
  return false;
}

void SerializeToByteBuffer(const google::protobuf::Message& msg,
                           grpc::ByteBuffer* buffer) {
  buffer->Clear();
  bool own_buffer;
  grpc::Status status =
      grpc::GenericSerialize<grpc::ProtoBufferWriter,
                             google::protobuf::Message>(msg, buffer,
                                                        &own_buffer);
  // Fails only for a message over 2 GiB, which the size limit refuses anyway.
  LOG_IF(ERROR, !status.ok())
      << "could not encode " << msg.GetDescriptor()->full_name() << ": "
      << status.error_message();
}

}  // namespace tractor::internal
