# SPDX-License-Identifier: AGPL-3.0-or-later
"""Protobuf wire bytes written by hand, for tests that send what a generated
encoder never would (truncated fields, wrong lengths, bad UTF-8)."""


def varint(n):
    """`n` as a base-128 varint."""
    out = bytearray()
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def field(number, payload):
    """One length-delimited field, encoded by hand."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
