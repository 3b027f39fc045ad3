# SPDX-License-Identifier: AGPL-3.0-or-later
"""A Python client for tractor-cpp actors, built on the protos alone.

    import tractor_client as tc

    regs = tc.find("worker", ["127.0.0.1:1616"])
    tc.call("worker", "demo:add", {"a": 1, "b": 2},
            registries=["127.0.0.1:1616"])
    with tc.open_context("127.0.0.1:4000", "demo:doubler", 3) as ctx:
        print(ctx.first)            # the callee's Started value
        ctx.send(21)
        print(next(iter(ctx)))      # 42
        ctx.close()                 # no more items from this side
        print(ctx.result())         # the callee's Return value

Errors the actor raises come back as `RemoteActorError` (or its subclass
`ContextCancelled`) carrying the boxed type, the source actor and the
traceback; a name that no registry knows raises `ActorNotFound`; a peer
that cannot be reached, or a call that runs out of time, raises
`TransportError`. The generated stubs (`tractor.v1.*_pb2`) come from the
build: `bazel build //clients/python`.
"""
import os
import queue
import threading
import uuid as _uuid

import grpc
from google.protobuf import json_format, struct_pb2

from tractor.v1 import actor_pb2, actor_pb2_grpc, msg_pb2
from tractor.v1 import registrar_pb2, registrar_pb2_grpc

__all__ = [
    "DEFAULT_REGISTRY", "Registration", "TractorError", "ActorNotFound",
    "TransportError", "RemoteActorError", "ContextCancelled", "find", "call",
    "open_context", "Context", "info", "cancel_actor",
]

# The registry address tractor uses when none is given.
DEFAULT_REGISTRY = "127.0.0.1:1616"
# Messages up to 64 MiB in both directions, as actors accept them.
_MAX_MESSAGE = 64 * 1024 * 1024
_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE)]
_CALLER = msg_pb2.Aid(name="python-client")


class TractorError(Exception):
    """Base of this module's errors."""


class ActorNotFound(TractorError, LookupError):
    """No registry knows an actor by that name."""


class TransportError(TractorError, ConnectionError):
    """The peer could not be reached, went away, or did not answer in time.
    `code` is the gRPC status code."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class RemoteActorError(TractorError):
    """An error raised in an actor (a boxed `tractor.v1.Error`).

    Attributes: `boxed_type` (e.g. "std::invalid_argument",
    "FunctionNotFound"), `src_type`, `src` (the actor where it was raised:
    a dict with name, uuid, pid), `message`, `traceback` (text from the
    origin), `canceller` (who cancelled, for ContextCancelled), `cid` and
    `error` (the proto itself).
    """

    def __init__(self, error):
        self.error = error
        self.boxed_type = error.boxed_type
        self.src_type = error.src_type
        self.src = _aid(error.src)
        self.message = error.message
        self.traceback = error.traceback
        self.canceller = _aid(error.canceller) if error.canceller.uuid else None
        self.cid = error.cid
        super().__init__("%s from actor '%s' %s: %s" % (
            self.boxed_type, self.src["name"], self.src["uuid"],
            self.message))


class ContextCancelled(RemoteActorError):
    """The remote task was cancelled; `canceller` says by whom."""


def _raise_remote(error):
    if error.boxed_type == "ContextCancelled":
        raise ContextCancelled(error)
    raise RemoteActorError(error)


def _aid(aid):
    return {"name": aid.name, "uuid": aid.uuid, "pid": aid.pid}


class Registration:
    """One registry entry: `name`, `uuid`, `pid`, `addrs` (newest
    registration last in `find`'s answer)."""

    def __init__(self, reg):
        self.name = reg.aid.name
        self.uuid = reg.aid.uuid
        self.pid = reg.aid.pid
        self.addrs = list(reg.addrs)
        self.lease_ms = reg.lease_ms

    def __repr__(self):
        return "Registration(name=%r, uuid=%r, pid=%r, addrs=%r)" % (
            self.name, self.uuid, self.pid, self.addrs)


# ---------------------------------------------------------------------------
# Values and addresses

def _to_value(obj):
    v = struct_pb2.Value()
    try:
        json_format.ParseDict(obj, v)
    except (json_format.ParseError, TypeError, ValueError) as e:
        raise TypeError("not representable as JSON: %r (%s)" % (obj, e))
    return msg_pb2.Payload(value=v)


def _integral(x):
    if isinstance(x, float) and x.is_integer() and abs(x) <= 2 ** 53:
        return int(x)
    if isinstance(x, list):
        return [_integral(i) for i in x]
    if isinstance(x, dict):
        return {k: _integral(i) for k, i in x.items()}
    return x


def _from_payload(payload):
    """A payload as Python: JSON values as themselves (integral numbers as
    int), raw bytes as bytes, a protobuf message as its `Any`."""
    kind = payload.WhichOneof("kind")
    if kind == "value":
        return _integral(json_format.MessageToDict(payload.value))
    if kind == "raw":
        return payload.raw
    if kind == "message":
        return payload.message
    return None


def _grpc_target(addr):
    """The gRPC target of an address in any form actors register:
    host:port, [v6]:port, unix:/path, or a multiaddr."""
    if addr.startswith("/"):
        parts = addr.split("/")
        if len(parts) >= 5 and parts[1] in ("ip4", "dns4", "dns") \
                and parts[3] == "tcp":
            return "%s:%s" % (parts[2], parts[4])
        if len(parts) >= 5 and parts[1] == "ip6" and parts[3] == "tcp":
            return "[%s]:%s" % (parts[2], parts[4])
        if parts[1] == "unix":
            return "unix:/" + "/".join(parts[2:])
        raise ValueError("not an address: %r" % addr)
    return addr


def _is_address(text):
    if text.startswith("unix:") or text.startswith("/"):
        return True
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit())


