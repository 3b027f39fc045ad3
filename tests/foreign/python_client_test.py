#!/usr/bin/python3
"""A Python client drives an actor using only protos/ and python3-grpcio.

Generates the Python message classes from protos/tractor/v1/*.proto with
protoc at test time, starts the echo actor, and opens Actor.Open dialogs by
method path (no generated stubs needed).
"""
import os
import subprocess
import sys
import tempfile
import unittest
import uuid

import grpc

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
ACTOR = os.path.join(RUNFILES, "tests/foreign/echo_actor")
PROTO_ROOT = os.path.join(RUNFILES, "protos")

gen = tempfile.mkdtemp(prefix="tractor_py_")
subprocess.run(
    ["protoc", "-I" + PROTO_ROOT, "-I/usr/include", "--python_out=" + gen,
     "tractor/v1/msg.proto", "tractor/v1/actor.proto"],
    check=True)
sys.path.insert(0, gen)
from tractor.v1 import msg_pb2  # noqa: E402
from google.protobuf import struct_pb2, json_format  # noqa: E402


def value(obj):
    v = struct_pb2.Value()
    json_format.ParseDict(obj, v)
    return v


class ActorFromPython(unittest.TestCase):

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


if __name__ == "__main__":
    unittest.main(verbosity=2)
