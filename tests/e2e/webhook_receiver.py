"""A real HTTP webhook receiver for the tests (and tests/bench/webhooks.py).

`Receiver` is a ThreadingHTTPServer on 127.0.0.1 (a free port, or a given one) that records every
request it gets (method, path, headers, the raw body, when it arrived, what it answered) and answers
as the test scripts it, per path and per request:

    rcv = Receiver().start()
    rcv.script("/flaky", [500, 200])        # the next two requests to /flaky: 500, then 200
    rcv.set_default("/down", 503)           # every later request to /down: 503
    rcv.set_default("/slow", Hang(30))      # hold each request 30 s (past the webhook timeout)
    rcv.script("/moved", [Reply(302, headers={"Location": rcv.url("/elsewhere")})])
    reqs = rcv.wait_for(2, path="/flaky", timeout=30)   # at least 2 requests, or AssertionError
    rcv.stop(); ...; rcv.start()            # down and up again on the same port
    rcv.close()

Anything not scripted is answered 200 with a short body ("receiver answered 200"). Every answer
closes its connection (unless keep_alive=True), so a stopped receiver really is unreachable (no
pooled keep-alive connection keeps talking to it). `Received.status` is set once the answer is
written; a request is recorded (and wait_for sees it) as soon as its body has been read.

Signatures (the webhook contract): `X-Berth-Signature: sha256=<hex HMAC-SHA256(secret,
"<X-Berth-Timestamp>.<raw body>")>`; `verify_signature(request, secret)` checks one,
`assert_signed` also names what else would have matched when it does not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Optional, Union
from urllib.parse import urlsplit


# --- what the receiver answers ----------------------------------------------------------------------

@dataclass
class Reply:
    """An answer: status, body (bytes or str) and extra headers."""
    status: int = 200
    body: Union[bytes, str] = b""
    headers: dict = field(default_factory=dict)


@dataclass
class Hang:
    """Hold the request `seconds` without answering (the connection stays open), then answer
    `then` if the client is still there. A stopped or closed receiver releases hung requests."""
    seconds: float
    then: int = 200


@dataclass
class Drop:
    """Close the connection without any answer (a network error for the client)."""


Action = Union[int, Reply, Hang, Drop]


def _as_reply(action: Union[int, Reply]) -> Reply:
    if isinstance(action, Reply):
        return action
    return Reply(int(action), f"receiver answered {int(action)}".encode())


# --- what the receiver recorded ---------------------------------------------------------------------

@dataclass
class Received:
    """One request the receiver got."""
    method: str
    path: str  # as sent (with the query)
    headers: dict  # lower-case name -> value (the last one when repeated)
    raw_headers: list  # [(name, value)] as sent
    body: bytes
    time: float  # time.time() when the whole body had been read
    mono: float  # time.monotonic() at the same moment
    seq: int  # arrival order across all paths, from 0
    status: Optional[int] = None  # what the receiver answered; None: hung, dropped or client gone

    @property
    def route(self) -> str:
        """The path without the query."""
        return urlsplit(self.path).path

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> Optional[str]:
        return self.header("X-Berth-Event-Id")

    @property
    def event_type(self) -> Optional[str]:
        return self.header("X-Berth-Event")

    def describe(self) -> str:
        body = self.body[:300].decode("utf-8", "replace")
        return (f"#{self.seq} {self.method} {self.path} -> {self.status} event={self.event_type} "
                f"id={self.event_id} body={body!r}")


# --- signatures -------------------------------------------------------------------------------------

def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The contract's signature header value for this secret, timestamp and raw body."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(req: Received, secret: str) -> bool:
    """True when the request's X-Berth-Signature is the HMAC-SHA256 of "<X-Berth-Timestamp>.<raw
    body>" keyed with `secret`, hex, prefixed "sha256=" (compared in constant time)."""
    ts, got = req.header("X-Berth-Timestamp"), req.header("X-Berth-Signature")
    if not ts or not got:
        return False
    return hmac.compare_digest(sign(secret, ts, req.body), got)


