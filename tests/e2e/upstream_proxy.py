"""A reverse proxy on 127.0.0.1 put between an image cache and its source registry.

It forwards every request to the source (on `upstream_port`, Host header passed through, so a
source's token realm and Location headers point back at the proxy) and records, per request:
method, path, status and the response body bytes it relayed. On top of that it can
- throttle response bodies (`rate`, bytes per second per response), so that a caching is slow
  enough to be interrupted;
- hold blob GETs at a gate (`gate`, a threading.Event: while it is clear, a blob GET waits);
- be taken off the port (`pause()`: connections are refused) and put back (`resume()`).

`blob_gets()` counts answered blob GETs per digest and `blob_bytes()` the body bytes relayed for
them, which is what "fetched from the source" means in the cache tests and the cache benchmark.
Standard library only (the benchmark imports it too).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
       "expect", "content-length"}
BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})(?:\?.*)?$")
PIECE = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        with self.server.owner._lock:
            self.server.owner._conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.owner._lock:
                self.server.owner._conns.discard(self.connection)

    def _request_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(3)
        return b""

    def _forward(self):
        p = self.server.owner
        rec = {"method": self.command, "path": self.path, "status": None, "resp_bytes": 0, "done": False,
               "t0": time.monotonic()}
        m = BLOB_PATH.match(self.path)
        is_blob_get = bool(m) and self.command == "GET"
        if m:
            rec["digest"] = m.group("digest")
        p._record(rec)
        body = self._request_body()
        if is_blob_get and not p.gate.wait(p.gate_timeout):
            rec["error"] = "gate timeout"
        conn = http.client.HTTPConnection("127.0.0.1", p.upstream_port, timeout=600)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    conn.putheader(k, v)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
        except OSError as e:
            # the source is down: a 502, as a load balancer in front of it would answer
            conn.close()
            rec["error"], rec["status"], rec["done"] = repr(e), 502, True
            msg = b'{"errors":[{"code":"UNAVAILABLE","message":"upstream down"}]}'
            try:
                self.send_response_only(502, "Bad Gateway")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
            except OSError:
                self.close_connection = True
            return
        rec["status"] = resp.status
        length = resp.headers.get("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        try:
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP or (k.lower() == "content-length" and length is not None):
                    self.send_header(k, v)
            if not no_body and length is None:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not no_body:
                rate = p.rate if is_blob_get or not p.rate_blobs_only else None
                started = time.monotonic()
                while True:
                    piece = resp.read(PIECE) if length is not None else resp.read1(PIECE)
                    if not piece:
                        break
                    if length is None:
                        self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)
                    rec["resp_bytes"] += len(piece)
                    if rate:
                        ahead = rec["resp_bytes"] / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            rec["done"] = True
        except OSError as e:  # the client (the cache) went away mid-answer
            rec["error"] = repr(e)
            self.close_connection = True
        finally:
            rec["t1"] = time.monotonic()
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class UpstreamProxy:
    """See the module docstring. `rate`: bytes/s per response body (None: as fast as it goes);
    `rate_blobs_only`: throttle only blob GETs (default)."""

    def __init__(self, upstream_port: int, rate: Optional[float] = None, rate_blobs_only: bool = True,
                 port: int = 0):
        self.upstream_port = upstream_port
        self.rate = rate
        self.rate_blobs_only = rate_blobs_only
        self.gate = threading.Event()
        self.gate.set()
        self.gate_timeout = 300.0
        self._lock = threading.Lock()
        self._records: list[dict] = []
        self._conns: set = set()
        self._srv: Optional[_Server] = None
        self._port = port
        self._start()

    def _start(self) -> None:
        self._srv = _Server(("127.0.0.1", self._port), _Handler)
        self._srv.owner = self
        self._port = self._srv.server_address[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def _record(self, rec: dict) -> None:
        with self._lock:
            self._records.append(rec)

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def records(self) -> list[dict]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def pause(self) -> None:
        """Off the port: new connections are refused and open (kept-alive) ones are closed."""
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self) -> None:
        if self._srv is None:
            for _ in range(50):
                try:
                    self._start()
                    return
                except OSError:
                    time.sleep(0.1)
            self._start()

    def close(self) -> None:
        self.gate.set()
        self.pause()

    # --- what was fetched -------------------------------------------------------------------
    def blob_gets(self, statuses=(200, 206)) -> dict[str, int]:
        """digest -> blob GETs the source answered with one of `statuses`."""
        out: dict[str, int] = {}
        for r in self.records:
            if r["method"] == "GET" and "digest" in r and r["status"] in statuses:
                out[r["digest"]] = out.get(r["digest"], 0) + 1
        return out

    def blob_bytes(self) -> int:
        """Body bytes relayed for blob GETs."""
        return sum(r["resp_bytes"] for r in self.records if r["method"] == "GET" and "digest" in r)

    def streaming(self, digest: str) -> int:
        """Bytes relayed so far for GETs of `digest` (live, while they stream)."""
        return sum(r["resp_bytes"] for r in self.records if r.get("digest") == digest and r["method"] == "GET")

    def manifest_requests(self, ref: Optional[str] = None) -> list[tuple[str, str, Optional[int]]]:
        """(method, path, status) of manifest requests (of `ref` when given)."""
        out = []
        for r in self.records:
            if "/manifests/" in r["path"] and (ref is None or r["path"].split("?")[0].endswith("/manifests/" + ref)):
                out.append((r["method"], r["path"], r["status"]))
        return out

    def summary(self, last: int = 60) -> str:
        return "\n".join(f"{r['method']} {r['path']} -> {r['status']} ({r['resp_bytes']} B"
                         f"{', ' + r['error'] if r.get('error') else ''})" for r in self.records[-last:])


def port_refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0
