#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""A Python client drives an actor using only protos/ and python3-grpcio.

Generates the Python message classes from protos/tractor/v1/*.proto with
protoc at test time, starts the echo actor, and opens Actor.Open dialogs by
method path (no generated stubs needed).
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid

import grpc

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
ACTOR = os.path.join(RUNFILES, "tests/foreign/echo_actor")
PROTO_ROOT = os.path.join(RUNFILES, "protos")

gen = tempfile.mkdtemp(prefix="tractor_py_")
atexit.register(shutil.rmtree, gen, ignore_errors=True)
# The echo actor's registry: a unix socket of this test, never the
# well-known 127.0.0.1:1616.
# (under /tmp: a unix socket path must fit 107 bytes).
_REGISTRY_DIR = tempfile.mkdtemp(prefix="reg.", dir="/tmp")
atexit.register(shutil.rmtree, _REGISTRY_DIR, ignore_errors=True)
os.environ["TRACTOR_REGISTRY"] = "unix:" + os.path.join(
    _REGISTRY_DIR, "registry.sock")
subprocess.run(
    ["protoc", "-I" + PROTO_ROOT, "-I/usr/include", "--python_out=" + gen,
     "tractor/v1/msg.proto", "tractor/v1/actor.proto"],
    check=True)
sys.path.insert(0, gen)
from tractor.v1 import actor_pb2, msg_pb2  # noqa: E402
from google.protobuf import struct_pb2, json_format  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wire_bytes import field  # noqa: E402


def value(obj):
    v = struct_pb2.Value()
    json_format.ParseDict(obj, v)
    return v


class ActorProcessTest(unittest.TestCase):
    """Starts one echo actor for the class and opens the Actor methods on a
    channel to it; stops the actor (EOF on its stdin) at the end."""

    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([ACTOR], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline().split()
        assert line and line[0] == "ready", line
        cls.addr = line[1]
        cls.channel = grpc.insecure_channel(cls.addr)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.open = cls.channel.stream_stream(
            "/tractor.v1.Actor/Open",
            request_serializer=msg_pb2.Msg.SerializeToString,
            response_deserializer=msg_pb2.Msg.FromString)
        cls.unary_call = cls.channel.unary_unary(
            "/tractor.v1.Actor/Call",
            request_serializer=msg_pb2.Msg.SerializeToString,
            response_deserializer=msg_pb2.Msg.FromString)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.stdin.close()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
            raise


class ActorFromPython(ActorProcessTest):

    def call(self, func, args, expect=msg_pb2.FUNC_TYPE_FUNCTION):
        start = msg_pb2.Msg(start=msg_pb2.Start(
            cid=str(uuid.uuid4()), func=func,
            args=msg_pb2.Payload(value=value(args)),
            caller=msg_pb2.Aid(name="python-client"), expect=expect))
        return list(self.open(iter([start]), timeout=10))

    def test_call_with_json_like_argument(self):
        replies = self.call("demo:add", {"a": 1.5, "b": 2})
        self.assertEqual(replies[0].WhichOneof("kind"), "start_ack")
        self.assertEqual(replies[0].start_ack.functype,
                         msg_pb2.FUNC_TYPE_FUNCTION)
        self.assertEqual(replies[-1].WhichOneof("kind"), "returned")
        self.assertEqual(replies[-1].returned.payload.value.number_value, 3.5)

    def test_named_parameters_take_an_object_and_info_describes_them(self):
        replies = self.call("demo:repeat", {"count": 2, "label": "ab"})
        self.assertEqual(replies[-1].returned.payload.value.string_value,
                         "abab")
        replies = self.call("demo:repeat", {"count": 2})
        self.assertEqual(replies[-1].error.boxed_type, "MsgTypeError")
        self.assertIn("missing argument 'label'", replies[-1].error.message)
        info_rpc = self.channel.unary_unary(
            "/tractor.v1.Actor/Info",
            request_serializer=actor_pb2.InfoRequest.SerializeToString,
            response_deserializer=actor_pb2.ActorInfo.FromString)
        info = info_rpc(actor_pb2.InfoRequest(), timeout=10)
        sigs = {s.name: s for s in info.signatures}
        self.assertEqual(list(info.functions), [s.name for s in info.signatures])
        repeat = sigs["demo:repeat"]
        self.assertTrue(repeat.named)
        self.assertEqual([(p.name, p.type) for p in repeat.params],
                         [("count", "integer in [-9223372036854775808, "
                                    "9223372036854775807]"),
                          ("label", "string")])
        self.assertEqual(repeat.result_type, "string")

    def test_echo_round_trips_nested_values(self):
        obj = {"name": "x", "list": [1, "two", True, None], "n": {"k": 1}}
        replies = self.call("demo:echo", obj)
        got = json_format.MessageToDict(replies[-1].returned.payload.value)
        self.assertEqual(got, obj)

    def test_not_exposed_namespace_is_a_boxed_error(self):
        replies = self.call("secret:peek", None)
        self.assertEqual(len(replies), 1)
        err = replies[0].error
        self.assertEqual(err.boxed_type, "ModuleNotExposed")
        self.assertEqual(err.src.name, "echo")
        self.assertIn("secret", err.message)

    def test_remote_exception_is_boxed_with_its_type(self):
        replies = self.call("demo:fail", "bad input")
        err = replies[-1].error
        self.assertEqual(err.boxed_type, "std::invalid_argument")
        self.assertEqual(err.message, "bad input")
        self.assertTrue(err.traceback)

    def start(self, func, args):
        return msg_pb2.Msg(start=msg_pb2.Start(
            cid=str(uuid.uuid4()), func=func,
            args=msg_pb2.Payload(value=value(args)),
            caller=msg_pb2.Aid(name="python-client")))

    def test_unary_call_returns_the_result_alone(self):
        reply = self.unary_call(self.start("demo:add", {"a": 1.5, "b": 2}),
                                timeout=10)
        self.assertEqual(reply.WhichOneof("kind"), "returned")
        self.assertEqual(reply.returned.payload.value.number_value, 3.5)

    def test_unary_call_boxes_errors_and_refuses_context_endpoints(self):
        reply = self.unary_call(self.start("demo:fail", "bad input"),
                                timeout=10)
        self.assertEqual(reply.error.boxed_type, "std::invalid_argument")
        self.assertEqual(reply.error.message, "bad input")
        reply = self.unary_call(self.start("demo:doubler", 1), timeout=10)
        self.assertEqual(reply.error.boxed_type, "MessagingError")
        self.assertIn("context endpoint", reply.error.message)

    def test_context_stream_from_python(self):
        msgs = [msg_pb2.Msg(start=msg_pb2.Start(
            cid=str(uuid.uuid4()), func="demo:doubler",
            args=msg_pb2.Payload(value=value(3)),
            expect=msg_pb2.FUNC_TYPE_CONTEXT))]
        for i in range(3):
            msgs.append(msg_pb2.Msg(yielded=msg_pb2.Yield(
                payload=msg_pb2.Payload(value=value(i)))))
        msgs.append(msg_pb2.Msg(stop=msg_pb2.Stop()))
        replies = list(self.open(iter(msgs), timeout=10))
        kinds = [r.WhichOneof("kind") for r in replies]
        self.assertEqual(kinds[:2], ["start_ack", "started"])
        items = [r.yielded.payload.value.number_value
                 for r in replies if r.WhichOneof("kind") == "yielded"]
        self.assertEqual(items, [0, 2, 4])
        self.assertEqual(replies[-1].returned.payload.value.number_value, 3)




def raw_start(func, value_bytes):
    """Msg{start: Start{cid, func, args: Payload{value}}}, encoded by hand
    so that it may hold what no protobuf library would encode."""
    start = (field(1, str(uuid.uuid4()).encode()) + field(2, func) +
             field(3, field(2, value_bytes)))
    return field(1, start)


def deep_value(depth):
    """A google.protobuf.Value nested `depth` deep through list_value."""
    v = b"\x08\x00"  # Value{null_value: NULL_VALUE}
    for _ in range(depth - 1):
        v = field(6, field(1, v))  # Value{list_value: {values: [v]}}
    return v


# Field 1 declares 16 bytes; 14 follow: not a protobuf message.
GARBAGE = b"\x0a\x10not a protobuf"


class WireContractFromPython(ActorProcessTest):
    """What msg.proto and actor.proto promise a client beyond the happy
    path: when StartAck leaves, how a dialog ends, what undecodable input
    and oversized messages get, and the protocol version."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The same methods, sending bytes as given.
        cls.open_raw = cls.channel.stream_stream(
            "/tractor.v1.Actor/Open", request_serializer=None,
            response_deserializer=msg_pb2.Msg.FromString)
        cls.call_raw = cls.channel.unary_unary(
            "/tractor.v1.Actor/Call", request_serializer=None,
            response_deserializer=msg_pb2.Msg.FromString)

    def start(self, func, args, **kw):
        return msg_pb2.Msg(start=msg_pb2.Start(
            cid=str(uuid.uuid4()), func=func,
            args=msg_pb2.Payload(value=value(args)),
            caller=msg_pb2.Aid(name="python-client"), **kw))

    def assert_still_answers(self):
        reply = self.unary_call(self.start("demo:add", {"a": 1, "b": 2}),
                                timeout=10)
        self.assertEqual(reply.returned.payload.value.number_value, 3)

    # StartAck ---------------------------------------------------------

    def test_start_ack_arrives_while_the_function_still_runs(self):
        key = str(uuid.uuid4())
        replies = self.open(iter([self.start("demo:gate", key)]), timeout=20)
        first = next(replies)
        self.assertEqual(first.WhichOneof("kind"), "start_ack")
        self.assertEqual(first.start_ack.functype, msg_pb2.FUNC_TYPE_FUNCTION)
        # The function waits for this call, which the client makes only
        # now: its result says it was still running when StartAck came.
        opened = self.unary_call(self.start("demo:open_gate", key),
                                 timeout=10)
        self.assertTrue(opened.returned.payload.value.bool_value)
        rest = list(replies)
        self.assertEqual([r.WhichOneof("kind") for r in rest], ["returned"])
        self.assertEqual(rest[0].returned.payload.value.string_value,
                         "opened")

    def test_no_ack_means_no_start_ack(self):
        replies = list(self.open(
            iter([self.start("demo:add", {"a": 1, "b": 1}, no_ack=True)]),
            timeout=10))
        self.assertEqual([r.WhichOneof("kind") for r in replies],
                         ["returned"])

    # Ending a dialog --------------------------------------------------

    def test_a_stop_after_the_return_is_harmless(self):
        returned = threading.Event()

        def requests():
            yield self.start("demo:add", {"a": 1, "b": 2})
            returned.wait(10)
            yield msg_pb2.Msg(stop=msg_pb2.Stop())

        call = self.open(requests(), timeout=10)
        kinds = []
        for reply in call:
            kinds.append(reply.WhichOneof("kind"))
            if reply.WhichOneof("kind") == "returned":
                returned.set()
        self.assertEqual(kinds, ["start_ack", "returned"])
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assert_still_answers()

    def test_a_half_close_ends_the_callers_stream_like_stop(self):
        msgs = [self.start("demo:doubler", 2,
                           expect=msg_pb2.FUNC_TYPE_CONTEXT)]
        for i in range(2):
            msgs.append(msg_pb2.Msg(yielded=msg_pb2.Yield(
                payload=msg_pb2.Payload(value=value(i)))))
        # No Stop: the request stream just ends.
        call = self.open(iter(msgs), timeout=10)
        replies = list(call)
        kinds = [r.WhichOneof("kind") for r in replies]
        self.assertEqual(kinds[:2], ["start_ack", "started"])
        self.assertEqual(kinds[-1], "returned", replies[-1])
        self.assertIn("stop", kinds)
        items = [r.yielded.payload.value.number_value
                 for r in replies if r.WhichOneof("kind") == "yielded"]
        self.assertEqual(items, [0, 2])
        self.assertEqual(replies[-1].returned.payload.value.number_value, 2)
        self.assertEqual(call.code(), grpc.StatusCode.OK)

    def test_started_offers_batches_only_when_the_caller_did(self):
        for offered in (False, True):
            msgs = [self.start("demo:doubler", 0,
                               expect=msg_pb2.FUNC_TYPE_CONTEXT,
                               accept_batches=offered),
                    msg_pb2.Msg(stop=msg_pb2.Stop())]
            replies = list(self.open(iter(msgs), timeout=10))
            started = [r.started for r in replies
                       if r.WhichOneof("kind") == "started"]
            self.assertEqual(len(started), 1)
            self.assertEqual(started[0].accept_batches, offered)

    # Undecodable input ------------------------------------------------

    def assert_dialog_refused(self, request, *words):
        call = self.open_raw(iter([request]), timeout=10)
        replies = list(call)
        self.assertEqual(len(replies), 1, replies)
        err = replies[0].error
        self.assertEqual(err.boxed_type, "MessagingError")
        self.assertEqual(err.src.name, "echo")
        self.assertIn("does not decode as tractor.v1.Msg", err.message)
        for word in words:
            self.assertIn(word, err.message)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assert_still_answers()

    def assert_call_refused(self, request, *words):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call_raw(request, timeout=10)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.INVALID_ARGUMENT)
        details = cm.exception.details()
        self.assertIn("does not decode as tractor.v1.Msg", details)
        for word in words:
            self.assertIn(word, details)
        self.assert_still_answers()

    def test_garbage_on_open_is_a_messaging_error(self):
        self.assert_dialog_refused(GARBAGE, "declares 16 bytes")

    def test_garbage_on_call_is_invalid_argument(self):
        self.assert_call_refused(GARBAGE, "declares 16 bytes")

    def test_garbage_on_the_other_unary_methods_is_invalid_argument(self):
        for method, words in (("CancelTask", "tractor.v1.CancelTaskRequest"),
                              ("CancelActor", "tractor.v1.CancelActorRequest"),
                              ("Info", "tractor.v1.InfoRequest")):
            rpc = self.channel.unary_unary(
                "/tractor.v1.Actor/" + method, request_serializer=None,
                response_deserializer=None)
            with self.assertRaises(grpc.RpcError) as cm:
                rpc(GARBAGE, timeout=10)
            self.assertEqual(cm.exception.code(),
                             grpc.StatusCode.INVALID_ARGUMENT, method)
            self.assertIn(words, cm.exception.details())
        self.assert_still_answers()

    def test_nesting_past_the_recursion_limit_is_refused(self):
        request = raw_start(b"demo:echo", deep_value(10000))
        self.assert_dialog_refused(request, "recursion limit")
        self.assert_call_refused(request, "recursion limit")

    def test_nesting_within_the_limit_still_works(self):
        request = raw_start(b"demo:echo", deep_value(40))
        reply = self.call_raw(request, timeout=10)
        self.assertEqual(reply.WhichOneof("kind"), "returned")

    def test_invalid_utf8_in_a_string_field_is_refused(self):
        request = raw_start(b"demo:\xff\xfeecho", value(1).SerializeToString())
        self.assert_dialog_refused(request, "tractor.v1.Start.func", "UTF-8")
        self.assert_call_refused(request, "tractor.v1.Start.func", "UTF-8")

    def test_garbage_inside_a_running_dialog_ends_it(self):
        start = self.start("demo:doubler", 0,
                           expect=msg_pb2.FUNC_TYPE_CONTEXT)
        item = msg_pb2.Msg(yielded=msg_pb2.Yield(
            payload=msg_pb2.Payload(value=value(1))))
        started = threading.Event()

        def requests():
            # A caller streams only once the callee has said Started.
            yield start.SerializeToString()
            started.wait(10)
            yield item.SerializeToString()
            yield GARBAGE

        call = self.open_raw(requests(), timeout=10)
        replies = []
        for reply in call:
            replies.append(reply)
            if reply.WhichOneof("kind") == "started":
                started.set()
        kinds = [r.WhichOneof("kind") for r in replies]
        self.assertEqual(kinds[:2], ["start_ack", "started"])
        self.assertEqual(kinds[-1], "error", replies)
        err = replies[-1].error
        self.assertEqual(err.boxed_type, "MessagingError")
        self.assertEqual(err.cid, start.start.cid)
        self.assertIn("does not decode", err.message)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assert_still_answers()

    # Size ---------------------------------------------------------------

    def test_a_message_over_64_mib_is_resource_exhausted(self):
        request = raw_start(b"demo:echo",
                            field(3, b"x" * (64 << 20)))  # a string Value
        with self.assertRaises(grpc.RpcError) as cm:
            self.call_raw(request, timeout=30)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assert_still_answers()

    # Versions -----------------------------------------------------------

    def test_info_states_the_protocol_version(self):
        info = self.channel.unary_unary(
            "/tractor.v1.Actor/Info",
            request_serializer=actor_pb2.InfoRequest.SerializeToString,
            response_deserializer=actor_pb2.ActorInfo.FromString)
        self.assertEqual(info(actor_pb2.InfoRequest(), timeout=10)
                         .protocol_version, 1)

    def link(self, version):
        link = self.channel.stream_stream(
            "/tractor.v1.Actor/Link",
            request_serializer=actor_pb2.LinkMsg.SerializeToString,
            response_deserializer=actor_pb2.LinkMsg.FromString)
        hello = actor_pb2.LinkMsg(hello=actor_pb2.LinkHello(
            aid=msg_pb2.Aid(name="stranger", uuid=str(uuid.uuid4())),
            protocol_version=version))
        with self.assertRaises(grpc.RpcError) as cm:
            list(link(iter([hello]), timeout=10))
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.FAILED_PRECONDITION)
        return cm.exception.details()

    def test_a_link_of_another_protocol_version_is_refused(self):
        details = self.link(2)
        self.assertIn("version 2", details)
        self.assertIn("version 1", details)
        # 0 (a peer too old to say) passes the version check; this actor
        # then refuses the link only because it did not spawn the caller.
        self.assertIn("did not spawn", self.link(0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
