#!/usr/bin/env python3
"""Webhook benchmark for Berth (issue 13): what registry events and webhook deliveries cost.

    .venv/bin/python tests/bench/webhooks.py                      # print the table
    .venv/bin/python tests/bench/webhooks.py --out tests/bench/results/webhooks.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/webhooks.py --pushes 120   # quick; debug figures!

One `berth serve` on embedded storage (a fresh data dir under --work, default a temporary
directory) with BERTH_OUTBOUND_ALLOW=127.0.0.0/8, and one webhook receiver on 127.0.0.1
(tests/e2e/webhook_receiver.py, keep-alive, answers 200 at once, records the arrival time of every
request). Everything stays on loopback; client, server and receiver share the machine's cores.

A. Push latency with 0 vs 10 webhook policies on the registry. Registries `wh0` with no policy,
   `wh10` with 10 (default format, every event type, each to its own receiver path), and the
   control `wh10q` with 10 policies subscribed only to SCANNING_COMPLETED, which no push emits
   (the push path's own cost of having policies, without deliveries competing for the cores).
   Each push is an OCI image manifest (the shared `{}` config, one unique 64-byte layer); its two
   blobs are uploaded first (`POST ?digest=` with the body), then the manifest PUT is timed on its
   own (that is where the event is written) and with the uploads (the whole push). Sequential
   pushes on one keep-alive `requests` session, Basic admin-key auth. The pushes are split into
   rounds, each side once per round in a rotated order; before a `wh0` or `wh10q` round every
   delivery of the previous `wh10` round must have arrived, so those figures are not taken while
   the worker is delivering. The issue's target: the 10-policy p50 at most 5% above the
   0-policy one (delivery is asynchronous).
B. Deliveries per second: one policy subscribed to CREATE_TAG on registry `whtags`; N tag
   creations (`PUT /api/v1/images/<name>/tags/<tag>`, 8 client threads) enqueue N events; the
   figure is N / (last delivery's arrival - first tag request). The enqueue rate is given beside
   it: if it is not clearly higher, the client, not the worker, set the pace.
C. Push → delivery latency: the receiver's arrival time minus the end of the manifest PUT (same
   clock, same process), matched by the artifact digest in the payload. Paced: one policy on
   `whlat`, one push every --pace-ms. Also from part A's 10-policy rounds (back-to-back pushes,
   10 deliveries per push): the worker's backlog shows there.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, BenchError, free_port, loadavg, log, machine_line, run_until_signal,
    stat_cpu, stop_process, wait_ready,
)
from webhook_receiver import Receiver  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY = b"{}"
AUTH = (BENCH_ACCESS_KEY, BENCH_SECRET_KEY)
DRAIN_TIMEOUT = 600  # seconds for every queued delivery to arrive


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


class Berth:
    def __init__(self, binary: str, work: Path):
        self.binary, self.work = binary, work
        self.data = work / "data"
        self.log_path = work / "berth.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(RUST_LOG=os.environ.get("BENCH_BERTH_RUST_LOG", "warn"), BERTH_ADMIN_ACCESS_KEY=BENCH_ACCESS_KEY,
                   BERTH_ADMIN_SECRET_KEY=BENCH_SECRET_KEY, BERTH_OUTBOUND_ALLOW="127.0.0.0/8")
        cmd = [self.binary, "serve", "--data-dir", str(self.data), "--listen", f"127.0.0.1:{self.port}"]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT)

        def ready():
            return requests.get(f"{self.url}/v2/", auth=AUTH, timeout=2).status_code == 200

        def tail():
            try:
                return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            except OSError:
                return ""

        try:
            wait_ready(self.proc, "Berth", lambda: _quiet(ready), tail, "did not answer GET /v2/ 200")
        except BenchError:
            self.stop()
            raise
        log(f"Berth pid {self.proc.pid} on {self.url} (data {self.data})")

    def cpu(self) -> float:
        return stat_cpu(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def _quiet(fn):
    try:
        return fn()
    except requests.RequestException:
        return False


class Client:
    """One keep-alive session with Basic admin auth."""

    def __init__(self, berth: Berth):
        self.base = berth.url
        self.s = requests.Session()
        self.s.auth = AUTH

    def call(self, method: str, path: str, expect, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        r = self.s.request(method, self.base + path, **kw)
        expect = expect if isinstance(expect, tuple) else (expect,)
        if r.status_code not in expect:
            raise BenchError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def blob(self, repo: str, data: bytes) -> None:
        self.call("POST", f"/v2/{repo}/blobs/uploads/", 201, params={"digest": sha(data)}, data=data,
                  headers={"Content-Type": "application/octet-stream"})

    def manifest(self, repo: str, layer: bytes) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_EMPTY, "digest": sha(EMPTY), "size": len(EMPTY)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha(layer), "size": len(layer)}],
        }).encode()

    def push(self, repo: str, tag: str) -> tuple[str, float, float, float]:
        """(digest, whole push s, manifest PUT s, time.time() at the end of the PUT)."""
        layer = os.urandom(64)
        t0 = time.perf_counter()
        self.blob(repo, EMPTY)
        self.blob(repo, layer)
        body = self.manifest(repo, layer)
        t1 = time.perf_counter()
        self.call("PUT", f"/v2/{repo}/manifests/{tag}", 201, data=body, headers={"Content-Type": OCI_MANIFEST})
        t2 = time.perf_counter()
        return sha(body), t2 - t0, t2 - t1, time.time()


class WebhookBench:
    def __init__(self, a):
        self.a = a
        self.rows: list[tuple[str, str]] = []
        self.raw: list[str] = []
        self.errors: list[str] = []

    def row(self, what: str, value: str) -> None:
        log(f"{what}: {value}")
        self.rows.append((what, value))

    def create_registry(self, cl: Client, name: str) -> None:
        cl.call("POST", "/api/v1/registries", (201, 409), json={"name": name})

    def policy(self, cl: Client, registry: str, name: str, url: str, events=None) -> dict:
        body = {"name": name, "url": url}
        if events:
            body["events"] = events
        return cl.call("POST", f"/api/v1/registries/{registry}/webhooks", 201, json=body).json()

    def wait_count(self, rcv: Receiver, n: int, what: str, path_prefix: str) -> None:
        """Waits until `n` distinct (policy path, event id) deliveries under path_prefix arrived
        (policies share an event's id; a redelivered duplicate counts once)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            got = len({(r.route, r.event_id) for r in rcv.requests() if r.route.startswith(path_prefix)})
            if got >= n:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: {got} of {n} deliveries arrived within {DRAIN_TIMEOUT} s")
            time.sleep(0.05)

    # ---------------------------------------------------------------- A and C (under load)
    def push_latency(self, berth: Berth, cl: Client, rcv: Receiver) -> None:
        a = self.a
        P = a.policies
        # three sides: no policy; P policies that get every push; P policies subscribed only to an
        # event no push emits (the push path's own cost, without deliveries competing for the cores)
        sides = {"0": "wh0", "P": "wh10", "Pq": "wh10q"}
        for reg in sides.values():
            self.create_registry(cl, reg)
        for i in range(P):
            self.policy(cl, "wh10", f"p{i:02d}", rcv.url(f"/a/{i:02d}"))
            self.policy(cl, "wh10q", f"q{i:02d}", rcv.url(f"/q/{i:02d}"), events=["SCANNING_COMPLETED"])
        per_round = max(1, a.pushes // a.rounds)
        samples = {k: {"put": [], "whole": [], "cpu": 0.0} for k in sides}
        ends: dict[str, float] = {}
        for reg in sides.values():  # warm-up, not counted
            for i in range(10):
                cl.push(f"{reg}/warm", f"w{i}")
        expected = 10 * P
        self.wait_count(rcv, expected, "warm-up", "/a/")
        labels = list(sides)
        for rnd in range(a.rounds):
            order = labels[rnd % 3:] + labels[:rnd % 3]
            if rnd % 2:
                order.reverse()
            for k in order:
                reg = sides[k]
                if k != "P":
                    self.wait_count(rcv, expected, f"round {rnd}: drain before the {reg} pushes", "/a/")
                c0 = berth.cpu()
                for i in range(per_round):
                    d, whole, put, end = cl.push(f"{reg}/app{i % 10}", f"r{rnd}-{i}")
                    samples[k]["put"].append(put)
                    samples[k]["whole"].append(whole)
                    if k == "P":
                        ends[d] = end
                samples[k]["cpu"] += berth.cpu() - c0
                if k == "P":
                    expected += per_round * P
        self.wait_count(rcv, expected, "deliveries of part A", "/a/")
        if any(r.route.startswith("/q/") for r in rcv.requests()):
            self.errors.append("a policy subscribed only to SCANNING_COMPLETED received a delivery")
        z, t, q = samples["0"], samples["P"], samples["Pq"]
        n = len(z["put"])
        for what, s_ in (("0 policies", z), (f"{P} policies, every push delivered to each", t),
                         (f"{P} policies subscribed to no pushed event (no deliveries)", q)):
            self.row(f"A. manifest PUT, {what}: p50 / p99 / mean, ms (n={n})",
                     f"{ms(pct(s_['put'], 50))} / {ms(pct(s_['put'], 99))} / {ms(statistics.mean(s_['put']))}")
        r50 = pct(t["put"], 50) / pct(z["put"], 50)
        r99 = pct(t["put"], 99) / pct(z["put"], 99)
        self.row(f"A. **manifest PUT, {P} vs 0 policies: p50 ratio / p99 ratio** (target p50 ≤ 1.05x)",
                 f"**{r50:.3f}x** / {r99:.3f}x")
        self.row(f"A. manifest PUT, {P} policies without deliveries vs 0: p50 ratio / p99 ratio",
                 f"{pct(q['put'], 50) / pct(z['put'], 50):.3f}x / {pct(q['put'], 99) / pct(z['put'], 99):.3f}x")
        self.row(f"A. whole push (2 blob uploads + manifest PUT), 0 / {P} / {P} without deliveries: p50 ms",
                 f"{ms(pct(z['whole'], 50))} / {ms(pct(t['whole'], 50))} / {ms(pct(q['whole'], 50))}")
        self.row(f"A. server CPU per push during the rounds, 0 / {P} / {P} without deliveries, ms "
                 f"(the {P}-policy rounds include delivering)",
                 f"{ms(z['cpu'] / n)} / {ms(t['cpu'] / n)} / {ms(q['cpu'] / n)}")
        if r50 > 1.05:
            self.errors.append(f"push latency p50 grew {100 * (r50 - 1):.1f}% with {P} policies (target ≤ 5%)")
        for what, s_ in (("0 policies", z), (f"{P} policies", t), (f"{P} policies without deliveries", q)):
            self.raw.append(f"A. manifest PUT ms, {what}: {', '.join(ms(x) for x in s_['put'])}")

        # C under load: every delivery of part A's measured 10-policy pushes
        lat, first = [], {}
        for r in rcv.requests():
            if not r.route.startswith("/a/"):
                continue
            d = r.json()["event_data"]["resources"][0]["digest"]
            if d in ends:
                x = r.time - ends[d]
                lat.append(x)
                first[d] = min(first.get(d, x), x)
        if len(first) != len(ends):
            self.errors.append(f"part A: {len(ends) - len(first)} pushes got no delivery")
        if lat:
            self.row(f"C. push → delivery, back-to-back pushes, {a.policies} policies: every delivery p50 / p99, ms "
                     f"(n={len(lat)})", f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))}")
            fl = list(first.values())
            self.row("C. same, first of a push's deliveries: p50 / p99, ms", f"{ms(pct(fl, 50))} / {ms(pct(fl, 99))}")

    # ---------------------------------------------------------------- B
    def throughput(self, berth: Berth, cl: Client, rcv: Receiver) -> None:
        a = self.a
        self.create_registry(cl, "whtags")
        self.policy(cl, "whtags", "tags", rcv.url("/b"), events=["CREATE_TAG"])
        d, *_ = cl.push("whtags/app", "base")
        clients = [Client(berth) for _ in range(a.threads)]

        def tag(i: int) -> None:
            clients[i % a.threads].call("PUT", f"/api/v1/images/whtags/app/tags/t{i:05d}", (200, 201),
                                        json={"digest": d})

        c0 = berth.cpu()
        t0 = time.time()
        with cf.ThreadPoolExecutor(a.threads) as pool:
            list(pool.map(tag, range(a.deliveries)))
        t_enq = time.time()
        self.wait_count(rcv, a.deliveries, "part B", "/b")
        got = [r for r in rcv.events() if r.route == "/b"]
        cpu = berth.cpu() - c0
        last = max(r.time for r in got)
        first_arrival = min(r.time for r in got)
        self.row(f"B. **deliveries/s**: {a.deliveries} tag creations → 1 policy, first request → last delivery",
                 f"**{a.deliveries / (last - t0):,.0f}** ({last - t0:.2f} s)")
        self.row(f"B. enqueue: {a.deliveries} tag creations, {a.threads} client threads (creations/s)",
                 f"{a.deliveries / (t_enq - t0):,.0f} ({t_enq - t0:.2f} s)")
        self.row("B. deliveries/s between the first and the last arrival; last arrival after the last creation, s",
                 f"{(len(got) - 1) / max(last - first_arrival, 1e-9):,.0f}; {last - t_enq:.2f}")
        self.row("B. server CPU per event (tag creation + fan-out + delivery), ms", ms(cpu / a.deliveries))

    # ---------------------------------------------------------------- C paced
    def paced(self, berth: Berth, cl: Client, rcv: Receiver) -> None:
        a = self.a
        self.create_registry(cl, "whlat")
        self.policy(cl, "whlat", "lat", rcv.url("/c"), events=["PUSH_ARTIFACT"])
        ends = {}
        for i in range(a.latency_pushes):
            d, _, _, end = cl.push("whlat/app", f"l{i}")
            ends[d] = end
            time.sleep(a.pace_ms / 1000)
        self.wait_count(rcv, a.latency_pushes, "part C", "/c")
        lat = [r.time - ends[r.json()["event_data"]["resources"][0]["digest"]] for r in rcv.events() if r.route == "/c"]
        self.row(f"C. **push → delivery, paced** (1 policy, a push every {a.pace_ms} ms): p50 / p99 / max, ms "
                 f"(n={len(lat)})", f"**{ms(pct(lat, 50))} / {ms(pct(lat, 99))}** / {ms(max(lat))}")
        self.raw.append(f"C. paced push → delivery ms: {', '.join(ms(x) for x in lat)}")

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        a = self.a
        load0 = loadavg()
        t0 = time.monotonic()
        own_work = a.work is None
        work = Path(a.work or tempfile.mkdtemp(prefix="berth-bench-webhooks."))
        berth = Berth(a.berth_bin, work)
        rcv = Receiver(keep_alive=True).start()
        version = "?"
        try:
            berth.start()
            cl = Client(berth)
            version = subprocess.run([a.berth_bin, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip() or "?"
            if "A" in a.parts:
                self.push_latency(berth, cl, rcv)
            if "B" in a.parts:
                self.throughput(berth, cl, rcv)
            if "C" in a.parts:
                self.paced(berth, cl, rcv)
            if not berth.proc or berth.proc.poll() is not None:
                raise BenchError("Berth exited during the run")
        except BenchError as e:
            self.errors.append(str(e))
        finally:
            berth.stop()
            rcv.close()
            if own_work:
                shutil.rmtree(work, ignore_errors=True)
        return self.report(version, load0, loadavg(), time.monotonic() - t0)

    def report(self, version: str, load0: str, load1: str, elapsed: float) -> int:
        a = self.a
        rel = a.berth_bin
        try:
            rel = str(Path(a.berth_bin).resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
        out = ["# Webhooks: push latency with policies, delivery throughput, push → delivery latency", ""]
        if "target/debug" in rel:
            out += ["**Debug build: these figures are not representative.**", ""]
        out += ["| measure | Berth |", "| --- | ---: |"]
        out += [f"| {what} | {value} |" for what, value in self.rows]
        out += ["", f"Setup: {machine_line(load0, load1)}; Berth {version} (`{rel}`), git {git_rev()}; embedded storage; "
                    f"`BERTH_OUTBOUND_ALLOW=127.0.0.0/8`, other webhook settings default; the receiver is a Python "
                    f"`ThreadingHTTPServer` on 127.0.0.1 with keep-alive answering 200 at once; client, server and "
                    f"receiver share the cores. A: {a.pushes} pushes per side in {a.rounds} rounds (each side once "
                    f"per round, order rotated) after 10 warm-up pushes each; B: {a.deliveries} tag creations; "
                    f"C: {a.latency_pushes} paced pushes. "
                    f"Run took {elapsed / 60:.1f} min."]
        if self.errors:
            out += ["", "Notes:", ""] + [f"- ERROR: {e}" for e in self.errors]
        if self.raw:
            out += ["", "<details><summary>Raw samples</summary>", ""] + [f"- {x}" for x in self.raw] + ["", "</details>"]
        text = "\n".join(out) + "\n"
        print(text)
        if a.out:
            p = Path(a.out)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            log(f"table saved to {p}")
        return 2 if self.errors else 0


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "no commit"
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return f"{rev} (dirty)" if dirty else rev
    except (OSError, subprocess.SubprocessError):
        return "?"


def default_bin() -> str:
    env = os.environ.get("BERTH_BIN")
    if env:
        return env
    for kind in ("release", "debug"):
        p = REPO_ROOT / "target" / kind / "berth"
        if p.is_file():
            return str(p)
    return str(REPO_ROOT / "target" / "release" / "berth")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--berth-bin", default=default_bin(),
                   help="default: $BERTH_BIN, else target/release/berth, else target/debug/berth")
    p.add_argument("--out", help="also write the table here (e.g. tests/bench/results/webhooks.md)")
    p.add_argument("--work", help="scratch directory (default: a temporary one, removed afterwards)")
    p.add_argument("--parts", default="ABC", help="A push latency, B deliveries/s, C paced push → delivery")
    p.add_argument("--pushes", type=int, default=600, help="measured pushes per side in part A")
    p.add_argument("--rounds", type=int, default=6, help="rounds in part A (each side once per round, order rotated)")
    p.add_argument("--policies", type=int, default=10, help="policies on the registry in part A")
    p.add_argument("--deliveries", type=int, default=500, help="tag creations in part B")
    p.add_argument("--threads", type=int, default=8, help="client threads creating tags in part B")
    p.add_argument("--latency-pushes", type=int, default=200, help="paced pushes in part C")
    p.add_argument("--pace-ms", type=int, default=50, help="pause between part C's pushes")
    a = p.parse_args()
    if not (Path(a.berth_bin).is_file() and os.access(a.berth_bin, os.X_OK)):
        p.error(f"no berth binary at {a.berth_bin} (build it, or set BERTH_BIN / --berth-bin)")
    if a.policies < 1 or a.policies > 20:
        p.error("--policies must be 1..20 (20 policies per scope at most)")
    if a.rounds < 1 or a.pushes < a.rounds:
        p.error("--pushes must be >= --rounds >= 1")
    a.berth_bin = str(Path(a.berth_bin).resolve())
    return run_until_signal(WebhookBench(a).run)


if __name__ == "__main__":
    sys.exit(main())
