#!/usr/bin/env python3
"""Image-trust benchmark for Berth (issue 17).

    cargo build --release -p berth --bin berth
    .venv/bin/python tests/bench/trust.py                     # print the table
    .venv/bin/python tests/bench/trust.py --out tests/bench/results/trust.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/trust.py --gets 300 --pushes 20   # quick; debug figures!

One `berth serve` on embedded storage and the CNCF distribution registry (`docker-registry`, no
auth) as the reference, both on loopback. Signatures are made as cosign makes them: a
simple-signing payload signed by OpenSSL with an ECDSA P-256 key, pushed as a `sha256-<hex>.sig`
image whose layer annotation holds the signature.

A. Manifest GET requests/second of a signed image by digest, as a pull-only principal (a
   service-viewer's pull token, as docker gets one), 4 client threads on keep-alive sessions,
   with the registry's trust mode off, any-signature and trusted-keys (the image's signature
   verifies, so every GET passes the gate), in rotating rounds; distribution's GET of the same
   manifest is the reference. Target: the gated modes within 5% of off.
B. Signature push latency: the `PUT` of a `.sig` manifest, which Berth answers only after
   detecting the signature and verifying it against each of the registry's keys (1, then 32),
   beside the `PUT` of the same manifest under an ordinary tag (no signature to verify) and
   distribution's `PUT` of the `.sig` manifest. One subject image per push; median and p95.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, BenchError, Server, loadavg, log, machine_line, release_bench_main,
    write_table,
)
from scan import Client as ScanClient, get_rate, sha  # noqa: E402

AUTH = (BENCH_ACCESS_KEY, BENCH_SECRET_KEY)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
REPO = "bench/trusted"


class Key:
    """An ECDSA P-256 key made and used by OpenSSL (what `cosign generate-key-pair` makes)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.private, self.public = directory / "cosign.key", directory / "cosign.pub"
        subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(self.private)],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "ec", "-in", str(self.private), "-pubout", "-out", str(self.public)], check=True,
                       capture_output=True)
        self.pem = self.public.read_text()

    def sign(self, message: bytes) -> str:
        f = self.dir / "message"
        f.write_bytes(message)
        out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.private), str(f)], check=True,
                             capture_output=True).stdout
        return base64.b64encode(out).decode()


class Client(ScanClient):
    """The scan benchmark's client, timing manifest PUTs."""

    def put(self, repo: str, ref: str, body: bytes) -> float:
        """PUTs a manifest; returns the seconds the answer took."""
        t0 = time.monotonic()
        r = self.s.put(f"{self.base}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": OCI_MANIFEST},
                       timeout=60)
        secs = time.monotonic() - t0
        if r.status_code != 201:
            raise BenchError(f"manifest put {ref}: {r.status_code} {r.text[:200]}")
        return secs


def image(c: Client, n: int) -> tuple[str, bytes]:
    """A small image whose config makes it unique; returns (digest, manifest)."""
    config = c.blob(REPO, json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode())
    layer = c.blob(REPO, b"bench layer")
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, **config},
                       "layers": [{"mediaType": LAYER, **layer}]}).encode()
    c.put(REPO, f"img{n}", body)
    return sha(body), body


