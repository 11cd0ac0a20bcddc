"""skopeo (containers/image): OCI layouts pushed to and pulled from the registry, multi-platform
indexes, a > 100 MiB layer, and cross-repository mounts driven by skopeo's blob-info cache."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from e2e_util import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, OciLayout,
                      image_config, random_bytes, require_tool, run, skopeo_creds, tar_gz)

# skopeo keeps a blob-info cache (as root: /var/lib/containers/cache/blob-info-cache-v1.boltdb)
# that records where it has seen each blob; with it, a push of known blobs to another repository
# of the same registry becomes POST ?mount=&from=. Each test gets a private cache of its own
# (bind-mounted over that path in a private mount namespace), so that nothing else on the
# machine (e.g. a benchmark that deletes the shared cache before timed pushes) can change
# what skopeo does here.
SYSTEM_CACHE = "/var/lib/containers/cache"


@pytest.fixture
def skopeo(tmp_path):
    """argv prefix running skopeo with a private blob-info cache."""
    require_tool("skopeo")
    cache = tmp_path / "blob-info-cache"
    cache.mkdir()
    if os.geteuid() == 0:
        require_tool("unshare")
        os.makedirs(SYSTEM_CACHE, exist_ok=True)
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                f'mount --bind "$0" {SYSTEM_CACHE} && exec skopeo "$@"', str(cache)]
    # rootless skopeo keeps the cache under $XDG_DATA_HOME/containers/cache
    return ["env", f"XDG_DATA_HOME={cache}", "skopeo"]


def _skopeo_copy(skopeo, registry, src: str, dst: str, *extra: str, timeout: float = 600):
    args = [*skopeo, "copy", "--all", "--preserve-digests", *extra]
    if src.startswith("docker://"):
        args += skopeo_creds(registry, "src")
    if dst.startswith("docker://"):
        args += skopeo_creds(registry, "dest")
    return run(args + [src, dst], timeout=timeout)


def _assert_same_blobs(src: OciLayout, dst: OciLayout, expected: set[str]):
    a, b = src.blob_digests(), dst.blob_digests()
    assert expected <= set(a), "test bug: expected blobs missing from the source layout"
    missing = expected - set(b)
    assert not missing, f"blobs missing after the round trip: {sorted(missing)}"
    for d in expected:
        assert b[d] == a[d], f"{d}: size {b[d]} != {a[d]}"
        # blob_digests() already verified that each file hashes to its name


def test_skopeo_multi_platform_index(skopeo, registry, api, proxy, tmp_path, repo_name):
    src = OciLayout(tmp_path / "src")
    platforms = []
    for arch in ("amd64", "arm64"):
        layers = [(OCI_LAYER_GZIP, tar_gz({f"{arch}/f{i}": random_bytes(20_000 + i)}))
                  for i in range(2)]
        platforms.append(src.add_image(layers, arch=arch))
    index_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                             "manifests": platforms}, indent=1).encode()
    index = src.add_bytes(OCI_INDEX, index_body)
    src.set_ref(index, "multi")
    expected = set(src.blob_digests())

    ref = f"docker://{proxy.host}/{repo_name}:multi"
    _skopeo_copy(skopeo, registry, f"oci:{src.root}:multi", ref)

    dst = OciLayout(tmp_path / "dst")
    _skopeo_copy(skopeo, registry, ref, f"oci:{dst.root}:back")
    _assert_same_blobs(src, dst, expected)
    assert dst.ref_descriptor("back")["digest"] == index["digest"]
    assert dst.blob_path(index["digest"]).read_bytes() == index_body

    r = api.get_manifest(repo_name, "multi")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.headers["Docker-Content-Digest"] == index["digest"]
    assert r.content == index_body
    arm = platforms[1]
    r = api.get_manifest(repo_name, arm["digest"], accept=OCI_MANIFEST)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert r.content == src.blob_path(arm["digest"]).read_bytes()


@pytest.mark.slow
def test_skopeo_big_layer_roundtrip_and_cross_repo_mount(skopeo, registry, api, proxy, tmp_path,
                                                         repo_name, big_gzip_layer):
    big_path, big_digest, big_size = big_gzip_layer
    src = OciLayout(tmp_path / "src")
    layers = [src.add_bytes(OCI_LAYER_GZIP, b"")]  # 0-byte layer
    layers += [src.add_bytes(OCI_LAYER_GZIP, tar_gz({f"small{i}": random_bytes(1000 * i + 1)}))
               for i in range(3)]
    layers.append(src.add_file(OCI_LAYER_GZIP, big_path, big_digest, big_size))
    cfg = src.add_bytes(OCI_CONFIG, image_config(diff_ids=[d["digest"] for d in layers]))
    manifest_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                                "layers": layers}).encode()
    man = src.add_bytes(OCI_MANIFEST, manifest_body)
    src.set_ref(man, "big")
    expected = set(src.blob_digests())

    ref = f"docker://{proxy.host}/{repo_name}:big"
    _skopeo_copy(skopeo, registry, f"oci:{src.root}:big", ref)
    for d in [cfg, *layers]:
        h = api.head(f"/v2/{repo_name}/blobs/{d['digest']}")
        assert h.status_code == 200, f"{d['digest']} -> {h.status_code}"
        assert int(h.headers["Content-Length"]) == d["size"]

    dst = OciLayout(tmp_path / "dst")
    _skopeo_copy(skopeo, registry, ref, f"oci:{dst.root}:big", "--dest-oci-accept-uncompressed-layers")
    _assert_same_blobs(src, dst, expected)
    assert dst.blob_path(man["digest"]).read_bytes() == manifest_body

    # Same image to a second repository: skopeo's blob-info cache knows the blobs live in the
    # first one and mounts them (POST ?mount=&from=) instead of uploading.
    second = repo_name + "-copy"
    proxy.clear()
    _skopeo_copy(skopeo, registry, f"oci:{src.root}:big", f"docker://{proxy.host}/{second}:big")
    # skopeo mounts layers (HEAD in the new repo -> 404, HEAD in the known one -> 200, then
    # POST ?mount=&from=); it never tries a mount for the config, which it uploads again.
    mounts = proxy.mounts()
    assert mounts == {d["digest"]: 201 for d in layers}, (
        f"skopeo should have mounted every layer from {repo_name}:\n{proxy.summary()}")
    uploaded = [r["path"] for r in proxy.records if r["method"] == "PUT"
                and "/blobs/uploads/" in r["path"]]
    assert all(cfg["digest"].replace(":", "%3A") in p for p in uploaded), (
        f"layer bytes were uploaded again:\n{proxy.summary()}")
    for d in [cfg, *layers]:
        h = api.head(f"/v2/{second}/blobs/{d['digest']}")
        assert h.status_code == 200, f"{second}: {d['digest']} -> {h.status_code}"
        assert int(h.headers["Content-Length"]) == d["size"]
        assert h.headers.get("Docker-Content-Digest") == d["digest"]
    r = api.get_manifest(second, "big")
    assert r.status_code == 200 and r.content == manifest_body
    # the big blob reads back intact from the second repository
    g = api.get(f"/v2/{second}/blobs/{big_digest}", stream=True)
    assert g.status_code == 200
    h = hashlib.sha256()
    for block in g.iter_content(1 << 20):
        h.update(block)
    assert "sha256:" + h.hexdigest() == big_digest
