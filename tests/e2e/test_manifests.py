"""Manifests over raw HTTP: exact bytes kept, digests, content types, tags, deletes."""

from __future__ import annotations

import json

import pytest

from e2e_util import (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG,
                      OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, assert_error, descriptor, digest,
                      image_config, random_bytes, tar_gz, weird_json)


def _push_parts(api, repo, n_layers=2, config=None, layer_type=OCI_LAYER_GZIP,
                config_type=OCI_CONFIG):
    config = config if config is not None else image_config()
    layers = [tar_gz({f"f{i}": random_bytes(3000)}) for i in range(n_layers)]
    api.push_blob(repo, config)
    for layer in layers:
        api.push_blob(repo, layer)
    return descriptor(config_type, config), [descriptor(layer_type, x) for x in layers]


def _check_get(api, repo, ref, body, media_type):
    d = digest(body)
    r = api.get_manifest(repo, ref)
    assert r.status_code == 200, f"GET manifest {ref} -> {r.status_code} {r.text[:300]}"
    assert r.content == body, "manifest bytes changed"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("Content-Type") == media_type
    h = api.get_manifest(repo, ref, method="HEAD")
    assert h.status_code == 200
    assert h.headers.get("Docker-Content-Digest") == d
    assert h.headers.get("Content-Type") == media_type
    assert int(h.headers["Content-Length"]) == len(body)
    assert h.content == b""


def test_oci_manifest_by_tag_and_digest_exact_bytes(api, repo_name):
    cfg, layers = _push_parts(api, repo_name)
    body = weird_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                       "layers": layers, "annotations": {"org.example.ü": "ünïcode ✓"}})
    d = digest(body)
    r = api.put_manifest(repo_name, "v1", body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("Location", "").endswith(f"/v2/{repo_name}/manifests/{d}")
    _check_get(api, repo_name, "v1", body, OCI_MANIFEST)
    _check_get(api, repo_name, d, body, OCI_MANIFEST)
    assert api.tags(repo_name) == ["v1"]
    assert api.get_manifest(repo_name, "v2").status_code == 404
    assert_error(api.get_manifest(repo_name, "v2"), 404, "MANIFEST_UNKNOWN")

    r = api.delete(f"/v2/{repo_name}/manifests/{d}")
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert_error(api.get_manifest(repo_name, d), 404, "MANIFEST_UNKNOWN")
    assert api.get_manifest(repo_name, d, method="HEAD").status_code == 404
    assert api.get_manifest(repo_name, "v1").status_code == 404
    assert "v1" not in api.tags(repo_name)


def test_manifest_put_by_digest_has_no_tag(api, repo_name):
    cfg, layers = _push_parts(api, repo_name, 1)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                       "layers": layers}, separators=(",", ":")).encode()
    d = digest(body)
    r = api.put_manifest(repo_name, d, body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    _check_get(api, repo_name, d, body, OCI_MANIFEST)
    assert api.tags(repo_name) == []
    # a body that does not hash to the digest in the URL is refused
    other = body + b" "
    assert_error(api.put_manifest(repo_name, d, other, OCI_MANIFEST), 400,
                 ("DIGEST_INVALID", "MANIFEST_INVALID"))


@pytest.mark.berth_only  # distribution 2.8 refuses DELETE by tag (400 DIGEST_INVALID)
def test_delete_manifest_by_tag_removes_only_the_tag(api, repo_name):
    cfg, layers = _push_parts(api, repo_name, 1)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                       "layers": layers}).encode()
    d = digest(body)
    assert api.put_manifest(repo_name, "keep", body, OCI_MANIFEST).status_code == 201
    assert api.put_manifest(repo_name, "drop", body, OCI_MANIFEST).status_code == 201
    r = api.delete(f"/v2/{repo_name}/manifests/drop")
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert api.tags(repo_name) == ["keep"]
    assert_error(api.get_manifest(repo_name, "drop"), 404, "MANIFEST_UNKNOWN")
    _check_get(api, repo_name, d, body, OCI_MANIFEST)
    _check_get(api, repo_name, "keep", body, OCI_MANIFEST)


