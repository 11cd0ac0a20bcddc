#!/usr/bin/env python3
"""Replication benchmark for Berth (issue 14): what copying images to another registry costs,
beside skopeo copying the same bytes between the same kind of registries.

    .venv/bin/python tests/bench/replication.py                 # full run, saves results/replication.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/replication.py --runs 1 --big-mib 16 \\
        --small 10 --out /tmp/replication-smoke.md               # smoke; debug figures!

Servers, all on 127.0.0.1 and started here: one source `berth serve` (embedded storage, fresh data
dir, BERTH_OUTBOUND_ALLOW=127.0.0.0/8) that lives for the whole run, and for every timed copy a
*fresh* destination: a target `berth serve` (embedded storage) or a CNCF distribution registry
(Debian `docker-registry` 2.8, filesystem storage, no auth), each with a new data dir on a new port,
so nothing is skipped or mounted at the destination unless the skip path is what is measured.

Source content, pushed once over the raw OCI API with the admin key (Basic):
- `src/big:v1`: one layer of BIG_MIB random bytes (a real tar in gzip level 0, as bench.py makes
  them, so skopeo copies it as it is instead of compressing it) plus its config; the layer goes up
  as a chunked upload (POST, PATCH of CHUNK_MIB each read from the file, PUT ?digest=).
- `src/small-00` .. `src/small-NN`: SMALL images, each one layer (64 KiB of random bytes in a tar, gzip
  level 0: ~66 KB) and its own config, each pushed whole (`POST ?digest=` with the body).

Measures (RUNS repetitions each, median reported; within a repetition the four sides take turns,
the order rotated per repetition):
- a/b: a manual replication run of `src/big` (policy `name_filter: big`, destination prefix `dr`)
  to a Berth target (kind `berth`, the target's admin key as credentials) and to distribution (kind
  `registry`): time from `POST .../run` to the poll (every POLL_MS) that sees the execution no
  longer "running"; MB/s = 10^6 bytes of layer + config / that time.
- c: the reference, `skopeo copy docker://SRC/src/big:v1 docker://DIST/dr/big:v1` to a fresh
  distribution (skopeo's blob-info cache deleted first): the same bytes, read from the same source
  Berth, by the peer tool. The same skopeo copy to a fresh Berth target is a fourth column, so that
  each replication figure has a skopeo figure to the same kind of destination beside it.
- d: the SMALL images (policy `name_filter: small-*`): Berth → Berth, Berth → distribution, and
  `skopeo sync --src yaml` of the same images to distribution and to Berth; images/s.
- e: the skip path: to one fresh destination per side, a first copy (not timed), then RUNS re-runs
  where everything exists, timed the same way; every task must report "skipped".
- f: the source's peak RSS growth during each 200 MiB copy: its VmHWM is reset (`echo 5 >
  /proc/PID/clear_refs`) and its VmRSS read right before the POST, VmHWM read after the end.

Every timed copy is checked (after the clock stops): the execution succeeded with every task
succeeded (skipped for e) and the bytes it reports; at the destination every manifest GET hashes to
the source's digest (and its Docker-Content-Digest says so), every blob HEAD answers 200 with the
right size, and (not for e) every blob is read back whole and hashed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, DISTRIBUTION_BIN, DISTRIBUTION_CONFIG, MiB, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_MANIFEST,
    SKOPEO_TIMEOUT, BenchError, children_cpu, clear_skopeo_cache, free_port, loadavg, log, machine_line,
    make_image, run_until_signal, stat_cpu, stop_process, wait_ready,
)
from policies import RssWatch, status_kib  # noqa: E402

AUTH = (BENCH_ACCESS_KEY, BENCH_SECRET_KEY)
ACCEPT = ", ".join([
    OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
TAG = "v1"
SOURCE_REGISTRY = "src"
DEST_PREFIX = "dr"
RUN_TIMEOUT = 900  # seconds for one replication execution
SIDES = ("berth", "dist", "skopeo", "skopeo-berth")
SIDE_LABEL = {
    "berth": "Berth replication → Berth",
    "dist": "Berth replication → distribution",
    "skopeo": "skopeo → distribution (reference)",
    "skopeo-berth": "skopeo → Berth",
}
BERTH_DEST = {"berth", "skopeo-berth"}  # sides whose destination is a Berth
SAME_DEST_SKOPEO = {"berth": "skopeo-berth", "dist": "skopeo", "skopeo": "skopeo", "skopeo-berth": "skopeo-berth"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- servers


class Proc:
    """A registry process on 127.0.0.1 with its own data dir."""

    kind = "?"

    def __init__(self, work: Path, name: str):
        self.dir = work / "servers" / name
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def _spawn(self, cmd: list[str], env: dict) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)

        def ready():
            try:
                return self.session.get(f"{self.url}/v2/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_ready(self.proc, self.kind, ready, self.tail, "did not answer GET /v2/ 200")
        except BenchError:
            self.stop()
            raise

    def call(self, method: str, path: str, expect, **kw) -> requests.Response:
        kw.setdefault("timeout", 120)
        url = path if path.startswith("http") else self.url + path
        r = self.session.request(method, url, **kw)
        expect = expect if isinstance(expect, tuple) else (expect,)
        if r.status_code not in expect:
            raise BenchError(f"{self.kind} {method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def cpu(self) -> float:
        return stat_cpu(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)


class Berth(Proc):
    kind = "berth"

    def __init__(self, binary: str, work: Path, name: str, outbound: bool):
        super().__init__(work, name)
        self.binary, self.outbound = binary, outbound
        self.session.auth = AUTH

    def start(self) -> "Berth":
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(RUST_LOG=os.environ.get("BENCH_BERTH_RUST_LOG", "warn"), BERTH_ADMIN_ACCESS_KEY=BENCH_ACCESS_KEY,
                   BERTH_ADMIN_SECRET_KEY=BENCH_SECRET_KEY)
        if self.outbound:
            env["BERTH_OUTBOUND_ALLOW"] = "127.0.0.0/8"
        self._spawn([self.binary, "serve", "--data-dir", str(self.data), "--listen", self.host], env)
        return self

    def create_registry(self, name: str) -> None:
        self.call("POST", "/api/v1/registries", (201, 409), json={"name": name})


class Distribution(Proc):
    kind = "distribution"

    def start(self) -> "Distribution":
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config.yml"
        cfg.write_text(DISTRIBUTION_CONFIG.format(root=self.data, port=self.port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._spawn([DISTRIBUTION_BIN, "serve", str(cfg)], env)
        return self


# --------------------------------------------------------------------------- source content


def upload_file(reg: Proc, repo: str, path: Path, digest: str, chunk: int) -> None:
    """Chunked upload of a blob from a file: POST, PATCH `chunk` bytes at a time, PUT ?digest=."""
    r = reg.call("POST", f"/v2/{repo}/blobs/uploads/", 202)
    loc = urljoin(reg.url + "/", r.headers["Location"])
    off = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                break
            r = reg.call("PATCH", loc, 202, data=buf, headers={
                "Content-Type": "application/octet-stream", "Content-Range": f"{off}-{off + len(buf) - 1}"})
            loc = urljoin(reg.url + "/", r.headers["Location"])
            off += len(buf)
    reg.call("PUT", loc + ("&" if "?" in loc else "?") + f"digest={digest}", 201)


def upload_bytes(reg: Proc, repo: str, data: bytes) -> None:
    """Monolithic upload in the POST (Berth takes the body with ?digest=)."""
    reg.call("POST", f"/v2/{repo}/blobs/uploads/", 201, params={"digest": sha(data)}, data=data,
             headers={"Content-Type": "application/octet-stream"})


class Image:
    """An image at the source: repository (without the registry), manifest digest and bytes, blobs."""

    def __init__(self, name: str, manifest: bytes, blobs: list[tuple[str, int]]):
        self.name, self.manifest, self.blobs = name, manifest, blobs
        self.digest = sha(manifest)

    @property
    def blob_bytes(self) -> int:
        return sum(size for _, size in self.blobs)


def push_big(src: Berth, work: Path, mib: int, chunk: int) -> Image:
    layout = work / "big-layout"
    log(f"writing a {mib} MiB layer (random bytes in a tar, gzip level 0)")
    make_image(layout, 1, mib)
    blobs_dir = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    manifest = (blobs_dir / mdigest.split(":", 1)[1]).read_bytes()
    m = json.loads(manifest)
    blobs = [(d["digest"], d["size"]) for d in [*m["layers"], m["config"]]]
    repo = f"{SOURCE_REGISTRY}/big"
    t0 = time.monotonic()
    for d, _size in blobs:
        upload_file(src, repo, blobs_dir / d.split(":", 1)[1], d, chunk)
    src.call("PUT", f"/v2/{repo}/manifests/{TAG}", 201, data=manifest, headers={"Content-Type": OCI_MANIFEST})
    took = time.monotonic() - t0
    img = Image("big", manifest, blobs)
    log(f"pushed {repo}:{TAG} ({img.blob_bytes / 1e6:.1f} MB of blobs, {chunk // MiB} MiB PATCHes) in {took:.1f} s")
    shutil.rmtree(layout, ignore_errors=True)
    return img


def small_layer(name: str, kib: int) -> tuple[bytes, str]:
    """A tar holding one file of `kib` KiB random bytes, in gzip level 0 like the big layer (skopeo would
    gzip a layer typed as uncompressed, changing the manifest digest); returns (blob, diff_id)."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"bench/{name}.bin")
        info.size, info.mode, info.mtime = kib * 1024, 0o644, 0
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    raw = tar_buf.getvalue()
    return gzip.compress(raw, compresslevel=0, mtime=0), sha(raw)


