"""Bad input: each case asserts status + error code, and that nothing became visible."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from e2e_util import (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, assert_error, descriptor, digest,
                      image_config, random_bytes)

OCTET = {"Content-Type": "application/octet-stream"}


def _cancel(api, loc):
    r = api.delete(loc)
    assert r.status_code in (204, 404), f"DELETE session -> {r.status_code} {r.text}"


def _range(api, loc) -> str:
    s = api.get(loc)
    assert s.status_code == 204, f"GET status -> {s.status_code} {s.text}"
    return s.headers.get("Range")


def test_wrong_digest_on_put(api, repo_name, registry):
    data = random_bytes(5000)
    wrong = digest(b"not the data")
    loc = api.new_session(repo_name)
    r = api.put(loc, params={"digest": wrong}, data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert api.blob_status(repo_name, wrong) == 404
    assert api.blob_status(repo_name, digest(data)) == 404
    _cancel(api, loc)
    if registry.is_berth():  # distribution 2.8 leaves _uploads/<id>/data for its purger
        assert registry.staging_files() == []


@pytest.mark.edge_only
def test_put_without_digest(api, repo_name, registry):
    loc = api.new_session(repo_name)
    r = api.put(loc, data=b"abc", headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert api.blob_status(repo_name, digest(b"abc")) == 404
    _cancel(api, loc)
    assert registry.staging_files() == []


@pytest.mark.edge_only
def test_unknown_digest_algorithm(api, repo_name, registry):
    data = b"hello md5"
    md5 = "md5:" + hashlib.md5(data).hexdigest()
    loc = api.new_session(repo_name)
    r = api.put(loc, params={"digest": md5}, data=data, headers=OCTET)
    assert_error(r, 400, ("DIGEST_INVALID", "UNSUPPORTED"))
    assert api.blob_status(repo_name, digest(data)) == 404
    _cancel(api, loc)
    assert registry.staging_files() == []
    # malformed digests are refused the same way
    loc = api.new_session(repo_name)
    r = api.put(loc, params={"digest": "sha256:xyz"}, data=data, headers=OCTET)
    assert_error(r, 400, ("DIGEST_INVALID", "UNSUPPORTED"))
    _cancel(api, loc)
    assert registry.staging_files() == []


@pytest.mark.edge_only
@pytest.mark.berth_only  # distribution 2.8 answers 404 BLOB_UNKNOWN for GET blobs/md5:...
def test_unknown_digest_algorithm_on_blob_get(api, repo_name):
    api.push_blob(repo_name, b"x")
    r = api.get(f"/v2/{repo_name}/blobs/md5:{hashlib.md5(b'x').hexdigest()}")
    assert_error(r, 400, ("DIGEST_INVALID", "UNSUPPORTED"))


@pytest.mark.berth_only  # distribution 2.8 ignores Content-Range: it appends and answers 202
def test_out_of_order_chunk_then_resume(api, repo_name, registry):
    data = random_bytes(300)
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=data[:100], headers={**OCTET, "Content-Range": "0-99"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])
    # a gap
    r = api.patch(loc, data=data[200:], headers={**OCTET, "Content-Range": "200-299"})
    assert r.status_code == 416, f"{r.status_code} {r.text}"
    assert _range(api, loc) == "0-99"
    # an overlap (re-sent first chunk)
    r = api.patch(loc, data=data[:100], headers={**OCTET, "Content-Range": "0-99"})
    assert r.status_code == 416, f"{r.status_code} {r.text}"
    assert _range(api, loc) == "0-99"
    # resume from the right offset
    r = api.patch(loc, data=data[100:], headers={**OCTET, "Content-Range": "100-299"})
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    loc = api.url(r.headers["Location"])
    r = api.put(loc, params={"digest": digest(data)})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert api.get_blob(repo_name, digest(data)) == data
    assert registry.staging_files() == []


@pytest.mark.edge_only
@pytest.mark.berth_only  # distribution 2.8 ignores Content-Range
def test_out_of_order_chunk_error_code(api, repo_name):
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=b"z" * 10, headers={**OCTET, "Content-Range": "5-14"})
    assert_error(r, 416, "BLOB_UPLOAD_INVALID")
    _cancel(api, loc)


@pytest.mark.edge_only
@pytest.mark.berth_only  # distribution 2.8: 404 but code BLOB_UPLOAD_INVALID (no _state)
def test_unknown_upload_id(api, repo_name):
    api.push_blob(repo_name, b"repo exists")
    loc = f"/v2/{repo_name}/blobs/uploads/{uuid.uuid4()}"
    assert_error(api.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(api.patch(loc, data=b"abc", headers={**OCTET, "Content-Range": "0-2"}), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(api.put(loc, params={"digest": digest(b"abc")}, data=b"abc", headers=OCTET),
                 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(api.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert api.blob_status(repo_name, digest(b"abc")) == 404


BAD_NAMES = [
    "E2E/UpperCase",
    "e2e/../etc",
    "e2e/./x",
    "/leading",          # -> /v2//leading/...
    "e2e//double",
    "e2e/trailing-",
    "-e2e/leading-dash",
    "e2e/" + "a" * 260,  # longer than 255
]


# distribution 2.8: 404 "page not found" (no route), 301 for dot segments and empty
# components, 500 UNKNOWN for an over-long name
@pytest.mark.edge_only
@pytest.mark.berth_only
@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_repository_name(api, name):
    status, headers, body = api.raw("POST", f"/v2/{name}/blobs/uploads/")
    assert status == 400, f"POST /v2/{name}/blobs/uploads/ -> {status} {body[:200]!r}"
    assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID", body
    status, _, body = api.raw("GET", f"/v2/{name}/tags/list")
    assert status in (400, 404), f"GET tags of {name} -> {status}"
    cat = api.get("/v2/_catalog").json()["repositories"]
    assert cat == [], f"catalog lists {cat} after invalid name {name}"


@pytest.mark.edge_only
def test_name_of_255_chars_including_host_is_accepted(api, registry):
    # 255 characters including "127.0.0.1:PORT/" is the limit for the whole reference name
    room = 255 - len(registry.host) - 1
    name = "e2e/" + "n" * (room - 4)
    d = api.push_blob(name, b"long name")
    assert api.get_blob(name, d) == b"long name"


@pytest.mark.edge_only
def test_tag_longer_than_128(api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, cfg), "layers": []}).encode()
    ok = "t" * 128
    r = api.put_manifest(repo_name, ok, body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    bad = "t" * 129
    r = api.put_manifest(repo_name, bad, body, OCI_MANIFEST)
    assert r.status_code in (400, 404), f"{r.status_code} {r.text}"
    assert api.tags(repo_name) == [ok]


@pytest.mark.edge_only
@pytest.mark.berth_only  # distribution 2.8: 404 with no route for a 129-char tag
def test_tag_longer_than_128_error_code(api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, cfg), "layers": []}).encode()
    r = api.put_manifest(repo_name, "t" * 129, body, OCI_MANIFEST)
    assert_error(r, 400, ("TAG_INVALID", "MANIFEST_INVALID"))
    r = api.put_manifest(repo_name, ".starts-with-dot", body, OCI_MANIFEST)
    assert_error(r, 400, ("TAG_INVALID", "MANIFEST_INVALID"))
    assert api.tags(repo_name) == []


def test_manifest_naming_missing_blob(api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    missing = random_bytes(100)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, cfg),
                       "layers": [descriptor(OCI_LAYER_GZIP, missing)]}).encode()
    r = api.put_manifest(repo_name, "v1", body, OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert api.get_manifest(repo_name, "v1").status_code == 404
    assert api.get_manifest(repo_name, digest(body)).status_code == 404
    assert "v1" not in api.tags(repo_name)


@pytest.mark.edge_only
def test_malformed_manifest(api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    truncated = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": descriptor(OCI_CONFIG, cfg), "layers": []}).encode()[:-7]
    for body in (truncated, b"not json at all", b""):
        r = api.put_manifest(repo_name, "v1", body, OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
        assert api.get_manifest(repo_name, digest(body)).status_code == 404
    assert api.get_manifest(repo_name, "v1").status_code == 404
    assert api.tags(repo_name) == []


@pytest.mark.edge_only
@pytest.mark.berth_only  # distribution 2.8: 500 UNKNOWN for these
def test_structurally_invalid_manifest(api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    good = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, cfg), "layers": []}
    bad = [
        {**good, "schemaVersion": 1},
        {k: v for k, v in good.items() if k != "config"},
        {**good, "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": "sha256:nothex",
                             "size": 1}]},
        {**good, "layers": "not a list"},
    ]
    for m in bad:
        body = json.dumps(m).encode()
        r = api.put_manifest(repo_name, "v1", body, OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
        assert api.get_manifest(repo_name, digest(body)).status_code == 404
    assert api.tags(repo_name) == []


@pytest.mark.berth_only  # distribution 2.8 does not check the body against Content-Range
def test_patch_body_larger_than_declared(api, repo_name, registry):
    data = random_bytes(20)
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=data[:10], headers={**OCTET, "Content-Range": "0-9"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])
    r = api.patch(loc, data=random_bytes(30), headers={**OCTET, "Content-Range": "10-19"})
    assert r.status_code in (400, 416), f"{r.status_code} {r.text}"
    assert_error(r, (400, 416), ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    assert _range(api, loc) == "0-9", "a refused PATCH moved the upload offset"
    r = api.patch(loc, data=data[10:], headers={**OCTET, "Content-Range": "10-19"})
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    r = api.put(api.url(r.headers["Location"]), params={"digest": digest(data)})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert api.get_blob(repo_name, digest(data)) == data
    assert registry.staging_files() == []


def test_unknown_repository(api):
    r = api.get_manifest("e2e/nothing-here", "latest")
    assert_error(r, 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))
    r = api.get(f"/v2/e2e/nothing-here/blobs/{digest(b'x')}")
    assert_error(r, 404, ("NAME_UNKNOWN", "BLOB_UNKNOWN"))


@pytest.mark.edge_only
def test_error_responses_keep_the_connection_usable(api, registry, repo_name):
    """A registry that refuses a request without reading its body must say `Connection: close`;
    otherwise the client reuses the keep-alive connection and its next request dies
    (RemoteDisconnected / broken pipe). Bodies are large so none is swallowed by buffering."""
    import http.client
    import time
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    pad = {"org.example.pad": random_bytes(150_000).hex()}  # ~300 KB manifest
    good = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, cfg), "layers": [], "annotations": pad}
    missing = dict(good, layers=[descriptor(OCI_LAYER_GZIP, b"missing")])
    big = random_bytes(300_000)
    loc = api.new_session(repo_name).split(f"127.0.0.1:{registry.port}", 1)[1]
    cases = [
        ("PUT", f"/v2/{repo_name}/manifests/{'t' * 129}", json.dumps(good).encode(), OCI_MANIFEST),
        ("PUT", f"/v2/{repo_name}/manifests/.bad-tag", json.dumps(good).encode(), OCI_MANIFEST),
        ("PUT", f"/v2/{repo_name}/manifests/v1", json.dumps(missing).encode(), OCI_MANIFEST),
        ("PUT", f"/v2/{repo_name}/manifests/v1", b"{" + big, OCI_MANIFEST),
        ("POST", "/v2/E2E/Bad/blobs/uploads/", big, "application/octet-stream"),
        ("PUT", f"{loc}{'&' if '?' in loc else '?'}digest=md5:{'0' * 32}", big,
         "application/octet-stream"),
        ("PATCH", f"/v2/{repo_name}/blobs/uploads/{'0' * 8}-0000-4000-8000-{'0' * 12}", big,
         "application/octet-stream"),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    problems = []
    for method, path, body, ctype in cases:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        resp.read()
        assert 400 <= resp.status < 500, f"{method} {path[:80]} -> {resp.status}"
        if (resp.getheader("Connection") or "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
            continue
        time.sleep(0.05)  # let a server-side close arrive before the next request
        try:
            conn.request("GET", "/v2/")
            ok = conn.getresponse()
            ok.read()
            assert ok.status == 200
        except (http.client.HTTPException, OSError) as e:
            problems.append(f"{method} {path[:80]}... -> {resp.status} without "
                            f"'Connection: close', then the connection was dead: {e!r}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    conn.close()
    assert not problems, "\n".join(problems)
