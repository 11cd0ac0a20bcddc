#!/usr/bin/env python3
"""Berth vs CNCF distribution benchmark driver (standard library only).

Started by tests/bench/run, which installs the tools, builds Berth and owns the
temporary work directory. Everything here talks to 127.0.0.1 only and every
loop and child process is bounded by a timeout.

Measures (Berth and distribution alternate within each repetition):
  1. skopeo push MB/s of a 4 x 64 MiB image (oci: layout made once), median of runs
  2. skopeo pull MB/s of the same image to a fresh oci: dir, median of runs
  3. manifest HEAD by tag, 16 connections, oha: req/s and p99
  4. manifest GET by tag, same, with the manifest's media type in Accept
  5. peak RSS (VmHWM) of a fresh server process while a 1 GiB layer is pushed
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import base64
import hashlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

MiB = 1024 * 1024
TAG = "bench"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# Every manifest type a registry may hold, for the probe GET.
ACCEPT_ALL = ", ".join([
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
# skopeo's blob-info cache: with it, a push to a second repo of the same registry
# cross-mounts blobs instead of uploading them. Root path first, then rootless.
SKOPEO_CACHES = [
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb",
]
SKOPEO_TIMEOUT = 900  # seconds for one skopeo copy
READY_TIMEOUT = 60  # seconds for a server to answer GET /v2/


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


class Tally:
    """Raw samples, notes and errors of one run, and the Markdown table written from them."""

    def __init__(self) -> None:
        self.raw: dict[str, dict[str, list]] = {}
        self.notes: list[str] = []
        self.errors: list[str] = []

    def note(self, msg: str) -> None:
        log("NOTE " + msg)
        self.notes.append(msg)

    def error(self, msg: str) -> None:
        log("ERROR " + msg)
        self.errors.append(msg)

    def record(self, measure: str, label: str, value) -> None:
        self.raw.setdefault(measure, {}).setdefault(label, []).append(value)

    def value(self, measure: str, label: str) -> float | None:
        vals = self.raw.get(measure, {}).get(label)
        return statistics.median(vals) if vals else None

    def save(self, out: list[str], path: str, elapsed: float) -> int:
        """Appends the notes, prints and saves the table; 2 if any error was recorded, else 0."""
        if self.notes or self.errors:
            out += ["", "Notes:", ""]
            out += [f"- {n}" for n in self.notes]
            out += [f"- ERROR: {e}" for e in self.errors]
        text = "\n".join(out) + "\n"
        print(text)
        outp = Path(path)
        outp.parent.mkdir(parents=True, exist_ok=True)
        outp.write_text(text)
        log(f"table saved to {outp} (run took {elapsed:.0f} s)")
        return 2 if self.errors else 0


# --------------------------------------------------------------------------- image


class _RandomReader:
    """File-like source of `size` random bytes (for tarfile.addfile)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        n = min(n, 4 * MiB)
        self.left -= n
        return os.urandom(n)


class _HashingWriter:
    """Writes to a file while hashing what is written."""

    def __init__(self, f) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b) -> int:
        self.h.update(b)
        self.size += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


