"""Restarts, kill -9 mid-push, expiry of orphaned upload sessions, concurrent pushes."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import requests

from e2e_util import (OCI_CONFIG, OCI_MANIFEST, assert_error, descriptor, digest, image_config,
                      random_bytes, tar_gz)

OCTET = {"Content-Type": "application/octet-stream"}
MiB = 1024 * 1024


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _streamed_sha256(api, repo, d) -> str:
    r = api.get(f"/v2/{repo}/blobs/{d}", stream=True)
    assert r.status_code == 200, r.status_code
    h = hashlib.sha256()
    for block in r.iter_content(1 << 20):
        h.update(block)
    return "sha256:" + h.hexdigest()


# Not berth_only: distribution passes too, because conftest gives it a fixed http.secret
# (its upload URLs carry HMAC-signed state).
def _both_at_once(work, timeout: float) -> list:
    """Runs work(i, barrier) for i = 0 and 1 in two threads sharing a 2-party barrier; returns
    what each returned, or the exception it raised (reported by the caller's assertion)."""
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def run(i):
        try:
            results[i] = work(i, barrier)
        except Exception as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results


def test_restart_mid_chunked_upload(registry, api, repo_name):
    data = random_bytes(3 * MiB + 5)
    d = digest(data)
    loc = api.new_session(repo_name)
    first = 2 * MiB
    r = api.patch(loc, data=data[:first], headers={**OCTET, "Content-Range": f"0-{first - 1}"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])

    port, data_dir = registry.port, registry.data_dir
    registry.stop()
    registry.start()
    assert (registry.port, registry.data_dir) == (port, data_dir)

    s = api.get(loc)
    assert s.status_code == 204, f"upload status after restart -> {s.status_code} {s.text}"
    assert s.headers.get("Range") == f"0-{first - 1}"
    r = api.patch(loc, data=data[first:],
                  headers={**OCTET, "Content-Range": f"{first}-{len(data) - 1}"})
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    r = api.put(api.url(r.headers["Location"]), params={"digest": d})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert api.get_blob(repo_name, d) == data
    assert registry.staging_files() == []


@pytest.mark.berth_only  # uses Berth's --upload-expiry/--sweep-interval and data-dir layout
@pytest.mark.slow
@pytest.mark.embedded_only
def test_kill9_during_streamed_push(registry, api, repo_name):
    # an image pushed before the crash
    old_repo = repo_name + "-old"
    old = api.push_image(old_repo, "v1", [tar_gz({"x": random_bytes(200_000)}), random_bytes(MiB)])

    total = 128 * MiB
    blob = random_bytes(total)
    d = digest(blob)
    loc = api.new_session(repo_name)
    sent = [0]
    outcome = {}
    stop = threading.Event()

    def slow_body():
        for off in range(0, total, MiB):
            if stop.is_set():
                return
            yield blob[off:off + MiB]
            sent[0] += MiB
            if sent[0] >= 16 * MiB:
                time.sleep(0.05)  # slow enough that the kill lands mid-stream

    def push():
        try:
            outcome["response"] = api.patch(loc, data=slow_body(), headers=OCTET, timeout=120)
        except requests.RequestException as e:
            outcome["error"] = e

    t = threading.Thread(target=push, daemon=True)
    t.start()
    _wait_for(lambda: sent[0] >= 32 * MiB, 60, "32 MiB sent")
    _wait_for(lambda: any(f.stat().st_size > 0 for f in registry.staging_files()), 10,
              "the staging file to receive bytes")
    registry.kill()
    stop.set()
    t.join(30)
    assert not t.is_alive()
    assert "response" not in outcome or outcome["response"].status_code >= 400, \
        "the PATCH finished although the server was killed mid-stream"
    assert sent[0] < total

    registry.start()
    assert api.head(f"/v2/{repo_name}/blobs/{d}").status_code == 404
    assert_error(api.get(f"/v2/{repo_name}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    # what was committed before the crash is intact
    r = api.get_manifest(old_repo, "v1")
    assert r.status_code == 200 and r.content == old["manifest"]
    for ld, data in [old["config"], *old["layers"]]:
        assert api.get_blob(old_repo, ld) == data

    # a fresh full push of the same blob succeeds
    loc2 = api.new_session(repo_name)
    r = api.put(loc2, params={"digest": d}, data=blob, headers=OCTET)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert _streamed_sha256(api, repo_name, d) == d

    # the orphaned session is swept once it expires
    registry.stop()
    registry.start(extra_args=["--upload-expiry", "1", "--sweep-interval", "1"])
    _wait_for(lambda: registry.staging_files() == [], 15,
              "the orphaned staging file to be swept from DIR/uploads")
    assert_error(api.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert _streamed_sha256(api, repo_name, d) == d


def test_concurrent_pushes_of_the_same_blob(api, repo_name):
    data = random_bytes(8 * MiB)
    d = digest(data)

    def push(_i, barrier):
        loc = api.new_session(repo_name)
        barrier.wait(10)
        r = api.patch(loc, data=data, headers={**OCTET,
                                               "Content-Range": f"0-{len(data) - 1}"})
        assert r.status_code == 202, f"PATCH {r.status_code} {r.text}"
        r = api.put(api.url(r.headers["Location"]), params={"digest": d})
        return r.status_code

    results = _both_at_once(push, 120)
    assert results == [201, 201], results
    assert api.get_blob(repo_name, d) == data


def test_concurrent_pushes_of_the_same_tag(api, repo_name):
    bodies = []
    for arch in ("amd64", "arm64"):
        cfg = image_config(arch=arch)
        layer = tar_gz({arch: random_bytes(10_000)})
        api.push_blob(repo_name, cfg)
        api.push_blob(repo_name, layer)
        bodies.append(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                  "config": descriptor(OCI_CONFIG, cfg),
                                  "layers": [descriptor(OCI_CONFIG.replace("config", "layer")
                                                        .replace("+json", ".tar+gzip"),
                                                        layer)]}).encode())
    digests = {digest(b): b for b in bodies}
    for round_ in range(5):
        def put(i, barrier):
            barrier.wait(10)
            return api.put_manifest(repo_name, "race", bodies[i], OCI_MANIFEST).status_code

        results = _both_at_once(put, 60)
        assert results == [201, 201], f"round {round_}: {results}"
        r = api.get_manifest(repo_name, "race")
        assert r.status_code == 200
        got = r.headers["Docker-Content-Digest"]
        assert got in digests, got
        assert r.content == digests[got]
        h = api.get_manifest(repo_name, "race", method="HEAD")
        assert h.headers["Docker-Content-Digest"] == got
    for d, b in digests.items():
        r = api.get_manifest(repo_name, d)
        assert r.status_code == 200 and r.content == b
    assert api.tags(repo_name) == ["race"]
