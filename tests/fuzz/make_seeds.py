#!/usr/bin/env python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""Writes the initial seed corpora of the fuzz targets (corpus/<target>/).

The messages are encoded by hand from the field numbers in
protos/tractor/v1/*.proto, so no generated code is needed. Run from this
directory; files found by fuzzing are added next to these by hand.
"""
import os
import struct


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def vi(field, n):
    return varint(field << 3) + varint(n)


def dbl(field, d):
    return varint(field << 3 | 1) + struct.pack("<d", d)


# google.protobuf.Value
def v_null():
    return vi(1, 0)


def v_num(d):
    return dbl(2, d)


def v_str(s):
    return ld(3, s)


def v_bool(b):
    return vi(4, 1 if b else 0)


def v_struct(fields):
    return ld(5, b"".join(ld(1, ld(1, k) + ld(2, v)) for k, v in fields))


def v_list(items):
    return ld(6, b"".join(ld(1, v) for v in items))


# tractor.v1.Payload
def p_value(v):
    return ld(2, v)


def p_raw(b):
    return ld(3, b)


def aid(name, uuid, pid=0, registrar=False):
    out = ld(1, name) + ld(2, uuid)
    if pid:
        out += vi(3, pid)
    if registrar:
        out += vi(4, 1)
    return out


def p_msg(type_url, data):
    return ld(1, ld(1, type_url) + ld(2, data))


AID_URL = "type.googleapis.com/tractor.v1.Aid"

PAYLOADS = {
    "null": p_value(v_null()),
    "int": p_value(v_num(42)),
    "fraction": p_value(v_num(1.5)),
    "huge": p_value(v_num(1e300)),
    "int32_overflow": p_value(v_num(3e10)),
    "int64_edge": p_value(v_num(9223372036854775808.0)),
    "nan": p_value(v_num(float("nan"))),
    "string": p_value(v_str("hello")),
    "bool": p_value(v_bool(True)),
    "list": p_value(v_list([v_num(1), v_str("x"), v_null()])),
    "named": p_value(v_struct([("a", v_num(7)), ("b", v_str("s")),
                               ("c", v_bool(False))])),
    "named_missing": p_value(v_struct([("a", v_num(7))])),
    "named_list": p_value(v_list([v_num(7), v_str("s"), v_null()])),
    "message": p_msg(AID_URL, aid("a", "u", 3)),
    "message_bad_bytes": p_msg(AID_URL, b"\xff\xff\xff"),
    "message_other_type": p_msg("type.googleapis.com/tractor.v1.Error", b""),
    "raw": p_raw(b"\x00\x01\x02"),
    "empty": b"",
}


def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def with_len(data):
    return struct.pack("<H", len(data)) + data


def main():
    # address: text.
    for i, text in enumerate([
            "127.0.0.1:1616", "[::1]:1616", "localhost:1616",
            "unix:/run/tractor/r.sock", "/ip4/127.0.0.1/tcp/1616",
            "/ip6/::1/tcp/1616", "/dns4/localhost/tcp/1616",
            "/dns/example.org/tcp/0", "/unix/run/tractor/r.sock",
            "[::ffff:127.0.0.1]:80", "not an address!!", "/udp/1.2.3.4/9",
            "127.0.0.1:65536", "::1:80", "unix:relative", "a:1, b:2",
            "[fe80::1%eth0]:1", ""]):
        write("address", "seed_%02d" % i, text.encode())

    # payload: a mode byte (0: wire bytes, 1: JSON text), then the input.
    for name, data in PAYLOADS.items():
        write("payload", name, b"\x00" + data)
    for i, text in enumerate(['{"a": 1, "b": "x", "c": null}', "[1, 2, 3]",
                              '"s"', "1e300", "[" * 200, '{"a": {"b": []}}']):
        write("payload", "json_%02d" % i, b"\x01" + text.encode())

    # dialog: a setup byte (bit 0 callee, bit 1 context, bits 2-3 spec,
    # bit 6 a cancel requested), then steps: an op byte (op % 4 == 0: a
    # local event (op / 4) % 6; otherwise a received Msg, length-prefixed).
    def recv(msg):
        return b"\x01" + with_len(msg)

    def local(i):
        return bytes([4 * i])

    started = ld(3, ld(1, PAYLOADS["int"]))
    yielded = ld(4, ld(1, PAYLOADS["int"]))
    bad_yield = ld(4, ld(1, PAYLOADS["huge"]))
    batch = ld(8, ld(1, ld(1, PAYLOADS["int"])) + ld(1, ld(1, PAYLOADS["string"])))
    stop = ld(5, b"")
    returned = ld(6, ld(1, PAYLOADS["int"]))
    error = ld(7, ld(1, aid("peer", "peer-uuid")) + ld(3, "ContextCancelled") +
               ld(5, "cancelled") + ld(7, aid("self", "self-uuid")))
    overrun = ld(7, ld(1, aid("peer", "peer-uuid")) + ld(3, "StreamOverrun") +
                 ld(5, "overrun"))
    caller_ok = (recv(started) + local(1) + recv(yielded) + recv(batch) +
                 local(2) + local(3) + recv(stop) + recv(returned))
    write("dialog", "caller_stream", b"\x06" + caller_ok)
    write("dialog", "caller_cancelled", b"\x46" + recv(started) + recv(error))
    write("dialog", "caller_bad_payload", b"\x06" + recv(started) + local(1) +
          recv(bad_yield) + recv(returned))
    write("dialog", "caller_out_of_order", b"\x02" + recv(yielded) +
          recv(returned) + recv(started) + recv(yielded))
    callee = (local(0) + local(1) + recv(yielded) + recv(overrun) + local(2) +
              recv(stop) + local(4) + recv(returned) + local(5))
    write("dialog", "callee_stream", b"\x03" + callee)
    write("dialog", "callee_protocol", b"\x03" + recv(started) + recv(returned))
    write("dialog", "undecodable", b"\x00" + recv(b"\xff\xff"))

    # registrar: steps of an op byte (op % 8: 0 Hello, 1-2 Register,
    # 3 Unregister, 4 Find, 5 List, 6 RemoveAddr, 7 Lookup) and a
    # length-prefixed request.
    def reg(name, uuid, addrs, lease=0):
        r = ld(1, aid(name, uuid)) + b"".join(ld(2, a) for a in addrs)
        if lease:
            r += vi(3, lease)
        return ld(1, r)

    def step(op, data=b""):
        return bytes([op]) + with_len(data)

    write("registrar", "register_find", step(0) +
          step(1, reg("a", "u1", ["127.0.0.1:1616", "unix:/tmp/a.sock"])) +
          step(4, ld(1, "a")) + step(5) + step(3, ld(1, "u1")) + step(5))
    write("registrar", "bad_addrs", step(1, reg("a", "u1", ["not an address!!"])) +
          step(2, reg("b", "u2", ["/udp/1.2.3.4/9"])) + step(5))
    write("registrar", "moved_addr", step(1, reg("a", "u1", ["127.0.0.1:1"])) +
          step(1, reg("b", "u2", ["127.0.0.1:1"])) + step(6, b"127.0.0.1:1") +
          step(7, b"a") + step(5))
    write("registrar", "long_lease", step(1, reg("a", "u1", ["[::1]:9"],
                                               4000000000)) + step(5))
    write("registrar", "empty", step(1, reg("", "", [])) + step(3) + step(4) +
          step(5))


if __name__ == "__main__":
    main()