def _put_blob(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_image(root: Path, layers: int, layer_mib: int) -> dict:
    """Write an OCI image layout at `root` tagged TAG.

    Each layer is a real tar holding one file of random bytes, wrapped in gzip at
    level 0 (stored blocks): skopeo sees gzip and copies it as it is, instead of
    compressing an "uncompressed" layer on the fly, which would measure gzip, not
    the registry. Returns {"blob_bytes", "manifest_digest", "layer_digests", ...}.
    """
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layer_descs, diff_ids = [], []
    for i in range(layers):
        tmp = blobs / f"tmp-layer-{i}"
        with open(tmp, "wb") as raw:
            outer = _HashingWriter(raw)  # digest of the compressed blob
            with gzip.GzipFile(fileobj=outer, mode="wb", compresslevel=0, mtime=0) as gz:
                inner = _HashingWriter(gz)  # diff_id: digest of the tar
                with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    info = tarfile.TarInfo(f"bench/layer-{i}.bin")
                    info.size = layer_mib * MiB
                    info.mode = 0o644
                    info.mtime = 0
                    tar.addfile(info, _RandomReader(info.size))
        digest = outer.h.hexdigest()
        tmp.rename(blobs / digest)
        layer_descs.append({"mediaType": OCI_LAYER_GZIP, "digest": f"sha256:{digest}", "size": outer.size})
        diff_ids.append(f"sha256:{inner.h.hexdigest()}")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {"mediaType": OCI_CONFIG, **_put_blob(blobs, json.dumps(config).encode())}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    manifest_desc = {"mediaType": OCI_MANIFEST, **_put_blob(blobs, manifest_bytes)}
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": TAG}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_desc]}
    (root / "index.json").write_text(json.dumps(index))
    return {
        "path": str(root),
        "blob_bytes": sum(d["size"] for d in layer_descs) + config_desc["size"],
        "manifest_digest": manifest_desc["digest"],
        "manifest_media_type": OCI_MANIFEST,
        "layer_digests": [d["digest"] for d in layer_descs],
        "layers": layers,
        "layer_mib": layer_mib,
    }


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_req(port: int, method: str, path: str, headers: dict | None = None, timeout: float = 10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


DISTRIBUTION_BIN = "/usr/bin/docker-registry"
# Berth authenticates every request: the bench logs in as this administrator (skopeo through the
# token flow, oha with a pull token, the checks with Basic). distribution runs without auth, so
# Berth's figures include the cost of authentication and distribution's do not.
BENCH_ACCESS_KEY = "BKBENCHADMIN00000001"
BENCH_SECRET_KEY = "bench-admin-secret-not-for-production"
BENCH_BASIC = "Basic " + base64.b64encode(f"{BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}".encode()).decode()
DISTRIBUTION_CONFIG = """\
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


class Server:
    """One registry process, started with Popen so we hold the real server pid."""

    def __init__(self, kind: str, label: str, work: Path, berth_bin: str | None) -> None:
        self.kind, self.label, self.work, self.berth_bin = kind, label, work, berth_bin
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.dir: Path | None = None

    def start(self, name: str) -> "Server":
        self.dir = self.work / "servers" / name
        data = self.dir / "data"
        data.mkdir(parents=True)
        self.port = free_port()
        env = dict(os.environ)
        if self.kind == "berth":
            # Defaults only (like distribution below), at warn level like distribution's config.
            for k in [k for k in env if k.startswith("BERTH_")]:
                del env[k]
            env["RUST_LOG"] = os.environ.get("BENCH_BERTH_RUST_LOG", "warn")
            env["BERTH_ADMIN_ACCESS_KEY"] = BENCH_ACCESS_KEY
            env["BERTH_ADMIN_SECRET_KEY"] = BENCH_SECRET_KEY
            cmd = [self.berth_bin, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{self.port}"]
        else:
            cfg = self.dir / "config.yml"
            cfg.write_text(DISTRIBUTION_CONFIG.format(root=data, port=self.port))
            # The package's env overrides would beat our file: drop any from the caller.
            for k in [k for k in env if k.startswith("REGISTRY_")]:
                del env[k]
            cmd = [DISTRIBUTION_BIN, "serve", str(cfg)]
        self.log_path = self.dir / "server.log"
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
            )
        # Recorded for the shell's EXIT trap, which kills leftovers by pid (checking the exe).
        with open(self.work / "pids", "a") as f:
            f.write(f"{self.proc.pid} {os.path.realpath(cmd[0])}\n")

        def ready():
            status, _, _ = http_req(self.port, "GET", "/v2/", self.auth(), timeout=2)
            return status == 200

        wait_ready(self.proc, self.label, ready, self.log_tail, "did not answer GET /v2/ 200")
        if self.kind == "berth":
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", "/api/v1/registries", body=json.dumps({"name": "bench"}),
                         headers={**self.auth(), "Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            if status not in (201, 409):
                raise BenchError(f"{self.label}: creating registry bench answered {status}")
        log(f"{self.label} ({self.kind}) pid {self.proc.pid} on 127.0.0.1:{self.port}")
        return self

    def auth(self, headers: dict | None = None) -> dict:
        """Headers with Basic credentials for Berth; distribution runs without auth."""
        out = dict(headers or {})
        if self.kind == "berth":
            out["Authorization"] = BENCH_BASIC
        return out

    def skopeo_creds(self, side: str) -> list[str]:
        return [f"--{side}-creds={BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}"] if self.kind == "berth" else []

    def pull_token(self, repo: str) -> str | None:
        """A registry token with pull on `repo` (what docker would hold), for Berth."""
        if self.kind != "berth":
            return None
        status, _, body = http_req(self.port, "GET", f"/auth/token?service=berth&scope=repository:{repo}:pull",
                                   self.auth())
        if status != 200:
            raise BenchError(f"{self.label}: token request answered {status}")
        return json.loads(body)["token"]

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def status_kib(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"{field} not in /proc/{self.proc.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        return stat_cpu(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)


def wait_ready(proc: subprocess.Popen, label: str, ready, log_tail, waiting: str = "not ready") -> None:
    """Polls ready() (an OSError counts as not yet) until it is true; BenchError if the
    process exits first or READY_TIMEOUT passes. `waiting` words the timeout error."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{label} exited with {proc.returncode} on start:\n{log_tail()}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{label} {waiting} in {READY_TIMEOUT}s:\n{log_tail()}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 15 s; nothing if never started or already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def stat_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- measures


def clear_skopeo_cache() -> None:
    for p in SKOPEO_CACHES:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def skopeo_copy(src: str, dst: str, what: str, creds: list[str] | None = None) -> tuple[float, float]:
    """Runs one `skopeo copy`; returns (wall seconds, skopeo's own CPU seconds)."""
    clear_skopeo_cache()
    cmd = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", *(creds or []), src, dst]
    cpu0 = children_cpu()
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SKOPEO_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: skopeo timed out after {SKOPEO_TIMEOUT}s")
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise BenchError(f"{what}: skopeo failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
    return elapsed, children_cpu() - cpu0


class Bench(Tally):
    def __init__(self, args) -> None:
        super().__init__()
        self.a = args
        self.work = Path(args.work)

    def pairs(self, servers, rep: int):
        """(berth, distribution) on even repetitions, reversed on odd: both sides see
        the same mix of "first after a pause" and "right after the other"."""
        return servers if rep % 2 == 0 else list(reversed(servers))

    # 1 + 2 -------------------------------------------------------------------
    def push_pull(self, servers, image: dict) -> dict:
        last_repo = {}
        mb = image["blob_bytes"] / 1e6
        for rep in range(self.a.runs):
            for s in self.pairs(servers, rep):
                repo = f"bench/push-{s.kind}-{rep}-{int(time.time() * 1000) % 10**8}"
                self.check_fresh_repo(s, repo, image)
                cpu0 = s.cpu_seconds()
                try:
                    secs, client_cpu = skopeo_copy(f"oci:{image['path']}:{TAG}",
                                                   f"docker://127.0.0.1:{s.port}/{repo}:{TAG}", f"push to {s.label}",
                                                   s.skopeo_creds("dest"))
                except BenchError as e:
                    self.error(str(e))
                    continue
                self.record("push wall s", s.label, round(secs, 2))
                self.record("server CPU s per push", s.label, round(s.cpu_seconds() - cpu0, 2))
                self.record("skopeo CPU s per push", s.label, round(client_cpu, 2))
                self.check_pushed(s, repo, image)
                self.record("push", s.label, round(mb / secs, 1))
                last_repo[s.label] = repo
                log(f"push #{rep + 1} {s.label}: {mb / secs:.1f} MB/s ({secs:.2f} s)")
        for rep in range(self.a.runs):
            for s in self.pairs(servers, rep):
                if s.label not in last_repo:
                    continue
                dest = self.work / f"pull-{s.kind}-{rep}"
                try:
                    cpu0 = s.cpu_seconds()
                    secs, client_cpu = skopeo_copy(f"docker://127.0.0.1:{s.port}/{last_repo[s.label]}:{TAG}",
                                                   f"oci:{dest}:{TAG}", f"pull from {s.label}",
                                                   s.skopeo_creds("src"))
                    self.record("pull wall s", s.label, round(secs, 2))
                    self.record("server CPU s per pull", s.label, round(s.cpu_seconds() - cpu0, 2))
                    self.record("skopeo CPU s per pull", s.label, round(client_cpu, 2))
                    self.record("pull", s.label, round(mb / secs, 1))
                    log(f"pull #{rep + 1} {s.label}: {mb / secs:.1f} MB/s ({secs:.2f} s)")
                except BenchError as e:
                    self.error(str(e))
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
        return last_repo

    def check_fresh_repo(self, s: Server, repo: str, image: dict) -> None:
        """A blob HEAD in a never-used repo must be 404, or skopeo skips the upload
        and the push figure would not measure an upload."""
        try:
            status, _, _ = http_req(s.port, "HEAD", f"/v2/{repo}/blobs/{image['layer_digests'][0]}", s.auth())
        except OSError as e:
            self.error(f"{s.label}: blob HEAD failed: {e}")
            return
        if status != 404:
            self.note(f"{s.label} answers {status} to a blob HEAD in the fresh repo {repo}: skopeo will "
                      f"skip that upload, so its push figure is not an upload")

    def check_pushed(self, s: Server, repo: str, image: dict) -> None:
        try:
            status, hdrs, _ = http_req(s.port, "HEAD", f"/v2/{repo}/manifests/{TAG}", s.auth({"Accept": ACCEPT_ALL}))
        except OSError as e:
            self.error(f"{s.label}: manifest HEAD after push failed: {e}")
            return
        if status != 200:
            self.error(f"{s.label}: manifest HEAD after push answered {status}")
        elif hdrs.get("docker-content-digest") not in (None, image["manifest_digest"]):
            self.note(f"{s.label}: pushed manifest digest {hdrs.get('docker-content-digest')} differs from the "
                      f"layout's {image['manifest_digest']} (skopeo rewrote the manifest?)")

    # 3 + 4 -------------------------------------------------------------------
    def manifest_media_type(self, servers, repos: dict, image: dict) -> str:
        mt = image["manifest_media_type"]
        for s in servers:
            if s.label not in repos:
                continue
            try:
                status, hdrs, body = http_req(s.port, "GET", f"/v2/{repos[s.label]}/manifests/{TAG}",
                                              s.auth({"Accept": ACCEPT_ALL}))
            except OSError as e:
                self.error(f"{s.label}: manifest GET failed: {e}")
                continue
            got = hdrs.get("content-type", "").split(";")[0].strip()
            if status != 200:
                self.error(f"{s.label}: manifest GET answered {status}")
            elif got != mt:
                self.note(f"{s.label}: manifest Content-Type is {got!r}, expected {mt!r}")
            elif "sha256:" + hashlib.sha256(body).hexdigest() != image["manifest_digest"]:
                self.note(f"{s.label}: the manifest GET body does not hash to {image['manifest_digest']}")
        return mt

    def oha(self, servers, repos: dict, method: str, accept: str | None) -> None:
        measure = f"manifest {method}"
        order = servers if method == "HEAD" else list(reversed(servers))
        for s in order:
            if s.label not in repos:
                continue
            url = f"http://127.0.0.1:{s.port}/v2/{repos[s.label]}/manifests/{TAG}"
            # -w: let requests in flight at the deadline finish instead of counting them as errors.
            cmd = ["oha", "-z", self.a.duration, "-w", "-c", str(self.a.connections), "-m", method,
                   "--no-tui", self.a.oha_json_flag]
            if accept:
                cmd += ["-H", f"Accept: {accept}"]
            try:
                token = s.pull_token(repos[s.label])
            except (BenchError, OSError) as e:
                self.error(f"{measure} on {s.label}: {e}")
                continue
            if token:
                cmd += ["-H", f"Authorization: Bearer {token}"]
            cmd.append(url)
            limit = parse_duration(self.a.duration) + 120
            cpu0 = s.cpu_seconds()
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit)
            except subprocess.TimeoutExpired:
                self.error(f"{measure} on {s.label}: oha did not finish within {limit}s")
                continue
            cpu = s.cpu_seconds() - cpu0
            if r.returncode != 0:
                self.error(f"{measure} on {s.label}: oha failed ({r.returncode}): {r.stderr.strip()[-500:]}")
                continue
            try:
                out = json.loads(r.stdout)
                rps = float(out["summary"]["requestsPerSec"])
                p99_ms = float(out["latencyPercentiles"]["p99"]) * 1000
                codes = {str(k): v for k, v in (out.get("statusCodeDistribution") or {}).items()}
                errs = out.get("errorDistribution") or {}
            except (ValueError, KeyError, TypeError) as e:
                self.error(f"{measure} on {s.label}: cannot read oha output ({e}): {r.stdout[:300]}")
                continue
            bad = {k: v for k, v in codes.items() if k != "200"}
            if bad or errs:
                self.error(f"{measure} on {s.label}: non-200 answers {bad} errors {errs}")
            self.record(f"{measure} req/s", s.label, round(rps, 1))
            self.record(f"{measure} p99 ms", s.label, round(p99_ms, 2))
            total = sum(int(v) for v in codes.values())
            if total:
                self.record(f"{measure}: server CPU us per request", s.label, round(cpu / total * 1e6, 1))
            log(f"{measure} {s.label}: {rps:,.0f} req/s, p99 {p99_ms:.2f} ms, codes {codes}")

    # 5 -----------------------------------------------------------------------
    def rss(self, makers, image: dict) -> None:
        for s in makers:
            s.start(f"rss-{s.kind}-{s.label.split()[0].lower()}")
            try:
                base = s.status_kib("VmHWM")
                peak_rss = [0]
                stop = threading.Event()

                def sample():
                    while not stop.is_set() and s.alive():
                        try:
                            peak_rss[0] = max(peak_rss[0], s.status_kib("VmRSS"))
                        except (OSError, BenchError):
                            return
                        stop.wait(0.05)

                t = threading.Thread(target=sample, daemon=True)
                t.start()
                repo = "bench/rss"
                self.check_fresh_repo(s, repo, image)
                try:
                    secs, _ = skopeo_copy(f"oci:{image['path']}:{TAG}", f"docker://127.0.0.1:{s.port}/{repo}:{TAG}",
                                          f"{fmt_size(image['layer_mib'])} push to {s.label}", s.skopeo_creds("dest"))
                finally:
                    stop.set()
                    t.join(timeout=5)
                hwm = s.status_kib("VmHWM")
                self.record(f"server CPU s, start + {fmt_size(image['layer_mib'])} push", s.label,
                            round(s.cpu_seconds(), 2))
                self.check_pushed(s, repo, image)
                self.record("peak RSS MiB", s.label, round(hwm / 1024, 1))
                self.record("RSS at start MiB", s.label, round(base / 1024, 1))
                self.record("max sampled VmRSS MiB", s.label, round(peak_rss[0] / 1024, 1))
                self.record(f"{fmt_size(image['layer_mib'])} push MB/s", s.label,
                            round(image["blob_bytes"] / 1e6 / secs, 1))
                log(f"{s.label}: VmHWM {hwm / 1024:.1f} MiB after a {image['layer_mib']} MiB layer push "
                    f"(start {base / 1024:.1f} MiB, sampled max VmRSS {peak_rss[0] / 1024:.1f} MiB)")
            except BenchError as e:
                self.error(str(e))
            finally:
                s.stop()
                shutil.rmtree(s.dir, ignore_errors=True)

    # ------------------------------------------------------------------------
    def run(self) -> int:
        a = self.a
        berth_kind = "distribution" if a.berth_is_distribution else "berth"
        labels = ("Berth", "distribution")

        def pair():
            return [Server(berth_kind, labels[0], self.work, a.berth_bin),
                    Server("distribution", labels[1], self.work, None)]

        self.load_start = loadavg()
        t0 = time.monotonic()
        log(f"generating images ({a.layers} x {a.layer_mib} MiB and 1 x {a.rss_layer_mib} MiB, random)")
        image = make_image(self.work / "img", a.layers, a.layer_mib)
        big = make_image(self.work / "img-big", 1, a.rss_layer_mib)
        log(f"images ready in {time.monotonic() - t0:.1f} s")

        servers = pair()
        try:
            for s in servers:
                s.start(f"main-{s.label.lower()}")
            repos = self.push_pull(servers, image)
            mt = self.manifest_media_type(servers, repos, image)
            # HEAD carries the Accept header too, as docker and containerd send it:
            # without it distribution 2.8 answers 404 for an OCI manifest.
            self.oha(servers, repos, "HEAD", mt)
            self.oha(servers, repos, "GET", mt)
        except BenchError as e:
            self.error(str(e))
        finally:
            for s in servers:
                s.stop()
            for s in servers:
                if s.dir:
                    shutil.rmtree(s.dir, ignore_errors=True)
        try:
            self.rss(pair(), big)
        except BenchError as e:
            self.error(str(e))
        self.elapsed = time.monotonic() - t0
        self.load_end = loadavg()
        return self.report(image, big)

    # ------------------------------------------------------------------------
    def report(self, image: dict, big: dict) -> int:
        a = self.a
        B, D = "Berth", "distribution"
        rows = [
            ("push", f"skopeo push, {a.layers} x {a.layer_mib} MiB (MB/s, median of {a.runs})", 1, "higher"),
            ("pull", f"skopeo pull to `oci:` dir, same image (MB/s, median of {a.runs})", 1, "higher"),
            ("manifest HEAD req/s", f"manifest HEAD by tag, {a.connections} conns, {a.duration} (req/s)", 0, "higher"),
            ("manifest HEAD p99 ms", "manifest HEAD p99 (ms)", 2, "lower"),
            ("manifest GET req/s", f"manifest GET by tag, {a.connections} conns, {a.duration} (req/s)", 0, "higher"),
            ("manifest GET p99 ms", "manifest GET p99 (ms)", 2, "lower"),
            ("peak RSS MiB", f"peak RSS (VmHWM) during a {fmt_size(a.rss_layer_mib)} layer push (MiB)", 1, "lower"),
        ]

        def fmt(v, nd):
            return "error" if v is None else f"{v:,.{nd}f}"

        def ratio(m):
            b, d = self.value(m, B), self.value(m, D)
            return None if b is None or not d else b / d

        berth_head = "Berth (= distribution, dev aid)" if a.berth_is_distribution else "Berth"
        out = []
        out.append("# Berth vs CNCF distribution")
        out.append("")
        if a.berth_is_distribution:
            out.append("> **Dev-aid run** (`BENCH_BERTH_IS_DISTRIBUTION=1`): the \"Berth\" column is a second "
                       "distribution instance. These are not Berth figures.")
            out.append("")
        out.append(f"| measure | {berth_head} | distribution | Berth/distribution |")
        out.append("| --- | ---: | ---: | ---: |")
        for m, title, nd, _ in rows:
            r = ratio(m)
            out.append(f"| {title} | {fmt(self.value(m, B), nd)} | {fmt(self.value(m, D), nd)} | "
                       f"{'error' if r is None else f'{r:.2f}x'} |")
        out.append("")
        out.append("Targets:")
        out.append("")
        targets = [
            ("manifest HEAD req/s >= 3x distribution", ratio("manifest HEAD req/s"), lambda r: r >= 3.0, "x"),
            ("manifest GET req/s >= 3x distribution", ratio("manifest GET req/s"), lambda r: r >= 3.0, "x"),
            ("skopeo push MB/s >= 1.3x distribution", ratio("push"), lambda r: r >= 1.3, "x"),
            ("skopeo pull MB/s >= 1.2x distribution", ratio("pull"), lambda r: r >= 1.2, "x"),
            (f"Berth peak RSS during a {fmt_size(a.rss_layer_mib)} push <= 64 MiB", self.value("peak RSS MiB", B),
             lambda v: v <= 64.0, " MiB"),
        ]
        for text, v, ok, unit in targets:
            if v is None:
                out.append(f"- {text}: no figure (error) — **MISS**")
            else:
                shown = f"{v:.2f}x" if unit == "x" else f"{v:.1f} MiB"
                out.append(f"- {text}: {shown} — **{'PASS' if ok(v) else 'MISS'}**")
        out.append("")
        out.append("Setup: " + self.setup_line(image, big))
        out.append("")
        out.append("MB = 10^6 bytes of blob data (layers + config) per copy; the clock covers the whole "
                   "`skopeo copy` (start-up, blob HEADs, uploads or downloads, manifest). Ratios are Berth / "
                   "distribution: higher is better for MB/s and req/s, lower for p99 and RSS. Client and "
                   "servers share the same cores, so figures are noisy: compare the two columns of one "
                   "run, not runs on different machines or days.")
        out.append("")
        out.append("<details><summary>Raw samples</summary>")
        out.append("")
        out.append("Per-run figures in run order. \"server CPU\" is the server process's user + system time "
                   "(from `/proc/PID/stat`) spent on that operation, \"skopeo CPU\" the client's: they shift less "
                   "with background load than wall-clock figures do, and show which side bounds a copy.")
        out.append("")
        out.append("| sample | Berth | distribution |")
        out.append("| --- | --- | --- |")
        for m, per in self.raw.items():
            out.append(f"| {m} | {', '.join(map(str, per.get(B, [])))} | {', '.join(map(str, per.get(D, [])))} |")
        out.append("")
        out.append("</details>")
        return self.save(out, a.out, self.elapsed)

    def setup_line(self, image: dict, big: dict) -> str:
        return (f"{machine_line(self.load_start, self.load_end)}; "
                f"Berth {self.a.berth_version}; distribution {self.a.distribution_version}; "
                f"{self.a.skopeo_version}; {self.a.oha_version}; "
                f"git {self.a.git_rev}; {self.a.runs} runs, oha {self.a.duration} x "
                f"{self.a.connections} connections; layers are random bytes in a tar, gzip level 0 "
                f"(`{OCI_LAYER_GZIP}`), OCI manifest. Berth and distribution alternate within each "
                f"repetition (order flipped every other one); the RSS figure comes from a fresh server "
                f"process per side.")


def machine_line(load_start: str, load_end: str) -> str:
    """Date, CPUs, kernel and load average, for a table's Setup line."""
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
            f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, load average "
            f"{load_start} at start and {load_end} at end (1/5/15 min)")


def run_until_signal(run) -> int:
    """Runs run() with SIGTERM/SIGHUP turned into KeyboardInterrupt, so servers are stopped
    in finally blocks; 130 and no table when interrupted."""

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return run()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}): servers stopped, no table written")
        return 130


