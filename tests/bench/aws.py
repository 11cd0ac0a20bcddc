#!/usr/bin/env python3
"""docker push / pull MB/s: `berth serve --backend aws` on moto beside embedded storage.

Started by tests/bench/run_aws, which finds moto_server, builds Berth and owns the temporary
work directory. Reuses bench.py's helpers (standard library only). Everything talks to
127.0.0.1 only and every loop and child process is bounded by a timeout.

  1. one docker image FROM scratch with N layers of random bytes (legacy builder, built once)
  2. push, per repetition: a *fresh* embedded server (new data dir) and a *fresh* AWS server
     (new bucket, table and queue in the one moto process), each on a new port, alternating
     which goes first. Fresh state and a new host:port are needed: docker remembers which
     repositories of a registry (host:port) hold a layer and asks for a cross-repo mount,
     which Berth grants (201) when the blob is there, so a second push to the same server
     state uploads nothing. The docker output is checked: every layer must say "Pushed".
  3. pull, per repetition, from the last servers: every local tag of the image removed
     first (`docker rmi`, then checked gone), so every layer is downloaded; the
     output must say "Pull complete" for every layer. On the AWS side blob GETs answer
     307 to a presigned moto URL, and moto's request log is counted to show docker went there.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (  # noqa: E402
    MiB, BenchError, Tally, children_cpu, free_port, http_req, loadavg, log, machine_line, run_until_signal,
    stat_cpu, stop_process, wait_ready,
)

DOCKER_TIMEOUT = 900  # seconds for one docker push / pull / build
DOCKER_SHORT = 120  # seconds for docker tag / rmi / inspect / info
LABELS = ("embedded", "aws (moto)")
ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])
# werkzeug's request log line, as moto_server prints it.
MOTO_LOG = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')
# docker's non-TTY progress lines: "<12 hex>: <status>".
LAYER_LINE = re.compile(r"^([0-9a-f]{12}): (.+)$")


def docker(*args: str, timeout: float = DOCKER_SHORT, env: dict | None = None, check: bool = True):
    try:
        r = subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError(f"docker {args[0]}: timed out after {timeout}s")
    if check and r.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:2])} failed ({r.returncode}): "
                         f"{(r.stderr or r.stdout).strip()[-800:]}")
    return r


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it cannot be read)."""
    try:
        return stat_cpu(pid)
    except (OSError, ValueError, IndexError):
        return 0.0