def push_small(src: Berth, n: int, kib: int) -> list[Image]:
    out = []
    t0 = time.monotonic()
    for i in range(n):
        name = f"small-{i:02d}"
        layer, diff_id = small_layer(name, kib)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": name}},
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha(layer), "size": len(layer)}],
        }).encode()
        repo = f"{SOURCE_REGISTRY}/{name}"
        upload_bytes(src, repo, layer)
        upload_bytes(src, repo, config)
        src.call("PUT", f"/v2/{repo}/manifests/{TAG}", 201, data=manifest, headers={"Content-Type": OCI_MANIFEST})
        out.append(Image(name, manifest, [(sha(layer), len(layer)), (sha(config), len(config))]))
    log(f"pushed {n} images of one {kib} KiB layer (tar, gzip level 0) in {time.monotonic() - t0:.1f} s")
    return out


def verify(dest: Proc, images: list[Image], what: str, deep: bool = True) -> None:
    """Every image at `dest` under DEST_PREFIX: manifest bytes hash to the source digest, and the
    registry says the same; every blob answers HEAD 200 with its size and (deep) reads back whole
    with its digest."""
    for img in images:
        repo = f"{DEST_PREFIX}/{img.name}"
        r = dest.call("GET", f"/v2/{repo}/manifests/{TAG}", (200, 404), headers={"Accept": ACCEPT})
        if r.status_code == 404:
            raise BenchError(f"{what}: {repo}:{TAG} is missing at the destination")
        got = sha(r.content)
        header = r.headers.get("Docker-Content-Digest")
        if got != img.digest or header != img.digest:
            raise BenchError(f"{what}: {repo}:{TAG} is {got} (header {header}) at the destination, "
                             f"{img.digest} at the source")
        for d, size in img.blobs:
            r = dest.call("HEAD", f"/v2/{repo}/blobs/{d}", (200, 404))
            if r.status_code != 200 or int(r.headers.get("Content-Length", -1)) != size:
                raise BenchError(f"{what}: blob {d} of {repo}: HEAD {r.status_code}, "
                                 f"Content-Length {r.headers.get('Content-Length')} (want {size})")
            if not deep:
                continue
            h, n = hashlib.sha256(), 0
            with dest.session.get(f"{dest.url}/v2/{repo}/blobs/{d}", stream=True, timeout=300) as r:
                if r.status_code != 200:
                    raise BenchError(f"{what}: GET blob {d} of {repo}: {r.status_code}")
                for part in r.iter_content(MiB):
                    h.update(part)
                    n += len(part)
            if "sha256:" + h.hexdigest() != d or n != size:
                raise BenchError(f"{what}: blob {d} of {repo} reads back as sha256:{h.hexdigest()}, {n} bytes")


