#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""tractor_client against the registrar daemon and real actors: find, call,
open_context (first value, items both ways, result, cancel) and errors as
Python exceptions."""
import os
import sys
import threading
import time
import unittest

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", "."), "tractor_cpp")
sys.path.insert(0, os.path.join(RUNFILES, "clients/python"))
sys.path.insert(0, os.path.join(RUNFILES, "tests/ctl"))
import mesh  # noqa: E402
import tractor_client as tc  # noqa: E402


class ClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.registrar = mesh.Registrar()
        cls.reg = [cls.registrar.addr]
        try:
            cls.root = mesh.Actor("pyroot", cls.registrar.addr,
                                  children=("pykid",))
        except BaseException:
            cls.registrar.kill_group()
            raise

    @classmethod
    def tearDownClass(cls):
        actor_ok = cls.root.stop()
        status = cls.registrar.stop()
        assert actor_ok, "the actor tree did not exit in time"
        assert status == 0, "registrar exit status %r" % status

    def test_find(self):
        [r] = tc.find("pyroot", self.reg)
        self.assertEqual(r.name, "pyroot")
        self.assertEqual(r.pid, self.root.pid)
        self.assertEqual(r.addrs, [self.root.addr])
        self.assertEqual(tc.find("nobody", self.reg), [])
        # A single address is a list of one.
        self.assertEqual(tc.find("pyroot", self.registrar.addr)[0].uuid,
                         r.uuid)

    def test_call_by_name_and_address(self):
        self.assertEqual(tc.call("pyroot", "demo:echo", {"a": [1, "x"]},
                                 registries=self.reg), {"a": [1, "x"]})
        self.assertEqual(tc.call(self.root.addr, "demo:repeat",
                                 {"count": 2, "label": "ab"}), "abab")
        self.assertEqual(tc.call("pykid", "demo:echo", 7,
                                 registries=self.reg), 7)
        self.assertIsNone(tc.call(self.root.addr, "demo:echo"))

    def test_remote_error(self):
        with self.assertRaises(tc.RemoteActorError) as cm:
            tc.call("pykid", "demo:fail", "it broke", registries=self.reg)
        e = cm.exception
        self.assertEqual(e.boxed_type, "std::invalid_argument")
        self.assertEqual(e.src["name"], "pykid")
        self.assertEqual(e.message, "it broke")
        self.assertIn("it broke", e.traceback)
        self.assertIn("Traceback (actor 'pykid'", e.traceback)
        self.assertNotIsInstance(e, tc.ContextCancelled)
        with self.assertRaises(tc.RemoteActorError) as cm:
            tc.call(self.root.addr, "demo:missing")
        self.assertEqual(cm.exception.boxed_type, "FunctionNotFound")
        with self.assertRaises(tc.RemoteActorError) as cm:
            tc.call(self.root.addr, "demo:repeat", {"count": "x"})
        self.assertEqual(cm.exception.boxed_type, "MsgTypeError")

    def test_not_found_and_unreachable(self):
        with self.assertRaises(tc.ActorNotFound):
            tc.call("nobody", "demo:echo", registries=self.reg)
        nowhere = "127.0.0.1:%d" % mesh.free_port()
        with self.assertRaises(tc.TransportError):
            tc.call(nowhere, "demo:echo", timeout=2)
        with self.assertRaises(tc.TransportError):
            tc.find("pyroot", [nowhere], timeout=2)
        # One registry down, another answering: found.
        self.assertEqual(len(tc.find("pyroot", [nowhere] + self.reg,
                                     timeout=2)), 1)
        with self.assertRaises(tc.TransportError) as cm:
            tc.call(self.root.addr, "demo:nap", 20, timeout=0.3)
        self.assertIn("timed out", str(cm.exception))
        with self.assertRaises(ValueError):
            tc.call(self.root.addr, "nocolon")
        with self.assertRaises(TypeError):
            tc.call(self.root.addr, "demo:echo", object())

    def test_context_streams_both_ways(self):
        with tc.open_context("pykid", "demo:doubler", 5,
                             registries=self.reg) as ctx:
            self.assertEqual(ctx.first, 5)
            items = iter(ctx)
            for i in range(3):
                ctx.send(i + 0.5)
                self.assertEqual(next(items), 2 * i + 1)
            ctx.close()
            self.assertEqual(list(items), [])
            self.assertEqual(ctx.result(), 3)

    def test_context_result_closes_and_drains(self):
        ctx = tc.open_context(self.root.addr, "demo:doubler", 0)
        ctx.send(1)
        ctx.send(2)
        self.assertEqual(ctx.result(), 2)
        with self.assertRaises(tc.TractorError):
            ctx.send(3)

    def test_context_cancel(self):
        ctx = tc.open_context(self.root.addr, "demo:doubler", 1)
        self.assertEqual(ctx.first, 1)
        self.assertTrue(ctx.cancel())
        with self.assertRaises(tc.ContextCancelled) as cm:
            ctx.result()
        self.assertEqual(cm.exception.canceller["name"], "python-client")
        self.assertEqual(cm.exception.boxed_type, "ContextCancelled")

    def test_context_errors(self):
        with self.assertRaises(tc.RemoteActorError) as cm:
            tc.open_context(self.root.addr, "demo:echo", 1)
        self.assertEqual(cm.exception.boxed_type, "MessagingError")
        with self.assertRaises(tc.TransportError):
            tc.open_context("127.0.0.1:%d" % mesh.free_port(),
                            "demo:doubler", 1, timeout=2)

    def test_cancel_a_call_from_another_thread(self):
        """A plain call's task is cancelled by CancelTask with its cid, as
        found in the actor's Stats."""
        errors = []

        def nap():
            try:
                tc.call(self.root.addr, "demo:nap", 20, timeout=30)
            except tc.RemoteActorError as e:
                errors.append(e)
        t = threading.Thread(target=nap)
        t.start()
        try:
            from tractor.v1 import actor_pb2, actor_pb2_grpc
            stub = actor_pb2_grpc.ActorStub(tc._channel(self.root.addr))

            def running():
                s = stub.Stats(actor_pb2.StatsRequest(), timeout=5)
                return [x.cid for x in s.tasks if x.func == "demo:nap"]
            cids = mesh.wait_for(running, 20, interval=0.05)
            self.assertEqual(len(cids), 1)
            # A control call: it presents the mesh secret (docs/security.md).
            reply = stub.CancelTask(actor_pb2.CancelTaskRequest(cid=cids[0]),
                                    timeout=5,
                                    metadata=(("tractor-secret", mesh.SECRET),))
            self.assertTrue(reply.found)
        finally:
            t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], tc.ContextCancelled)


    def test_stats_queue_depth_and_overruns(self):
        """Actor/Stats sees a dialog's receive queue fill and its
        overruns."""
        import queue
        import uuid
        from google.protobuf import struct_pb2
        from tractor.v1 import actor_pb2, actor_pb2_grpc, msg_pb2
        stub = actor_pb2_grpc.ActorStub(tc._channel(self.root.addr))

        def stats():
            return stub.Stats(actor_pb2.StatsRequest(), timeout=5)
        before = stats().overruns
        out = queue.Queue()
        cid = str(uuid.uuid4())
        out.put(msg_pb2.Msg(start=msg_pb2.Start(
            cid=cid, func="demo:hold",
            args=msg_pb2.Payload(value=struct_pb2.Value(number_value=20)),
            caller=msg_pb2.Aid(name="stats-test"),
            expect=msg_pb2.FUNC_TYPE_CONTEXT, no_ack=True,
            msg_buffer_size=2,
            overrun_policy=msg_pb2.OVERRUN_POLICY_ERROR)))
        call = stub.Open(iter(out.get, None), timeout=30)
        try:
            replies = iter(call)
            self.assertTrue(next(replies).HasField("started"))
            for i in range(6):
                out.put(msg_pb2.Msg(yielded=msg_pb2.Yield(
                    payload=msg_pb2.Payload(
                        value=struct_pb2.Value(number_value=i)))))

            def settled():
                s = stats()
                tasks = [t for t in s.tasks if t.cid == cid]
                if tasks and tasks[0].recv_queue == 2 and \
                        s.overruns >= before + 4:
                    return s, tasks[0]
                return None
            got = mesh.wait_for(settled, 20, interval=0.05)
            self.assertIsNotNone(got, stats())
            s, task = got
            self.assertEqual(task.func, "demo:hold")
            self.assertTrue(task.dialog)
            self.assertEqual(task.recv_capacity, 2)
            self.assertEqual(task.caller.name, "stats-test")
            self.assertEqual(s.open_dialogs, 1)
            self.assertGreaterEqual(s.running_tasks, 1)
            self.assertEqual(s.children, 1)
        finally:
            call.cancel()
            out.put(None)


class CancelActorTest(unittest.TestCase):

    def test_cancel_actor_ends_it(self):
        registrar = mesh.Registrar()
        try:
            actor = mesh.Actor("pydoomed", registrar.addr)
            try:
                started = time.monotonic()
                self.assertTrue(tc.cancel_actor("pydoomed",
                                                registries=[registrar.addr]))
                self.assertEqual(actor.wait_exit(mesh.STOP_TIMEOUT), 0)
                self.assertLess(time.monotonic() - started,
                                mesh.STOP_TIMEOUT)
            finally:
                actor.stop()
        finally:
            self.assertEqual(registrar.stop(), 0)


if __name__ == "__main__":
    unittest.main()
