#!/usr/bin/env python3
"""Retention cleanup and garbage collection at scale: Berth vs CNCF distribution (standard library only).

Started by tests/bench/run_policies, which installs distribution, builds Berth and owns the
temporary work directory. Reuses bench.py's helpers. Everything talks to 127.0.0.1 only, one
server runs at a time, and every loop and child process is bounded by a timeout.

A. Cleanup: a registry with IMAGES x ARTIFACTS artifacts (default 100 x 100), each an OCI image
   manifest with the shared empty config and one unique 64-byte layer, tagged v0001..v0100,
   seeded over HTTP by 16 threads on keep-alive connections. Berth: one cleanup rule
   `{"image":"**","tag":"**","untagged":true,"keep":"latest-pushed:K"}` (K = 10), then a dry run,
   a real run and a second real run (nothing left to delete), each timed from the POST to the
   poll (every 0.2 s) that sees it end. distribution has no retention policy: its figure is the
   client-side script that does the same job (list tags, HEAD each tag for its digest, DELETE
   the lowest ARTIFACTS - K tags' manifests by digest), with the same 16 threads.
B. Garbage collection: GC_BLOBS small blobs (default 100,000 x 32 bytes) in GC_IMAGES images,
   each image one manifest listing all of its blobs; half of the images deleted (Berth: the
   management API's image DELETE; distribution: DELETE of the manifest), then a dry and a real
   GC. Berth's GC runs online (`POST /api/v1/gc/runs`, BERTH_GC_GRACE_SECONDS=0); distribution's
   is `docker-registry garbage-collect CONFIG`, offline, with the registry stopped.

Peak RSS during a run: the server's VmHWM is reset first (`echo 5 > /proc/PID/clear_refs`), so
VmHWM afterwards is the peak during that run; VmRSS is also sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_BASIC, BENCH_SECRET_KEY, DISTRIBUTION_BIN, DISTRIBUTION_CONFIG, BenchError, Tally,
    free_port, http_req, loadavg, log, machine_line, run_until_signal, stat_cpu, stop_process, wait_ready,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY).hexdigest()
REGISTRY = "bench"  # Berth's registry: the first path segment of every image name
RUN_TIMEOUT = 3600  # seconds for one cleanup or GC run
GC_TIMEOUT = 3600  # seconds for one offline distribution GC
POLL = 0.2  # seconds between polls of a run
B, D = "Berth", "distribution"


# --------------------------------------------------------------------------- servers


class Server:
    """One registry process on a data dir that survives restarts (distribution's offline GC
    needs the registry stopped and started again on the same store)."""

    def __init__(self, kind: str, work: Path, name: str, berth_bin: str | None = None,
                 env: dict | None = None) -> None:
        self.kind, self.berth_bin, self.extra_env = kind, berth_bin, dict(env or {})
        self.label = B if kind == "berth" else D
        self.work = work
        self.dir = work / "servers" / name
        self.data = self.dir / "data"
        self.config = self.dir / "config.yml"
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "Server":
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = dict(os.environ)
        if self.kind == "berth":
            for k in [k for k in env if k.startswith("BERTH_")]:
                del env[k]
            env["RUST_LOG"] = os.environ.get("BENCH_BERTH_RUST_LOG", "warn")
            env["BERTH_ADMIN_ACCESS_KEY"] = BENCH_ACCESS_KEY
            env["BERTH_ADMIN_SECRET_KEY"] = BENCH_SECRET_KEY
            env.update(self.extra_env)
            cmd = [self.berth_bin, "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{self.port}"]
        else:
            self.write_config()
            for k in [k for k in env if k.startswith("REGISTRY_")]:
                del env[k]
            cmd = [DISTRIBUTION_BIN, "serve", str(self.config)]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)
        with open(self.work / "pids", "a") as f:
            f.write(f"{self.proc.pid} {os.path.realpath(cmd[0])}\n")

        def ready():
            status, _, _ = http_req(self.port, "GET", "/v2/", self.auth(), timeout=2)
            return status == 200

        wait_ready(self.proc, self.label, ready, self.log_tail, "did not answer GET /v2/ 200")
        if self.kind == "berth":
            status, _, body = _post_json(self.port, "/api/v1/registries", {"name": REGISTRY}, self.auth())
            if status not in (201, 409):
                raise BenchError(f"{self.label}: creating registry {REGISTRY} answered {status}: {body[:300]!r}")
        log(f"{self.label} pid {self.proc.pid} on 127.0.0.1:{self.port} (data {self.data})")
        return self

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(DISTRIBUTION_CONFIG.format(root=self.data, port=self.port))

    def auth(self, headers: dict | None = None) -> dict:
        out = dict(headers or {})
        if self.kind == "berth":
            out["Authorization"] = BENCH_BASIC
        return out

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return stat_cpu(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def _post_json(port: int, path: str, doc, headers: dict):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(doc), headers={**headers, "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"{field} not in /proc/{pid}/status")


class RssWatch:
    """Peak and growth of a process's RSS over a `with` block: VmHWM reset on entry (clear_refs 5),
    read on exit; VmRSS sampled every 50 ms as well (the figure used if the reset is refused)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stop = threading.Event()
        self.base = self.sampled = self.hwm = 0
        self.reset = False

    def __enter__(self) -> "RssWatch":
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.base = self.sampled = status_kib(self.pid, "VmRSS")
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            try:
                self.sampled = max(self.sampled, status_kib(self.pid, "VmRSS"))
            except (OSError, BenchError):
                return
            self.stop.wait(0.05)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        try:
            self.hwm = status_kib(self.pid, "VmHWM")
        except (OSError, BenchError):
            self.hwm = 0

    @property
    def peak_mib(self) -> float:
        kib = self.hwm if self.reset and self.hwm else self.sampled
        return round(kib / 1024, 1)

    @property
    def growth_mib(self) -> float:
        return round(self.peak_mib - self.base / 1024, 1)


