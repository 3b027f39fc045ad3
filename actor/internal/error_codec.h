// SPDX-License-Identifier: AGPL-3.0-or-later
// Errors across the wire (docs/architecture.md#errors): an exception raised
// in this actor becomes a `v1::Error` at the edge (`PackError`), and an
// arriving `v1::Error` becomes the local exception type it boxes
// (`ThrowError`), keyed by the closed `ErrorKind` set; other type names
// (user-registered types, foreign clients) travel as strings.
#ifndef TRACTOR_ACTOR_INTERNAL_ERROR_CODEC_H_
#define TRACTOR_ACTOR_INTERNAL_ERROR_CODEC_H_

#include <exception>
#include <string>

#include "actor/errors.h"
#include "tractor/v1/msg.pb.h"

namespace tractor::internal {

// Packs the exception `e` raised in actor `self` into a wire error.
// A `RemoteActorError` is relayed: its origin is kept, its boxed type becomes
// "RemoteActorError" and `self` is appended to the relay path.
v1::Error PackError(std::exception_ptr e, const v1::Aid& self,
                    const std::string& cid = "");

// Builds a fresh error that originates in `self`.
v1::Error MakeError(const v1::Aid& self, const std::string& type,
                    const std::string& message, const std::string& cid = "");
v1::Error MakeError(const v1::Aid& self, ErrorKind kind,
                    const std::string& message, const std::string& cid = "");

// Throws the local exception type that `error` boxes.
[[noreturn]] void ThrowError(const v1::Error& error);

// Returns `ThrowError(error)` captured as an exception_ptr.
std::exception_ptr ToException(const v1::Error& error);

// Returns a short "Type: message" description of any exception.
std::string Describe(std::exception_ptr e);

// Demangled type name of the exception held by `e` (the registered name of
// a user type registered with `RegisterErrorType`).
std::string ExceptionTypeName(std::exception_ptr e);

}  // namespace tractor::internal

#endif  // TRACTOR_ACTOR_INTERNAL_ERROR_CODEC_H_