def _preferred(addrs):
    """unix sockets first, then loopback, then the others; the last listed
    wins within a tier (the most recent registration)."""
    def tier(a):
        if a.startswith("unix:") or a.startswith("/unix/"):
            return 0
        if a.startswith("127.") or a.startswith("[::1]") or \
                a.startswith("localhost:") or a.startswith("/ip4/127."):
            return 1
        return 2
    best = None
    for a in addrs:
        if best is None or tier(a) <= tier(best):
            best = a
    return best


_channels = {}
_channels_lock = threading.Lock()


def _channel(addr):
    target = _grpc_target(addr)
    with _channels_lock:
        ch = _channels.get(target)
        if ch is None:
            ch = grpc.insecure_channel(target, options=_OPTIONS)
            _channels[target] = ch
        return ch


def _transport_error(what, e):
    code = e.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        text = "timed out"
    else:
        text = e.details() or str(code)
    return TransportError("%s: %s (%s)" % (what, text, code.name), code)


# ---------------------------------------------------------------------------
# Registry

def find(name, registries=(DEFAULT_REGISTRY,), timeout=10.0):
    """Every registration of `name` among `registries` (a list of addresses;
    a single string is one address), merged by uuid, oldest first. Empty
    when none has it; raises TransportError when no registry answers."""
    if isinstance(registries, str):
        registries = [registries]
    out, seen, errors = [], set(), []
    answered = False
    for addr in registries:
        stub = registrar_pb2_grpc.RegistrarStub(_channel(addr))
        try:
            reply = stub.Find(registrar_pb2.FindRequest(name=name),
                              timeout=timeout)
        except grpc.RpcError as e:
            errors.append(str(_transport_error(addr, e)))
            continue
        answered = True
        for reg in reply.registrations:
            if reg.aid.uuid not in seen:
                seen.add(reg.aid.uuid)
                out.append(Registration(reg))
    if not answered:
        raise TransportError("no registry answered: " + "; ".join(errors))
    return out


def _resolve(addr_or_name, registries, timeout):
    if _is_address(addr_or_name):
        return addr_or_name
    regs = find(addr_or_name, registries, timeout)
    if not regs:
        raise ActorNotFound("no actor named %r in the registry (%s)"
                            % (addr_or_name, ",".join(
                                [registries] if isinstance(registries, str)
                                else registries)))
    addr = _preferred(regs[-1].addrs)
    if addr is None:
        raise ActorNotFound("actor %r is registered with no address"
                            % addr_or_name)
    return addr


