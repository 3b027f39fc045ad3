#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""gRPC's standard services on an actor and on the registrar daemon, used
from Python as any gRPC tool would: grpc.health.v1.Health (SERVING while
serving, NOT_SERVING as soon as the exit starts), always served; server
reflection (grpc.reflection.v1alpha) and channelz (grpc.channelz.v1, its
messages built from the descriptors reflection serves), served by default
(an actor loads them when a client first calls one);
with TRACTOR_STANDARD_SERVICES=none they are UNIMPLEMENTED (and their
libraries not loaded), one can be served alone, and a bad value stops the
program with an error naming the variable.

The health and reflection messages come from the test's own copies of
their public definitions (protos/ next to this file), compiled with protoc
at test time; tractor's own from protos/tractor/v1.
"""
import importlib.util
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

import grpc

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
ACTOR = os.path.join(RUNFILES, "tests/discovery/daemon_actor")
REGISTRAR = os.path.join(RUNFILES, "registrar/registrar")
OWN_PROTOS = os.path.join(RUNFILES, "tests/foreign/protos")
TRACTOR_PROTOS = os.path.join(RUNFILES, "protos")

gen = tempfile.mkdtemp(prefix="tractor_std_", dir="/tmp")
atexit.register(shutil.rmtree, gen, ignore_errors=True)
subprocess.run(
    ["protoc", "-I" + OWN_PROTOS, "--python_out=" + gen,
     "grpc/health/v1/health.proto",
     "grpc/reflection/v1alpha/reflection.proto"],
    check=True)
subprocess.run(
    ["protoc", "-I" + TRACTOR_PROTOS, "-I/usr/include", "--python_out=" + gen,
     "tractor/v1/msg.proto", "tractor/v1/actor.proto"],
    check=True)
sys.path.insert(0, gen)


def load(rel, name):
    """Imports a generated module by path: the `grpc` package name is
    grpcio's, so grpc/health/... cannot be imported as a package."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(gen, rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


health_pb2 = load("grpc/health/v1/health_pb2.py", "health_pb2")
reflection_pb2 = load("grpc/reflection/v1alpha/reflection_pb2.py",
                      "reflection_pb2")
from tractor.v1 import actor_pb2  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf import message_factory  # noqa: E402

# Never the well-known 127.0.0.1:1616.
# (under /tmp: a unix socket path must fit 107 bytes).
_REGISTRY_DIR = tempfile.mkdtemp(prefix="reg.", dir="/tmp")
atexit.register(shutil.rmtree, _REGISTRY_DIR, ignore_errors=True)
os.environ["TRACTOR_REGISTRY"] = "unix:" + os.path.join(
    _REGISTRY_DIR, "registry.sock")
# The mesh secret the actors under test get: CancelActor is a control call,
# honoured only from members (docs/security.md).
SECRET = "standard-services-test-secret"
os.environ["TRACTOR_SECRET"] = SECRET

TIMEOUT = 20
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STANDARD = {"grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "grpc.channelz.v1.Channelz"}


def start(args, ready_prefix, services=None):
    """Starts a program with TRACTOR_STANDARD_SERVICES=`services` (unset
    when None); returns (process, its address) from its ready line:
    '<prefix> <uuid> listening on <addr>,...'."""
    env = dict(os.environ)
    env.pop("TRACTOR_STANDARD_SERVICES", None)
    if services is not None:
        env["TRACTOR_STANDARD_SERVICES"] = services
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    line = proc.stdout.readline().split()
    timer.cancel()
    assert len(line) == 5 and line[0] == ready_prefix, line
    return proc, line[4].split(",")[0]


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class Client:
    def __init__(self, addr):
        self.channel = grpc.insecure_channel(addr)
        grpc.channel_ready_future(self.channel).result(timeout=TIMEOUT)
        self.check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        self.watch = self.channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        self.reflect = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=(
                reflection_pb2.ServerReflectionRequest.SerializeToString),
            response_deserializer=(
                reflection_pb2.ServerReflectionResponse.FromString))

    def close(self):
        self.channel.close()

    def health(self):
        return self.check(health_pb2.HealthCheckRequest(service=""),
                          timeout=TIMEOUT).status

    def reflection(self, **request):
        responses = list(self.reflect(
            iter([reflection_pb2.ServerReflectionRequest(**request)]),
            timeout=TIMEOUT))
        assert len(responses) == 1, responses
        return responses[0]

    def services(self):
        r = self.reflection(list_services="*")
        return {s.name for s in r.list_services_response.service}

    def files_of(self, symbol):
        r = self.reflection(file_containing_symbol=symbol)
        assert r.WhichOneof("message_response") == "file_descriptor_response", r
        files = []
        for raw in r.file_descriptor_response.file_descriptor_proto:
            f = descriptor_pb2.FileDescriptorProto()
            f.ParseFromString(raw)
            files.append(f)
        return files

    def channelz_servers(self):
        """Calls Channelz.GetServers with messages built from the
        descriptors the server's reflection gives for channelz."""
        pool = descriptor_pool.DescriptorPool()
        pending = self.files_of("grpc.channelz.v1.Channelz")
        # Well-known dependencies may be missing from the answer: ask.
        names = {f.name for f in pending}
        for f in list(pending):
            for dep in f.dependency:
                if dep not in names:
                    r = self.reflection(file_by_filename=dep)
                    for raw in r.file_descriptor_response.file_descriptor_proto:
                        d = descriptor_pb2.FileDescriptorProto()
                        d.ParseFromString(raw)
                        if d.name not in names:
                            names.add(d.name)
                            pending.append(d)
        added = set()
        while pending:
            progress = False
            for f in list(pending):
                if all(d in added for d in f.dependency):
                    pool.Add(f)
                    added.add(f.name)
                    pending.remove(f)
                    progress = True
            assert progress, [f.name for f in pending]
        factory = message_factory.MessageFactory(pool)
        req_cls = factory.GetPrototype(
            pool.FindMessageTypeByName("grpc.channelz.v1.GetServersRequest"))
        resp_cls = factory.GetPrototype(
            pool.FindMessageTypeByName("grpc.channelz.v1.GetServersResponse"))
        get_servers = self.channel.unary_unary(
            "/grpc.channelz.v1.Channelz/GetServers",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)
        return get_servers(req_cls(start_server_id=0), timeout=TIMEOUT)