# --------------------------------------------------------------------------- the bench


class ReplicationBench:
    def __init__(self, a):
        self.a = a
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.extra: dict[tuple[str, str], list] = {}
        self.raw: list[str] = []
        self.notes: list[str] = []
        self.errors: list[str] = []
        self.n = 0
        self.src: Berth | None = None
        self.live: list[Proc] = []

    def record(self, measure: str, side: str, value: float) -> None:
        self.samples.setdefault((measure, side), []).append(value)

    def median(self, measure: str, side: str) -> float | None:
        v = self.samples.get((measure, side))
        return statistics.median(v) if v else None

    def fresh_name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:02d}"

    # ---------------------------------------------------------------- destinations
    def start_dest(self, side: str) -> Proc:
        work = self.work
        if side in BERTH_DEST:
            d = Berth(self.a.berth_bin, work, self.fresh_name("target"), outbound=False).start()
            d.create_registry(DEST_PREFIX)
        else:
            d = Distribution(work, self.fresh_name("distribution")).start()
        self.live.append(d)
        return d

    def stop_dest(self, d: Proc) -> None:
        if not d.alive():
            self.errors.append(f"the {d.kind} destination on {d.url} exited during the run:\n{d.tail()}")
        d.stop()
        if d in self.live:
            self.live.remove(d)
        if not self.a.keep:
            shutil.rmtree(d.dir, ignore_errors=True)

    def setup_policy(self, side: str, dest: Proc, name_filter: str) -> tuple[str, str]:
        """A target (fresh per destination) and a manual policy; returns (target id, policy id)."""
        src = self.src
        body = {"name": self.fresh_name("t"), "url": dest.url, "chunk_bytes": self.a.chunk_mib * MiB}
        if dest.kind == "berth":
            body.update(kind="berth", username=BENCH_ACCESS_KEY, password=BENCH_SECRET_KEY)
        else:
            body.update(kind="registry")
        tid = src.call("POST", f"/api/v1/registries/{SOURCE_REGISTRY}/replication-targets", 201, json=body).json()["id"]
        pol = src.call("POST", f"/api/v1/registries/{SOURCE_REGISTRY}/replications", 201, json={
            "name": self.fresh_name("p"), "target": tid, "destination": DEST_PREFIX, "name_filter": name_filter,
            "trigger": {"type": "manual"}}).json()
        return tid, pol["id"]

    def teardown_policy(self, tid: str, pid: str) -> None:
        self.src.call("DELETE", f"/api/v1/registries/{SOURCE_REGISTRY}/replications/{pid}", 204)
        self.src.call("DELETE", f"/api/v1/registries/{SOURCE_REGISTRY}/replication-targets/{tid}", 204)

    # ---------------------------------------------------------------- one timed copy
    def run_policy(self, pid: str, images: list[Image], expect: str, what: str) -> tuple[float, dict, list[dict]]:
        """POST run → poll until not running; checks the execution and its tasks."""
        src = self.src
        base = f"/api/v1/registries/{SOURCE_REGISTRY}/replications/{pid}"
        poll = self.a.poll_ms / 1000
        polls = 0
        t0 = time.monotonic()
        e = src.call("POST", f"{base}/run", 202).json()
        eid = e["id"]
        deadline = t0 + RUN_TIMEOUT
        while e["status"] == "running":
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: execution {eid} still running after {RUN_TIMEOUT} s: {e}")
            time.sleep(poll)
            e = src.call("GET", f"{base}/executions/{eid}", 200).json()
            polls += 1
        took = time.monotonic() - t0
        tasks, last = [], None
        while True:
            page = src.call("GET", f"{base}/executions/{eid}/tasks", 200,
                            params={"n": 100, **({"last": last} if last else {})}).json()
            tasks += page["items"]
            last = page["next"]
            if not last:
                break
        n = len(images)
        want_bytes = 0 if expect == "skipped" else sum(i.blob_bytes for i in images)
        ok = (e["status"] == "succeeded" and e["total"] == n and len(tasks) == n and e["failed"] == 0
              and e[expect] == n and all(t["status"] == expect for t in tasks) and e["bytes"] == want_bytes)
        if not ok:
            bad = [t for t in tasks if t["status"] != expect][:3]
            raise BenchError(f"{what}: execution {eid} {json.dumps(e)}; want {n} tasks {expect} and "
                             f"{want_bytes} bytes; first other tasks: {json.dumps(bad)[:800]}")
        srcs = {f"{SOURCE_REGISTRY}/{i.name}": i.digest for i in images}
        for t in tasks:
            if srcs.get(t["source"]) != t["digest"] or t["destination"] != f"{DEST_PREFIX}/{t['source'].split('/', 1)[1]}":
                raise BenchError(f"{what}: unexpected task {json.dumps(t)}")
        e["_polls"] = polls
        return took, e, tasks

    @staticmethod
    def dest_creds(dest: Proc) -> list[str]:
        return [f"--dest-creds={BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}"] if dest.kind == "berth" else []

    def skopeo_big(self, dest: Proc, img: Image, what: str) -> tuple[float, float]:
        src = f"docker://{self.src.host}/{SOURCE_REGISTRY}/{img.name}:{TAG}"
        dst = f"docker://{dest.host}/{DEST_PREFIX}/{img.name}:{TAG}"
        return self._skopeo(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                             f"--src-creds={BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}", *self.dest_creds(dest),
                             src, dst], what)

    def skopeo_sync(self, dest: Proc, images: list[Image], what: str) -> tuple[float, float]:
        spec = self.work / "sync.yaml"
        # JSON is YAML: the source registry, its credentials and every image with its one tag
        spec.write_text(json.dumps({self.src.host: {
            "tls-verify": False,
            "credentials": {"username": BENCH_ACCESS_KEY, "password": BENCH_SECRET_KEY},
            "images": {f"{SOURCE_REGISTRY}/{i.name}": [TAG] for i in images},
        }}))
        return self._skopeo(["sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
                             *self.dest_creds(dest), str(spec), f"{dest.host}/{DEST_PREFIX}"], what)

    def _skopeo(self, args: list[str], what: str) -> tuple[float, float]:
        clear_skopeo_cache()
        cpu0 = children_cpu()
        t0 = time.monotonic()
        try:
            r = subprocess.run(["skopeo", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=SKOPEO_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what}: skopeo timed out after {SKOPEO_TIMEOUT} s")
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise BenchError(f"{what}: skopeo failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
        return took, children_cpu() - cpu0

    def copy(self, side: str, workload: str, dest: Proc, images: list[Image], rnd: int,
             policy: tuple[str, str] | None = None, expect: str = "succeeded") -> float:
        """One timed copy of `images` to `dest`, checked; records the samples; returns seconds."""
        what = f"{workload} {expect} #{rnd + 1} {SIDE_LABEL[side]}"
        src = self.src
        c_src, c_dst = src.cpu(), dest.cpu()
        watch = RssWatch(src.pid)
        detail = ""
        with watch:
            if side.startswith("skopeo"):
                if workload.startswith("big"):
                    took, own = self.skopeo_big(dest, images[0], what)
                else:
                    took, own = self.skopeo_sync(dest, images, what)
                detail = f"skopeo CPU {own:.2f} s"
            else:
                took, e, tasks = self.run_policy(policy[1], images, expect, what)
                blobs_sent = sum(t["blobs_sent"] for t in tasks)
                blobs_skipped = sum(t["blobs_skipped"] for t in tasks)
                detail = (f"execution {e['id']}: {e['bytes']:,} B, blobs sent {blobs_sent} / skipped "
                          f"{blobs_skipped}, {e['_polls']} polls, server-side {e['ended_at'] - e['started_at']} s "
                          f"(started_at/ended_at, 1 s resolution)")
        c_src, c_dst = src.cpu() - c_src, dest.cpu() - c_dst
        verify(dest, images, what, deep=expect != "skipped")
        self.record(workload, side, took)
        if workload == "big":
            self.record("cpu_src", side, c_src)
            self.record("cpu_dst", side, c_dst)
            self.record("rss_growth", side, watch.growth_mib + 0.0)
            self.record("rss_peak", side, watch.peak_mib)
            if not watch.reset:
                self.notes.append("VmHWM could not be reset (clear_refs refused): the RSS figures are "
                                  "VmRSS sampled every 50 ms")
        self.raw.append(f"{what}: {took:.3f} s; source CPU {c_src:.2f} s, destination CPU {c_dst:.2f} s; "
                        f"source VmRSS {watch.base / 1024:.1f} MiB before, peak {watch.peak_mib} MiB "
                        f"({watch.growth_mib + 0.0:+.1f} MiB); {detail}")
        log(f"{what}: {took:.2f} s (source RSS {watch.growth_mib + 0.0:+.1f} MiB)")
        return took

    def fresh_round(self, workload: str, images: list[Image], name_filter: str, rnd: int) -> None:
        k = rnd % len(SIDES)
        order = list(SIDES[k:] + SIDES[:k])
        if rnd % 2:
            order.reverse()
        for side in order:
            dest = self.start_dest(side)
            try:
                policy = None if side.startswith("skopeo") else self.setup_policy(side, dest, name_filter)
                self.copy(side, workload, dest, images, rnd, policy)
                if policy:
                    self.teardown_policy(*policy)
            finally:
                self.stop_dest(dest)

    def skip_rounds(self, side: str, big: Image, small: list[Image]) -> None:
        """One fresh destination; a first copy of each workload (untimed), then RUNS re-runs."""
        dest = self.start_dest(side)
        try:
            pols = {}
            for workload, images, flt in (("big", [big], "big"), ("small", small, "small-*")):
                if not side.startswith("skopeo"):
                    pols[workload] = self.setup_policy(side, dest, flt)
                    self.run_policy(pols[workload][1], images, "succeeded", f"{workload} first copy, {side}")
                elif workload == "big":
                    self.skopeo_big(dest, big, "big first copy, skopeo")
                else:
                    self.skopeo_sync(dest, small, "small first copy, skopeo")
                verify(dest, images, f"{workload} first copy, {side}")
            for rnd in range(self.a.runs):
                for workload, images in (("big", [big]), ("small", small)):
                    self.copy(side, f"{workload}-skip", dest, images, rnd, pols.get(workload), expect="skipped")
            for p in pols.values():
                self.teardown_policy(*p)
        finally:
            self.stop_dest(dest)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        a = self.a
        load0 = loadavg()
        t0 = time.monotonic()
        own_work = a.work is None
        self.work = Path(a.work or tempfile.mkdtemp(prefix="berth-bench-replication."))
        self.work.mkdir(parents=True, exist_ok=True)
        version = "?"
        try:
            version = subprocess.run([a.berth_bin, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip() or "?"
            self.src = Berth(a.berth_bin, self.work, "source", outbound=True).start()
            self.live.append(self.src)
            log(f"source Berth pid {self.src.pid} on {self.src.url}")
            self.src.create_registry(SOURCE_REGISTRY)
            big = push_big(self.src, self.work, a.big_mib, a.push_chunk_mib * MiB)
            small = push_small(self.src, a.small, a.small_kib)
            self.big, self.small = big, small
            hwm0 = status_kib(self.src.pid, "VmHWM")
            rss0 = status_kib(self.src.pid, "VmRSS")
            self.raw.append(f"source after seeding: VmRSS {rss0 / 1024:.1f} MiB, VmHWM since start "
                            f"{hwm0 / 1024:.1f} MiB (the {a.big_mib} MiB push included)")
            for rnd in range(a.runs):
                self.fresh_round("big", [big], "big", rnd)
                self.fresh_round("small", small, "small-*", rnd)
            for side in SIDES:
                self.skip_rounds(side, big, small)
            if not self.src.alive():
                raise BenchError(f"the source Berth exited during the run:\n{self.src.tail()}")
            self.raw.append(f"source at the end: VmRSS {status_kib(self.src.pid, 'VmRSS') / 1024:.1f} MiB")
        except BenchError as e:
            log(f"ERROR {e}")
            self.errors.append(str(e))
        finally:
            for p in list(self.live):
                p.stop()
            if own_work and not a.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            elif a.keep:
                log(f"work dir kept: {self.work}")
        return self.report(version, load0, loadavg(), time.monotonic() - t0)

    # ---------------------------------------------------------------- table
    def cell(self, measure: str, side: str, fmt) -> str:
        v = self.samples.get((measure, side))
        if not v:
            return "–"
        return fmt(statistics.median(v), v, side)

    def report(self, version: str, load0: str, load1: str, elapsed: float) -> int:
        a = self.a
        rel = a.berth_bin
        try:
            rel = str(Path(a.berth_bin).resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
        big = getattr(self, "big", None)
        nbytes = big.blob_bytes if big else a.big_mib * MiB
        small = getattr(self, "small", [])
        nsmall = len(small) or a.small

        def secs(m, v, _side=None):
            return f"{m:.2f} s" + (f" ({min(v):.2f}–{max(v):.2f})" if len(v) > 1 else "")

        def mbs(m, v, _side=None):
            return f"**{nbytes / m / 1e6:,.0f} MB/s** ({secs(m, v)})"

        def ips(m, v, _side=None):
            return f"**{nsmall / m:,.1f} images/s** ({secs(m, v)})"

        def mib(m, v, _side=None):
            return f"**{m:.1f} MiB**" + (f" (max {max(v):.1f})" if len(v) > 1 else "")

        def vs(measure, base_of):
            def f(m, v, side):
                b = self.median(measure, base_of(side))
                return f"{m / b:.2f}x" if b else "–"
            return f
        out = ["# Replication: Berth → Berth, Berth → distribution, and skopeo copying the same bytes", ""]
        if "target/debug" in rel:
            out += ["**Debug build: these figures are not representative.**", ""]
        out += ["| measure (median of %d; range) | %s |" % (a.runs, " | ".join(SIDE_LABEL[s] for s in SIDES)),
                "| --- |" + " ---: |" * len(SIDES)]
        rows = [
            (f"a–c. {nbytes / 1e6:.1f} MB image (one {a.big_mib} MiB layer + config), fresh destination: MB/s (time)",
             "big", mbs),
            ("a–c. same, time ÷ skopeo's to the same kind of destination", "big", vs("big", SAME_DEST_SKOPEO.get)),
            ("a–c. same, time ÷ the reference's (skopeo → distribution)", "big", vs("big", lambda s: "skopeo")),
            (f"d. {nsmall} images of one {a.small_kib} KiB layer + config, fresh destination: images/s (time)",
             "small", ips),
            ("d. same, time ÷ skopeo's to the same kind of destination", "small", vs("small", SAME_DEST_SKOPEO.get)),
            (f"e. re-run, the {nbytes / 1e6:.0f} MB image already there (skip path): time", "big-skip", secs),
            (f"e. re-run, the {nsmall} small images already there (skip path): time", "small-skip", secs),
            (f"f. source peak RSS growth during the {nbytes / 1e6:.0f} MB copy (VmHWM after − VmRSS before)",
             "rss_growth", mib),
            ("f. source peak RSS during that copy (VmHWM, reset before the copy)", "rss_peak", mib),
            (f"source Berth CPU during the {nbytes / 1e6:.0f} MB copy (utime + stime)", "cpu_src", secs),
            (f"destination CPU during the {nbytes / 1e6:.0f} MB copy", "cpu_dst", secs),
        ]
        for label, measure, fmt in rows:
            out.append(f"| {label} | " + " | ".join(self.cell(measure, s, fmt) for s in SIDES) + " |")
        try:
            commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip() or "?"
            dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
            commit += " (dirty: uncommitted changes)" if dirty else ""
        except (OSError, subprocess.SubprocessError):
            commit = "?"
        distv = "?"
        try:
            distv = subprocess.run([DISTRIBUTION_BIN, "--version"], capture_output=True, text=True,
                                   timeout=10).stdout.split()[-1]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
        skv = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        env_bin = f"BERTH_BIN={shlex.quote(os.environ['BERTH_BIN'])} " if os.environ.get("BERTH_BIN") else ""
        py = sys.executable
        if py.startswith(str(REPO_ROOT) + "/"):
            py = os.path.relpath(py, REPO_ROOT)
        cmdline = env_bin + " ".join(shlex.quote(x) for x in [py, *sys.argv])
        out += ["", f"Setup: {machine_line(load0, load1)}; `nproc` {os.cpu_count()}; git {commit}; "
                    f"Berth {version} (`{rel}`), embedded storage, source with `BERTH_OUTBOUND_ALLOW=127.0.0.0/8`; "
                    f"distribution {distv} (`{DISTRIBUTION_BIN}`, filesystem storage, no auth); {skv}. "
                    f"Replication targets: `chunk_bytes` {a.chunk_mib} MiB; the Berth target is authenticated with its "
                    f"admin key (token flow), distribution takes none. Berth times run from `POST .../run` to the "
                    f"poll (every {a.poll_ms} ms) that sees the execution end; skopeo times are the whole process "
                    f"(`skopeo copy`, or `skopeo sync --src yaml` for the small images), its blob-info cache deleted "
                    f"first. Every copy goes to a fresh destination process with an empty data dir (e: one per side, "
                    f"first copy untimed); in each repetition the four sides take turns, the order rotated. Every timed copy "
                    f"is verified at the destination (manifest digest = the source's, every blob read back and "
                    f"hashed; skip re-runs: manifests and blob HEADs). Times are rounded up to the poll: a re-run that "
                    f"ends before the first poll shows as one poll interval plus a round trip. "
                    f"Everything on 127.0.0.1, client, servers and skopeo sharing the cores. "
                    f"Run took {elapsed / 60:.1f} min.",
                "", f"Command: `{cmdline}`"]
        notes = list(dict.fromkeys(self.notes))
        if notes or self.errors:
            out += ["", "Notes:", ""] + [f"- {n}" for n in notes] + [f"- ERROR: {e}" for e in self.errors]
        if self.raw:
            out += ["", "<details><summary>Raw samples</summary>", ""] + [f"- {x}" for x in self.raw] + ["",
                                                                                                         "</details>"]
        text = "\n".join(out) + "\n"
        print(text)
        if a.out:
            p = Path(a.out)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            log(f"table saved to {p}")
        return 2 if self.errors else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--berth-bin", default=os.environ.get("BERTH_BIN") or str(REPO_ROOT / "target/release/berth"),
                   help="default: $BERTH_BIN, else target/release/berth")
    p.add_argument("--out", default=str(HERE / "results" / "replication.md"),
                   help="where to save the table ('' = print only)")
    p.add_argument("--work", help="scratch directory (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and server logs")
    p.add_argument("--runs", type=int, default=3, help="repetitions per measure (median reported)")
    p.add_argument("--big-mib", type=int, default=200, help="the big image's layer, MiB of random bytes")
    p.add_argument("--push-chunk-mib", type=int, default=16, help="PATCH size when seeding the big layer")
    p.add_argument("--chunk-mib", type=int, default=8, help="the replication targets' chunk_bytes (1..64 MiB)")
    p.add_argument("--small", type=int, default=50, help="how many small images")
    p.add_argument("--small-kib", type=int, default=64, help="the small images' layer size")
    p.add_argument("--poll-ms", type=int, default=20, help="execution poll interval")
    a = p.parse_args()
    if not (Path(a.berth_bin).is_file() and os.access(a.berth_bin, os.X_OK)):
        p.error(f"no berth binary at {a.berth_bin} (build it with `cargo build --release -p berth --bin berth`, "
                f"or set BERTH_BIN / --berth-bin)")
    if not Path(DISTRIBUTION_BIN).is_file():
        p.error(f"no {DISTRIBUTION_BIN} (apt-get install docker-registry)")
    if not shutil.which("skopeo"):
        p.error("no skopeo (apt-get install skopeo)")
    if a.runs < 1 or a.big_mib < 1 or a.small < 1 or not 1 <= a.chunk_mib <= 64 or a.push_chunk_mib < 1:
        p.error("--runs, --big-mib, --small, --push-chunk-mib must be positive; --chunk-mib 1..64")
    a.berth_bin = str(Path(a.berth_bin).resolve())
    return run_until_signal(ReplicationBench(a).run)


if __name__ == "__main__":
    sys.exit(main())