def dockerd_pid() -> int | None:
    """Read-only: the daemon's pid, for its CPU time per operation (informative)."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        return pid if Path(f"/proc/{pid}/stat").exists() else None
    except (OSError, ValueError):
        return None


def layer_statuses(output: str) -> collections.Counter:
    """Final status of each layer line in docker push/pull output."""
    last: dict[str, str] = {}
    for line in output.splitlines():
        m = LAYER_LINE.match(line.strip())
        if m:
            last[m.group(1)] = m.group(2).strip()
    return collections.Counter(re.sub(r" from .*", " from ...", s) for s in last.values())


class Proc:
    """A process we started (moto or Berth), held by its real pid."""

    def __init__(self, label: str, work: Path, name: str) -> None:
        self.label, self.work = label, work
        self.dir = work / "procs" / name
        self.dir.mkdir(parents=True)
        self.log_path = self.dir / "log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, cmd: list[str], env: dict, ready) -> "Proc":
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        # For run_aws's EXIT trap, which kills leftovers by pid if the exe still matches.
        exe = os.path.realpath(f"/proc/{self.proc.pid}/exe")
        with open(self.work / "pids", "a") as f:
            f.write(f"{self.proc.pid} {exe}\n")
        wait_ready(self.proc, self.label, ready, self.log_tail)
        log(f"{self.label} pid {self.proc.pid} on 127.0.0.1:{self.port}")
        return self

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        stop_process(self.proc)


class AwsBench(Tally):
    def __init__(self, a) -> None:
        super().__init__()
        self.a = a
        self.work = Path(a.work)
        self.procs: list[Proc] = []
        self.moto: Proc | None = None
        self.dockerd = dockerd_pid()
        self.tag = f"berth-bench-aws:{secrets.token_hex(4)}"

    # ---------------------------------------------------------------- bookkeeping
    def remember_image(self, ref: str) -> None:
        with open(self.work / "images", "a") as f:
            f.write(ref + "\n")

    # ---------------------------------------------------------------- processes
    def base_env(self) -> dict:
        # Nothing from the caller may point Berth or the SDK elsewhere (profiles, real endpoints).
        return {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "AWS_"))}

    def start_moto(self) -> Proc:
        p = Proc("moto", self.work, "moto")
        p.port = free_port()
        env = self.base_env()
        env["PYTHONUNBUFFERED"] = "1"

        def ready():
            status, _, _ = http_req(p.port, "GET", "/moto-api/", timeout=2)
            return status < 500

        self.procs.append(p)
        return p.start([self.a.moto_bin, "-H", "127.0.0.1", "-p", str(p.port)], env, ready)

    def start_berth(self, label: str, rep: int) -> Proc:
        kind = "aws" if label == LABELS[1] else "embedded"
        p = Proc(f"Berth {label} #{rep + 1}", self.work, f"{kind}-{rep}")
        p.port = free_port()
        p.kind, p.side = kind, label
        env = self.base_env()
        env["RUST_LOG"] = os.environ.get("BENCH_BERTH_RUST_LOG", "warn")
        cmd = [self.a.berth_bin, "serve", "--listen", f"127.0.0.1:{p.port}"]
        if kind == "aws":
            name = f"bench-{secrets.token_hex(4)}"
            env.update({
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto.port}",
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_EC2_METADATA_DISABLED": "true",
                "BERTH_BUCKET": name,
                "BERTH_TABLE": name,
                "BERTH_QUEUE_NAME": name,
            })
            p.bucket = name
            cmd += ["--backend", "aws", "--create-resources"]
        else:
            data = p.dir / "data"
            data.mkdir()
            cmd += ["--data-dir", str(data)]

        def ready():
            status, _, _ = http_req(p.port, "GET", "/v2/", timeout=2)
            return status == 200

        self.procs.append(p)
        return p.start(cmd, env, ready)

    def retire(self, p: Proc) -> None:
        if getattr(p, "retired", False):
            return
        p.stop()
        p.retired = True
        if getattr(p, "kind", "") == "embedded":
            shutil.rmtree(p.dir / "data", ignore_errors=True)
        # Berth logs at warn level: anything it said is worth a look.
        said = [ln for ln in p.log_tail(10_000).splitlines() if " WARN " in ln or " ERROR " in ln]
        if said:
            self.note(f"{p.label} logged {len(said)} warning/error line(s), e.g. `{said[0][-300:]}`")

    def check_moto_log(self) -> None:
        failed = [m.group(0) for m in MOTO_LOG.finditer(self.moto.log_since(0)) if m.group(3).startswith("5")]
        if failed:
            self.note(f"moto answered {len(failed)} request(s) with 5xx, e.g. `{failed[0][:200]}`")

    # ---------------------------------------------------------------- image
    def build_image(self) -> str:
        ctx = self.work / "ctx"
        ctx.mkdir()
        lines = ["FROM scratch"]
        for i in range(self.a.layers):
            with open(ctx / f"layer-{i}.bin", "wb") as f:
                for _ in range(self.a.layer_mib):
                    f.write(os.urandom(MiB))
            lines.append(f"COPY layer-{i}.bin /layer-{i}.bin")
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        self.remember_image(self.tag)
        docker("build", "--rm", "--force-rm", "-q", "-t", self.tag, str(ctx), timeout=DOCKER_TIMEOUT, env=env)
        shutil.rmtree(ctx, ignore_errors=True)
        image_id = docker("image", "inspect", "-f", "{{.Id}}", self.tag).stdout.strip()
        self.remember_image(image_id)
        return image_id

    def manifest(self, p: Proc, repo: str) -> dict | None:
        try:
            status, _, body = http_req(p.port, "GET", f"/v2/{repo}/manifests/v1", {"Accept": ACCEPT})
        except OSError as e:
            self.error(f"{p.label}: manifest GET failed: {e}")
            return None
        if status != 200:
            self.error(f"{p.label}: manifest GET of {repo}:v1 answered {status}")
            return None
        return json.loads(body)

    def moto_summary(self, text: str, bucket: str) -> tuple[collections.Counter, int]:
        """(requests by kind, blob GETs answered 200/206) from a slice of moto's log."""
        kinds: collections.Counter = collections.Counter()
        blob_gets = 0
        for m in MOTO_LOG.finditer(text):
            method, target, status = m.group(1), m.group(2), m.group(3)
            u = urlsplit(target)
            parts = u.path.lstrip("/").split("/")
            if parts[0] != bucket:
                kind = f"{method} {u.path}"  # DynamoDB / SQS (POST /) or other buckets
            else:
                what = parts[1] if len(parts) > 1 and parts[1] else "(bucket)"
                if what == "uploads" and len(parts) > 3:
                    what = "uploads/*/" + re.sub(r"-.*", "-*", parts[3])
                q = u.query
                if "partNumber=" in q:
                    what += "?partNumber"
                elif "uploadId=" in q:
                    what += "?uploadId"
                elif q.startswith("uploads") or "&uploads" in q:
                    what += "?uploads"
                elif "X-Amz-Signature=" in q:
                    what += " (presigned)"
                kind = f"{method} {what}"
                if method == "GET" and parts[1:2] == ["blobs"] and status in ("200", "206"):
                    blob_gets += 1
            kinds[f"{kind} {status}"] += 1
        return kinds, blob_gets

    # ---------------------------------------------------------------- push
    def push(self, p: Proc, rep: int, image_id: str) -> str | None:
        repo = f"bench-{p.kind}/img{rep}"
        ref = f"127.0.0.1:{p.port}/{repo}:v1"
        docker("tag", self.tag, ref)
        self.remember_image(ref)
        try:
            status, _, _ = http_req(p.port, "HEAD", f"/v2/{repo}/manifests/v1", {"Accept": ACCEPT})
            if status != 404:
                self.note(f"{p.label}: manifest HEAD before the push answered {status}, not 404")
            moto_off = self.moto.log_size()
            cpu0, moto0, d0, c0 = p.cpu(), self.moto.cpu(), self.dockerd_cpu(), children_cpu()
            t0 = time.monotonic()
            r = docker("push", ref, timeout=DOCKER_TIMEOUT, check=False)
            secs = time.monotonic() - t0
            if r.returncode != 0:
                self.error(f"push to {p.label} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
                return None
            self.record("server CPU s per push", p.side, round(p.cpu() - cpu0, 2))
            if p.kind == "aws":
                self.record("moto CPU s per push", p.side, round(self.moto.cpu() - moto0, 2))
            if self.dockerd:
                self.record("dockerd CPU s per push", p.side, round(self.dockerd_cpu() - d0, 2))
            self.record("docker client CPU s per push", p.side, round(children_cpu() - c0, 2))
            st = layer_statuses(r.stdout)
            self.record("docker push layer statuses", p.side, dict(st))
            if st.get("Pushed", 0) != self.a.layers or len(st) != 1:
                self.error(f"push to {p.label}: layer statuses {dict(st)}, expected {self.a.layers} x Pushed "
                           f"(not a full upload)")
            if p.kind == "aws":
                kinds, _ = self.moto_summary(self.moto.log_since(moto_off), p.bucket)
                self.record("moto requests per push", p.side, dict(sorted(kinds.items())))
            m = self.manifest(p, repo)
            if m is None:
                return None
            nbytes = sum(d["size"] for d in m["layers"]) + m["config"]["size"]
            if m["config"]["digest"] != image_id:
                self.note(f"{p.label}: pushed config {m['config']['digest']} is not the local image {image_id}")
            self.record("layer + config bytes", p.side, nbytes)
            self.record("push wall s", p.side, round(secs, 2))
            self.record("push", p.side, round(nbytes / 1e6 / secs, 1))
            log(f"push #{rep + 1} {p.label}: {nbytes / 1e6 / secs:.1f} MB/s ({secs:.2f} s, {dict(st)})")
            return ref
        finally:
            docker("rmi", ref, check=False)  # untag only: the build tag still holds the image

    def dockerd_cpu(self) -> float:
        return proc_cpu(self.dockerd) if self.dockerd else 0.0

    # ---------------------------------------------------------------- pull
    def drop_local(self, image_id: str, *refs: str) -> None:
        """Removes the image so the next pull downloads every layer. `docker rmi` of its last tag
        deletes the image with its layers; no `docker image prune` (the daemon is shared: a prune
        would also remove other people's dangling images), the image is checked gone instead."""
        for ref in refs:
            docker("rmi", ref, check=False)
        if docker("image", "inspect", image_id, check=False).returncode == 0:
            raise BenchError(f"image {image_id} is still present locally after docker rmi "
                             f"(another tag holds it?): a pull would not download its layers")

    def check_redirect(self, p: Proc, ref: str, image_id: str) -> None:
        repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
        m = self.manifest(p, repo)
        if not m:
            return
        status, hdrs, _ = http_req(p.port, "GET", f"/v2/{repo}/blobs/{m['layers'][0]['digest']}")
        loc = hdrs.get("location", "")
        if p.kind == "aws":
            if status != 307 or not loc.startswith(f"http://127.0.0.1:{self.moto.port}/"):
                self.note(f"{p.label}: blob GET answered {status} location {loc[:80]!r}, expected 307 to moto")
            else:
                log(f"{p.label}: blob GET -> 307 {loc.split('?')[0]}")
        elif status != 200:
            self.note(f"{p.label}: blob GET answered {status}")

    def pull(self, p: Proc, ref: str, rep: int, image_id: str) -> None:
        moto_off = self.moto.log_size()
        cpu0, moto0, d0 = p.cpu(), self.moto.cpu(), self.dockerd_cpu()
        nbytes = self.raw["layer + config bytes"][p.side][-1]
        t0 = time.monotonic()
        r = docker("pull", ref, timeout=DOCKER_TIMEOUT, check=False)
        secs = time.monotonic() - t0
        try:
            if r.returncode != 0:
                self.error(f"pull from {p.label} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
                return
            self.record("server CPU s per pull", p.side, round(p.cpu() - cpu0, 2))
            if p.kind == "aws":
                self.record("moto CPU s per pull", p.side, round(self.moto.cpu() - moto0, 2))
            if self.dockerd:
                self.record("dockerd CPU s per pull", p.side, round(self.dockerd_cpu() - d0, 2))
            st = layer_statuses(r.stdout)
            self.record("docker pull layer statuses", p.side, dict(st))
            if st.get("Pull complete", 0) != self.a.layers or len(st) != 1:
                self.error(f"pull from {p.label}: layer statuses {dict(st)}, expected {self.a.layers} x "
                           f"Pull complete (not a full download)")
            if p.kind == "aws":
                kinds, gets = self.moto_summary(self.moto.log_since(moto_off), p.bucket)
                self.record("moto blob GETs per pull", p.side, gets)
                self.record("moto requests per pull", p.side, dict(sorted(kinds.items())))
                if gets < self.a.layers:
                    self.error(f"pull from {p.label}: moto served {gets} blob GETs, expected >= {self.a.layers} "
                               f"(did docker follow the 307?)")
            self.record("pull wall s", p.side, round(secs, 2))
            self.record("pull", p.side, round(nbytes / 1e6 / secs, 1))
            log(f"pull #{rep + 1} {p.label}: {nbytes / 1e6 / secs:.1f} MB/s ({secs:.2f} s, {dict(st)})")
        finally:
            self.drop_local(image_id, ref)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        a = self.a
        self.load_start = loadavg()
        t0 = time.monotonic()
        image_id = None
        try:
            self.moto = self.start_moto()
            log(f"building {self.tag}: FROM scratch + {a.layers} x {a.layer_mib} MiB random (legacy builder)")
            image_id = self.build_image()
            log(f"image {image_id} ready after {time.monotonic() - t0:.1f} s")
            last: dict[str, tuple[Proc, str]] = {}
            prev: list[Proc] = []
            for rep in range(a.runs):
                for p in prev:
                    self.retire(p)
                cur = {lab: self.start_berth(lab, rep) for lab in LABELS}
                prev = list(cur.values())
                order = LABELS if rep % 2 == 0 else LABELS[::-1]
                for lab in order:
                    ref = self.push(cur[lab], rep, image_id)
                    if ref:
                        last[lab] = (cur[lab], ref)
            self.drop_local(image_id, self.tag)
            for lab, (p, ref) in last.items():
                self.check_redirect(p, ref, image_id)
            for rep in range(a.runs):
                order = LABELS if rep % 2 == 0 else LABELS[::-1]
                for lab in order:
                    if lab in last:
                        self.pull(last[lab][0], last[lab][1], rep, image_id)
        except BenchError as e:
            self.error(str(e))
        finally:
            for p in reversed(self.procs):
                if p is not self.moto:
                    self.retire(p)
            if self.moto:
                self.moto.stop()
                self.check_moto_log()
            self.cleanup_images()
        self.elapsed = time.monotonic() - t0
        self.load_end = loadavg()
        return self.report()

    def cleanup_images(self) -> None:
        try:
            refs = (self.work / "images").read_text().split()
        except OSError:
            return
        for ref in refs:
            if docker("image", "inspect", ref, check=False).returncode == 0:
                docker("rmi", "-f", ref, check=False)

    # ---------------------------------------------------------------- report
    def report(self) -> int:
        a = self.a
        E, W = LABELS
        rows = [
            ("push", f"docker push, {a.layers} x {a.layer_mib} MiB (MB/s, median of {a.runs})"),
            ("pull", f"docker pull, same image (MB/s, median of {a.runs})"),
        ]
        out = ["# Berth: docker push / pull, AWS backend on moto vs embedded", ""]
        out.append(f"| measure | {E} | {W} | aws/embedded |")
        out.append("| --- | ---: | ---: | ---: |")
        for m, title in rows:
            e, w = self.value(m, E), self.value(m, W)
            ratio = "error" if e is None or w is None or not e else f"{w / e:.2f}x"
            fe = "error" if e is None else f"{e:,.1f}"
            fw = "error" if w is None else f"{w:,.1f}"
            out.append(f"| {title} | {fe} | {fw} | {ratio} |")
        out.append("")
        out.append("moto is an in-process Python emulator (werkzeug's threaded server, objects in memory or "
                   "temporary files), so the AWS column measures Berth's AWS code path (multipart uploads, "
                   "copies, DynamoDB metadata, the 307 redirect to a presigned URL) **plus moto's overhead**, "
                   "not AWS itself. On pull, Berth answers the manifest and a 307 per blob; docker then "
                   "fetches each blob from moto with the presigned URL (counted in moto's request log "
                   "below), so the AWS pull figure is moto serving objects plus docker's own work.")
        out.append("")
        out.append("Setup: " + self.setup_line())
        out.append("")
        out.append("MB = 10^6 bytes of the pushed layers + config as the pushed manifest states them (docker "
                   "gzips each layer on push; random data does not shrink). The clock covers the whole "
                   "`docker push` / `docker pull` command: the daemon compresses layers on push and "
                   "decompresses and extracts them into its storage driver on pull, on the same cores as "
                   "the servers and moto. Figures from a 2-core machine shared with other work are noisy: "
                   "read the ratio, not the absolute figures.")
        out.append("")
        out.append("<details><summary>Raw samples</summary>")
        out.append("")
        out.append("Per-run figures in run order. CPU seconds are user + system time from `/proc/PID/stat` "
                   "spent during the operation (Berth server, moto, dockerd; the docker client's via "
                   "`getrusage`).")
        out.append("")
        out.append(f"| sample | {E} | {W} |")
        out.append("| --- | --- | --- |")

        def cell(vals):
            return "; ".join(json.dumps(v, separators=(", ", ": ")) if isinstance(v, dict) else str(v)
                             for v in vals).replace("|", "\\|")

        for m, per in self.raw.items():
            out.append(f"| {m} | {cell(per.get(E, []))} | {cell(per.get(W, []))} |")
        out.append("")
        out.append("</details>")
        return self.save(out, a.out, self.elapsed)

    def setup_line(self) -> str:
        r = docker("version", "-f", "client {{.Client.Version}}, daemon {{.Server.Version}}", check=False)
        dver = r.stdout.strip() or "?"
        r = docker("info", "-f", "{{.Driver}}", check=False)
        driver = r.stdout.strip() or "?"
        return (f"{machine_line(self.load_start, self.load_end)}; "
                f"Berth {self.a.berth_version}; moto {self.a.moto_version}; docker {dver}, storage driver "
                f"{driver}, legacy builder; git {self.a.git_rev}; {self.a.runs} runs. Each push goes to a fresh "
                f"server (new data dir, or new bucket + table + queue in the one moto) on a new port, so "
                f"docker can neither skip nor cross-mount a layer; embedded and AWS alternate (order flipped "
                f"every other repetition). Pulls come from the last repetition's servers with the image "
                f"removed locally before each.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (owned and removed by the caller)")
    p.add_argument("--out", required=True, help="Markdown file to write the table to")
    p.add_argument("--berth-bin", required=True)
    p.add_argument("--moto-bin", required=True, help="moto_server executable")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--layer-mib", type=int, default=64)
    p.add_argument("--berth-version", default="?")
    p.add_argument("--moto-version", default="?")
    p.add_argument("--git-rev", default="?")
    a = p.parse_args()
    if a.runs < 1 or a.layers < 1 or a.layer_mib < 1:
        p.error("--runs, --layers and --layer-mib must be >= 1")

    return run_until_signal(AwsBench(a).run)


if __name__ == "__main__":
    sys.exit(main())