# --------------------------------------------------------------------------- HTTP client


class Client:
    """Keep-alive HTTP/1.1 connections to one server, one per thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.local = threading.local()
        self.lock = threading.Lock()
        self.requests = 0
        self.reconnects = 0
        self.monolithic: bool | None = None  # POST ?digest= with the body completes an upload

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)
            self.local.conn = c
        return c

    def _drop(self) -> None:
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
        self.local.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, lower-cased headers, body). One retry on a fresh connection when a kept-alive
        one turns out closed (the request was not answered)."""
        hdrs = self.server.auth(headers)
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=hdrs)
                resp = c.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                self._drop()
                with self.lock:
                    self.reconnects += 1
                if attempt:
                    raise BenchError(f"{self.server.label}: {method} {path}: {e!r}")
                continue
            except OSError as e:
                self._drop()
                raise BenchError(f"{self.server.label}: {method} {path}: {e!r}")
            if resp.will_close:
                self._drop()
            with self.lock:
                self.requests += 1
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    def expect(self, want, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, hdrs, data = self.request(method, path, body, headers)
        if status not in (want if isinstance(want, tuple) else (want,)):
            raise BenchError(f"{self.server.label}: {method} {path} answered {status} (wanted {want}): "
                             f"{data[:300]!r}")
        return status, hdrs, data

    def api(self, want, method: str, path: str, doc=None):
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"} if doc is not None else {}
        _, _, data = self.expect(want, method, path, body, headers)
        return json.loads(data) if data.strip() else None

    # ---- registry operations

    def upload_blob(self, repo: str, data: bytes, digest: str) -> None:
        """A whole blob: `POST ?digest=` with the body where the registry completes that at once
        (201), else POST then `PUT <Location>&digest=` with the body (distribution 2.8)."""
        if self.monolithic is None:
            status, hdrs, _ = self.expect((201, 202), "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                                          {"Content-Type": "application/octet-stream"})
            self.monolithic = status == 201
            log(f"{self.server.label}: monolithic POST ?digest= answered {status}: uploads use "
                f"{'one POST' if self.monolithic else 'POST + PUT'} per blob")
            if status == 201:
                return
            self._put_upload(hdrs, data, digest)
            return
        if self.monolithic:
            self.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                        {"Content-Type": "application/octet-stream"})
        else:
            _, hdrs, _ = self.expect(202, "POST", f"/v2/{repo}/blobs/uploads/", b"")
            self._put_upload(hdrs, data, digest)

    def _put_upload(self, hdrs: dict, data: bytes, digest: str) -> None:
        loc = urlsplit(hdrs["location"])
        path = loc.path + (f"?{loc.query}&" if loc.query else "?") + f"digest={digest}"
        self.expect(201, "PUT", path, data, {"Content-Type": "application/octet-stream"})

    def put_manifest(self, repo: str, ref: str, body: bytes) -> str:
        _, hdrs, _ = self.expect(201, "PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": OCI_MANIFEST})
        return hdrs.get("docker-content-digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def tags(self, repo: str) -> list[str]:
        out, path = [], f"/v2/{repo}/tags/list"
        for _ in range(10_000):
            _, hdrs, data = self.expect(200, "GET", path)
            out += json.loads(data).get("tags") or []
            m = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", hdrs.get("link", ""))
            if not m:
                return out
            nxt = urlsplit(m.group(1))
            path = nxt.path + (f"?{nxt.query}" if nxt.query else "")
        raise BenchError(f"{self.server.label}: tags/list of {repo} did not end")


def pool(threads: int, fn, items: list, what: str) -> float:
    """Runs fn(item) for every item on `threads` threads; seconds taken. The first failure
    cancels what has not started and is raised."""
    t0 = time.monotonic()
    step = max(1, len(items) // 10)
    with cf.ThreadPoolExecutor(threads) as ex:
        futures = [ex.submit(fn, it) for it in items]
        try:
            for n, f in enumerate(cf.as_completed(futures), 1):
                f.result()
                if len(items) >= 2000 and n % step == 0 and n < len(items):
                    log(f"  {what}: {n:,}/{len(items):,} ({n / (time.monotonic() - t0):,.0f}/s)")
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return time.monotonic() - t0


def manifest(layers: list[tuple[str, int]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }, separators=(",", ":")).encode()


def blob(data: bytes) -> tuple[bytes, str]:
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under root."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                size += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return files, size


# --------------------------------------------------------------------------- the bench


class Policies(Tally):
    def __init__(self, a) -> None:
        super().__init__()
        self.a = a
        self.work = Path(a.work)
        self.keep = a.keep
        width = max(2, len(str(max(a.images, a.gc_images) - 1)))
        self.name = lambda i: f"{REGISTRY}/img-{i:0{width}d}"
        self.tag = lambda t: f"v{t:04d}"  # t = 1..artifacts
        self.counts: dict[str, dict] = {}

    def rec(self, measure: str, label: str, value) -> None:
        self.record(measure, label, value)

    # ----------------------------------------------------------------- A: content
    def cleanup_content(self) -> dict:
        """Layer bytes per (image, tag), made once: both servers get the same content."""
        a = self.a
        return {(i, t): blob(os.urandom(64)) for i in range(a.images) for t in range(1, a.artifacts + 1)}

    def seed_cleanup(self, s: Server, cl: Client, content: dict) -> None:
        a = self.a
        images = [self.name(i) for i in range(a.images)]
        cl.upload_blob(images[0], EMPTY, EMPTY_DIGEST)  # settles POST ?digest= vs POST + PUT
        pool(a.threads, lambda repo: cl.upload_blob(repo, EMPTY, EMPTY_DIGEST), images[1:], "config blobs")

        def push(key):
            i, t = key
            data, digest = content[key]
            cl.upload_blob(self.name(i), data, digest)
            cl.put_manifest(self.name(i), self.tag(t), manifest([(digest, len(data))]))

        # Tag-major order (v0001 of every image, then v0002, ...), like CI pushing releases. The
        # newest `keep` tags go after a whole-second boundary: push times have one-second
        # resolution, and then "the `keep` newest" is exactly v(N-keep+1)..vN in every image.
        old = [(i, t) for t in range(1, a.artifacts - self.keep + 1) for i in range(a.images)]
        new = [(i, t) for t in range(a.artifacts - self.keep + 1, a.artifacts + 1) for i in range(a.images)]
        req0, cpu0 = cl.requests, s.cpu()
        secs = pool(a.threads, push, old, f"{s.label} seeding artifacts")
        t_end = time.time()
        time.sleep(max(0.0, int(t_end) + 1.05 - time.time()))
        secs += pool(a.threads, push, new, f"{s.label} seeding newest artifacts")
        n = len(old) + len(new)
        self.rec("A seed artifacts/s", s.label, round(n / secs, 1))
        self.rec("A seed requests/s", s.label, round((cl.requests - req0) / secs, 1))
        self.rec("A seed wall s", s.label, round(secs, 1))
        self.rec("A seed server CPU s", s.label, round(s.cpu() - cpu0, 1))
        self.rec("A seed requests per artifact", s.label, round((cl.requests - req0) / n, 2))
        log(f"{s.label}: seeded {n:,} artifacts in {secs:.1f} s ({n / secs:,.0f}/s, "
            f"{(cl.requests - req0) / secs:,.0f} req/s)")

    def check_tags(self, s: Server, cl: Client, what: str) -> None:
        a = self.a
        want = [self.tag(t) for t in range(a.artifacts - self.keep + 1, a.artifacts + 1)]
        bad = []

        def check(i):
            got = sorted(cl.tags(self.name(i)))
            if got != want:
                bad.append(f"{self.name(i)}: {len(got)} tags {got[:3]}..{got[-3:]}")

        pool(a.threads, check, list(range(a.images)), "tags check")
        ok = not bad
        self.rec(f"A tags after {what}", s.label, "ok" if ok else f"{len(bad)} images wrong")
        if not ok:
            self.error(f"{s.label}: after {what}, {len(bad)} images do not hold exactly the {self.keep} newest "
                       f"tags, e.g. {bad[:3]}")
        else:
            log(f"{s.label}: every image holds exactly {want[0]}..{want[-1]} after {what}")

    # ----------------------------------------------------------------- A: Berth
    def run_and_wait(self, s: Server, cl: Client, post: str, get: str, dry: bool, what: str):
        """POSTs a run, polls it every POLL s until it ends; (run, wall s, watch, server CPU s)."""
        cpu0 = s.cpu()
        with RssWatch(s.proc.pid) as w:
            t0 = time.monotonic()
            run = cl.api(202, "POST", post, {"dry_run": dry})
            rid = run["id"]
            deadline = t0 + RUN_TIMEOUT
            polls = poll_bytes = 0
            while run.get("status") not in ("succeeded", "failed"):
                if time.monotonic() > deadline:
                    raise BenchError(f"{s.label}: {what} run {rid} still {run.get('status')} after {RUN_TIMEOUT}s")
                if not s.alive():
                    raise BenchError(f"{s.label} exited during {what}:\n{s.log_tail()}")
                time.sleep(POLL)
                _, _, data = cl.expect(200, "GET", f"{get}/{rid}")
                run = json.loads(data)
                polls, poll_bytes = polls + 1, poll_bytes + len(data)
            wall = time.monotonic() - t0
        # The cleanup run's GET carries up to 1,000 of its decisions: the poll's own load, shown.
        self.rec(f"{what}: polls / KB per poll answer", s.label,
                 f"{polls} / {poll_bytes / max(polls, 1) / 1000:.1f}")
        cpu = s.cpu() - cpu0
        if run["status"] != "succeeded":
            self.error(f"{s.label}: {what} run {rid} {run['status']}: {run.get('error')}")
        log(f"{s.label}: {what}: {wall:.2f} s, peak RSS {w.peak_mib} MiB (+{w.growth_mib}), CPU {cpu:.2f} s: "
            f"{json.dumps({k: v for k, v in run.items() if not isinstance(v, (list, dict))})}")
        return run, wall, w, cpu

    def berth_cleanup(self, content: dict) -> None:
        a = self.a
        s = Server("berth", self.work, "cleanup-berth", a.berth_bin)
        try:
            s.start()
            cl = Client(s)
            self.seed_cleanup(s, cl, content)
            base = f"/api/v1/registries/{REGISTRY}/cleanup"
            rule = {"image": "**", "tag": "**", "untagged": True, "keep": f"latest-pushed:{self.keep}"}
            created = cl.api(201, "POST", f"{base}/rules", rule)
            log(f"{s.label}: cleanup rule {json.dumps(created)}")
            n, kept = a.images * a.artifacts, a.images * self.keep
            for what, dry, want in (("dry run", True, (n, kept, n - kept)), ("real run", False, (n, kept, n - kept)),
                                    ("second real run", False, (kept, kept, 0))):
                run, wall, w, cpu = self.run_and_wait(s, cl, f"{base}/runs", f"{base}/runs", dry, f"cleanup {what}")
                key = f"A cleanup {what}"
                self.rec(f"{key} wall s", s.label, round(wall, 2))
                self.rec(f"{key} peak RSS MiB", s.label, w.peak_mib)
                self.rec(f"{key} RSS growth MiB", s.label, w.growth_mib)
                self.rec(f"{key} RSS before MiB", s.label, round(w.base / 1024, 1))
                self.rec(f"{key} server CPU s", s.label, round(cpu, 2))
                self.rec_server_times(key, s, run)
                got = tuple(run.get(k) for k in ("total", "retained", "deleted"))
                self.counts[key] = {k: run.get(k) for k in ("total", "retained", "deleted", "protected", "failed")}
                self.rec(f"{key} total/retained/deleted/protected", s.label,
                         "/".join(str(run.get(k)) for k in ("total", "retained", "deleted", "protected")))
                if got != want:
                    self.error(f"{s.label}: cleanup {what} reported total/retained/deleted {got}, expected {want}")
                if what == "dry run":
                    self.check_tags_unchanged(s, cl)
                if what == "real run":
                    self.check_tags(s, cl, "the real run")
            self.rec("A requests retried on a fresh connection", s.label, cl.reconnects)
        except BenchError as e:
            self.error(str(e))
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    def rec_server_times(self, key: str, s: Server, run: dict) -> None:
        """The run's own clock (whole seconds): waiting for a worker, then working."""
        q, st, fin = run.get("queued_at"), run.get("started_at"), run.get("finished_at")
        if q is not None and st is not None:
            self.rec(f"{key} queued → started s (server clock)", s.label, st - q)
        if st is not None and fin is not None:
            self.rec(f"{key} started → finished s (server clock)", s.label, fin - st)

    def check_tags_unchanged(self, s: Server, cl: Client) -> None:
        got = len(cl.tags(self.name(0)))
        if got != self.a.artifacts:
            self.error(f"{s.label}: after the dry run {self.name(0)} has {got} tags, not {self.a.artifacts}")

    # ----------------------------------------------------------------- A: distribution
    def dist_script(self, cl: Client, delete: bool) -> tuple[int, int]:
        """The client-side cleanup: per image (threads over images) list the tags, HEAD each for
        its digest, DELETE the manifests of all but the `keep` highest tags. (HEADs, DELETEs)."""
        heads, deletes = [0], [0]
        lock = threading.Lock()

        def one(i):
            repo = self.name(i)
            tags = sorted(cl.tags(repo))
            digests = {}
            for t in tags:
                _, hdrs, _ = cl.expect(200, "HEAD", f"/v2/{repo}/manifests/{t}", None, {"Accept": OCI_MANIFEST})
                digests[t] = hdrs["docker-content-digest"]
            doomed = tags[:-self.keep] if len(tags) > self.keep else []
            if delete:
                for t in doomed:
                    cl.expect(202, "DELETE", f"/v2/{repo}/manifests/{digests[t]}")
            with lock:
                heads[0] += len(tags)
                deletes[0] += len(doomed) if delete else 0

        pool(self.a.threads, one, list(range(self.a.images)), "client-side cleanup")
        return heads[0], deletes[0]

    def dist_cleanup(self, content: dict) -> None:
        a = self.a
        s = Server("distribution", self.work, "cleanup-distribution")
        try:
            s.start()
            cl = Client(s)
            self.seed_cleanup(s, cl, content)
            for what, delete in (("dry run", False), ("real run", True), ("second real run", True)):
                cpu0 = s.cpu()
                with RssWatch(s.proc.pid) as w:
                    t0 = time.monotonic()
                    heads, deletes = self.dist_script(cl, delete)
                    wall = time.monotonic() - t0
                cpu = s.cpu() - cpu0
                key = f"A cleanup {what}"
                self.rec(f"{key} wall s", s.label, round(wall, 2))
                self.rec(f"{key} peak RSS MiB", s.label, w.peak_mib)
                self.rec(f"{key} RSS growth MiB", s.label, w.growth_mib)
                self.rec(f"{key} RSS before MiB", s.label, round(w.base / 1024, 1))
                self.rec(f"{key} server CPU s", s.label, round(cpu, 2))
                self.rec(f"{key} HEADs/DELETEs", s.label, f"{heads}/{deletes}")
                log(f"{s.label}: client-side {what}: {wall:.2f} s ({heads:,} HEADs, {deletes:,} DELETEs), "
                    f"peak RSS {w.peak_mib} MiB (+{w.growth_mib}), CPU {cpu:.2f} s")
                if what == "real run":
                    want = a.images * (a.artifacts - self.keep)
                    if deletes != want:
                        self.error(f"{s.label}: the script deleted {deletes} manifests, expected {want}")
                    self.check_tags(s, cl, "the real run")
            self.rec("A requests retried on a fresh connection", s.label, cl.reconnects)
        except BenchError as e:
            self.error(str(e))
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    # ----------------------------------------------------------------- B: content
    def gc_content(self) -> list[list[tuple[bytes, str]]]:
        a = self.a
        per = a.gc_blobs // a.gc_images
        return [[blob(os.urandom(32)) for _ in range(per)] for _ in range(a.gc_images)]

    def seed_gc(self, s: Server, cl: Client, content) -> dict[int, str]:
        """Uploads every blob, then one manifest per image listing all of them; {image: digest}."""
        a = self.a
        cl.upload_blob(self.name(0), EMPTY, EMPTY_DIGEST)
        pool(a.threads, lambda i: cl.upload_blob(self.name(i), EMPTY, EMPTY_DIGEST), list(range(1, a.gc_images)),
             "config blobs")
        items = [(i, j) for j in range(len(content[0])) for i in range(a.gc_images)]
        req0, cpu0 = cl.requests, s.cpu()
        secs = pool(a.threads, lambda k: cl.upload_blob(self.name(k[0]), *content[k[0]][k[1]]), items,
                    f"{s.label} seeding blobs")
        self.rec("B seed blobs/s", s.label, round(len(items) / secs, 1))
        self.rec("B seed requests/s", s.label, round((cl.requests - req0) / secs, 1))
        self.rec("B seed wall s", s.label, round(secs, 1))
        self.rec("B seed server CPU s", s.label, round(s.cpu() - cpu0, 1))
        log(f"{s.label}: seeded {len(items):,} blobs in {secs:.1f} s ({len(items) / secs:,.0f}/s)")
        digests = {}
        lock = threading.Lock()

        def put(i):
            d = cl.put_manifest(self.name(i), "latest", manifest([(dg, len(data)) for data, dg in content[i]]))
            with lock:
                digests[i] = d

        t0 = time.monotonic()
        pool(a.threads, put, list(range(a.gc_images)), "manifests")
        self.rec(f"B manifest PUTs ({len(content[0])} layers each) wall s", s.label, round(time.monotonic() - t0, 2))
        return digests

    def doomed_images(self) -> list[int]:
        """Every other image (img-01, img-03, ...): half of them."""
        return [i for i in range(self.a.gc_images) if i % 2 == 1]

    def check_blobs(self, s: Server, cl: Client, content) -> None:
        """GETs a sample of the kept images' blobs: 200 and the exact bytes."""
        kept = [i for i in range(self.a.gc_images) if i % 2 == 0]
        per = len(content[0])
        sample = [(kept[k % len(kept)], (k * 7919) % per) for k in range(self.a.gc_check)]
        bad = []

        def get(k):
            i, j = k
            data, digest = content[i][j]
            status, _, body = cl.request("GET", f"/v2/{self.name(i)}/blobs/{digest}")
            if status != 200 or body != data:
                bad.append(f"{self.name(i)} {digest}: {status}, {len(body)} bytes")

        pool(self.a.threads, get, sample, "blob check")
        self.rec("B kept blobs check after GC", s.label, f"{len(sample) - len(bad)}/{len(sample)} ok")
        if bad:
            self.error(f"{s.label}: after GC {len(bad)} of {len(sample)} sampled kept blobs are wrong, e.g. {bad[:3]}")
        else:
            log(f"{s.label}: {len(sample)} sampled blobs of kept images GET 200 with their bytes")

    def rec_store(self, s: Server, when: str) -> None:
        files, size = tree_size(s.data)
        self.rec(f"B data dir {when}: files / MB", s.label, f"{files:,} / {size / 1e6:,.1f}")

    # ----------------------------------------------------------------- B: Berth
    def berth_gc(self, content) -> None:
        a = self.a
        s = Server("berth", self.work, "gc-berth", a.berth_bin, env={"BERTH_GC_GRACE_SECONDS": "0"})
        try:
            s.start()
            cl = Client(s)
            self.seed_gc(s, cl, content)
            t0 = time.monotonic()
            pool(a.threads, lambda i: cl.expect((200, 204), "DELETE", f"/api/v1/images/{self.name(i)}"),
                 self.doomed_images(), "image deletes")
            self.rec("B delete half of the images wall s", s.label, round(time.monotonic() - t0, 2))
            self.rec_store(s, "before GC")
            garbage = len(self.doomed_images()) * len(content[0])
            for what, dry in (("dry run", True), ("real run", False)):
                run, wall, w, cpu = self.run_and_wait(s, cl, "/api/v1/gc/runs", "/api/v1/gc/runs", dry, f"GC {what}")
                key = f"B GC {what}"
                self.rec(f"{key} wall s", s.label, round(wall, 2))
                self.rec(f"{key} peak RSS MiB", s.label, w.peak_mib)
                self.rec(f"{key} RSS growth MiB", s.label, w.growth_mib)
                self.rec(f"{key} RSS before MiB", s.label, round(w.base / 1024, 1))
                self.rec(f"{key} server CPU s", s.label, round(cpu, 2))
                self.rec_server_times(key, s, run)
                fields = ("blobs_scanned", "blobs_deleted", "bytes_deleted", "links_removed", "blobs_in_grace",
                          "errors")
                self.rec(f"{key} {' / '.join(fields)}", s.label, " / ".join(str(run.get(k)) for k in fields))
                self.counts[key] = {k: run.get(k) for k in fields}
                deleted = run.get("blobs_deleted") or 0
                # The deleted images' layers, plus at most their manifests (stored as blobs or not).
                if not garbage <= deleted <= garbage + len(self.doomed_images()):
                    self.error(f"{s.label}: GC {what} reports blobs_deleted {deleted}, expected {garbage} "
                               f"(+ up to {len(self.doomed_images())} manifests)")
            self.rec_store(s, "after GC")
            self.check_blobs(s, cl, content)
        except BenchError as e:
            self.error(str(e))
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    # ----------------------------------------------------------------- B: distribution
    def offline_gc(self, s: Server, dry: bool) -> dict:
        """`docker-registry garbage-collect [-d] CONFIG` under /usr/bin/time -v; its figures."""
        out = s.dir / f"gc-{'dry' if dry else 'real'}.log"
        times = s.dir / f"gc-{'dry' if dry else 'real'}.time"
        cmd = [DISTRIBUTION_BIN, "garbage-collect", *(["--dry-run"] if dry else []), str(s.config)]
        timed = os.access("/usr/bin/time", os.X_OK)
        if timed:
            cmd = ["/usr/bin/time", "-v", "-o", str(times), *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        peak = [0]
        t0 = time.monotonic()
        with open(out, "wb") as f:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env)
            with open(self.work / "pids", "a") as pf:
                pf.write(f"{p.pid} {os.path.realpath(cmd[0])}\n")
            try:
                while p.poll() is None:  # fallback RSS figure when /usr/bin/time is missing
                    if not timed:
                        try:
                            peak[0] = max(peak[0], status_kib(p.pid, "VmRSS"))
                        except (OSError, BenchError):
                            pass
                    if time.monotonic() - t0 > GC_TIMEOUT:
                        raise BenchError(f"distribution garbage-collect ran over {GC_TIMEOUT}s")
                    time.sleep(0.05)
            finally:
                stop_process(p)
        wall = time.monotonic() - t0
        text = out.read_text(errors="replace")
        if p.returncode != 0:
            raise BenchError(f"distribution garbage-collect failed ({p.returncode}): {text[-800:]}")
        rss_kib = peak[0]
        if timed:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", times.read_text())
            rss_kib = int(m.group(1)) if m else 0
        m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion", text)
        res = {"wall": wall, "rss_mib": round(rss_kib / 1024, 1),
               "marked": int(m.group(1)) if m else None, "eligible": int(m.group(2)) if m else None,
               "manifests": int(m.group(3)) if m else None,
               "deleted_lines": text.count("Deleting blob:")}
        log(f"distribution garbage-collect{' --dry-run' if dry else ''}: {wall:.2f} s, max RSS {res['rss_mib']} MiB, "
            f"{res['marked']} marked, {res['eligible']} blobs + {res['manifests']} manifests eligible")
        return res

    def dist_gc(self, content) -> None:
        s = Server("distribution", self.work, "gc-distribution")
        try:
            s.start()
            cl = Client(s)
            digests = self.seed_gc(s, cl, content)
            t0 = time.monotonic()
            pool(self.a.threads, lambda i: cl.expect(202, "DELETE", f"/v2/{self.name(i)}/manifests/{digests[i]}"),
                 self.doomed_images(), "manifest deletes")
            self.rec("B delete half of the images wall s", s.label, round(time.monotonic() - t0, 2))
            s.stop()
            self.rec_store(s, "before GC")
            garbage = len(self.doomed_images()) * len(content[0])
            for what, dry in (("dry run", True), ("real run", False)):
                r = self.offline_gc(s, dry)
                key = f"B GC {what}"
                self.rec(f"{key} wall s", s.label, round(r["wall"], 2))
                self.rec(f"{key} peak RSS MiB", s.label, r["rss_mib"])
                self.rec(f"{key} marked / eligible blobs / eligible manifests", s.label,
                         f"{r['marked']} / {r['eligible']} / {r['manifests']}")
                self.counts[key] = {"blobs_deleted": r["eligible"], "blobs_scanned": None}
                if r["eligible"] is None or not garbage <= r["eligible"] <= garbage + len(self.doomed_images()):
                    self.error(f"distribution GC {what}: {r['eligible']} blobs eligible for deletion, expected "
                               f"{garbage} (+ up to {len(self.doomed_images())} manifests)")
            self.rec_store(s, "after GC")
            s.start()
            self.check_blobs(s, Client(s), content)
        except BenchError as e:
            self.error(str(e))
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    # ----------------------------------------------------------------- run + report
    def run(self) -> int:
        a = self.a
        self.load_start = loadavg()
        t0 = time.monotonic()
        if "A" in a.parts:
            log(f"A. cleanup: {a.images} images x {a.artifacts} artifacts, keep {self.keep}")
            content = self.cleanup_content()
            if not a.skip_berth:
                self.berth_cleanup(content)
            self.dist_cleanup(content)
        if "B" in a.parts:
            log(f"B. GC: {a.gc_blobs:,} blobs in {a.gc_images} images, half of the images deleted")
            content = self.gc_content()
            if not a.skip_berth:
                self.berth_gc(content)
            self.dist_gc(content)
        self.elapsed = time.monotonic() - t0
        self.load_end = loadavg()
        return self.report()

    def report(self) -> int:
        a = self.a

        def v(m, label, nd=2):
            x = self.value(m, label) if all(isinstance(y, (int, float)) for y in self.raw.get(m, {}).get(label, [])) \
                else None
            if x is None:
                vals = self.raw.get(m, {}).get(label)
                return str(vals[-1]) if vals else "—"
            return f"{x:,.{nd}f}"

        def ratio(m):
            b, d = self.raw.get(m, {}).get(B), self.raw.get(m, {}).get(D)
            try:
                return f"{b[-1] / d[-1]:.2f}x" if b and d and d[-1] else ""
            except TypeError:
                return ""

        n, per = a.images * a.artifacts, a.artifacts - self.keep
        out = ["# Retention cleanup and garbage collection: Berth vs CNCF distribution", ""]
        if "A" in a.parts:
            out += [
                f"## A. Cleanup: {n:,} artifacts in {a.images} images, keep the {self.keep} newest per image", "",
                f"| measure | Berth (cleanup policy, server-side) | distribution: **client-side script against "
                f"distribution** | Berth/distribution |",
                "| --- | ---: | ---: | ---: |",
                f"| seeding: {n:,} artifacts (64 B layer upload + manifest PUT), {a.threads} threads (artifacts/s) | "
                f"{v('A seed artifacts/s', B, 0)} | {v('A seed artifacts/s', D, 0)} | {ratio('A seed artifacts/s')} |",
                f"| dry run, wall s (Berth: POST run → status seen `succeeded`; script: list tags + HEAD every tag) | "
                f"{v('A cleanup dry run wall s', B)} | {v('A cleanup dry run wall s', D)} | "
                f"{ratio('A cleanup dry run wall s')} |",
                f"| **real run, wall s** (script: list + HEAD + DELETE the {per} lowest tags' manifests by digest "
                f"per image) | {v('A cleanup real run wall s', B)} | {v('A cleanup real run wall s', D)} | "
                f"{ratio('A cleanup real run wall s')} |",
                f"| real run on the server's clock: queued → started / started → finished, whole s | "
                f"{v('A cleanup real run queued → started s (server clock)', B, 0)} / "
                f"{v('A cleanup real run started → finished s (server clock)', B, 0)} | n/a | |",
                f"| second real run, nothing left to delete, wall s | {v('A cleanup second real run wall s', B)} | "
                f"{v('A cleanup second real run wall s', D)} | {ratio('A cleanup second real run wall s')} |",
                f"| real run: server peak RSS (VmHWM reset before the run), MiB | "
                f"{v('A cleanup real run peak RSS MiB', B, 1)} | {v('A cleanup real run peak RSS MiB', D, 1)} | |",
                f"| real run: server RSS growth, MiB | {v('A cleanup real run RSS growth MiB', B, 1)} | "
                f"{v('A cleanup real run RSS growth MiB', D, 1)} | |",
                f"| dry run: server peak RSS / growth, MiB | {v('A cleanup dry run peak RSS MiB', B, 1)} / "
                f"{v('A cleanup dry run RSS growth MiB', B, 1)} | {v('A cleanup dry run peak RSS MiB', D, 1)} / "
                f"{v('A cleanup dry run RSS growth MiB', D, 1)} | |",
                f"| real run: server CPU s | {v('A cleanup real run server CPU s', B)} | "
                f"{v('A cleanup real run server CPU s', D)} | |",
                f"| real run result (Berth: total/retained/deleted/protected; script: HEADs/DELETEs) | "
                f"{v('A cleanup real run total/retained/deleted/protected', B)} | "
                f"{v('A cleanup real run HEADs/DELETEs', D)} | |",
                f"| afterwards every image's `tags/list` = the {self.keep} newest tags | "
                f"{v('A tags after the real run', B)} | {v('A tags after the real run', D)} | |",
                "",
                f"distribution has no retention policy and cannot order by push time: the script keeps the "
                f"{self.keep} highest tags (v{a.artifacts - self.keep + 1:04d}..v{a.artifacts:04d}), which here are "
                f"also the newest pushed. It runs {a.threads} images at a time on keep-alive connections "
                f"(REGISTRY_STORAGE_DELETE_ENABLED: `storage.delete.enabled: true`); each DELETE by digest also "
                f"removes the tags pointing at it. Berth's run is one `POST .../cleanup/runs` done by the server "
                f"(plan, then delete with tags and referrers); its time includes the job pickup and the 0.2 s poll.",
                "",
            ]
        if "B" in a.parts:
            half = len(self.doomed_images()) * (a.gc_blobs // a.gc_images)
            out += [
                f"## B. Garbage collection: {a.gc_blobs:,} blobs in {a.gc_images} images, half of the images deleted "
                f"(~{half:,} garbage blobs)", "",
                "| measure | Berth (online GC, registry serving) | distribution: **offline** `garbage-collect` "
                "(registry stopped) | Berth/distribution |",
                "| --- | ---: | ---: | ---: |",
                f"| seeding: {a.gc_blobs:,} blobs of 32 B, {a.threads} threads (blobs/s) | "
                f"{v('B seed blobs/s', B, 0)} | {v('B seed blobs/s', D, 0)} | {ratio('B seed blobs/s')} |",
                f"| delete {len(self.doomed_images())} images, wall s (Berth: `DELETE /api/v1/images/..`; "
                f"distribution: DELETE of each image's manifest) | {v('B delete half of the images wall s', B)} | "
                f"{v('B delete half of the images wall s', D)} | |",
                f"| GC dry run, wall s | {v('B GC dry run wall s', B)} | {v('B GC dry run wall s', D)} | "
                f"{ratio('B GC dry run wall s')} |",
                f"| **GC real run, wall s** | {v('B GC real run wall s', B)} | {v('B GC real run wall s', D)} | "
                f"{ratio('B GC real run wall s')} |",
                f"| GC real run on the server's clock: queued → started / started → finished, whole s | "
                f"{v('B GC real run queued → started s (server clock)', B, 0)} / "
                f"{v('B GC real run started → finished s (server clock)', B, 0)} | n/a | |",
                f"| GC dry run: peak RSS, MiB (Berth: server VmHWM reset before the run; distribution: the GC "
                f"process) | {v('B GC dry run peak RSS MiB', B, 1)} | {v('B GC dry run peak RSS MiB', D, 1)} | |",
                f"| GC real run: peak RSS, MiB | {v('B GC real run peak RSS MiB', B, 1)} | "
                f"{v('B GC real run peak RSS MiB', D, 1)} | |",
                f"| GC real run: Berth server RSS growth, MiB | {v('B GC real run RSS growth MiB', B, 1)} | n/a | |",
                f"| blobs deleted (Berth `blobs_deleted`; distribution: blobs eligible for deletion) | "
                f"{self.count('B GC real run', 'blobs_deleted')} | {self.count('B GC real run', 'blobs_deleted', D)} "
                f"| |",
                f"| {a.gc_check} sampled blobs of kept images GET 200 with their bytes after GC | "
                f"{v('B kept blobs check after GC', B)} | {v('B kept blobs check after GC', D)} | |",
                "",
                "Berth collects while serving (each deletion fenced against a concurrent re-upload of the same "
                "digest); distribution's `garbage-collect` must run with the registry stopped (or read-only), "
                "so its time is downtime.",
                "",
            ]
        out.append(f"Setup: {machine_line(self.load_start, self.load_end)}; Berth {a.berth_version}; distribution "
                   f"{a.distribution_version}; git {a.git_rev}; one server at a time, seeded with the same bytes "
                   f"through the same client ({a.threads} threads, `http.client` keep-alive; Berth with Basic "
                   f"admin-key auth on every request, distribution without auth). Blob uploads: one "
                   f"`POST ?digest=` with the body where the registry completes it (Berth), else POST + "
                   f"`PUT ?digest=` (distribution 2.8 ignores a POST body). Run took {self.elapsed / 60:.1f} min.")
        out += ["", "<details><summary>Raw samples</summary>", "", "| sample | Berth | distribution |",
                "| --- | --- | --- |"]
        for m, per_label in self.raw.items():
            out.append(f"| {m} | {', '.join(map(str, per_label.get(B, [])))} | "
                       f"{', '.join(map(str, per_label.get(D, [])))} |")
        out += ["", "</details>"]
        return self.save(out, a.out, self.elapsed)

    def count(self, key: str, field: str, label: str = B) -> str:
        vals = self.raw.get(f"{key} wall s", {}).get(label)
        if not vals:
            return "—"
        if label == D:
            m = self.raw.get(f"{key} marked / eligible blobs / eligible manifests", {}).get(D)
            return m[-1].split(" / ")[1] if m else "—"
        c = self.counts.get(key, {}).get(field)
        return "—" if c is None else f"{c:,}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (owned and removed by the caller)")
    p.add_argument("--out", required=True)
    p.add_argument("--berth-bin")
    p.add_argument("--skip-berth", action="store_true", help="dev aid: distribution side only")
    p.add_argument("--parts", default="AB")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--artifacts", type=int, default=100, help="artifacts (tags) per image")
    p.add_argument("--keep", type=int, default=0, help="latest-pushed:K (default: artifacts / 10)")
    p.add_argument("--gc-blobs", type=int, default=100_000)
    p.add_argument("--gc-images", type=int, default=100)
    p.add_argument("--gc-check", type=int, default=100)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--berth-version", default="?")
    p.add_argument("--distribution-version", default="?")
    p.add_argument("--git-rev", default="?")
    a = p.parse_args()
    a.keep = a.keep or max(1, a.artifacts // 10)
    if not 0 < a.keep < a.artifacts:
        p.error("--keep must be between 1 and artifacts - 1")
    if a.gc_images < 2 or a.gc_blobs < a.gc_images:
        p.error("--gc-images must be >= 2 and --gc-blobs >= --gc-images")
    if a.gc_blobs // a.gc_images > 1000:
        log(f"note: {a.gc_blobs // a.gc_images} layers per manifest")
    if not a.skip_berth and not a.berth_bin:
        p.error("--berth-bin is required unless --skip-berth")
    return run_until_signal(Policies(a).run)


if __name__ == "__main__":
    sys.exit(main())
