#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""tractorctl against the registrar daemon and real actors: every command,
its output (tables and --json) and its exit status (0 ok, 1 remote error,
2 usage, 3 not found, unreachable or timed out)."""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mesh  # noqa: E402

CTL_TIMEOUT = 30.0  # bound on one tractorctl run


def ctl(registry, *args, stdin=None, timeout=CTL_TIMEOUT):
    """Runs tractorctl with `--registry registry` (None: a port nothing
    listens on, so that no test ever asks the default registry address);
    returns the completed process (text stdout and stderr)."""
    if registry is None:
        registry = "127.0.0.1:%d" % mesh.free_port()
    argv = [mesh.TRACTORCTL, "--registry", registry]
    return subprocess.run(argv + list(args), input=stdin, capture_output=True,
                          text=True, timeout=timeout)


class Mesh(unittest.TestCase):
    """A registrar daemon and a root actor 'boss' with children 'alice' and
    'bob', shared by the tests of a class; each test's extra processes are
    stopped by the test itself."""

    @classmethod
    def setUpClass(cls):
        cls.registrar = mesh.Registrar()
        try:
            cls.boss = mesh.Actor("boss", cls.registrar.addr,
                                  children=("alice", "bob"))
        except BaseException:
            cls.registrar.kill_group()
            raise

    @classmethod
    def tearDownClass(cls):
        actor_ok = cls.boss.stop()
        status = cls.registrar.stop()
        assert actor_ok, "the actor tree did not exit in time"
        assert status == 0, "registrar exit status %r" % status

    def ctl(self, *args, **kw):
        return ctl(self.registrar.addr, *args, **kw)

    def ok(self, *args, **kw):
        r = self.ctl(*args, **kw)
        self.assertEqual(r.returncode, 0, (args, r.stdout, r.stderr))
        return r

    def info(self, target):
        return json.loads(self.ok("--json", "info", target).stdout)


class RegistryCommands(Mesh):

    def test_ls_lists_every_actor_with_lease_age(self):
        out = self.ok("ls").stdout.splitlines()
        self.assertEqual(out[0].split(),
                         ["NAME", "UUID", "PID", "ADDRESSES", "LEASE", "AGE"])
        names = {line.split()[0] for line in out[1:]}
        self.assertLessEqual({"registrar", "boss", "alice", "bob"}, names)
        reply = json.loads(self.ok("ls", "--json").stdout)
        regs = reply["registrations"]
        by_name = {r["aid"]["name"]: r for r in regs}
        left = {r["aid"]["name"]: ms
                for r, ms in zip(regs, reply["lease_left_ms"])}
        self.assertEqual(by_name["boss"]["addrs"], [self.boss.addr])
        self.assertEqual(by_name["boss"]["aid"]["pid"], str(self.boss.pid))
        self.assertEqual(by_name["registrar"]["aid"]["uuid"],
                         self.registrar.uuid)
        # A leased entry says how long its lease has left.
        self.assertEqual(by_name["boss"]["lease_ms"], 3000)
        self.assertGreater(left["boss"], 0)
        self.assertLessEqual(left["boss"], 3000)
        # The registrar's own entry has no lease.
        self.assertEqual(left["registrar"], 0)
        self.assertEqual(len(reply["lease_left_ms"]), len(regs))

    def test_find(self):
        regs = json.loads(self.ok("--json", "find", "alice").stdout)
        [alice] = regs["registrations"]
        self.assertEqual(alice["aid"]["name"], "alice")
        table = self.ok("find", "alice").stdout
        self.assertIn(alice["aid"]["uuid"], table)
        r = self.ctl("find", "nobody")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("no actor named 'nobody'", r.stderr)

    def test_watch_reports_a_new_actor(self):
        current = len(json.loads(self.ok("ls", "--json").stdout)
                      ["registrations"])
        watch = subprocess.Popen(
            [mesh.TRACTORCTL, "--registry", self.registrar.addr, "--json",
             "watch", "--events", str(current + 1)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # The watch lists the current entries first: once they came, a
            # new actor is an event of its own.
            first = json.loads(mesh.read_line(watch, 20))
            self.assertEqual(first["kind"], "ADDED")
            carol = mesh.Actor("carol", self.registrar.addr)
            try:
                out, err = watch.communicate(timeout=20)
            finally:
                self.assertTrue(carol.stop())
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
        self.assertEqual(watch.returncode, 0, err)
        events = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(events[-1]["kind"], "ADDED")
        self.assertEqual(events[-1]["registration"]["aid"]["name"], "carol")
        self.assertEqual(events[-1]["registration"]["addrs"], [carol.addr])

    def test_human_watch_line(self):
        r = self.ok("watch", "--events", "1")
        kind, name, uuid, addrs = r.stdout.split()
        self.assertEqual(kind, "ADDED")
        self.assertIn(name, ["registrar", "boss", "alice", "bob"])


class ActorCommands(Mesh):

    def test_info_by_name_and_by_address(self):
        info = self.info("boss")
        self.assertEqual(info["aid"]["name"], "boss")
        self.assertEqual(info["accept_addrs"], [self.boss.addr])
        self.assertEqual(self.info(self.boss.addr)["aid"], info["aid"])
        names = {s["name"]: s for s in info["signatures"]}
        self.assertEqual(names["demo:doubler"]["kind"], "FUNC_TYPE_CONTEXT")
        # Children, each with its accept addresses; each child names the
        # root as its parent, with the root's address.
        children = {c["aid"]["name"]: c for c in info["child_addrs"]}
        self.assertCountEqual(children, ["alice", "bob"])
        self.assertCountEqual([c["name"] for c in info["children"]],
                              ["alice", "bob"])
        alice = self.info(children["alice"]["accept_addrs"][0])
        self.assertEqual(alice["aid"]["uuid"],
                         children["alice"]["aid"]["uuid"])
        self.assertEqual(alice["parent"]["uuid"], info["aid"]["uuid"])
        self.assertEqual(alice["parent_addrs"], [self.boss.addr])
        self.assertNotIn("parent_addrs", info)
        text = self.ok("info", "boss").stdout
        self.assertIn("demo:repeat", text)
        self.assertIn("(count: integer", text)
        self.assertIn(children["bob"]["accept_addrs"][0], text)
        text = self.ok("info", "alice").stdout
        self.assertIn("'boss' %s at %s" % (info["aid"]["uuid"], self.boss.addr),
                      text)

    def test_tree(self):
        tree = json.loads(self.ok("--json", "tree", "boss").stdout)
        self.assertEqual(tree["aid"]["name"], "boss")
        info = self.info("boss")
        self.assertCountEqual(
            [(c["aid"]["uuid"], c["accept_addrs"]) for c in tree["children"]],
            [(c["aid"]["uuid"], c["accept_addrs"])
             for c in info["child_addrs"]])
        lines = self.ok("tree", "boss").stdout.splitlines()
        self.assertTrue(lines[0].startswith("boss "), lines)
        self.assertCountEqual([line.split()[0] for line in lines[1:]],
                              ["alice", "bob"])
        for line in lines[1:]:
            self.assertTrue(line.startswith("  "), lines)

    def test_call(self):
        r = self.ok("call", "boss", "demo:echo", '{"a": [1, "x"]}')
        self.assertEqual(json.loads(r.stdout), {"a": [1, "x"]})
        r = self.ok("--json", "call", "alice", "demo:repeat",
                    '{"count": 3, "label": "ab"}')
        self.assertEqual(json.loads(r.stdout), {"result": "ababab"})
        # No argument: null.
        self.assertEqual(json.loads(self.ok("call", "boss",
                                            "demo:echo").stdout), None)

    def test_call_remote_error(self):
        r = self.ctl("call", "bob", "demo:fail", '"it broke"')
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("std::invalid_argument from actor 'bob'", r.stderr)
        self.assertIn("it broke", r.stderr)
        self.assertIn("traceback:", r.stderr)
        r = self.ctl("--json", "call", "bob", "demo:fail", '"it broke"')
        self.assertEqual(r.returncode, 1, r.stderr)
        err = json.loads(r.stdout)["error"]
        self.assertEqual(err["boxed_type"], "std::invalid_argument")
        self.assertEqual(err["src"]["name"], "bob")
        self.assertIn("it broke", err["traceback"])
        r = self.ctl("call", "boss", "demo:missing")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("FunctionNotFound", r.stderr)
        r = self.ctl("call", "boss", "demo:repeat", '{"count": "x"}')
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("MsgTypeError", r.stderr)

    def test_stream(self):
        r = self.ok("stream", "alice", "demo:doubler", "7",
                    stdin="1\n2.5\n\n-4\n")
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(lines, [{"started": 7}, {"yield": 2}, {"yield": 5},
                                 {"yield": -8}, {"result": 3}])

    def test_stream_item_by_item(self):
        """Each stdin line goes out as it is read: the answer to one item
        arrives before the next is written."""
        p = subprocess.Popen(
            [mesh.TRACTORCTL, "--registry", self.registrar.addr, "stream",
             "boss", "demo:doubler", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            self.assertEqual(json.loads(mesh.read_line(p, 20)), {"started": 0})
            for i in range(3):
                p.stdin.write(b"%d\n" % i)
                p.stdin.flush()
                self.assertEqual(json.loads(mesh.read_line(p, 20)),
                                 {"yield": 2 * i})
            p.stdin.close()
            self.assertEqual(json.loads(mesh.read_line(p, 20)), {"result": 3})
            self.assertEqual(p.wait(timeout=20), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    def test_stream_bad_input(self):
        r = self.ctl("stream", "boss", "demo:doubler", "1", stdin="2\nnope\n")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("stdin line 2 is not JSON: nope", r.stderr)
        r = self.ctl("stream", "boss", "demo:echo", "1", stdin="")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("MessagingError", r.stderr)

    def test_stats_and_cancel_one_task(self):
        stats = json.loads(self.ok("--json", "stats", "bob").stdout)
        self.assertEqual(stats["aid"]["name"], "bob")
        self.assertGreater(stats["threads"], 1)
        self.assertGreater(int(stats["rss_bytes"]), 1 << 20)
        self.assertGreater(int(stats["heap_bytes"]), 0)
        self.assertEqual(stats["max_tasks"], 1024)
        self.assertNotIn("tasks", stats)
        nap = subprocess.Popen(
            [mesh.TRACTORCTL, "--registry", self.registrar.addr, "call",
             "bob", "demo:nap", "25"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def running():
                s = json.loads(self.ok("--json", "stats", "bob").stdout)
                return [t for t in s.get("tasks", [])
                        if t["func"] == "demo:nap"]
            tasks = mesh.wait_for(running, 20, interval=0.1)
            self.assertEqual(len(tasks), 1, tasks)
            self.assertEqual(tasks[0]["caller"]["name"], "tractorctl")
            table = self.ok("stats", "bob").stdout
            self.assertIn("running tasks  1 of 1024", table)
            self.assertIn(tasks[0]["cid"], table)
            r = self.ok("cancel", "bob", "--task", tasks[0]["cid"])
            self.assertIn("cancelled task " + tasks[0]["cid"], r.stdout)
            out, err = nap.communicate(timeout=20)
        finally:
            if nap.poll() is None:
                nap.kill()
                nap.wait()
        self.assertEqual(nap.returncode, 1, (out, err))
        self.assertIn("ContextCancelled", err)
        self.assertIn("cancelled by 'tractorctl'", err)
        r = self.ctl("cancel", "bob", "--task", tasks[0]["cid"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("no task", r.stderr)

    def test_call_times_out(self):
        started = time.monotonic()
        r = self.ctl("--timeout", "300ms", "call", "boss", "demo:nap", "20")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("timed out after 300ms", r.stderr)
        self.assertLess(time.monotonic() - started, 15)


class CancelActor(unittest.TestCase):

    def test_cancel_by_name_ends_the_actor(self):
        registrar = mesh.Registrar()
        try:
            actor = mesh.Actor("doomed", registrar.addr, children=("kid",))
            try:
                r = ctl(registrar.addr, "cancel", "doomed")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("cancelled 'doomed' at " + actor.addr, r.stdout)
                # The root's block is cancelled: it exits 0 with its child.
                self.assertEqual(actor.wait_exit(mesh.STOP_TIMEOUT), 0,
                                 actor.stderr_text())
                self.assertTrue(actor.gone())
                # It unregistered on the way out.
                r = ctl(registrar.addr, "find", "doomed")
                self.assertEqual(r.returncode, 3, r.stdout)
                r = ctl(registrar.addr, "call", actor.addr, "demo:echo")
                self.assertEqual(r.returncode, 3, r.stderr)
            finally:
                actor.stop()
        finally:
            self.assertEqual(registrar.stop(), 0)


class Failures(unittest.TestCase):
    """Usage errors (2) and unreachable peers (3) need no mesh."""

    def test_usage(self):
        for args in ([], ["frobnicate"], ["--bogus", "ls"], ["ls", "extra"],
                     ["call", "127.0.0.1:1", "nocolon"],
                     ["call", "127.0.0.1:1", "demo:echo", "{not json"],
                     ["--timeout", "soon", "ls"], ["--timeout", "0s", "ls"],
                     ["--registry", "nowhere", "ls"],
                     ["info", "unix:relative"],
                     ["stats", "x", "--task", "abc"], ["--registry"],
                     ["find", ""], ["info", ""], ["watch", "--events", "-1"]):
            r = ctl(None, *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("tractorctl: "), r.stderr)
        r = ctl(None, "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: tractorctl", r.stdout)

    def test_unreachable(self):
        nowhere = "127.0.0.1:%d" % mesh.free_port()
        for args in (["ls"], ["find", "x"], ["info", "x"], ["watch"]):
            r = ctl(nowhere, "--timeout", "2s", *args)
            self.assertEqual(r.returncode, 3, (args, r.stderr))
            self.assertIn("no registry answered", r.stderr)
        for args in (["info", nowhere], ["stats", nowhere],
                     ["call", nowhere, "demo:echo"],
                     ["stream", nowhere, "demo:doubler", "1"],
                     ["cancel", nowhere], ["tree", nowhere]):
            r = ctl(None, "--timeout", "2s", *args, stdin="")
            self.assertEqual(r.returncode, 3, (args, r.stderr))


if __name__ == "__main__":
    unittest.main()