# ---------------------------------------------------------------------------
# Calls

def _start(func, args, expect):
    if ":" not in func:
        raise ValueError("function %r is not of the form ns:func" % func)
    return msg_pb2.Start(cid=str(_uuid.uuid4()), func=func,
                         args=_to_value(args), caller=_CALLER, expect=expect,
                         no_ack=True)


def call(addr_or_name, func, args=None, registries=(DEFAULT_REGISTRY,),
         timeout=10.0):
    """Calls the plain function `func` ("ns:func") with `args` (any JSON
    value: a function with named parameters takes a dict of them) in the
    actor at an address, or registered under a name, and returns its
    result. Raises RemoteActorError for an error the actor raised."""
    start = _start(func, args, msg_pb2.FUNC_TYPE_FUNCTION)
    addr = _resolve(addr_or_name, registries, timeout)
    stub = actor_pb2_grpc.ActorStub(_channel(addr))
    try:
        reply = stub.Call(msg_pb2.Msg(start=start), timeout=timeout)
    except grpc.RpcError as e:
        # ActorTooBusy: the Error travels in the status details.
        for key, value in (e.trailing_metadata() or ()):
            if key == "grpc-status-details-bin":
                err = msg_pb2.Error()
                err.ParseFromString(value)
                _raise_remote(err)
        raise _transport_error("call %s on %s" % (func, addr), e)
    if reply.HasField("error"):
        _raise_remote(reply.error)
    return _from_payload(reply.returned.payload)


def info(addr_or_name, registries=(DEFAULT_REGISTRY,), timeout=10.0):
    """The actor's `tractor.v1.ActorInfo`."""
    addr = _resolve(addr_or_name, registries, timeout)
    stub = actor_pb2_grpc.ActorStub(_channel(addr))
    try:
        return stub.Info(actor_pb2.InfoRequest(), timeout=timeout)
    except grpc.RpcError as e:
        raise _transport_error("Info of %s" % addr, e)


def _control_metadata(secret=None):
    """The mesh secret for a control call (CancelActor, CancelTask), which
    actors honour only from members of the mesh: `secret`, else the
    TRACTOR_SECRET environment variable, else the file TRACTOR_SECRET_FILE
    names; none: no metadata (the call is refused where a secret is set)."""
    if secret is None:
        secret = os.environ.get("TRACTOR_SECRET", "")
        path = os.environ.get("TRACTOR_SECRET_FILE", "")
        if not secret and path:
            with open(path) as f:
                secret = f.read()
    secret = secret.strip()
    return (("tractor-secret", secret),) if secret else ()


def cancel_actor(addr_or_name, registries=(DEFAULT_REGISTRY,), timeout=10.0,
                 secret=None):
    """Cancels the whole actor (it exits); True once its tasks finished.
    `secret`: the mesh secret (default: TRACTOR_SECRET, TRACTOR_SECRET_FILE)."""
    addr = _resolve(addr_or_name, registries, timeout)
    stub = actor_pb2_grpc.ActorStub(_channel(addr))
    try:
        return stub.CancelActor(actor_pb2.CancelActorRequest(
            requester=_requester()), timeout=timeout,
            metadata=_control_metadata(secret)).ok
    except grpc.RpcError as e:
        raise _transport_error("CancelActor of %s" % addr, e)


def _requester():
    return msg_pb2.Aid(name=_CALLER.name, uuid=str(_uuid.uuid4()))


_END = object()