def _alternatives(req: Received, secret: str) -> list[str]:
    """Other signing schemes that would have matched (to make a failure message useful)."""
    ts, got, body = req.header("X-Berth-Timestamp") or "", req.header("X-Berth-Signature") or "", req.body
    keys = {"the whole secret": secret.encode()}
    if secret.startswith("whsec_"):
        rest = secret[len("whsec_"):]
        keys["the secret without whsec_"] = rest.encode()
        try:
            keys["base64 of the secret after whsec_"] = base64.b64decode(rest + "=" * (-len(rest) % 4))
        except ValueError:
            pass
    messages = {'"<ts>.<body>"': ts.encode() + b"." + body, "the body alone": body,
                '"<ts><body>"': ts.encode() + body}
    found = []
    for kname, key in keys.items():
        for mname, msg in messages.items():
            mac = hmac.new(key, msg, hashlib.sha256)
            for enc, value in (("hex", mac.hexdigest()), ("base64", base64.b64encode(mac.digest()).decode())):
                for prefix in ("sha256=", "v1=", "v1,", ""):
                    if hmac.compare_digest(prefix + value, got):
                        found.append(f"key={kname}, message={mname}, {enc}, prefix {prefix!r}")
    return found


def assert_signed(req: Received, secret: str, max_skew: float = 300.0) -> None:
    """The request carries a valid signature for `secret` and a timestamp within `max_skew` s of
    now (unix seconds)."""
    ts = req.header("X-Berth-Timestamp")
    assert ts and ts.isdigit(), f"X-Berth-Timestamp missing or not unix seconds: {ts!r} ({req.describe()})"
    assert abs(int(ts) - req.time) <= max_skew, f"X-Berth-Timestamp {ts} is far from the arrival {req.time:.0f}"
    if not verify_signature(req, secret):
        alt = _alternatives(req, secret)
        raise AssertionError(
            f"X-Berth-Signature {req.header('X-Berth-Signature')!r} is not sha256=hex(HMAC-SHA256(secret, "
            f"'{ts}.' + body)) for the policy's secret; "
            + (f"it matches instead: {alt}" if alt else "no other common scheme matches either")
            + f"\n{req.describe()}")


# --- the server -------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline(3)
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        owner = self.server.owner
        self.close_connection = not owner.keep_alive
        body = self._read_body()
        rec = owner._record(self.command, self.path, self.headers, body)
        action = owner._next_action(rec.route)
        if isinstance(action, Drop):
            self._abort()
            return
        if isinstance(action, Hang):
            released = owner._released
            released.wait(action.seconds)
            if released.is_set():
                self._abort()
                return
            action = action.then
        reply = _as_reply(action)
        payload = reply.body.encode() if isinstance(reply.body, str) else reply.body
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": "text/plain; charset=utf-8", **reply.headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            if not owner.keep_alive:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
            rec.status = reply.status
        except OSError:
            pass  # the client gave up (e.g. its timeout)

    def _abort(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int, owner: "Receiver"):
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)


