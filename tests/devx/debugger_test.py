#!/usr/bin/python3
# SPDX-License-Identifier: AGPL-3.0-or-later
"""The tree-wide debugger, driven through a pseudo-terminal.

Runs tests/devx/debugger_tree (a debug-mode actor tree) under a pty with
pexpect, as a user at a terminal would, and drives the real gdb that an
actor forks onto that terminal: the prompt, `bt`, `continue`, ctrl-c. Every
wait is bounded by a pexpect timeout; every process of the tree (and gdb)
is in the pty's process group, which is killed after each test.

Arguments are unittest test names (e.g. DebuggerTest.test_idle_at_prompt);
none runs every test but the 30 s idle one.
"""
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

import pexpect

RUNFILES = os.environ.get("TEST_SRCDIR", ".") + "/tractor_cpp"
TREE = os.path.join(RUNFILES, "tests/devx/debugger_tree")

PROMPT = r"\(gdb\) "
# gdb attaching to a process of a dozen threads under load: generous, but
# bounded.
ATTACH = 90
STEP = 60
BANNER = r"\[tractor\] Pause\(\) in actor '(\w+)' [0-9a-f]{8} \(pid (\d+)\)"


class DebuggerTest(unittest.TestCase):

    def setUp(self):
        # A registry of this test's own (a unix socket), never the
        # well-known 127.0.0.1:1616 other programs share.
        self.dir = tempfile.mkdtemp(prefix="dbg.", dir="/tmp")
        env = dict(os.environ)
        env["TRACTOR_REGISTRY"] = "unix:" + os.path.join(self.dir, "reg.sock")
        env.pop("TRACTOR_LOGLEVEL", None)
        self.env = env
        self.tty = None

    def tearDown(self):
        if self.tty is not None:
            if self.tty.isalive():
                try:
                    # The root is the pty's session and process group leader;
                    # every actor and gdb are in its group.
                    os.killpg(self.tty.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.tty.close(force=True)
            # Nothing of the tree may be left: its group is empty.
            self.assertFalse(self._group_alive(self.tty.pid),
                             "processes of the tree were left running")
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _live_members(pgid):
        """Pids of the group's processes that are not zombies."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                pids.append(int(entry))
        return pids

    def _group_alive(self, pgid):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self._live_members(pgid):
                return False
            time.sleep(0.05)
        for pid in self._live_members(pgid):
            os.kill(pid, signal.SIGKILL)
        return True

    def start(self, scenario, *args):
        self.tty = pexpect.spawn(TREE, [scenario] + list(args), env=self.env,
                                 encoding="utf-8", timeout=STEP,
                                 dimensions=(60, 200))
        self.tty.logfile_read = sys.stdout
        return self.tty

    def expect_banner(self, name=None):
        self.tty.expect(BANNER, timeout=ATTACH)
        who, pid = self.tty.match.group(1), int(self.tty.match.group(2))
        if name is not None:
            self.assertEqual(who, name)
        self.tty.expect(PROMPT, timeout=ATTACH)
        return who, pid

    def command(self, line):
        self.tty.sendline(line)
        self.tty.expect(PROMPT)
        return self.tty.before

    def finish(self, status):
        self.tty.expect(pexpect.EOF, timeout=STEP)
        self.tty.close()
        self.assertEqual(self.tty.exitstatus, status,
                         "root exit status (signal %s)" % self.tty.signalstatus)

    def continue_to(self, pattern):
        self.tty.sendline("continue")
        self.tty.expect(pattern, timeout=STEP)

    def fifo(self):
        path = os.path.join(self.dir, "go")
        os.mkfifo(path)
        return path

    def say_go(self, fifo):
        # The tree opens the FIFO for reading before it waits on it: this
        # open returns once it has, within STEP or the test fails.
        def write():
            with open(fifo, "w") as f:
                f.write("go\n")
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(STEP)
        if writer.is_alive():
            # Unblock the writer's open before failing.
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            self.fail("the tree never opened %s" % fifo)

    def test_pause_in_child(self):
        self.start("pause")
        self.expect_banner("alice")
        bt = self.command("bt")
        self.assertIn("InspectMe", bt)
        self.assertIn("tractor::Pause", bt)
        # The selected frame is the user's.
        frame = self.command("frame")
        self.assertIn("InspectMe", frame)
        self.continue_to(r"root got 41")
        self.finish(0)

    def test_pause_in_grandchild(self):
        self.start("pause_grandchild")
        self.expect_banner("grandchild")
        self.assertIn("InspectMe", self.command("bt"))
        self.continue_to(r"root got 41")
        self.finish(0)

    def test_post_mortem_of_child_error(self):
        self.start("post_mortem")
        self.tty.expect(r"\[tractor\] post-mortem of task 'dbg:fail' in actor "
                        r"'alice'", timeout=ATTACH)
        self.tty.expect(r"\[tractor\] std::out_of_range: ", timeout=STEP)
        # The throw site's frames, three calls below the task.
        self.tty.expect(r"thrown at:", timeout=STEP)
        self.tty.expect(PROMPT, timeout=ATTACH)
        self.assertIn("LookUpSlot", self.tty.before)
        self.assertIn("SumAround", self.tty.before)
        bt = self.command("bt")
        self.assertIn("tractor::devx::PostMortem", bt)
        self.assertIn("TaskServer::Invoke", bt)
        # On continue the error goes up the tree as usual; the root, which
        # receives it relayed, does not stop for it a second time.
        self.tty.sendline("continue")
        index = self.tty.expect([r"\[tractor\] post-mortem of the root",
                                 r"root caught: .*out_of_range"],
                                timeout=STEP)
        self.assertEqual(index, 1, "the root stopped again for the error "
                         "its child examined")
        self.finish(1)

    def test_post_mortem_in_the_root(self):
        self.start("root_error")
        self.tty.expect(r"\[tractor\] post-mortem of the root actor's block "
                        r"in actor '\w+'", timeout=ATTACH)
        self.tty.expect(r"\[tractor\] std::out_of_range: ", timeout=STEP)
        # The throw site's frames, three calls below the root's block.
        self.tty.expect(r"thrown at:", timeout=STEP)
        self.tty.expect(PROMPT, timeout=ATTACH)
        self.assertIn("RootLookUp", self.tty.before)
        self.assertIn("RootSumAround", self.tty.before)
        bt = self.command("bt")
        self.assertIn("tractor::devx::PostMortem", bt)
        self.assertIn("RunRootBlock", bt)
        self.assertIn("tractor::OpenRootActor", bt)
        # On continue the error leaves OpenRootActor as usual (the root
        # catches the std::out_of_range itself, not a box).
        self.continue_to(r"root caught: vector::_M_range_check")
        self.finish(1)

    def test_pause_gives_up_the_wait_when_cancelled(self):
        fifo = self.fifo()
        self.start("give_up", fifo)
        self.expect_banner("alice")
        # While alice holds the lock, bob pauses under a 3 s deadline: his
        # wait for the lock is cancelled, and he never stops.
        self.say_go(fifo)
        index = self.tty.expect([r"in actor 'bob'", r"bob returned -1"],
                                timeout=STEP)
        self.assertEqual(index, 1, "bob stopped instead of giving up")
        self.continue_to(r"root got 41")
        # Bob's withdrawn request left no waiter behind: the next pause gets
        # the lock.
        self.expect_banner("carol")
        self.assertIn("InspectMe", self.command("bt"))
        self.continue_to(r"root got 7")
        self.finish(0)

    def test_child_killed_in_the_debugger_during_teardown(self):
        self.env["TRACTOR_LOGLEVEL"] = "cancel"
        fifo = self.fifo()
        self.start("cancel", fifo)
        _, pid = self.expect_banner("alice")
        self.say_go(fifo)
        # The teardown waits, without a time limit, for alice to leave the
        # debugger...
        self.tty.expect(r"teardown of child 'alice' \S+ waits for it to "
                        r"leave the debugger", timeout=STEP)
        # ... and goes on as soon as her process dies.
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self.tty.expect(r"root cancelled its nursery", timeout=STEP)
        elapsed = time.monotonic() - killed
        self.assertLess(elapsed, 10, "the teardown took %.1f s after the "
                        "child died" % elapsed)
        self.finish(0)

    def test_two_children_race_for_the_lock(self):
        self.start("race")
        first, _ = self.expect_banner()
        other = "bob" if first == "alice" else "alice"
        # The second waits: while the first holds the terminal, only it
        # stopped.
        self.assertNotIn("in actor '%s'" % other, self.tty.before)
        self.assertIn("InspectMe", self.command("bt"))
        self.tty.sendline("continue")
        self.expect_banner(other)
        self.assertIn("InspectMe", self.command("bt"))
        self.continue_to(r"root got 3 and 5")
        self.finish(0)

    def test_child_killed_while_holding_the_lock(self):
        # Shielded pauses: the other child keeps waiting for the lock when
        # the holder's death cancels the tree (an unshielded Pause() would
        # give up its wait, see test_pause_gives_up_the_wait_when_cancelled).
        self.start("race_shielded")
        first, pid = self.expect_banner()
        other = "bob" if first == "alice" else "alice"
        os.kill(pid, signal.SIGKILL)
        # The lock passes on: the holder's stream ended with its process.
        self.expect_banner(other)
        self.continue_to(r"root caught: .*'%s' \(pid %d\) was killed by "
                         r"signal 9" % (first, pid))
        self.finish(1)

    def test_sigint_goes_to_the_debugger(self):
        self.start("sigint")
        self.expect_banner("alice")
        # ctrl-c at the prompt: gdb's, the tree goes on.
        self.tty.sendintr()
        self.tty.expect(PROMPT)
        self.assertIn("InspectMe", self.command("bt"))
        self.continue_to(r"root got 41")
        self.tty.expect(r"root waits for SIGINT")
        # After the release SIGINT cancels the tree as usual.
        self.tty.sendintr()
        self.tty.expect(r"root interrupted")
        self.finish(130)

    def test_idle_at_prompt(self):
        self.start("pause")
        self.expect_banner("alice")
        # 30 s stopped at the prompt: nothing tears the tree down (no
        # output at all), then `continue` ends it cleanly.
        index = self.tty.expect([r"\S", pexpect.TIMEOUT], timeout=30)
        self.assertEqual(index, 1, "output while idle: %r" % self.tty.after)
        self.assertIn("InspectMe", self.command("bt"))
        self.continue_to(r"root got 41")
        self.finish(0)


if __name__ == "__main__":
    names = sys.argv[1:]
    if not names:
        loader = unittest.TestLoader()
        names = ["DebuggerTest." + n
                 for n in loader.getTestCaseNames(DebuggerTest)
                 if n != "test_idle_at_prompt"]
    suite = unittest.TestLoader().loadTestsFromNames(names, sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
