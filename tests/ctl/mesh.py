# SPDX-License-Identifier: AGPL-3.0-or-later
"""Real processes for the tractorctl and Python client tests: the registrar
daemon and test actors (tests/ctl/ctl_actor.cc), each in a process group of
its own so that a test can check that none of it is left behind.

Every wait has a deadline; nothing sleeps to wait for a condition.
"""
import os
import select
import signal
import socket
import subprocess
import tempfile
import time

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", "."), "tractor_cpp")

# The mesh secret every program of these tests shares by configuration
# (docs/security.md): actors honour control calls (CancelActor, CancelTask)
# only from members, and tractorctl and the Python client present it.
SECRET = "ctl-test-mesh-secret"
os.environ["TRACTOR_SECRET"] = SECRET
REGISTRAR = os.path.join(RUNFILES, "registrar/registrar")
ACTOR = os.path.join(RUNFILES, "tests/ctl/ctl_actor")
TRACTORCTL = os.path.join(RUNFILES, "tools/tractorctl/tractorctl")

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def wait_for(pred, timeout, interval=0.02):
    """Polls `pred` until it is true or `timeout` seconds pass; returns the
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def read_line(proc, timeout):
    """One line of `proc`'s stdout, or raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    line = b""
    fd = proc.stdout.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no line from pid %d within %.1fs (got %r)"
                               % (proc.pid, timeout, line))
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError("pid %d closed stdout (got %r, exit %r)"
                           % (proc.pid, line, proc.poll()))
        line += chunk
    return line.decode()


def free_port():
    """A loopback TCP port with nothing listening on it (just released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Proc:
    """A started process group; `stop()` ends it and reports leftovers."""

    def __init__(self, argv, env=None, stdin=subprocess.PIPE):
        self.stderr = tempfile.TemporaryFile()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(argv, stdin=stdin,
                                     stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=full_env,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def wait_exit(self, timeout):
        """The exit status, or None if it still runs after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self):
        if group_alive(self.pid):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()

    def gone(self, timeout=STOP_TIMEOUT):
        """True once the whole process group exited (waits up to
        `timeout`)."""
        return wait_for(lambda: not group_alive(self.pid), timeout)


class Registrar(Proc):
    """The registrar daemon on a random loopback port."""

    def __init__(self):
        super().__init__([REGISTRAR, "--listen", "127.0.0.1:0",
                          "--lease_ms", "3000"])
        line = read_line(self.proc, START_TIMEOUT).split()
        # "registrar <uuid> listening on <addr>"
        assert line[0] == "registrar" and line[2:4] == ["listening", "on"], \
            line
        self.uuid = line[1]
        self.addr = line[4]

    def stop(self):
        """SIGTERM; returns the exit status. Kills the group (and returns
        None) when it does not exit in time."""
        self.proc.send_signal(signal.SIGTERM)
        status = self.wait_exit(STOP_TIMEOUT)
        if status is None or not self.gone():
            self.kill_group()
            return None
        return status


class Actor(Proc):
    """tests/ctl/ctl_actor: a root actor named `name` registered with
    `registry`, with children `children`."""

    def __init__(self, name, registry, children=()):
        super().__init__([ACTOR], env={
            "CTL_ACTOR_NAME": name,
            "CTL_REGISTRY": registry,
            "CTL_CHILDREN": ",".join(children),
        })
        self.name = name
        line = read_line(self.proc, START_TIMEOUT).split()
        assert line[0] == "ready", (line, self.stderr_text())
        self.addr = line[1]

    def stop(self):
        """Closes its stdin; True when it and its children exited in time
        (otherwise they are killed)."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        ok = self.wait_exit(STOP_TIMEOUT) is not None and self.gone()
        if not ok:
            self.kill_group()
        return ok