class Receiver:
    """A scriptable webhook receiver on 127.0.0.1 (see the module docstring)."""

    def __init__(self, port: int = 0, default: Action = 200, keep_alive: bool = False):
        """keep_alive: keep connections open between requests (the benchmark's receiver); the
        tests' receivers close every connection, so that stop() makes them unreachable."""
        self.keep_alive = keep_alive
        self._port = port
        self._lock = threading.Condition(threading.RLock())
        self._requests: list[Received] = []
        self._scripts: dict[Optional[str], list[Action]] = {}
        self._defaults: dict[Optional[str], Action] = {None: default}
        self._srv: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._released = threading.Event()
        self.on_request: Optional[Callable[[Received], None]] = None  # called under no lock

    # lifecycle
    def start(self) -> "Receiver":
        """Listen (again) on the same port; the first start picks a free one."""
        assert self._srv is None, "receiver already running"
        deadline = time.monotonic() + 10
        while True:
            try:
                self._srv = _Server(self._port, self)
                break
            except OSError:
                if not self._port or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the old socket of a restart on the same port
        self._port = self._srv.server_address[1]
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"receiver-{self._port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until start()); hung requests are released
        and their connections closed without an answer."""
        if self._srv is None:
            return
        self._released.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(10)
        self._srv = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> "Receiver":
        return self.start() if self._srv is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._srv is not None

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    # scripting
    def script(self, path: Optional[str], actions: Iterable[Action]) -> None:
        """Answer the next requests to `path` (None: any path without a script of its own) with
        these actions, in order; afterwards the default applies."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(actions)

    def set_default(self, path: Optional[str], action: Action) -> None:
        """What requests to `path` (None: every path) get once their script is used up."""
        with self._lock:
            self._defaults[path] = action

    def clear_script(self, path: Optional[str] = None) -> None:
        with self._lock:
            self._scripts.pop(path, None)

    def _next_action(self, route: str) -> Action:
        with self._lock:
            for key in (route, None):
                queue = self._scripts.get(key)
                if queue:
                    return queue.pop(0)
            if route in self._defaults:
                return self._defaults[route]
            return self._defaults[None]

    def _record(self, method: str, path: str, headers, body: bytes) -> Received:
        now, mono = time.time(), time.monotonic()
        raw = list(headers.items())
        rec = Received(method=method, path=path, headers={k.lower(): v for k, v in raw}, raw_headers=raw,
                       body=body, time=now, mono=mono, seq=-1)
        with self._lock:
            rec.seq = len(self._requests)
            self._requests.append(rec)
            self._lock.notify_all()
        if self.on_request is not None:
            self.on_request(rec)
        return rec

    # what arrived
    def requests(self, path: Optional[str] = None) -> list[Received]:
        """Every request so far (to `path`, without its query, when given), in arrival order."""
        with self._lock:
            return [r for r in self._requests if path is None or r.route == path]

    def events(self, path: Optional[str] = None) -> list[Received]:
        """The first request of each X-Berth-Event-Id (receivers deduplicate on it: delivery is
        at-least-once), in arrival order."""
        seen, out = set(), []
        for r in self.requests(path):
            if r.event_id not in seen:
                seen.add(r.event_id)
                out.append(r)
        return out

    def summary(self, path: Optional[str] = None, last: int = 40) -> str:
        reqs = self.requests(path)
        return "\n".join(r.describe() for r in reqs[-last:]) or "(nothing received)"

    def wait_for(self, n: int, path: Optional[str] = None, timeout: float = 30.0,
                 match: Optional[Callable[[Received], bool]] = None, unique_events: bool = False) -> list[Received]:
        """Waits until at least `n` requests (to `path`, matching `match`; with unique_events,
        distinct X-Berth-Event-Ids) have arrived; returns them all. AssertionError with what did
        arrive when the deadline passes."""
        deadline = time.monotonic() + timeout

        def current() -> list[Received]:
            reqs = self.events(path) if unique_events else self.requests(path)
            return [r for r in reqs if match is None or match(r)]

        with self._lock:  # an RLock: current() takes it again
            while True:
                got = current()
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.25))
        raise AssertionError(
            f"receiver {self.url('')}: waited {timeout:g} s for {n} "
            f"{'events' if unique_events else 'requests'}{f' to {path}' if path else ''}, got {len(got)}:\n"
            + self.summary(path))

    def wait_events(self, n: int, path: Optional[str] = None, timeout: float = 30.0,
                    match: Optional[Callable[[Received], bool]] = None) -> list[Received]:
        """wait_for counting distinct X-Berth-Event-Ids."""
        return self.wait_for(n, path, timeout, match, unique_events=True)

    def assert_quiet(self, seconds: float, path: Optional[str] = None, expected: Optional[int] = None) -> None:
        """Nothing more arrives (to `path`) within `seconds`; with `expected`, the count so far
        must be exactly that."""
        before = len(self.requests(path))
        if expected is not None:
            assert before == expected, (f"expected exactly {expected} requests{f' to {path}' if path else ''}, "
                                        f"got {before}:\n" + self.summary(path))
        time.sleep(seconds)
        after = self.requests(path)
        assert len(after) == before, (f"{len(after) - before} more requests{f' to {path}' if path else ''} "
                                      f"arrived within {seconds} s:\n" + "\n".join(r.describe() for r in after[before:]))

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
