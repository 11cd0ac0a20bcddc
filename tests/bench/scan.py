#!/usr/bin/env python3
"""Vulnerability-scanning benchmark for Berth (issue 16).

    cargo build --release -p berth --bin berth --example trivy_fixture
    .venv/bin/python tests/bench/scan.py                       # print the table
    .venv/bin/python tests/bench/scan.py --out tests/bench/results/scan.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/scan.py --image-mib 64 --gets 300   # quick; debug figures!

One `berth serve` on embedded storage (a fresh data dir under --work) and, for the manifest GET
reference, the CNCF distribution registry (`docker-registry`, no auth), both on loopback.

A. Scan time and the server's peak RSS for a --image-mib image (default 500 MiB): a Debian-shaped
   base layer (`os-release` and a dpkg `status` of 400 packages) and layers of one incompressible
   file each (what a real image's bulk is: the scanner must inflate and walk it all). The
   vulnerability data is 5,000 OSV records pushed to `security/vulndb:latest`. Figures: the first
   scan (every layer read), and the rescan after new vulnerability data is pushed (no layer read:
   the stored layer facts are re-matched, by itself: timed from the push). Peak RSS is sampled every 20 ms from /proc during each
   scan; the server's RSS before it is given beside it.
C. Trivy's database: a fixture written by `shared/examples/trivy_fixture.rs` (Go-format BoltDB,
   --trivy-advisories per release across 9 releases, one of them Red Hat's, which Berth skips) is
   pushed as the data; timed from the push until the image's stored scan was re-matched against
   it (the import into Berth's snapshot included), with the server's peak RSS; then a scan asked
   for with the shard loaded.
B. Manifest GET requests/second of one image by digest, 4 client threads on keep-alive sessions,
   with the pull gate off (no scan settings) and on (prevent pull at Critical; the image's scan
   found nothing that high, so every GET passes the gate and pays its reads), in alternating
   rounds; distribution's GET of the same manifest is the reference. Target: gate on within 5%
   of gate off.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, BenchError, Server, loadavg, log, machine_line, release_bench_main,
    write_table,
)

AUTH = (BENCH_ACCESS_KEY, BENCH_SECRET_KEY)
OSV_LAYER = "application/vnd.berth.vulndb.osv.v1+json"
TRIVY_LAYER = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes], level: int = 1) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=level, mtime=0)


def dpkg_status(n: int) -> bytes:
    stanzas = [f"Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\nSource: src{i % 200}\n"
               for i in range(n)]
    return "\n".join(stanzas).encode()


def osv_records(n: int, salt: str) -> list[dict]:
    sev = ["LOW", "MEDIUM", "HIGH"]
    return [{"id": f"CVE-2030-{i:05d}", "summary": f"synthetic {salt} {i}",
             "database_specific": {"severity": sev[i % 3]},
             "affected": [{"package": {"ecosystem": "Debian:12", "name": f"src{i % 400}"},
                           "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"1.{i}-2"}]}]}]}
            for i in range(n)]


class Client:
    def __init__(self, port: int, auth=AUTH):
        self.base = f"http://127.0.0.1:{port}"
        self.s = requests.Session()
        self.s.auth = auth

    def blob(self, repo: str, data: bytes) -> dict:
        d = sha(data)
        r = self.s.post(f"{self.base}/v2/{repo}/blobs/uploads/?digest={d}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, timeout=600)
        if r.status_code == 202:  # distribution opens a session instead: finish it with a PUT
            location = r.headers["Location"]
            location = location if location.startswith("http") else self.base + location
            sep = "&" if "?" in location else "?"
            r = self.s.put(f"{location}{sep}digest={d}", data=data,
                           headers={"Content-Type": "application/octet-stream"}, timeout=600)
        if r.status_code != 201:
            raise BenchError(f"blob upload: {r.status_code} {r.text[:200]}")
        return {"digest": d, "size": len(data)}

    def manifest(self, repo: str, ref: str, config: dict, layers: list[tuple[str, dict]],
                 annotations: dict | None = None) -> str:
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": mt, **d} for mt, d in layers]}
        if annotations:
            manifest["annotations"] = annotations
        body = json.dumps(manifest).encode()
        r = self.s.put(f"{self.base}/v2/{repo}/manifests/{ref}", data=body,
                       headers={"Content-Type": OCI_MANIFEST}, timeout=60)
        if r.status_code != 201:
            raise BenchError(f"manifest put: {r.status_code} {r.text[:200]}")
        return sha(body)


def push_db(c: Client, records: list[dict]) -> str:
    data = json.dumps(records).encode()
    config = c.blob("security/vulndb", b"{}")
    return c.manifest("security/vulndb", "latest", config, [(OSV_LAYER, c.blob("security/vulndb", data))])


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Samples a process's RSS every 20 ms while in the `with` block."""

    def __init__(self, pid: int):
        self.pid, self.before, self.peak = pid, rss_kib(pid), 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self.before
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def scan_view(c: Client, repo: str, d: str) -> dict:
    return c.s.get(f"{c.base}/api/v1/images/{repo}/artifacts/{d}/scan", timeout=60).json()


