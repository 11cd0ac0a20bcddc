#!/usr/bin/env python3
"""Image-cache benchmark for Berth (issue 15): what pulling through a cache costs, beside pulling the
same bytes from the source directly and from Berth itself.

    .venv/bin/python tests/bench/cache.py                      # full run, saves results/cache.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/cache.py --runs 1 --layer-mib 16 \\
        --rss-mib 128 --out /tmp/cache-smoke.md                 # smoke; debug figures!

Servers, all on 127.0.0.1 and started here: the source, a CNCF distribution registry (Debian
`docker-registry` 2.8, filesystem storage, no auth) that lives for the whole run, and for every cold
measure a *fresh* `berth serve` (embedded storage, fresh data dir, BERTH_OUTBOUND_ALLOW=127.0.0.0/8,
BERTH_CACHE_SOURCE_PORTS=*; the freshness check left at its default, BERTH_CACHE_CHECK_SECS=30) with a
cache of type docker-registry for the source and a cache registry `cache` using it, so every cold pull
really fetches from the source.

Source content, pushed once over the raw OCI API (POST, PATCHes of 16 MiB, PUT ?digest=):
`bench/img:v1` (LAYERS layers of LAYER_MIB random bytes in a tar, gzip level 0, + config),
`bench/herd:v1` (the same shape with HERD_MIB layers) and `bench/big:v1` (one RSS_MIB layer).

Measures (RUNS repetitions, median reported, the sides taking turns):
- a/b. cold pull: `cache/bench/img:v1` from a fresh Berth vs `bench/img:v1` straight from the source,
  with two clients: a raw HTTP client (manifest, then every blob streamed and hashed, one at a time;
  a Bearer token for Berth, none for distribution) and `skopeo copy docker://… dir:` (its blob-info
  cache deleted first). MB/s = 10^6 bytes of blobs / time; ratio = cold ÷ direct throughput
  (target ≥ 0.9).
- c. warm pull: on one Berth, after a cold pull and once the record is committed, the cache
  registry's copy vs the same image pushed normally into a plain registry of the same Berth; ratio
  of times (target 1.0 ± noise).
- d. 20 concurrent cold pulls of `bench/herd:v1` (raw clients, released together) from a fresh
  Berth whose cache points at a counting proxy (tests/e2e/upstream_proxy.py) in front of the source:
  blob bytes the source sent ÷ one copy of the image (target 1.00x), and blob GETs per blob.
- e. peak RSS of the Berth process during a cold pull of `bench/big:v1` (raw client): VmHWM reset
  (`echo 5 > /proc/PID/clear_refs`) before and read after (VmRSS sampled every 50 ms if the reset is
  refused), and its growth over VmRSS before.

Every timed pull is checked: the manifest digest is the source's and every blob hashes to its digest
(skopeo checks digests itself); after each cold pull the cache registry's record (management API tags)
must show the tag within 120 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, DISTRIBUTION_BIN, MiB, OCI_MANIFEST, BenchError, clear_skopeo_cache, log,
    loadavg, machine_line, make_image, run_until_signal, skopeo_copy,
)
from policies import RssWatch, status_kib  # noqa: E402
from replication import ACCEPT, Berth, Distribution, Proc, upload_file  # noqa: E402
from upstream_proxy import UpstreamProxy  # noqa: E402

TAG = "v1"
CACHE_REGISTRY = "cache"
PLAIN_REGISTRY = "plain"
RECORD_WAIT = 120  # seconds for a cold pull's record to be committed
HERD = 20
CLIENTS = ("raw", "skopeo")
CLIENT_LABEL = {"raw": "raw HTTP client", "skopeo": "skopeo → dir:"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Image:
    """An image at the source: repository, manifest bytes and digest, blobs (digest, size)."""

    def __init__(self, repo: str, manifest: bytes, blobs: list[tuple[str, int]], layout: Path):
        self.repo, self.manifest, self.blobs, self.layout = repo, manifest, blobs, layout
        self.digest = sha(manifest)

    @property
    def blob_bytes(self) -> int:
        return sum(n for _, n in self.blobs)

    def blob_path(self, d: str) -> Path:
        return self.layout / "blobs" / "sha256" / d.split(":", 1)[1]


class CacheBerth(Berth):
    """`berth serve` with a cache of the source and a cache registry."""

    def start(self) -> "CacheBerth":
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(RUST_LOG=os.environ.get("BENCH_BERTH_RUST_LOG", "warn"), BERTH_ADMIN_ACCESS_KEY=BENCH_ACCESS_KEY,
                   BERTH_ADMIN_SECRET_KEY=BENCH_SECRET_KEY, BERTH_OUTBOUND_ALLOW="127.0.0.0/8",
                   BERTH_CACHE_SOURCE_PORTS="*")
        self._spawn([self.binary, "serve", "--data-dir", str(self.data), "--listen", self.host], env)
        return self

    def setup_cache(self, source_url: str) -> None:
        self.call("POST", "/api/v1/caches", 201, json={"name": "source", "type": "docker-registry", "url": source_url})
        self.call("POST", "/api/v1/registries", 201, json={"name": CACHE_REGISTRY, "cache": "source"})

    def token(self, repo: str) -> str:
        r = self.call("GET", "/auth/token", 200, params={"service": "berth", "scope": f"repository:{repo}:pull"})
        return r.json().get("token") or r.json()["access_token"]

    def wait_record(self, repo: str, img: Image) -> float:
        """Seconds until the management API shows repo:TAG -> the image's digest."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < RECORD_WAIT:
            r = self.call("GET", f"/api/v1/images/{repo}/tags", (200, 404))
            if r.status_code == 200 and any(t["name"] == TAG and t["digest"] == img.digest for t in r.json()["items"]):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise BenchError(f"{repo}:{TAG} was not recorded within {RECORD_WAIT} s:\n{self.tail()}")