class Context:
    """An open context (an `Actor/Open` dialog): `first` is the callee's
    Started value; iterating yields the items the callee sends until it
    returns; `send` sends an item, `close` ends this side's items, `result`
    waits for the callee's return value, `cancel` cancels the remote task.
    A context manager: leaving the block cancels a dialog still running."""

    def __init__(self, addr, start, timeout):
        self._addr = addr
        self._cid = start.cid
        self._stub = actor_pb2_grpc.ActorStub(_channel(addr))
        self._out = queue.Queue()
        self._out.put(msg_pb2.Msg(start=start))
        self._closed = False
        self._done = False
        self._result = None
        self._error = None
        self._call = self._stub.Open(self._requests())
        self._replies = iter(self._call)
        # The first answer is bounded by `timeout`; the dialog then runs
        # until it ends.
        expired = threading.Event()

        def expire():
            expired.set()
            self._call.cancel()
        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.start()
        try:
            first = self._next()
        finally:
            if timer:
                timer.cancel()
        if first is None and expired.is_set():
            raise TransportError("open %s on %s: no answer in %ss"
                                 % (start.func, addr, timeout),
                                 grpc.StatusCode.DEADLINE_EXCEEDED)
        if first is None:
            self._raise_end()
        if not first.HasField("started"):
            raise TractorError("expected Started, got %s" % first)
        self.first = _from_payload(first.started.payload)

    @property
    def cid(self):
        """The dialog's id (`Start.cid`)."""
        return self._cid

    def _requests(self):
        while True:
            m = self._out.get()
            if m is _END:
                return
            yield m

    def _next(self):
        """The next message that is not a terminal one; None once the dialog
        ended (result or error recorded)."""
        if self._done:
            return None
        try:
            m = next(self._replies)
        except StopIteration:
            self._finish(None)
            return None
        except grpc.RpcError as e:
            self._finish(_transport_error("dialog %s on %s"
                                          % (self._cid, self._addr), e))
            return None
        kind = m.WhichOneof("kind")
        if kind == "returned":
            self._result = _from_payload(m.returned.payload)
            self._finish(None, returned=True)
            return None
        if kind == "error":
            exc = ContextCancelled(m.error) \
                if m.error.boxed_type == "ContextCancelled" \
                else RemoteActorError(m.error)
            self._finish(exc)
            return None
        return m

    def _finish(self, error, returned=False):
        self._done = True
        if not returned and error is None and self._error is None:
            error = TransportError("dialog %s on %s ended without a result"
                                   % (self._cid, self._addr))
        if error is not None:
            self._error = error
        if not self._closed:
            self._closed = True
            self._out.put(_END)

    def _raise_end(self):
        if self._error is not None:
            raise self._error

    def __iter__(self):
        while True:
            m = self._next()
            if m is None:
                self._raise_end()
                return
            kind = m.WhichOneof("kind")
            if kind == "yielded":
                yield _from_payload(m.yielded.payload)
            elif kind == "batch":
                for y in m.batch.items:
                    yield _from_payload(y.payload)
            # StartAck and the callee's Stop carry nothing to yield.

    def send(self, item):
        """Sends one item (any JSON value) to the callee."""
        if self._closed:
            raise TractorError("the context's sending side is closed")
        self._out.put(msg_pb2.Msg(yielded=msg_pb2.Yield(
            payload=_to_value(item))))

    def close(self):
        """Ends this side's items (`Stop`); the callee's iteration ends."""
        if not self._closed:
            self._closed = True
            self._out.put(msg_pb2.Msg(stop=msg_pb2.Stop()))
            self._out.put(_END)

    def result(self):
        """Closes this side, drops the items still coming and returns the
        callee's result (or raises its error)."""
        self.close()
        for _ in self:
            pass
        return self._result

    def cancel(self, timeout=10.0, secret=None):
        """Cancels the remote task; `result()` then raises ContextCancelled.
        Returns False when the task had already ended. `secret`: the mesh
        secret (default: TRACTOR_SECRET, TRACTOR_SECRET_FILE)."""
        try:
            return self._stub.CancelTask(actor_pb2.CancelTaskRequest(
                cid=self._cid, requester=_requester()),
                timeout=timeout, metadata=_control_metadata(secret)).found
        except grpc.RpcError as e:
            raise _transport_error("CancelTask on %s" % self._addr, e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._done:
            self._call.cancel()
            self._finish(TransportError("dialog cancelled by the caller"))
        return False


def open_context(addr_or_name, func, args=None,
                 registries=(DEFAULT_REGISTRY,), timeout=10.0):
    """Opens the context endpoint `func` with `args` and returns a
    `Context` once the callee sent its first value (`Context.first`).
    `timeout` bounds the wait for that first value (None: no bound)."""
    start = _start(func, args, msg_pb2.FUNC_TYPE_CONTEXT)
    addr = _resolve(addr_or_name, registries, timeout)
    return Context(addr, start, timeout)