def outcome(view: dict, secs: float, rss: PeakRss) -> dict:
    if view["status"] != "succeeded":
        raise BenchError(f"scan ended {view['status']}: {view.get('error')}")
    return {"secs": secs, "rss_before": rss.before, "rss_peak": rss.peak, "read": view["layers_read"],
            "total": view["layers_total"], "findings": view["total"], "by": view["requested_by"]}


def timed_scan(c: Client, server: Server, repo: str, d: str) -> dict:
    """A scan asked for and waited for."""
    with PeakRss(server.proc.pid) as rss:
        t0 = time.monotonic()
        r = c.s.post(f"{c.base}/api/v1/images/{repo}/artifacts/{d}/scan", timeout=60)
        if r.status_code != 202:
            raise BenchError(f"scan: {r.status_code} {r.text[:200]}")
        while (view := scan_view(c, repo, d))["status"] == "scanning":
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
    return outcome(view, elapsed, rss)


def timed_data_update(c: Client, server: Server, repo: str, d: str, push) -> dict:
    """New vulnerability data pushed (`push()` returns its digest) and waited for until the
    image's stored scan was re-matched against it by itself (import included)."""
    with PeakRss(server.proc.pid) as rss:
        t0 = time.monotonic()
        data = push()
        while (view := scan_view(c, repo, d)).get("vulndb") != data or view["status"] == "scanning":
            if time.monotonic() - t0 > 1800:
                raise BenchError(f"no re-match after 30 min: {view}")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
    result = outcome(view, elapsed, rss)
    result["data"] = data
    return result


def get_rate(base: str, path: str, auth, n: int, threads: int = 4, headers: dict | None = None) -> float:
    """GET requests/second of `path`, `threads` keep-alive sessions sharing `n` GETs, each checked 200."""
    sessions = [requests.Session() for _ in range(threads)]
    for s in sessions:
        s.auth = auth
        s.headers.update({"Accept": OCI_MANIFEST, **(headers or {})})
    per = n // threads

    def worker(s):
        for _ in range(per):
            r = s.get(base + path, timeout=30)
            if r.status_code != 200:
                raise BenchError(f"GET {path}: {r.status_code} {r.text[:200]}")

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, sessions))
    return per * threads / (time.monotonic() - t0)