def seed(dist: Distribution, work: Path, repo: str, layers: int, layer_mib: int) -> Image:
    layout = work / "layouts" / repo.replace("/", "-")
    log(f"writing {repo}: {layers} x {layer_mib} MiB (random bytes in a tar, gzip level 0)")
    make_image(layout, layers, layer_mib)
    index = json.loads((layout / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    manifest = (layout / "blobs" / "sha256" / mdigest.split(":", 1)[1]).read_bytes()
    m = json.loads(manifest)
    img = Image(repo, manifest, [(d["digest"], d["size"]) for d in [m["config"], *m["layers"]]], layout)
    push(dist, repo, img)
    return img


def push(reg: Proc, repo: str, img: Image) -> None:
    t0 = time.monotonic()
    for d, _ in img.blobs:
        upload_file(reg, repo, img.blob_path(d), d, 16 * MiB)
    reg.call("PUT", f"/v2/{repo}/manifests/{TAG}", 201, data=img.manifest, headers={"Content-Type": OCI_MANIFEST})
    log(f"pushed {repo}:{TAG} to {reg.kind} ({img.blob_bytes / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")


def raw_pull(base: str, repo: str, img: Image, headers: dict, what: str) -> float:
    """GET the manifest and every blob (streamed, hashed); returns the seconds it took."""
    s = requests.Session()
    s.headers.update(headers)
    t0 = time.monotonic()
    r = s.get(f"{base}/v2/{repo}/manifests/{TAG}", headers={"Accept": ACCEPT}, timeout=300)
    if r.status_code != 200 or sha(r.content) != img.digest:
        raise BenchError(f"{what}: manifest GET {r.status_code}, digest {sha(r.content)} (want {img.digest})")
    m = json.loads(r.content)
    for desc in [m["config"], *m["layers"]]:
        h, n = hashlib.sha256(), 0
        with s.get(f"{base}/v2/{repo}/blobs/{desc['digest']}", stream=True, timeout=600) as b:
            if b.status_code != 200:
                raise BenchError(f"{what}: GET blob {desc['digest']}: {b.status_code} {b.text[:200]}")
            for part in b.iter_content(MiB):
                h.update(part)
                n += len(part)
        if ("sha256:" + h.hexdigest(), n) != (desc["digest"], desc["size"]):
            raise BenchError(f"{what}: blob {desc['digest']} read as sha256:{h.hexdigest()} ({n} B)")
    return time.monotonic() - t0


class CacheBench:
    def __init__(self, a):
        self.a = a
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.raw: list[str] = []
        self.notes: list[str] = []
        self.errors: list[str] = []
        self.live: list[Proc] = []
        self.n = 0

    def record(self, measure: str, side: str, value: float) -> None:
        self.samples.setdefault((measure, side), []).append(value)

    def median(self, measure: str, side: str) -> float | None:
        v = self.samples.get((measure, side))
        return statistics.median(v) if v else None

    # ---------------------------------------------------------------- servers
    def fresh_berth(self, source_url: str) -> CacheBerth:
        self.n += 1
        b = CacheBerth(self.a.berth_bin, self.work, f"berth-{self.n:02d}", outbound=True).start()
        self.live.append(b)
        b.setup_cache(source_url)
        return b

    def stop(self, p: Proc) -> None:
        if not p.alive():
            self.errors.append(f"{p.kind} on {p.url} exited during the run:\n{p.tail()}")
        p.stop()
        if p in self.live:
            self.live.remove(p)
        if not self.a.keep:
            shutil.rmtree(p.dir, ignore_errors=True)

    # ---------------------------------------------------------------- pulls
    def pull(self, client: str, reg: Proc, repo: str, img: Image, what: str) -> float:
        if client == "raw":
            headers = {"Authorization": f"Bearer {reg.token(repo)}"} if isinstance(reg, Berth) else {}
            return raw_pull(reg.url, repo, img, headers, what)
        out = self.work / "skopeo-out"
        shutil.rmtree(out, ignore_errors=True)
        creds = [f"--src-creds={BENCH_ACCESS_KEY}:{BENCH_SECRET_KEY}"] if isinstance(reg, Berth) else []
        took, _cpu = skopeo_copy(f"docker://{reg.host}/{repo}:{TAG}", f"dir:{out}", what, creds)
        got = (out / "manifest.json").read_bytes()
        if sha(got) != img.digest:
            raise BenchError(f"{what}: skopeo wrote manifest {sha(got)}, want {img.digest}")
        for d, size in img.blobs:
            f = out / d.split(":", 1)[1]
            if not f.is_file() or f.stat().st_size != size:
                raise BenchError(f"{what}: skopeo did not write blob {d} ({size} B)")
        shutil.rmtree(out, ignore_errors=True)
        return took

    def cold_and_direct(self, img: Image, rnd: int) -> None:
        sides = ["cold", "direct"] if rnd % 2 == 0 else ["direct", "cold"]
        for side in sides:
            for client in CLIENTS:
                what = f"run {rnd + 1}: {side} pull, {client}"
                if side == "direct":
                    took = self.pull(client, self.dist, img.repo, img, what)
                else:
                    b = self.fresh_berth(self.dist.url)
                    try:
                        cpu0 = b.cpu()
                        took = self.pull(client, b, f"{CACHE_REGISTRY}/{img.repo}", img, what)
                        cpu = b.cpu() - cpu0
                        rec = b.wait_record(f"{CACHE_REGISTRY}/{img.repo}", img)
                        self.record("cold_cpu", client, cpu)
                        self.raw.append(f"{what}: Berth CPU {cpu:.2f} s; record committed {rec:.2f} s after the pull")
                    finally:
                        self.stop(b)
                self.record(side, client, took)
                self.raw.append(f"{what}: {took:.3f} s ({img.blob_bytes / took / 1e6:.0f} MB/s)")
                log(f"{what}: {took:.2f} s ({img.blob_bytes / took / 1e6:.0f} MB/s)")

    def warm_and_plain(self, img: Image) -> None:
        b = self.fresh_berth(self.dist.url)
        try:
            crepo, prepo = f"{CACHE_REGISTRY}/{img.repo}", f"{PLAIN_REGISTRY}/{img.repo}"
            self.pull("raw", b, crepo, img, "warm-up: cold pull")
            b.wait_record(crepo, img)
            b.create_registry(PLAIN_REGISTRY)
            push(b, prepo, img)
            for rnd in range(self.a.runs):
                order = [("warm", crepo), ("plain", prepo)]
                if rnd % 2:
                    order.reverse()
                for side, repo in order:
                    for client in CLIENTS:
                        what = f"run {rnd + 1}: {side} pull, {client}"
                        took = self.pull(client, b, repo, img, what)
                        self.record(side, client, took)
                        self.raw.append(f"{what}: {took:.3f} s ({img.blob_bytes / took / 1e6:.0f} MB/s)")
                        log(f"{what}: {took:.2f} s")
        finally:
            self.stop(b)

    def herd(self, img: Image, rnd: int) -> None:
        proxy = UpstreamProxy(self.dist.port)
        b = self.fresh_berth(proxy.url)
        try:
            repo = f"{CACHE_REGISTRY}/{img.repo}"
            headers = {"Authorization": f"Bearer {b.token(repo)}"}
            barrier = threading.Barrier(HERD)
            errors: list[str] = []

            def one(i: int) -> None:
                try:
                    barrier.wait(60)
                    raw_pull(b.url, repo, img, headers, f"herd client {i}")
                except Exception as e:  # collected
                    errors.append(str(e))

            threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(HERD)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(900)
            took = time.monotonic() - t0
            if errors:
                raise BenchError(f"{len(errors)} of {HERD} concurrent pulls failed: {errors[0]}")
            fetched, gets = proxy.blob_bytes(), proxy.blob_gets()
            ratio = fetched / img.blob_bytes
            self.record("herd_ratio", "raw", ratio)
            self.record("herd_time", "raw", took)
            self.record("herd_max_gets", "raw", max(gets.values()) if gets else 0)
            line = (f"run {rnd + 1}: {HERD} concurrent cold pulls of {img.blob_bytes / 1e6:.1f} MB in {took:.2f} s; "
                    f"the source sent {fetched:,} B of blobs ({ratio:.3f}x one copy); blob GETs per blob "
                    f"{sorted(gets.values())}")
            self.raw.append(line)
            log(line)
            b.wait_record(repo, img)
        finally:
            self.stop(b)
            proxy.close()

    def rss(self, img: Image) -> None:
        b = self.fresh_berth(self.dist.url)
        try:
            repo = f"{CACHE_REGISTRY}/{img.repo}"
            token = b.token(repo)
            base = status_kib(b.pid, "VmRSS")
            watch = RssWatch(b.pid)
            with watch:
                took = raw_pull(b.url, repo, img, {"Authorization": f"Bearer {token}"}, "1 GiB cold pull")
            b.wait_record(repo, img)
            self.record("rss_peak", "raw", watch.peak_mib)
            self.record("rss_growth", "raw", watch.growth_mib)
            self.record("rss_time", "raw", took)
            if not watch.reset:
                self.notes.append("VmHWM could not be reset: the RSS figures are VmRSS sampled every 50 ms")
            line = (f"{img.blob_bytes / 1e6:.0f} MB cold pull: {took:.2f} s ({img.blob_bytes / took / 1e6:.0f} MB/s); "
                    f"Berth VmRSS {base / 1024:.1f} MiB before, peak {watch.peak_mib} MiB "
                    f"({watch.growth_mib:+.1f} MiB; sampled VmRSS max {watch.sampled / 1024:.1f} MiB)")
            self.raw.append(line)
            log(line)
        finally:
            self.stop(b)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        a = self.a
        load0, t0 = loadavg(), time.monotonic()
        own_work = a.work is None
        self.work = Path(a.work or tempfile.mkdtemp(prefix="berth-bench-cache."))
        self.work.mkdir(parents=True, exist_ok=True)
        version = "?"
        try:
            version = subprocess.run([a.berth_bin, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip() or "?"
            self.dist = Distribution(self.work, "source").start()
            self.live.append(self.dist)
            log(f"source distribution pid {self.dist.pid} on {self.dist.url}")
            img = seed(self.dist, self.work, "bench/img", a.layers, a.layer_mib)
            herd = seed(self.dist, self.work, "bench/herd", a.layers, a.herd_mib)
            big = seed(self.dist, self.work, "bench/big", 1, a.rss_mib)
            for done in (herd, big):  # pushed: the layouts are not read again
                shutil.rmtree(done.layout, ignore_errors=True)
            self.img, self.herd_img, self.big = img, herd, big
            for rnd in range(a.runs):
                self.cold_and_direct(img, rnd)
            self.warm_and_plain(img)
            for rnd in range(a.runs):
                self.herd(herd, rnd)
            shutil.rmtree(img.layout, ignore_errors=True)
            self.rss(big)
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
    def report(self, version: str, load0: str, load1: str, elapsed: float) -> int:
        a = self.a
        rel = a.berth_bin
        try:
            rel = str(Path(a.berth_bin).resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
        img = getattr(self, "img", None)
        nbytes = img.blob_bytes if img else a.layers * a.layer_mib * MiB
        herd = getattr(self, "herd_img", None)
        big = getattr(self, "big", None)

        def cell(measure, client, fmt):
            v = self.samples.get((measure, client))
            return fmt(statistics.median(v), v) if v else "–"

        def rng(v, f="{:.2f}"):
            return f" ({f.format(min(v))}–{f.format(max(v))})" if len(v) > 1 else ""

        def mbs(m, v):
            return f"**{nbytes / m / 1e6:,.0f} MB/s** ({m:.2f} s{rng(v)})"

        def ratio(num, den, invert=False):
            def f(client):
                x, y = self.median(num, client), self.median(den, client)
                if not x or not y:
                    return "–"
                return f"**{(y / x if invert else x / y):.2f}x**"
            return f

        out = ["# Image cache: pulls through Berth's cache beside pulls from the source and from Berth itself", ""]
        if "target/debug" in rel:
            out += ["**Debug build: these figures are not representative.**", ""]
        out += [f"| measure (median of {a.runs}; range) | " + " | ".join(CLIENT_LABEL[c] for c in CLIENTS) + " |",
                "| --- |" + " ---: |" * len(CLIENTS)]
        rows = [
            (f"a. cold pull through the cache, {nbytes / 1e6:.1f} MB image ({a.layers} × {a.layer_mib} MiB + config), "
             "fresh Berth", lambda c: cell("cold", c, mbs)),
            ("b. direct pull of the same image from the source (distribution)", lambda c: cell("direct", c, mbs)),
            ("**cold ÷ direct throughput** (target ≥ 0.9)", ratio("cold", "direct", invert=True)),
            ("c. warm pull through the cache (record committed)", lambda c: cell("warm", c, mbs)),
            ("c. plain Berth pull of the same image pushed normally (same process)", lambda c: cell("plain", c, mbs)),
            ("**warm ÷ plain time** (target 1.0 ± noise)", ratio("warm", "plain")),
            ("Berth CPU during the cold pull (utime + stime)",
             lambda c: cell("cold_cpu", c, lambda m, v: f"{m:.2f} s{rng(v)}")),
        ]
        for label, f in rows:
            out.append(f"| {label} | " + " | ".join(f(c) for c in CLIENTS) + " |")
        hb = herd.blob_bytes if herd else a.layers * a.herd_mib * MiB
        single = [
            (f"d. {HERD} concurrent cold pulls of a {hb / 1e6:.1f} MB image: blob bytes fetched from the source ÷ one "
             "copy (target 1.00x)", cell("herd_ratio", "raw", lambda m, v: f"**{m:.3f}x** (max {max(v):.3f}x)")),
            ("d. same: most GETs of one blob at the source",
             cell("herd_max_gets", "raw", lambda m, v: f"{max(v):.0f}")),
            ("d. same: wall time of the 20 pulls",
             cell("herd_time", "raw", lambda m, v: f"{m:.2f} s{rng(v)}")),
            (f"e. Berth peak RSS during a {(big.blob_bytes if big else a.rss_mib * MiB) / 2**30:.2f} GiB cold pull "
             "(VmHWM, reset before)", cell("rss_peak", "raw", lambda m, v: f"**{m:.1f} MiB**")),
            ("e. same: growth over VmRSS before the pull", cell("rss_growth", "raw", lambda m, v: f"{m:+.1f} MiB")),
            ("e. same: pull time", cell("rss_time", "raw",
                                        lambda m, v: f"{m:.2f} s ({(big.blob_bytes if big else 0) / m / 1e6:,.0f} MB/s)")),
        ]
        out += ["", "| measure (raw HTTP clients) | value |", "| --- | ---: |"]
        out += [f"| {label} | {v} |" for label, v in single]
        try:
            commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip() or "?"
            if subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True,
                              text=True, timeout=10).stdout.strip():
                commit += " (dirty: uncommitted changes)"
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
        out += ["", f"Setup: {machine_line(load0, load1)}; git {commit}; Berth {version} (`{rel}`), embedded storage, "
                    f"`BERTH_OUTBOUND_ALLOW=127.0.0.0/8`, `BERTH_CACHE_SOURCE_PORTS=*`, default freshness check (30 s); "
                    f"the source is distribution {distv} (`{DISTRIBUTION_BIN}`, filesystem storage, no auth; the cache "
                    f"is of type docker-registry without credentials); {skv}. Layers are random bytes in a tar, gzip "
                    f"level 0. The raw client GETs the manifest and then each blob in turn, streamed and hashed "
                    f"(Bearer token for Berth); skopeo copies to a fresh `dir:` with its blob-info cache deleted. Every "
                    f"cold pull is from a fresh Berth process and data dir; c runs on one Berth after a cold pull "
                    f"(untimed) and a normal push of the same image into registry `{PLAIN_REGISTRY}`; d puts a "
                    f"counting Python proxy (tests/e2e/upstream_proxy.py) between the cache and the source. Everything "
                    f"on 127.0.0.1, clients and servers sharing the cores. Run took {elapsed / 60:.1f} min.",
                "", f"Command: `{cmdline}`"]
        notes = list(dict.fromkeys(self.notes))
        if notes or self.errors:
            out += ["", "Notes:", ""] + [f"- {n}" for n in notes] + [f"- ERROR: {e}" for e in self.errors]
        if self.raw:
            out += ["", "<details><summary>Raw samples</summary>", ""] + [f"- {x}" for x in self.raw] + \
                   ["", "</details>"]
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
    p.add_argument("--out", default=str(HERE / "results" / "cache.md"), help="where to save the table ('' = print only)")
    p.add_argument("--work", help="scratch directory (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and server logs")
    p.add_argument("--runs", type=int, default=3, help="repetitions per measure (median reported)")
    p.add_argument("--layers", type=int, default=4, help="layers of the pulled images")
    p.add_argument("--layer-mib", type=int, default=64, help="layer size of the image of a-c")
    p.add_argument("--herd-mib", type=int, default=16, help="layer size of the image of d")
    p.add_argument("--rss-mib", type=int, default=1024, help="the one layer of the image of e")
    a = p.parse_args()
    if not (Path(a.berth_bin).is_file() and os.access(a.berth_bin, os.X_OK)):
        p.error(f"no berth binary at {a.berth_bin} (build it with `cargo build --release -p berth --bin berth`, "
                f"or set BERTH_BIN / --berth-bin)")
    if not Path(DISTRIBUTION_BIN).is_file():
        p.error(f"no {DISTRIBUTION_BIN} (apt-get install docker-registry)")
    if not shutil.which("skopeo"):
        p.error("no skopeo (apt-get install skopeo)")
    if min(a.runs, a.layers, a.layer_mib, a.herd_mib, a.rss_mib) < 1:
        p.error("--runs, --layers and the sizes must be positive")
    a.berth_bin = str(Path(a.berth_bin).resolve())
    clear_skopeo_cache()
    return run_until_signal(CacheBench(a).run)


if __name__ == "__main__":
    sys.exit(main())