def test_retag_moves_tag(api, repo_name):
    bodies = []
    for i in range(2):
        cfg, layers = _push_parts(api, repo_name, 1, config=image_config(arch=f"arch{i}"))
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                           "layers": layers}).encode()
        r = api.put_manifest(repo_name, "latest", body, OCI_MANIFEST)
        assert r.status_code == 201
        bodies.append(body)
        _check_get(api, repo_name, "latest", body, OCI_MANIFEST)
    # the first manifest is still there by digest
    _check_get(api, repo_name, digest(bodies[0]), bodies[0], OCI_MANIFEST)
    assert api.tags(repo_name) == ["latest"]


def test_docker_schema2_manifest_and_manifest_list(api, repo_name):
    cfg, layers = _push_parts(api, repo_name, 2, layer_type=DOCKER_LAYER,
                              config_type=DOCKER_CONFIG)
    m = weird_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": cfg,
                    "layers": layers})
    r = api.put_manifest(repo_name, "amd64", m, DOCKER_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == digest(m)
    _check_get(api, repo_name, "amd64", m, DOCKER_MANIFEST)

    lst = weird_json({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        descriptor(DOCKER_MANIFEST, m, platform={"architecture": "amd64", "os": "linux"})]})
    r = api.put_manifest(repo_name, "multi", lst, DOCKER_LIST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == digest(lst)
    _check_get(api, repo_name, "multi", lst, DOCKER_LIST)
    _check_get(api, repo_name, digest(lst), lst, DOCKER_LIST)
    assert sorted(api.tags(repo_name)) == ["amd64", "multi"]


def test_oci_index(api, repo_name):
    mans = []
    for arch in ("amd64", "arm64"):
        cfg, layers = _push_parts(api, repo_name, 1, config=image_config(arch=arch))
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                           "layers": layers}).encode()
        assert api.put_manifest(repo_name, digest(body), body, OCI_MANIFEST).status_code == 201
        mans.append(descriptor(OCI_MANIFEST, body, platform={"architecture": arch,
                                                              "os": "linux"}))
    idx = weird_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": mans})
    r = api.put_manifest(repo_name, "multi", idx, OCI_INDEX)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    _check_get(api, repo_name, "multi", idx, OCI_INDEX)
    _check_get(api, repo_name, digest(idx), idx, OCI_INDEX)


@pytest.mark.berth_only  # PUT manifests/<digest>?tag= is new in the spec (after v1.1.1)
def test_put_by_digest_with_tag_params(api, repo_name):
    cfg, layers = _push_parts(api, repo_name, 1)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                       "layers": layers}).encode()
    d = digest(body)
    r = api.put(f"/v2/{repo_name}/manifests/{d}", params=[("tag", "a"), ("tag", "b")],
                data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert sorted(api.tags(repo_name)) == ["a", "b"]
    _check_get(api, repo_name, "a", body, OCI_MANIFEST)
    _check_get(api, repo_name, "b", body, OCI_MANIFEST)


def test_large_manifest_just_under_4mib(api, repo_name):
    cfg, layers = _push_parts(api, repo_name, 1)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers,
         "annotations": {}}
    target = 4 * 1024 * 1024 - 1024
    base = len(json.dumps(m).encode())
    n_pad = (target - base) // 6030 + 1  # each entry adds ~6 KiB
    for n in range(n_pad):
        m["annotations"][f"org.example.pad.{n:06d}"] = random_bytes(3000).hex()
    over = len(json.dumps(m).encode()) - target
    last_key = f"org.example.pad.{n_pad - 1:06d}"
    assert 0 <= over < 6000
    m["annotations"][last_key] = m["annotations"][last_key][over:]
    body = json.dumps(m).encode()
    assert len(body) == target
    r = api.put_manifest(repo_name, "big", body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text[:300]}"
    _check_get(api, repo_name, "big", body, OCI_MANIFEST)
