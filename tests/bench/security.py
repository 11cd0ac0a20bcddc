#!/usr/bin/env python3
"""Login storms and connection floods: Berth vs CNCF distribution 2.8 (standard library only).

Started by tests/bench/run_security, which installs distribution and htpasswd, builds Berth and
owns the temporary work directory. Reuses bench.py's helpers. Everything talks to 127.0.0.0/8
only, every server is a fresh process on a free port (stopped by pid at the end of its measure),
and every request and wait has a timeout.

L. Login storms, each on a fresh server per side (Berth with its admin key; distribution with
   htpasswd auth, bcrypt hashes from `htpasswd -Bbn`):
   A. STORM_N (400) concurrent `GET /v2/` with Basic credentials of an existing key / user and a
      wrong secret (a different one each), 100 threads, spread over 50 source addresses
      127.0.0.10..127.0.0.59;
   B. the same with random unknown key ids / user names.
   During each storm a legitimate client polls `GET /v2/` every 25 ms from 127.0.0.2 with the
   attacked key's correct secret, and a bystander (another key / user) from 127.0.0.4; both logged
   in once before the storm. Figures: storm wall time, answers by status, server CPU during the
   storm, VmHWM before and after, VmRSS 5 s after, and the legitimate clients' latencies.
F. Connection flood, on a fresh server per side (Berth with its default limits; distribution
   without auth): from 127.0.0.3, FLOOD_IDLE (5,000) idle TCP connections plus FLOOD_PARTIAL
   (1,000) that sent a partial request head, interleaved. Counts connects that succeeded and
   connections the server closed within 2 s; a legitimate client on 127.0.0.1 pulls a 1 MiB blob
   PULLS (20) times without and with the flood held (median, p95), and the server's RSS and open
   descriptors with the flood held.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import errno
import hashlib
import http.client
import json
import math
import os
import random
import re
import resource
import select
import shutil
import socket
import statistics
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, DISTRIBUTION_BIN, BenchError, Tally, free_port, loadavg, log,
    machine_line, run_until_signal, stat_cpu, stop_process, wait_ready,
)

B, D = "Berth", "distribution"
REGISTRY = "bench"  # Berth's registry; repos are bench/<name> on both sides
REPO = "bench/app"
STORM_THREADS = 100
STORM_SOURCES = [f"127.0.0.{i}" for i in range(10, 60)]  # 50 source addresses
LEGIT_SOURCE = "127.0.0.2"  # the attacked key's legitimate client
BYSTANDER_SOURCE = "127.0.0.4"  # another key's client
FLOOD_SOURCE = "127.0.0.3"
PULL_SOURCE = "127.0.0.1"
LEGIT_INTERVAL = 0.025  # seconds between the starts of a legitimate client's requests
STORM_TIMEOUT = 60.0  # seconds for one storm request (Berth queues a login up to 10 s)
REQUEST_TIMEOUT = 30.0  # seconds for any other request
SETTLE = 5.0  # seconds after a storm before VmRSS is read
FLOOD_CLOSE_WAIT = 2.0  # seconds after the last flood connect before closed connections are counted
CONNECT_TIMEOUT = 5.0  # seconds for one batch of flood connects
PARTIAL_HEAD = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
BLOB_SIZE = 1024 * 1024
DIST_USER, DIST_PASS = "bench", "bench-user-secret-not-for-production"
BYSTANDER = "bystander"

DIST_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""
DIST_AUTH = """\
auth:
  htpasswd:
    realm: basic-realm
    path: {path}
"""


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def rand_str(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def request(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
            source: str = "127.0.0.1", timeout: float = REQUEST_TIMEOUT):
    """One request on a fresh connection from `source`: (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"{field} not in /proc/{pid}/status")


def threads(pid: int) -> int:
    return status_kib(pid, "Threads")


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def listen_overflows() -> int | None:
    """System-wide count of connections dropped because a listen queue was full (TcpExt
    ListenOverflows in /proc/net/netstat)."""
    try:
        lines = [line.split() for line in open("/proc/net/netstat") if line.startswith("TcpExt:")]
        return int(dict(zip(lines[0][1:], lines[1][1:]))["ListenOverflows"])
    except (OSError, KeyError, IndexError, ValueError):
        return None