class ActorStandardServicesTest(unittest.TestCase):

    def setUp(self):
        self.proc, addr = start([ACTOR, "--daemon", "--name=std"], "std")
        self.client = Client(addr)

    def tearDown(self):
        self.client.close()
        stop(self.proc, signal.SIGKILL)
        self.proc.stdout.close()

    def test_health_is_serving(self):
        self.assertEqual(self.client.health(), SERVING)

    def test_reflection_lists_the_actor_and_the_standard_services(self):
        services = self.client.services()
        self.assertLessEqual(STANDARD | {"tractor.v1.Actor"}, services)
        names = [f.name for f in self.client.files_of("tractor.v1.Actor")]
        self.assertIn("tractor/v1/actor.proto", names)
        actor = [f for f in self.client.files_of("tractor.v1.Actor")
                 if f.name == "tractor/v1/actor.proto"][0]
        self.assertIn("Open", [m.name for m in actor.service[0].method])

    def test_channelz_lists_the_server(self):
        reply = self.client.channelz_servers()
        self.assertGreaterEqual(len(reply.server), 1)
        self.assertTrue(reply.end)

    def mapped(self, library):
        return library in open("/proc/%d/maps" % self.proc.pid).read()

    def test_loaded_when_first_called(self):
        """Reflection and channelz cost nothing until a client calls one of
        them: their libraries are mapped then, not at start-up."""
        self.assertEqual(self.client.health(), SERVING)
        self.assertFalse(self.mapped("libgrpc++_reflection"))
        self.assertFalse(self.mapped("libgrpcpp_channelz"))
        self.assertLessEqual(STANDARD | {"tractor.v1.Actor"},
                             self.client.services())
        self.assertTrue(self.mapped("libgrpc++_reflection"))
        self.assertTrue(self.mapped("libgrpcpp_channelz"))
        # The in-process server they run in does not hold the exit up.
        self.assertEqual(stop(self.proc), 0)

    def test_one_reflection_stream_answers_each_request_in_order(self):
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services="*"),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="tractor.v1.Actor"),
            reflection_pb2.ServerReflectionRequest(host="h", list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="no.such.Symbol"),
        ]
        responses = list(self.client.reflect(iter(requests), timeout=TIMEOUT))
        self.assertEqual(len(responses), len(requests))
        for request, response in zip(requests, responses):
            self.assertEqual(response.original_request, request)
            self.assertEqual(response.valid_host, request.host)
        self.assertEqual(
            [r.WhichOneof("message_response") for r in responses],
            ["list_services_response", "file_descriptor_response",
             "list_services_response", "error_response"])
        self.assertEqual(responses[0].list_services_response,
                         responses[2].list_services_response)
        self.assertEqual(responses[3].error_response.error_code,
                         grpc.StatusCode.NOT_FOUND.value[0])

    def test_channelz_lists_only_servers_that_listen(self):
        """The server the services run in, in-process, is not listed."""
        for server in self.client.channelz_servers().server:
            self.assertGreaterEqual(len(server.listen_socket), 1, server)
        nope = self.client.channel.unary_unary(
            "/grpc.channelz.v1.Channelz/Nope")
        with self.assertRaises(grpc.RpcError) as e:
            nope(b"", timeout=TIMEOUT)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def watch_until_not_serving(self, trigger):
        """Starts a Health.Watch, fires `trigger` once SERVING arrived, and
        returns the statuses seen until NOT_SERVING (or the stream ends)."""
        seen = []
        stream = self.client.watch(health_pb2.HealthCheckRequest(service=""),
                                   timeout=TIMEOUT)
        try:
            for reply in stream:
                seen.append(reply.status)
                if reply.status == SERVING and len(seen) == 1:
                    trigger()
                if reply.status == NOT_SERVING:
                    break
        except grpc.RpcError as e:
            seen.append(e.code())
        stream.cancel()
        return seen

    def test_not_serving_as_soon_as_sigterm_starts_the_exit(self):
        seen = self.watch_until_not_serving(
            lambda: self.proc.send_signal(signal.SIGTERM))
        self.assertEqual(seen, [SERVING, NOT_SERVING])
        self.assertEqual(stop(self.proc), 0)

    def test_not_serving_as_soon_as_cancel_actor_starts_the_exit(self):
        cancel = self.client.channel.unary_unary(
            "/tractor.v1.Actor/CancelActor",
            request_serializer=actor_pb2.CancelActorRequest.SerializeToString,
            response_deserializer=actor_pb2.CancelActorReply.FromString)
        calls = []  # keeps the call alive (a dropped future cancels it)
        seen = self.watch_until_not_serving(
            lambda: calls.append(cancel.future(
                actor_pb2.CancelActorRequest(), timeout=TIMEOUT,
                metadata=(("tractor-secret", SECRET),))))
        self.assertEqual(seen, [SERVING, NOT_SERVING])
        self.assertEqual(stop(self.proc), 0)