def write_table(lines: list[str], out: str | None) -> int:
    """Prints a benchmark's Markdown table and saves it to `out` when given; 0 for main()."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
    return 0


def release_bench_main(doc: str, run, add_arguments, binaries=()) -> int:
    """main() of a benchmark of the release `berth` binary: --berth-bin, the benchmark's own
    arguments (`add_arguments(parser)`), --work and --out; each of `binaries` is
    (argument name, how to build it) and must exist, like the berth binary."""
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--berth-bin", default=os.environ.get("BERTH_BIN") or os.path.join(repo_root, "target/release/berth"))
    add_arguments(p, repo_root)
    p.add_argument("--work", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    for name, build in (*binaries, ("berth_bin", "cargo build --release -p berth --bin berth, or set BERTH_BIN")):
        path = getattr(a, name)
        if not os.path.exists(path):
            p.error(f"no binary at {path} ({build})")
    return run_until_signal(lambda: run(a))


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def fmt_size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def parse_duration(s: str) -> int:
    s = s.strip()
    mult = {"s": 1, "m": 60, "h": 3600}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(float(s))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (owned and removed by the caller)")
    p.add_argument("--out", required=True, help="Markdown file to write the table to")
    p.add_argument("--berth-bin")
    p.add_argument("--berth-is-distribution", action="store_true")
    p.add_argument("--duration", default="20s")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--layer-mib", type=int, default=64)
    p.add_argument("--rss-layer-mib", type=int, default=1024)
    p.add_argument("--oha-json-flag", default="--output-format=json")
    p.add_argument("--berth-version", default="?")
    p.add_argument("--distribution-version", default="?")
    p.add_argument("--skopeo-version", default="?")
    p.add_argument("--oha-version", default="?")
    p.add_argument("--git-rev", default="?")
    a = p.parse_args()
    if a.runs < 1:
        p.error("--runs must be >= 1")
    parse_duration(a.duration)
    if not a.berth_is_distribution and not a.berth_bin:
        p.error("--berth-bin is required unless --berth-is-distribution")

    return run_until_signal(Bench(a).run)


if __name__ == "__main__":
    sys.exit(main())