def listen_backlog(port: int) -> str:
    """The listen socket's accept-queue length as `ss` shows it (Send-Q of a LISTEN socket)."""
    try:
        r = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=10)
        return r.stdout.split()[2]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    v = sorted(values)
    return v[max(0, math.ceil(0.95 * len(v)) - 1)]


def counts_text(c: Counter) -> str:
    return ", ".join(f"{k}×{n}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0]))))


# --------------------------------------------------------------------------- servers


class Server:
    """One fresh registry process. Berth: defaults plus the bench admin key (and, with
    `bystander`, a second user with its own key). distribution: htpasswd auth with two users when
    `htpasswd` is given, else no auth."""

    def __init__(self, kind: str, work: Path, name: str, berth_bin: str | None, htpasswd_bin: str | None = None,
                 bystander: bool = False) -> None:
        self.kind, self.berth_bin, self.htpasswd_bin, self.want_bystander = kind, berth_bin, htpasswd_bin, bystander
        self.label = B if kind == "berth" else D
        self.work = work
        self.dir = work / "servers" / name
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        # (user or key id, secret) of the attacked account and of the bystander, or None (no auth)
        self.creds: tuple[str, str] | None = None
        self.bystander: tuple[str, str] | None = None
        self.bcrypt_cost: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def auth(self, creds: tuple[str, str] | None = None) -> dict:
        creds = creds or self.creds
        return {"Authorization": basic(*creds)} if creds else {}

    def start(self) -> "Server":
        data = self.dir / "data"
        data.mkdir(parents=True)
        self.port = free_port()
        env = dict(os.environ)
        if self.kind == "berth":
            for k in [k for k in env if k.startswith("BERTH_")]:
                del env[k]
            env["RUST_LOG"] = os.environ.get("BENCH_BERTH_RUST_LOG", "warn")
            env["BERTH_ADMIN_ACCESS_KEY"] = BENCH_ACCESS_KEY
            env["BERTH_ADMIN_SECRET_KEY"] = BENCH_SECRET_KEY
            self.creds = (BENCH_ACCESS_KEY, BENCH_SECRET_KEY)
            # Defaults only: per-address limit 256, header timeout 30 s, idle timeout 60 s.
            cmd = [self.berth_bin, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{self.port}"]
        else:
            cfg = DIST_CONFIG.format(root=data, port=self.port)
            if self.htpasswd_bin:
                self.creds = (DIST_USER, DIST_PASS)
                self.bystander = (BYSTANDER, rand_str(32))
                lines = [self.htpasswd_line(*self.creds), self.htpasswd_line(*self.bystander)]
                path = self.dir / "htpasswd"
                path.write_text("\n".join(lines) + "\n")
                m = re.match(r"[^:]+:\$2[aby]?\$(\d+)\$", lines[0])
                self.bcrypt_cost = str(int(m.group(1))) if m else "?"
                cfg += DIST_AUTH.format(path=path)
            (self.dir / "config.yml").write_text(cfg)
            for k in [k for k in env if k.startswith("REGISTRY_")]:
                del env[k]
            cmd = [DISTRIBUTION_BIN, "serve", str(self.dir / "config.yml")]
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)
        # Recorded for the shell's EXIT trap, which kills leftovers by pid (checking the exe).
        with open(self.work / "pids", "a") as f:
            f.write(f"{self.proc.pid} {os.path.realpath(cmd[0])}\n")

        def ready():
            status, _, _ = request(self.port, "GET", "/v2/", self.auth(), timeout=2)
            return status == 200

        wait_ready(self.proc, self.label, ready, self.log_tail, "did not answer GET /v2/ 200")
        if self.kind == "berth":
            self.api(201, "POST", "/api/v1/registries", {"name": REGISTRY}, ok=(201, 409))
            if self.want_bystander:
                self.api(201, "POST", "/api/v1/users", {"name": BYSTANDER, "role": "service-viewer"})
                key = self.api(201, "POST", f"/api/v1/users/{BYSTANDER}/keys")
                self.bystander = (key["access_key"], key["secret_key"])
        if self.bystander:
            status, _, _ = request(self.port, "GET", "/v2/", self.auth(self.bystander))
            if status != 200:
                raise BenchError(f"{self.label}: GET /v2/ as the bystander answered {status}")
        log(f"{self.label} pid {self.proc.pid} on 127.0.0.1:{self.port}")
        return self

    def htpasswd_line(self, user: str, secret: str) -> str:
        r = subprocess.run([self.htpasswd_bin, "-Bbn", user, secret], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError(f"htpasswd failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout.strip()

    def api(self, want: int, method: str, path: str, doc=None, ok: tuple = ()):
        body = None if doc is None else json.dumps(doc).encode()
        headers = {**self.auth(), **({"Content-Type": "application/json"} if body is not None else {})}
        status, _, data = request(self.port, method, path, headers, body)
        if status not in (ok or (want,)):
            raise BenchError(f"{self.label}: {method} {path} answered {status}: {data[:300]!r}")
        return json.loads(data) if data.strip() else None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- legitimate client


class Poller(threading.Thread):
    """Sends `GET /v2/` with correct credentials from one address every LEGIT_INTERVAL until
    stopped; keeps (seconds, status) per request. A request under way when stopped still counts."""

    def __init__(self, port: int, source: str, headers: dict) -> None:
        super().__init__(daemon=True)
        self.port, self.source, self.headers = port, source, headers
        self.halt = threading.Event()
        self.samples: list[tuple[float, object]] = []

    def run(self) -> None:
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                status, _, _ = request(self.port, "GET", "/v2/", self.headers, source=self.source)
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
            took = time.monotonic() - t0
            self.samples.append((took, status))
            self.halt.wait(max(0.0, LEGIT_INTERVAL - took))

    def summary(self) -> str:
        if not self.samples:
            return "no requests"
        ms = [t * 1000 for t, _ in self.samples]
        return (f"{statistics.median(ms):,.1f} / {max(ms):,.1f} ms (n={len(ms)}: "
                f"{counts_text(Counter(s for _, s in self.samples))})")


# --------------------------------------------------------------------------- connection flood


class Flood:
    """Idle and partial-head TCP connections from one source address, opened without blocking."""

    def __init__(self, port: int, n_idle: int, n_partial: int, source: str = FLOOD_SOURCE) -> None:
        self.port, self.source = port, source
        self.n_idle, self.n_partial = n_idle, n_partial
        self.socks: list[tuple[socket.socket, str]] = []  # connected: (socket, "idle" | "partial")
        self.closed: dict[int, str] = {}  # fileno -> how the server ended it (EOF, reset, answered+EOF)
        self.failed: Counter = Counter()  # connects that did not succeed, by kind and reason
        self.answers: Counter = Counter()  # first line of anything the server sent
        self.opened_at = 0.0
        self.last_connect = 0.0

    def kinds(self) -> list[str]:
        total = self.n_idle + self.n_partial
        # partial-head connections spread evenly among the idle ones
        return ["partial" if (i + 1) * self.n_partial // total > i * self.n_partial // total else "idle"
                for i in range(total)]

    def open(self, batch: int = 250) -> None:
        kinds = self.kinds()
        self.opened_at = time.monotonic()
        for start in range(0, len(kinds), batch):
            pending: dict[int, tuple[socket.socket, str]] = {}
            poller = select.poll()
            for kind in kinds[start:start + batch]:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((self.source, 0))
                    s.setblocking(False)
                    rc = s.connect_ex(("127.0.0.1", self.port))
                except OSError as e:
                    s.close()
                    self.failed[f"{kind}: {errno.errorcode.get(e.errno, e)}"] += 1
                    continue
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    self.failed[f"{kind}: {errno.errorcode.get(rc, rc)}"] += 1
                    continue
                pending[s.fileno()] = (s, kind)
                poller.register(s, select.POLLOUT)
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while pending and time.monotonic() < deadline:
                for fd, _ev in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                    s, kind = pending.pop(fd)
                    poller.unregister(fd)
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        s.close()
                        self.failed[f"{kind}: {errno.errorcode.get(err, err)}"] += 1
                        continue
                    self.socks.append((s, kind))
                    if kind == "partial":
                        try:
                            s.send(PARTIAL_HEAD)
                        except OSError:
                            self.closed[s.fileno()] = "reset on send"
            for s, kind in pending.values():
                s.close()
                self.failed[f"{kind}: no answer in {CONNECT_TIMEOUT:.0f} s"] += 1
        self.last_connect = time.monotonic()

    def count_closed(self) -> None:
        """Marks every connection the server has closed (EOF, reset or error) by now."""
        poller = select.poll()
        by_fd = {}
        for s, kind in self.socks:
            if s.fileno() in self.closed:
                continue
            by_fd[s.fileno()] = s
            poller.register(s, select.POLLIN | select.POLLRDHUP | select.POLLERR | select.POLLHUP)
        for fd, ev in poller.poll(0):
            s = by_fd[fd]
            how = None
            try:
                data = s.recv(65536)
                if data:
                    self.answers[data.split(b"\r\n", 1)[0].decode(errors="replace")[:60]] += 1
                    try:
                        more = s.recv(65536)
                        how = "answered, then EOF" if more == b"" else None
                    except BlockingIOError:
                        how = None
                    except OSError:
                        how = "answered, then reset"
                else:
                    how = "EOF"
            except BlockingIOError:
                how = "hang-up" if ev & (select.POLLHUP | select.POLLERR | select.POLLRDHUP) else None
            except OSError as e:
                how = "reset" if isinstance(e, ConnectionResetError) else type(e).__name__
            if how:
                self.closed[fd] = how

    def tally(self) -> dict:
        ok = Counter(kind for _, kind in self.socks)
        closed = Counter(kind for s, kind in self.socks if s.fileno() in self.closed)
        return {"ok": ok, "closed": closed, "how": Counter(self.closed.values())}

    def close(self) -> None:
        for s, _ in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []


# --------------------------------------------------------------------------- bench


class Security(Tally):
    def __init__(self, a) -> None:
        super().__init__()
        self.a = a
        self.work = Path(a.work)
        self.cells: dict[str, dict[str, str]] = {}
        self.bcrypt_cost = "?"
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)

    def cell(self, row: str, label: str, text: str) -> None:
        self.cells.setdefault(row, {})[label] = text
        log(f"  {label}: {row}: {text}")

    def server(self, kind: str, name: str, **kw) -> Server:
        return Server(kind, self.work, name, self.a.berth_bin if kind == "berth" else None, **kw)

    # L -----------------------------------------------------------------------
    def storm(self, part: str, kind: str) -> None:
        """One login storm on a fresh server of `kind`; part 'A' wrong secrets, 'B' unknown ids."""
        s = self.server(kind, f"storm-{part}-{kind}", htpasswd_bin=self.a.htpasswd_bin, bystander=True)
        try:
            s.start()
            if s.bcrypt_cost:
                self.bcrypt_cost = s.bcrypt_cost
            user = s.creds[0]
            if part == "A":
                attempts = [(user, rand_str(32)) for _ in range(self.a.storm_n)]
            else:
                # shaped like real ids (Berth's are 20 characters starting BK), none existing
                attempts = [(("BK" + rand_str(18, string.ascii_uppercase + string.digits)) if s.kind == "berth"
                             else "u-" + rand_str(12, string.ascii_lowercase), rand_str(32))
                            for _ in range(self.a.storm_n)]
            # both legitimate clients log in once before the storm (Berth then holds their
            # verified secrets; distribution checks bcrypt on every request)
            for creds, src in ((s.creds, LEGIT_SOURCE), (s.bystander, BYSTANDER_SOURCE)):
                status, _, _ = request(s.port, "GET", "/v2/", s.auth(creds), source=src)
                if status != 200:
                    self.error(f"{s.label} storm {part}: warm-up login from {src} answered {status}")
            hwm0, rss0, thr0 = status_kib(s.pid, "VmHWM"), status_kib(s.pid, "VmRSS"), threads(s.pid)
            cpu0 = stat_cpu(s.pid)
            legit = Poller(s.port, LEGIT_SOURCE, s.auth())
            other = Poller(s.port, BYSTANDER_SOURCE, s.auth(s.bystander))

            def attempt(i: int):
                src = STORM_SOURCES[i % len(STORM_SOURCES)]
                try:
                    status, hdrs, _ = request(s.port, "GET", "/v2/", s.auth(attempts[i]), source=src,
                                              timeout=STORM_TIMEOUT)
                    return status, hdrs.get("retry-after")
                except (OSError, http.client.HTTPException) as e:
                    return type(e).__name__, None

            log(f"{s.label} storm {part}: {len(attempts)} attempts, {STORM_THREADS} threads")
            t0 = time.monotonic()
            legit.start()
            other.start()
            ex = cf.ThreadPoolExecutor(STORM_THREADS)
            try:
                results = list(ex.map(attempt, range(len(attempts))))
            finally:
                ex.shutdown(wait=True, cancel_futures=True)  # interrupted: no new attempts
                legit.halt.set()
                other.halt.set()
            wall = time.monotonic() - t0
            cpu = stat_cpu(s.pid) - cpu0
            hwm1, thr1 = status_kib(s.pid, "VmHWM"), threads(s.pid)
            legit.join(timeout=REQUEST_TIMEOUT + 5)
            other.join(timeout=REQUEST_TIMEOUT + 5)
            time.sleep(SETTLE)
            rss5 = status_kib(s.pid, "VmRSS")
            by_status = Counter(r[0] for r in results)
            n401, n429 = by_status.get(401, 0), by_status.get(429, 0)
            other_n = sum(n for k, n in by_status.items() if k not in (401, 429))
            others = {k: n for k, n in by_status.items() if k not in (401, 429)}
            self.cell(f"{part} wall", s.label, f"{wall:.2f}")
            self.cell(f"{part} answers", s.label,
                      f"{n401} / {n429} / {other_n}" + (f" ({counts_text(Counter(others))})" if others else ""))
            per401 = f" ({cpu / n401 * 1000:,.1f} ms per 401)" if n401 else ""
            self.cell(f"{part} cpu", s.label, f"{cpu:.2f}{per401}")
            self.cell(f"{part} hwm", s.label, f"{mib(hwm0)} → {mib(hwm1)}")
            self.cell(f"{part} rss", s.label, f"{mib(rss5)} (before {mib(rss0)})")
            self.cell(f"{part} threads", s.label, f"{thr0} → {thr1}")
            self.cell(f"{part} legit", s.label, legit.summary())
            self.cell(f"{part} bystander", s.label, other.summary())
            retry = Counter(r[1] for r in results if r[0] == 429)
            if retry:
                self.record(f"{part}: Retry-After of the 429s", s.label, counts_text(retry))
            if s.kind == "berth" and part == "A" and any(st == 429 for _, st in legit.samples):
                self.note(f"Berth storm A: the attacked key's own client, with the correct secret, was answered "
                          f"429 during the storm ({counts_text(Counter(st for _, st in legit.samples))}): the "
                          f"per-key failure limit locks the key itself for the window, whoever asks")
            if s.proc.poll() is not None:
                self.error(f"{s.label} exited during storm {part}:\n{s.log_tail()}")
        except (BenchError, OSError, http.client.HTTPException) as e:
            self.error(f"{s.label} storm {part}: {e}")
        finally:
            s.stop()

    # F -----------------------------------------------------------------------
    def pulls(self, s: Server, digest: str, blob: bytes, n: int) -> tuple[list[float], Counter]:
        """n GETs of the blob, each on a fresh connection from PULL_SOURCE: (ms of the good ones, failures)."""
        ms, bad = [], Counter()
        for _ in range(n):
            t0 = time.monotonic()
            try:
                status, _, body = request(s.port, "GET", f"/v2/{REPO}/blobs/{digest}", s.auth(), source=PULL_SOURCE)
            except (OSError, http.client.HTTPException) as e:
                bad[type(e).__name__] += 1
                continue
            took = (time.monotonic() - t0) * 1000
            if status != 200:
                bad[status] += 1
            elif len(body) != len(blob) or hashlib.sha256(body).hexdigest() != digest.split(":", 1)[1]:
                bad["wrong bytes"] += 1
            else:
                ms.append(took)
        return ms, bad

    def push_blob(self, s: Server, blob: bytes, digest: str) -> None:
        """Berth: `POST ?digest=` with the body (completed at once: 201). distribution 2.8 does not
        read a POST body (it may answer 202 and close while the body is still being sent): an
        empty `POST`, then the body in `PUT <Location>&digest=`."""
        hdrs = {**s.auth(), "Content-Type": "application/octet-stream"}
        if s.kind == "berth":
            status, h, data = request(s.port, "POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", hdrs, blob)
        else:
            status, h, data = request(s.port, "POST", f"/v2/{REPO}/blobs/uploads/", hdrs, b"")
        if status == 202:
            loc = urlsplit(h["location"])
            path = loc.path + (f"?{loc.query}&" if loc.query else "?") + f"digest={digest}"
            status, h, data = request(s.port, "PUT", path, hdrs, blob)
        if status != 201:
            raise BenchError(f"{s.label}: blob upload answered {status}: {data[:300]!r}")

    def flood(self, kind: str) -> None:
        a = self.a
        s = self.server(kind, f"flood-{kind}")
        fl = None
        try:
            s.start()
            blob = os.urandom(BLOB_SIZE)
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            self.push_blob(s, blob, digest)
            self.pulls(s, digest, blob, 2)  # warm-up (Berth: the admin secret verified once)
            base_ms, base_bad = self.pulls(s, digest, blob, a.pulls)
            rss0, fds0 = status_kib(s.pid, "VmRSS"), open_fds(s.pid)
            cpu0 = stat_cpu(s.pid)
            fl = Flood(s.port, a.flood_idle, a.flood_partial)
            log(f"{s.label}: opening {a.flood_idle} idle + {a.flood_partial} partial-head connections "
                f"from {FLOOD_SOURCE}")
            # a legitimate client polls GET /v2/ while the flood connects (a full accept queue
            # drops SYNs: a connect then waits for the client's 1 s retransmission)
            during = Poller(s.port, PULL_SOURCE, s.auth())
            backlog, over0 = listen_backlog(s.port), listen_overflows()
            during.start()
            try:
                fl.open()
            finally:
                during.halt.set()
                during.join(timeout=REQUEST_TIMEOUT + 5)
            open_s = fl.last_connect - fl.opened_at
            time.sleep(max(0.0, fl.last_connect + FLOOD_CLOSE_WAIT - time.monotonic()))
            fl.count_closed()
            t2 = fl.tally()
            over1 = listen_overflows()
            flood_ms, flood_bad = self.pulls(s, digest, blob, a.pulls)
            rss1, hwm1, fds1 = status_kib(s.pid, "VmRSS"), status_kib(s.pid, "VmHWM"), open_fds(s.pid)
            if a.flood_hold > 0:
                log(f"{s.label}: holding the flood until {a.flood_hold:.0f} s after it opened")
                time.sleep(max(0.0, fl.opened_at + a.flood_hold - time.monotonic()))
            fl.count_closed()
            held = time.monotonic() - fl.opened_at
            t_end = fl.tally()
            cpu = stat_cpu(s.pid) - cpu0
            failed, answers = fl.failed, fl.answers
            fl.close()
            fl = None
            time.sleep(1)
            try:
                after, _, _ = request(s.port, "GET", "/v2/", s.auth(), source=FLOOD_SOURCE)
            except (OSError, http.client.HTTPException) as e:
                after = type(e).__name__
            rss2 = status_kib(s.pid, "VmRSS")

            self.cell("F connects", s.label, f"{t2['ok']['idle']:,} / {t2['ok']['partial']:,} in {open_s:.1f} s"
                      + (f" (failed: {counts_text(failed)})" if failed else ""))
            self.cell("F during", s.label, during.summary())
            self.cell("F backlog", s.label, f"{backlog} / {'?' if None in (over0, over1) else f'{over1 - over0:,}'}")
            self.cell("F closed 2s", s.label, f"{t2['closed']['idle']:,} / {t2['closed']['partial']:,}")
            self.cell("F closed end", s.label, f"{t_end['closed']['idle']:,} / {t_end['closed']['partial']:,} "
                                               f"after {held:.0f} s")
            how = counts_text(t_end["how"]) or "none"
            self.cell("F how", s.label, how + (f"; answered first: {counts_text(answers)}" if answers else ""))
            self.cell("F rss", s.label,
                      f"{mib(rss0)} → {mib(rss1)} (VmHWM {mib(hwm1)}; {mib(rss2)} 1 s after release)")
            self.cell("F fds", s.label, f"{fds0} → {fds1}" if fds0 is not None else "n/a")
            self.cell("F cpu", s.label, f"{cpu:.2f}")

            def lat(ms, bad):
                if not ms:
                    return f"all failed ({counts_text(bad)})"
                text = f"{statistics.median(ms):,.1f} / {p95(ms):,.1f}"
                return text + (f" ({counts_text(bad)} failed)" if bad else "")

            self.cell("F base", s.label, lat(base_ms, base_bad))
            self.cell("F held", s.label, lat(flood_ms, flood_bad))
            self.cell("F after", s.label, str(after))
            self.record("F: pull ms without flood", s.label, ", ".join(f"{x:.1f}" for x in base_ms))
            self.record("F: pull ms with flood held", s.label, ", ".join(f"{x:.1f}" for x in flood_ms))
            self.record("F: flood connections ended by the server, by how", s.label, how)
            if s.proc.poll() is not None:
                self.error(f"{s.label} exited during the flood:\n{s.log_tail()}")
        except (BenchError, OSError, http.client.HTTPException) as e:
            self.error(f"{s.label} flood: {e}")
        finally:
            if fl:
                fl.close()
            s.stop()

    # ------------------------------------------------------------------------
    def run(self) -> int:
        a = self.a
        self.load_start = loadavg()
        t0 = time.monotonic()
        if "L" in a.parts:
            for part in "AB":
                for kind in ("berth", "distribution"):
                    self.storm(part, kind)
        if "F" in a.parts:
            for kind in ("berth", "distribution"):
                self.flood(kind)
        self.elapsed = time.monotonic() - t0
        self.load_end = loadavg()
        return self.report()

    def report(self) -> int:
        a = self.a
        n = a.storm_n
        debug = "/debug/" in (a.berth_bin or "")

        def row(key: str, title: str, note: str) -> str:
            c = self.cells.get(key, {})
            return f"| {title} | {c.get(B, '—')} | {c.get(D, '—')} | {note} |"

        out = ["# Login storms and connection floods: Berth vs CNCF distribution 2.8", ""]
        if debug:
            out += ["> **Debug build of Berth** (`BERTH_BIN` under `target/debug`): a smoke run of the script, "
                    "not figures to quote.", ""]
        out += ["| measure | Berth | distribution 2.8 | note |", "| --- | ---: | ---: | --- |"]
        if "L" in a.parts:
            for part, what in (("A", f"**A. {n} logins with the right key / user and a wrong secret**"),
                               ("B", f"**B. {n} logins with unknown key ids / user names**")):
                out.append(f"| {what} | | | {STORM_THREADS} threads, fresh connection each, from 50 addresses "
                           f"(127.0.0.10–59); fresh server |")
                out += [
                    row(f"{part} wall", f"{part}: storm wall time, s", "first request sent → last answer read"),
                    row(f"{part} answers", f"{part}: answers 401 / 429 / other",
                        "429 = refused by Berth's login limiter without verifying"),
                    row(f"{part} cpu", f"{part}: server CPU during the storm, s",
                        "utime + stime from `/proc/PID/stat`; per 401 = cost of one refused guess"),
                    row(f"{part} hwm", f"{part}: server peak RSS (VmHWM) before → after, MiB",
                        "peak since start, so it includes start-up"),
                    row(f"{part} rss", f"{part}: server RSS (VmRSS) 5 s after, MiB", "what the storm left behind"),
                    row(f"{part} threads", f"{part}: server threads before → after",
                        "`Threads` in `/proc/PID/status` (Berth: tokio workers + blocking pool)"),
                    row(f"{part} legit", f"{part}: legitimate client, **attacked** key, correct secret, "
                                         f"from {LEGIT_SOURCE}: median / max",
                        f"GET /v2/ every {LEGIT_INTERVAL * 1000:.0f} ms during the storm, fresh connection each; "
                        f"answers by status"),
                    row(f"{part} bystander", f"{part}: legitimate client, **another** key, from "
                                             f"{BYSTANDER_SOURCE}: median / max", "same"),
                ]
        if "F" in a.parts:
            out += [
                f"| **F. Connection flood from {FLOOD_SOURCE}: {a.flood_idle:,} idle + {a.flood_partial:,} "
                f"partial-head connections** | | | fresh server; Berth with default limits |",
                row("F connects", "F: connects that succeeded, idle / partial", "non-blocking connect, 5 s per batch"),
                row("F during", f"F: `GET /v2/` from {PULL_SOURCE} every {LEGIT_INTERVAL * 1000:.0f} ms while the "
                                f"flood connects: median / max",
                    "new connection each; a full accept queue shows as ~1,000 ms (SYN retransmission)"),
                row("F backlog", "F: listen backlog / listen-queue overflows while the flood connected",
                    "`ss -ltn` Send-Q; TcpExt ListenOverflows in `/proc/net/netstat` (system-wide) before → 2 s "
                    "after the last connect: each is a handshake the kernel dropped, retried by the client 1 s later"),
                row("F closed 2s", "F: closed by the server within 2 s of the last connect, idle / partial",
                    "EOF or reset seen by the client"),
                row("F closed end", "F: closed by the server when the flood was released, idle / partial",
                    "after the pulls" + (f", flood held {a.flood_hold:.0f} s" if a.flood_hold else "")),
                row("F how", "F: how the server ended them", ""),
                row("F rss", "F: server RSS before → with the flood held, MiB", ""),
                row("F fds", "F: server open descriptors before → with the flood held", "`/proc/PID/fd`"),
                row("F cpu", "F: server CPU while the flood was open, s", "includes the pulls"),
                row("F base", f"F: 1 MiB blob pull from {PULL_SOURCE}, no flood: median / p95 ms",
                    f"{a.pulls} pulls, fresh connection each"),
                row("F held", "F: the same with the flood held: median / p95 ms", ""),
                row("F after", "F: `GET /v2/` from the flood's address 1 s after release", ""),
            ]
        out += [""]
        berth_ver = a.berth_version + (" — **debug build**" if debug else "")
        out.append(
            f"Setup: {machine_line(self.load_start, self.load_end)}; Berth {berth_ver}, "
            f"`berth serve` defaults (per-address connection limit 256, header timeout 30 s); distribution "
            f"{a.distribution_version} (`{DISTRIBUTION_BIN}`)"
            + (f", storms with htpasswd auth (bcrypt cost {self.bcrypt_cost} from `htpasswd -Bbn`)"
               if "L" in a.parts else "")
            + (", flood without auth" if "F" in a.parts else "")
            + f"; git {a.git_rev}; RLIMIT_NOFILE "
            f"{self.nofile[0]}/{self.nofile[1]} (soft/hard, inherited by both servers). One server at a time, "
            f"client and server on the same cores. Run took {self.elapsed / 60:.1f} min.")
        if self.raw:
            out += ["", "<details><summary>Raw samples</summary>", "", "| sample | Berth | distribution |",
                    "| --- | --- | --- |"]
            for m, per in self.raw.items():
                out.append(f"| {m} | {'; '.join(map(str, per.get(B, [])))} | {'; '.join(map(str, per.get(D, [])))} |")
            out += ["", "</details>"]
        return self.save(out, a.out, self.elapsed)


def raise_nofile(need: int) -> int:
    """Raises the soft open-file limit towards `need` (at most the hard limit); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (owned and removed by the caller)")
    p.add_argument("--out", required=True)
    p.add_argument("--berth-bin", required=True)
    p.add_argument("--htpasswd-bin", default=shutil.which("htpasswd"))
    p.add_argument("--parts", default="LF", help="L login storms, F connection flood")
    p.add_argument("--storm-n", type=int, default=400)
    p.add_argument("--flood-idle", type=int, default=5000)
    p.add_argument("--flood-partial", type=int, default=1000)
    p.add_argument("--flood-hold", type=float, default=35.0,
                   help="keep the flood open until this many seconds after it opened, then count again")
    p.add_argument("--pulls", type=int, default=20)
    p.add_argument("--berth-version", default="?")
    p.add_argument("--distribution-version", default="?")
    p.add_argument("--git-rev", default="?")
    a = p.parse_args()
    if not re.fullmatch(r"[LF]+", a.parts):
        p.error("--parts must be L, F or LF")
    if "L" in a.parts and not a.htpasswd_bin:
        p.error("htpasswd not found (apt-get install apache2-utils) and no --htpasswd-bin")
    if min(a.storm_n, a.pulls) < 1 or min(a.flood_idle, a.flood_partial) < 0:
        p.error("counts must be positive")
    need = a.flood_idle + a.flood_partial + 1024
    soft = raise_nofile(need)
    if soft < need:
        scale = (soft - 1024) / (a.flood_idle + a.flood_partial)
        a.flood_idle, a.flood_partial = int(a.flood_idle * scale), int(a.flood_partial * scale)
        log(f"open-file limit {soft}: flood scaled down to {a.flood_idle} + {a.flood_partial}")
    return run_until_signal(Security(a).run)


if __name__ == "__main__":
    sys.exit(main())
