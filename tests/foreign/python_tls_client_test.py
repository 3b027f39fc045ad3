#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""A Python (grpcio) client against an actor and a registrar daemon in mutual
TLS, with client certificates the way a grpcio user sets them up, and
refused without; and in plaintext, a client without the mesh secret may call
functions but not the control RPCs (docs/security.md).

The certificates are made at test time by tests/make_test_pki.sh (openssl).
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

import grpc

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
ACTOR = os.path.join(RUNFILES, "tests/foreign/echo_actor")
REGISTRAR = os.path.join(RUNFILES, "registrar/registrar")
MAKE_PKI = os.path.join(RUNFILES, "tests/make_test_pki.sh")
PROTO_ROOT = os.path.join(RUNFILES, "protos")

gen = tempfile.mkdtemp(prefix="tractor_py_")
atexit.register(shutil.rmtree, gen, ignore_errors=True)
subprocess.run(
    ["protoc", "-I" + PROTO_ROOT, "-I/usr/include", "--python_out=" + gen,
     "tractor/v1/msg.proto", "tractor/v1/actor.proto",
     "tractor/v1/registrar.proto"],
    check=True)
sys.path.insert(0, gen)
from tractor.v1 import actor_pb2, msg_pb2, registrar_pb2  # noqa: E402
from google.protobuf import struct_pb2, json_format  # noqa: E402

PKI = tempfile.mkdtemp(prefix="tractor_pki_")
atexit.register(shutil.rmtree, PKI, ignore_errors=True)
subprocess.run([MAKE_PKI, PKI], check=True)


def pem(name):
    with open(os.path.join(PKI, name), "rb") as f:
        return f.read()


def value(obj):
    v = struct_pb2.Value()
    json_format.ParseDict(obj, v)
    return v


def start(func, args):
    return msg_pb2.Msg(start=msg_pb2.Start(
        cid=str(uuid.uuid4()), func=func,
        args=msg_pb2.Payload(value=value(args)),
        caller=msg_pb2.Aid(name="python-client")))


def unary(channel, method, request, reply_type):
    return channel.unary_unary(
        method, request_serializer=type(request).SerializeToString,
        response_deserializer=reply_type.FromString)


def call_add(channel):
    request = start("demo:add", {"a": 1, "b": 2})
    reply = unary(channel, "/tractor.v1.Actor/Call", request,
                  msg_pb2.Msg)(request, timeout=10)
    return reply.returned.payload.value.number_value


def cancel_task(channel, metadata=None):
    request = actor_pb2.CancelTaskRequest(cid="no-such-dialog")
    return unary(channel, "/tractor.v1.Actor/CancelTask", request,
                 actor_pb2.CancelTaskReply)(request, timeout=10,
                                            metadata=metadata)


def cancel_actor(channel):
    request = actor_pb2.CancelActorRequest(
        requester=msg_pb2.Aid(name="python-client"))
    return unary(channel, "/tractor.v1.Actor/CancelActor", request,
                 actor_pb2.CancelActorReply)(request, timeout=10)


def register(channel, metadata=None):
    request = registrar_pb2.RegisterRequest(registration=registrar_pb2.Registration(
        aid=msg_pb2.Aid(name="py", uuid="py-uuid"), addrs=["127.0.0.1:9"]))
    return unary(channel, "/tractor.v1.Registrar/Register", request,
                 registrar_pb2.RegisterReply)(request, timeout=10,
                                              metadata=metadata)


def find(channel, name):
    request = registrar_pb2.FindRequest(name=name)
    return unary(channel, "/tractor.v1.Registrar/Find", request,
                 registrar_pb2.FindReply)(request, timeout=10)


def stop(proc):
    if proc.stdin:
        proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


MTLS_ENV = {
    "TRACTOR_TLS_CA": os.path.join(PKI, "ca.pem"),
    "TRACTOR_TLS_CERT": os.path.join(PKI, "node.pem"),
    "TRACTOR_TLS_KEY": os.path.join(PKI, "node.key"),
    "TRACTOR_TLS_REQUIRE_CLIENT_CERT": "1",
}