def signature(c: Client, key: Key, subject: str) -> bytes:
    """cosign's signature image of `subject` (its blobs pushed); returns the manifest bytes."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"bench/{REPO}"},
                                       "image": {"docker-manifest-digest": subject},
                                       "type": "cosign container image signature"}, "optional": None},
                         separators=(",", ":")).encode()
    layer = c.blob(REPO, payload)
    config = c.blob(REPO, json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers",
                                                                               "diff_ids": [layer["digest"]]},
                                      "config": {}}).encode())
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, **config},
                       "layers": [{"mediaType": SIMPLE_SIGNING, **layer,
                                   "annotations": {"dev.cosignproject.cosign/signature": key.sign(payload)}}]}).encode()


def sig_tag(subject: str) -> str:
    return f"sha256-{subject.split(':')[1]}.sig"


def pull_token(base: str, creds) -> str:
    r = requests.get(f"{base}/auth/token", params={"service": "berth", "scope": f"repository:{REPO}:pull"},
                     auth=creds, timeout=30)
    if r.status_code != 200:
        raise BenchError(f"token: {r.status_code} {r.text[:200]}")
    return r.json()["token"]


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{statistics.median(values) * 1000:.2f} | {p95 * 1000:.2f}"


def run(a) -> int:
    load_start = loadavg()
    work = Path(a.work or tempfile.mkdtemp(prefix="berth-trust-bench-"))
    berth = Server("berth", "berth", work, a.berth_bin).start("berth")
    peer = Server("distribution", "distribution", work, None).start("distribution")
    try:
        c, d = Client(berth.port), Client(peer.port, auth=None)
        key = Key(work / "key")
        trust = f"{c.base}/api/v1/registries/bench/trust"

        def set_mode(mode: str):
            r = c.s.put(trust, json={"mode": mode}, timeout=30)
            if r.status_code != 200:
                raise BenchError(f"trust mode: {r.status_code} {r.text[:200]}")

        r = c.s.post(f"{trust}/keys", json={"pem": key.pem, "name": "bench"}, timeout=30)
        if r.status_code != 201:
            raise BenchError(f"trust key: {r.status_code} {r.text[:200]}")

        # A. GETs of one signed image by a viewer, mode off / any-signature / trusted-keys
        log("a signed image and a viewer")
        subject, manifest = image(c, 0)
        c.put(REPO, sig_tag(subject), signature(c, key, subject))
        view = c.s.get(f"{c.base}/api/v1/images/{REPO}/artifacts/{subject}", timeout=30).json()["signature"]
        if not view["verified"]:
            raise BenchError(f"the signature did not verify: {view}")
        r = c.s.post(f"{c.base}/api/v1/users", json={"name": "viewer", "role": "service-viewer"}, timeout=30)
        r = c.s.post(f"{c.base}/api/v1/users/viewer/keys", timeout=30)
        viewer = (r.json()["access_key"], r.json()["secret_key"])
        peer_subject, _ = image(d, 0)
        path = f"/v2/{REPO}/manifests/{subject}"
        modes = ["off", "any-signature", "trusted-keys"]
        rates: dict[str, list[float]] = {m: [] for m in modes}
        ref: list[float] = []
        for rnd in range(a.rounds):
            order = modes[rnd % 3:] + modes[:rnd % 3]
            for mode in order:
                set_mode(mode)
                headers = {"Authorization": f"Bearer {pull_token(c.base, viewer)}"}
                rates[mode].append(get_rate(c.base, path, None, a.gets, headers=headers))
            ref.append(get_rate(d.base, f"/v2/{REPO}/manifests/{peer_subject}", None, a.gets))
        set_mode("trusted-keys")

        # B. signature pushes: verified against 1 key, then 32
        pushes: dict[str, list[float]] = {"sig1": [], "sig32": [], "plain": [], "dist": []}
        for keys, label in ((1, "sig1"), (32, "sig32")):
            if keys == 32:
                for i in range(31):
                    extra = Key(work / f"key{i}")
                    r = c.s.post(f"{trust}/keys", json={"pem": extra.pem}, timeout=30)
                    if r.status_code != 201:
                        raise BenchError(f"trust key {i}: {r.status_code} {r.text[:200]}")
            log(f"{a.pushes} signature pushes, {keys} trusted key(s)")
            for i in range(a.pushes):
                n = keys * 10_000 + i
                subj, _ = image(c, n)
                body = signature(c, key, subj)
                pushes[label].append(c.put(REPO, sig_tag(subj), body))
                if keys == 1:
                    pushes["plain"].append(c.put(REPO, f"plain{n}", body))
                    dsubj, _ = image(d, n)
                    dbody = signature(d, key, dsubj)
                    pushes["dist"].append(d.put(REPO, sig_tag(dsubj), dbody))
        last = c.s.get(f"{c.base}/api/v1/images/{REPO}/artifacts/{subj}", timeout=30).json()["signature"]
        if not last["verified"]:
            raise BenchError(f"the last signature did not verify: {last}")
        load_end = loadavg()
    finally:
        berth.stop()
        peer.stop()

    off = statistics.median(rates["off"])
    lines = [
        f"Trust benchmark ({machine_line(load_start, load_end)}); berth `{a.berth_bin}`",
        "",
        f"A. manifest GET of a signed image by digest, as a service-viewer with a pull token, 4 threads, "
        f"{a.gets} GETs per round, {a.rounds} rounds (median req/s)",
        "",
        "| | trust off | any-signature | trusted-keys | any ÷ off | trusted ÷ off | distribution (reference) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| req/s | {off:.0f} | {statistics.median(rates['any-signature']):.0f} | "
        f"{statistics.median(rates['trusted-keys']):.0f} | {statistics.median(rates['any-signature']) / off:.3f} | "
        f"{statistics.median(rates['trusted-keys']) / off:.3f} | {statistics.median(ref):.0f} |",
        "",
        f"B. manifest PUT latency, {a.pushes} pushes each, one fresh subject per push (ms)",
        "",
        "| push | median | p95 |",
        "| --- | ---: | ---: |",
        f"| Berth: `.sig` signature, detected and verified, 1 trusted key | {ms(pushes['sig1'])} |",
        f"| Berth: `.sig` signature, detected and verified, 32 trusted keys | {ms(pushes['sig32'])} |",
        f"| Berth: the same manifest under an ordinary tag (nothing to verify) | {ms(pushes['plain'])} |",
        f"| distribution: `.sig` signature (reference; stores it, verifies nothing) | {ms(pushes['dist'])} |",
    ]
    return write_table(lines, a.out)


def add_arguments(p, repo_root: str) -> None:
    p.add_argument("--gets", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--pushes", type=int, default=100)


if __name__ == "__main__":
    sys.exit(release_bench_main(__doc__, run, add_arguments))