def run(a) -> int:
    load_start = loadavg()
    work = Path(a.work or tempfile.mkdtemp(prefix="berth-scan-bench-"))
    berth = Server("berth", "berth", work, a.berth_bin).start("berth")
    peer = Server("distribution", "distribution", work, None).start("distribution")
    try:
        c = Client(berth.port)
        for name in ("security",):
            c.s.post(f"{c.base}/api/v1/registries", json={"name": name}, timeout=30)
        log("pushing vulnerability data and the image")
        push_db(c, osv_records(a.records, "a"))
        layers = [(LAYER, c.blob("bench/scan", tar_gz({"etc/os-release": b"ID=debian\nVERSION_ID=12\n",
                                                        "var/lib/dpkg/status": dpkg_status(400)})))]
        per_layer = 100 if a.image_mib >= 100 else a.image_mib
        remaining = a.image_mib
        i = 0
        while remaining > 0:
            mib = min(per_layer, remaining)
            layers.append((LAYER, c.blob("bench/scan", tar_gz({f"opt/blob{i}": os.urandom(mib << 20)}, level=1))))
            remaining -= mib
            i += 1
        config = c.blob("bench/scan", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        d = c.manifest("bench/scan", "v1", config, layers)
        image_bytes = sum(ly[1]["size"] for ly in layers)

        log("first scan")
        first = timed_scan(c, berth, "bench/scan", d)
        log("new vulnerability data: the stored scan is re-matched by itself")
        rescan = timed_data_update(c, berth, "bench/scan", d, lambda: push_db(c, osv_records(a.records, "b")))

        # C. Trivy's database: generated, pushed, imported into the snapshot, re-matched
        log(f"Trivy database: {a.trivy_advisories} advisories per release")
        fixture = work / "trivy-db.tar.gz"
        subprocess.run([a.trivy_fixture_bin, str(fixture), str(a.trivy_advisories)], check=True)
        trivy_gz = fixture.read_bytes()
        with tarfile.open(fixture) as t:
            trivy_db_bytes = t.getmember("trivy.db").size

        def push_trivy() -> str:
            config = c.blob("security/vulndb", b"{}")
            return c.manifest("security/vulndb", "latest", config, [(TRIVY_LAYER, c.blob("security/vulndb", trivy_gz))])

        trivy = timed_data_update(c, berth, "bench/scan", d, push_trivy)
        refs = c.s.get(f"{c.base}/v2/security/vulndb/referrers/{trivy['data']}", timeout=60).json()["manifests"]
        snap = next(m for m in refs if m.get("artifactType") == "application/vnd.berth.vulndb.snapshot.v1")
        snap_manifest = c.s.get(f"{c.base}/v2/security/vulndb/manifests/{snap['digest']}",
                                headers={"Accept": OCI_MANIFEST}, timeout=60).json()
        shards = snap_manifest["layers"]
        log("a scan with the Trivy data loaded")
        trivy_scan = timed_scan(c, berth, "bench/scan", d)

        # B. manifest GETs, gate off / on, alternating rounds; distribution as the reference
        Client(peer.port, auth=None).manifest("bench/scan", "v1", Client(peer.port, None).blob("bench/scan", b"{}"),
                                              [(LAYER, Client(peer.port, None).blob("bench/scan", b"x"))])
        peer_digest = sha(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                 "digest": sha(b"{}"), "size": 2},
                                      "layers": [{"mediaType": LAYER, "digest": sha(b"x"), "size": 1}]}).encode())
        path = f"/v2/bench/scan/manifests/{d}"
        off, on, ref = [], [], []
        for rnd in range(a.rounds):
            for side in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
                body = {"prevent_pull": "Critical"} if side == "on" else {}
                r = c.s.put(f"{c.base}/api/v1/registries/bench/scan-settings", json=body, timeout=30)
                if r.status_code != 200:
                    raise BenchError(f"scan settings: {r.status_code} {r.text[:200]}")
                rate = get_rate(c.base, path, AUTH, a.gets)
                (on if side == "on" else off).append(rate)
            ref.append(get_rate(f"http://127.0.0.1:{peer.port}", f"/v2/bench/scan/manifests/{peer_digest}", None, a.gets))
        load_end = loadavg()
    finally:
        berth.stop()
        peer.stop()

    mib = 1 << 20
    lines = [
        f"Scan benchmark ({machine_line(load_start, load_end)}); berth `{a.berth_bin}`",
        "",
        f"A. {image_bytes / mib:.0f} MiB image ({len(layers)} layers), {a.records} OSV records",
        "",
        "| scan | time (s) | layers read | findings | server RSS before → peak (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| first scan | {first['secs']:.2f} | {first['read']} of {first['total']} | {first['findings']} | "
        f"{first['rss_before'] / 1024:.1f} → {first['rss_peak'] / 1024:.1f} |",
        f"| new data pushed → stored scan re-matched by itself (import included) | {rescan['secs']:.2f} | "
        f"{rescan['read']} of {rescan['total']} | {rescan['findings']} | "
        f"{rescan['rss_before'] / 1024:.1f} → {rescan['rss_peak'] / 1024:.1f} |",
        "",
        f"C. Trivy's database (schema 2, BoltDB written by bbolt-rs `compat`): {a.trivy_advisories} advisories "
        f"× 9 releases ({len(shards)} imported), trivy.db {trivy_db_bytes / mib:.0f} MiB, db.tar.gz {len(trivy_gz) / mib:.1f} MiB",
        "",
        "| step | time (s) | layers read | findings | server RSS before → peak (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| pushed → imported ({len(shards)} shards, {sum(x['size'] for x in shards) / mib:.1f} MiB) → "
        f"stored scan re-matched | {trivy['secs']:.2f} | {trivy['read']} of {trivy['total']} | {trivy['findings']} | "
        f"{trivy['rss_before'] / 1024:.1f} → {trivy['rss_peak'] / 1024:.1f} |",
        f"| a scan asked for afterwards (shard cached) | {trivy_scan['secs']:.2f} | {trivy_scan['read']} of "
        f"{trivy_scan['total']} | {trivy_scan['findings']} | {trivy_scan['rss_before'] / 1024:.1f} → "
        f"{trivy_scan['rss_peak'] / 1024:.1f} |",
        "",
        f"B. manifest GET by digest, 4 threads, {a.gets} GETs per round, {a.rounds} rounds (median req/s)",
        "",
        "| | gate off | gate on (prevent pull at Critical) | on ÷ off | distribution (reference) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| req/s | {statistics.median(off):.0f} | {statistics.median(on):.0f} | "
        f"{statistics.median(on) / statistics.median(off):.3f} | {statistics.median(ref):.0f} |",
    ]
    return write_table(lines, a.out)


def add_arguments(p, repo_root: str) -> None:
    p.add_argument("--image-mib", type=int, default=500)
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--gets", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--trivy-advisories", type=int, default=60000, help="per release (9 releases)")
    p.add_argument("--trivy-fixture-bin", default=os.path.join(repo_root, "target/release/examples/trivy_fixture"))


if __name__ == "__main__":
    sys.exit(release_bench_main(__doc__, run, add_arguments, (("trivy_fixture_bin", "cargo build --release -p berth --example trivy_fixture"),)))