class ReflectionAndChannelzOptOutTest(unittest.TestCase):
    """With TRACTOR_STANDARD_SERVICES=none an actor serves health only: the
    reflection and channelz libraries are not even loaded."""

    def test_none_serves_health_only(self):
        proc, addr = start([ACTOR, "--daemon", "--name=plain"], "plain",
                           services="none")
        client = Client(addr)
        try:
            self.assertEqual(client.health(), SERVING)
            with self.assertRaises(grpc.RpcError) as e:
                client.services()
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            maps = open("/proc/%d/maps" % proc.pid).read()
            self.assertNotIn("libgrpc++_reflection", maps)
            self.assertNotIn("libgrpcpp_channelz", maps)
        finally:
            client.close()
            stop(proc, signal.SIGKILL)
            proc.stdout.close()

    def test_one_service_alone(self):
        proc, addr = start([ACTOR, "--daemon", "--name=refl"], "refl",
                           services="reflection")
        client = Client(addr)
        try:
            services = client.services()
            self.assertIn("grpc.reflection.v1alpha.ServerReflection", services)
            self.assertNotIn("grpc.channelz.v1.Channelz", services)
        finally:
            client.close()
            stop(proc, signal.SIGKILL)
            proc.stdout.close()

    def test_a_bad_value_is_a_clear_error(self):
        for program in ([ACTOR, "--daemon", "--name=bad"],
                        [REGISTRAR, "--listen",
                         "unix:" + os.path.join(gen, "bad.sock")]):
            env = dict(os.environ, TRACTOR_STANDARD_SERVICES="reflection,gdb")
            proc = subprocess.run(program, env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT)
            self.assertNotEqual(proc.returncode, 0, program)
            self.assertIn("TRACTOR_STANDARD_SERVICES", proc.stderr)
            self.assertIn("unknown service 'gdb'", proc.stderr)


class RegistrarDaemonStandardServicesTest(unittest.TestCase):

    def setUp(self):
        sock = "unix:" + os.path.join(gen, "registrar-%d.sock" % id(self))
        self.proc, addr = start(
            [REGISTRAR, "--listen", sock, "--loglevel", "error"], "registrar")
        self.client = Client(addr)

    def tearDown(self):
        self.client.close()
        stop(self.proc, signal.SIGKILL)
        self.proc.stdout.close()

    def test_health_reflection_and_channelz(self):
        self.assertEqual(self.client.health(), SERVING)
        self.assertLessEqual(STANDARD | {"tractor.v1.Registrar"},
                             self.client.services())
        self.assertGreaterEqual(len(self.client.channelz_servers().server), 1)
        self.assertEqual(stop(self.proc), 0)


if __name__ == "__main__":
    unittest.main()