class MutualTlsFromPython(unittest.TestCase):
    """An echo actor (its own registrar embedded) and a registrar daemon,
    both in mutual TLS."""

    @classmethod
    def setUpClass(cls):
        cls.actor = subprocess.Popen(
            [ACTOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, TRACTOR_REGISTRY="127.0.0.1:0", **MTLS_ENV))
        line = cls.actor.stdout.readline().split()
        assert line and line[0] == "ready", line
        cls.actor_addr = line[1]
        cls.registrar = subprocess.Popen(
            [REGISTRAR, "--listen", "127.0.0.1:0", "--loglevel", "error",
             "--tls_ca", MTLS_ENV["TRACTOR_TLS_CA"],
             "--tls_cert", MTLS_ENV["TRACTOR_TLS_CERT"],
             "--tls_key", MTLS_ENV["TRACTOR_TLS_KEY"],
             "--tls_require_client_cert=true"],
            stdout=subprocess.PIPE, text=True)
        line = cls.registrar.stdout.readline().split()
        assert line and line[0] == "registrar", line
        cls.registrar_addr = line[-1]

    @classmethod
    def tearDownClass(cls):
        stop(cls.actor)
        stop(cls.registrar)

    def channel(self, identity):
        if identity is None:
            creds = grpc.ssl_channel_credentials(root_certificates=pem("ca.pem"))
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=pem("ca.pem"),
                private_key=pem(identity + ".key"),
                certificate_chain=pem(identity + ".pem"))
        return grpc.secure_channel(self.actor_addr, creds), \
            grpc.secure_channel(self.registrar_addr, creds)

    def test_client_certificate_calls_the_actor_and_the_registrars(self):
        actor, registrar = self.channel("client")
        self.assertEqual(call_add(actor), 3)
        # The actor's embedded registrar lists it; the daemon answers.
        self.assertEqual(len(find(actor, "echo").registrations), 1)
        self.assertEqual(len(find(registrar, "nobody").registrations), 0)
        # A client certificate of the mesh CA makes a member.
        self.assertFalse(cancel_task(actor).found)
        register(registrar)
        self.assertEqual(len(find(registrar, "py").registrations), 1)

    def test_without_a_client_certificate_the_handshake_fails(self):
        for channel in self.channel(None):
            with self.assertRaises(grpc.RpcError) as cm:
                find(channel, "echo")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_a_certificate_of_another_ca_fails(self):
        for channel in self.channel("rogue"):
            with self.assertRaises(grpc.RpcError) as cm:
                find(channel, "echo")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_plaintext_fails(self):
        for addr in (self.actor_addr, self.registrar_addr):
            with self.assertRaises(grpc.RpcError) as cm:
                find(grpc.insecure_channel(addr), "echo")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)


class PlaintextFromPython(unittest.TestCase):
    """A plaintext echo actor whose mesh secret is set by TRACTOR_SECRET."""

    SECRET = "python-test-secret"

    @classmethod
    def setUpClass(cls):
        cls.actor = subprocess.Popen(
            [ACTOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, TRACTOR_SECRET=cls.SECRET,
                     TRACTOR_REGISTRY="127.0.0.1:0"))
        line = cls.actor.stdout.readline().split()
        assert line and line[0] == "ready", line
        cls.channel = grpc.insecure_channel(line[1])

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        stop(cls.actor)

    def test_functions_are_open_and_control_rpcs_need_the_secret(self):
        self.assertEqual(call_add(self.channel), 3)
        with self.assertRaises(grpc.RpcError) as cm:
            cancel_actor(self.channel)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("CancelActor refused", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            cancel_task(self.channel)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(grpc.RpcError) as cm:
            register(self.channel)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("Register refused", cm.exception.details())
        # Still serving; with the secret the control RPCs are honoured.
        self.assertEqual(call_add(self.channel), 3)
        metadata = (("tractor-secret", self.SECRET),)
        self.assertFalse(cancel_task(self.channel, metadata).found)
        register(self.channel, metadata)
        self.assertEqual(len(find(self.channel, "py").registrations), 1)


if __name__ == "__main__":
    unittest.main()
