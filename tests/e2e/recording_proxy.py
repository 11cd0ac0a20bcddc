"""A small recording reverse proxy for 127.0.0.1.

Clients (docker, skopeo, oras) talk to the proxy, the proxy streams every request to the
registry and records method, path, the protocol-relevant headers, the body size and the answer.
Tests use it to assert what a real client did (e.g. that skopeo mounted instead of uploading),
and the traces document the exact request sequences each client sends.

Request bodies are streamed (fixed length or chunked, re-chunked as received), responses are
streamed back, keep-alive is kept, and the Host header is passed through so that the
registry's Location headers point back at the proxy.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "expect", "content-length"}
REQ_KEEP = ("content-type", "content-length", "content-range", "transfer-encoding", "accept",
            "range", "expect", "authorization", "user-agent")
RESP_KEEP = ("location", "range", "docker-content-digest", "content-type", "content-length",
             "content-range", "oci-subject", "oci-filters-applied", "link",
             "docker-upload-uuid", "oci-chunk-min-length")
BLOCK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def _body_chunked(self):
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            left = size
            while left:
                piece = self.rfile.read(min(left, BLOCK))
                if not piece:
                    raise ConnectionError("client closed mid-chunk")
                left -= len(piece)
                yield piece
            self.rfile.readline(3)

    def _body_fixed(self, n):
        while n:
            piece = self.rfile.read(min(n, BLOCK))
            if not piece:
                raise ConnectionError("client closed mid-body")
            n -= len(piece)
            yield piece

    def _forward(self):
        method = self.command
        te = self.headers.get("Transfer-Encoding", "").lower()
        cl = self.headers.get("Content-Length")
        chunked = "chunked" in te
        rec = {"method": method, "path": self.path,
               "req": {k: ", ".join(self.headers.get_all(k)) for k in REQ_KEEP
                       if k in self.headers},
               "body_bytes": 0}
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=600)
        try:
            conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            elif cl is not None:
                conn.putheader("Content-Length", cl)
            conn.endheaders()
            if chunked:
                for piece in self._body_chunked():
                    rec["body_bytes"] += len(piece)
                    conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif cl:
                for piece in self._body_fixed(int(cl)):
                    rec["body_bytes"] += len(piece)
                    conn.send(piece)
            resp = conn.getresponse()
        except Exception as e:
            rec["error"] = repr(e)
            self.server.record(rec)
            conn.close()
            self.close_connection = True
            return
        rec["status"] = resp.status
        rec["resp"] = {k: resp.headers[k] for k in RESP_KEEP if k in resp.headers}
        self.server.record(rec)
        self.send_response_only(resp.status, resp.reason)
        length = resp.headers.get("Content-Length")
        no_body = method == "HEAD" or resp.status in (204, 304) or resp.status < 200
        for k, v in resp.getheaders():
            if k.lower() not in HOP or (k.lower() == "content-length" and length is not None):
                self.send_header(k, v)
        if not no_body and length is None:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if not no_body:
                while True:
                    piece = resp.read(BLOCK) if length is not None else resp.read1(BLOCK)
                    if not piece:
                        break
                    if length is None:
                        self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream_port: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream_port = upstream_port
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def record(self, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)


class RecordingProxy:
    def __init__(self, upstream_port: int):
        self._srv = _Server(upstream_port)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._srv.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def records(self) -> list[dict]:
        with self._srv.lock:
            return list(self._srv.records)

    def clear(self) -> None:
        with self._srv.lock:
            self._srv.records.clear()

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()

    def dump(self, path: Path) -> None:
        with open(path, "w") as f:
            for rec in self.records:
                f.write(json.dumps(rec) + "\n")

    def summary(self) -> str:
        lines = []
        for r in self.records:
            req = " ".join(f"{k}={v}" for k, v in r["req"].items() if k != "user-agent")
            resp = " ".join(f"{k}={v}" for k, v in r.get("resp", {}).items())
            lines.append(f"{r['method']} {r['path']} [{req}] body={r['body_bytes']} -> "
                         f"{r.get('status', r.get('error'))} [{resp}]")
        return "\n".join(lines)

    def mounts(self) -> dict[str, int]:
        """digest -> status of POST ?mount= requests."""
        out = {}
        for r in self.records:
            if r["method"] == "POST" and "mount=" in r["path"]:
                q = parse_qs(urlsplit(r["path"]).query)
                out[q["mount"][0]] = r.get("status")
        return out
