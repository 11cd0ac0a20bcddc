"""Blob push/pull over raw HTTP, one test per upload flow of the OCI distribution spec."""

from __future__ import annotations

import hashlib

import pytest

from e2e_util import assert_error, digest, random_bytes

OCTET = {"Content-Type": "application/octet-stream"}


def _check_blob(api, repo, data, d):
    h = api.head(f"/v2/{repo}/blobs/{d}")
    assert h.status_code == 200, h.status_code
    assert int(h.headers["Content-Length"]) == len(data)
    assert h.headers.get("Docker-Content-Digest") == d
    g = api.get(f"/v2/{repo}/blobs/{d}")
    assert g.status_code == 200
    assert g.content == data
    assert int(g.headers["Content-Length"]) == len(data)
    # On S3 the GET is a 307 to a presigned URL: the digest header is on Berth's redirect; the
    # bytes come from the store. Embedded Berth (and distribution here) serve them directly.
    first = g.history[0] if g.history else g
    assert first.headers.get("Docker-Content-Digest") == d
    if g.history:
        assert first.status_code == 307, first.status_code


def _range_end(resp) -> int:
    rng = resp.headers.get("Range")
    assert rng, f"no Range header in {resp.status_code} {dict(resp.headers)}"
    start, end = rng.removeprefix("bytes=").split("-")
    assert start == "0", rng
    return int(end)


@pytest.mark.edge_only
def test_api_version_check(api):
    r = api.get("/v2/")
    assert r.status_code == 200


@pytest.mark.berth_only  # distribution 2.8 ignores ?digest= on POST and answers 202
def test_monolithic_post_with_digest(api, repo_name):
    data = random_bytes(300_000)
    d = digest(data)
    r = api.post(f"/v2/{repo_name}/blobs/uploads/", params={"digest": d}, data=data, headers=OCTET)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("Location", "").endswith(f"/v2/{repo_name}/blobs/{d}")
    _check_blob(api, repo_name, data, d)


def test_post_then_put(api, repo_name, registry):
    data = random_bytes(1024 * 1024 + 7)
    d = digest(data)
    r = api.start_upload(repo_name)
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert f"/v2/{repo_name}/blobs/uploads/" in loc
    r = api.put(loc, params={"digest": d}, data=data, headers=OCTET)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("Location", "").endswith(f"/v2/{repo_name}/blobs/{d}")
    _check_blob(api, repo_name, data, d)
    assert registry.staging_files() == []


def test_chunked_patch_three_chunks_then_put(api, repo_name, registry):
    parts = [random_bytes(n) for n in (65536, 100_000, 12345)]
    data = b"".join(parts)
    d = digest(data)
    loc = api.new_session(repo_name)
    offset = 0
    for part in parts:
        r = api.patch(loc, data=part, headers={
            **OCTET, "Content-Range": f"{offset}-{offset + len(part) - 1}",
            "Content-Length": str(len(part))})
        assert r.status_code == 202, f"{r.status_code} {r.text}"
        offset += len(part)
        assert _range_end(r) == offset - 1
        loc = api.url(r.headers["Location"])
        s = api.get(loc)
        assert s.status_code == 204
        assert _range_end(s) == offset - 1
    r = api.put(loc, params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    _check_blob(api, repo_name, data, d)
    assert registry.staging_files() == []


def test_streamed_patch_without_content_range(api, repo_name):
    """docker (legacy store) and skopeo stream a whole layer in one PATCH, chunked encoding,
    no Content-Length, no Content-Range."""
    pieces = [random_bytes(n) for n in (1, 50_000, 1 << 20, 333)]
    data = b"".join(pieces)
    d = digest(data)
    loc = api.new_session(repo_name)

    def gen():
        yield from pieces

    r = api.patch(loc, data=gen(), headers=OCTET)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert _range_end(r) == len(data) - 1
    loc = api.url(r.headers["Location"])
    r = api.put(loc, params={"digest": d})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    _check_blob(api, repo_name, data, d)


def test_put_with_final_chunk(api, repo_name):
    data = random_bytes(200_000)
    d = digest(data)
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=data[:150_000], headers={**OCTET, "Content-Range": "0-149999"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])
    r = api.put(loc, params={"digest": d}, data=data[150_000:],
                headers={**OCTET, "Content-Range": "150000-199999"})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    _check_blob(api, repo_name, data, d)


def test_upload_status(api, repo_name):
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=b"x" * 1000, headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])
    s = api.get(loc)
    assert s.status_code == 204, f"{s.status_code} {s.text}"
    assert s.headers.get("Range") == "0-999"
    assert s.headers.get("Location")
    assert s.content == b""


def test_cancel_upload(api, repo_name, registry):
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=b"y" * 4096, headers={**OCTET, "Content-Range": "0-4095"})
    assert r.status_code == 202
    loc = api.url(r.headers["Location"])
    assert len(registry.staging_files()) == 1
    r = api.delete(loc)
    assert r.status_code == 204, f"{r.status_code} {r.text}"
    assert_error(api.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert registry.staging_files() == []
    assert api.blob_status(repo_name, digest(b"y" * 4096)) == 404


def test_blob_range_get(api, repo_name):
    data = random_bytes(1000)
    d = api.push_blob(repo_name, data)
    r = api.get(f"/v2/{repo_name}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206, r.status_code
    assert r.headers.get("Content-Range") == "bytes 10-19/1000"
    assert r.content == data[10:20]
    assert int(r.headers["Content-Length"]) == 10
    # suffix and open-ended ranges are plain RFC 9110
    r = api.get(f"/v2/{repo_name}/blobs/{d}", headers={"Range": "bytes=990-"})
    assert r.status_code == 206 and r.content == data[990:]


def test_head_blob(api, repo_name):
    data = random_bytes(4321)
    d = api.push_blob(repo_name, data)
    r = api.head(f"/v2/{repo_name}/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "4321"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.content == b""
    assert api.head(f"/v2/{repo_name}/blobs/{digest(b'absent')}").status_code == 404
    assert_error(api.get(f"/v2/{repo_name}/blobs/{digest(b'absent')}"), 404, "BLOB_UNKNOWN")


def test_delete_blob(api, repo_name):
    data = random_bytes(2048)
    d = api.push_blob(repo_name, data)
    r = api.delete(f"/v2/{repo_name}/blobs/{d}")
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert api.head(f"/v2/{repo_name}/blobs/{d}").status_code == 404
    assert_error(api.get(f"/v2/{repo_name}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_empty_blob(api, repo_name):
    d = api.push_blob(repo_name, b"")
    assert d == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    _check_blob(api, repo_name, b"", d)


@pytest.mark.berth_only  # distribution 2.8 supports sha256 only for uploads
def test_sha512_blob(api, repo_name, registry):
    data = random_bytes(70_000)
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    loc = api.new_session(repo_name)
    r = api.put(loc, params={"digest": d}, data=data, headers=OCTET)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    _check_blob(api, repo_name, data, d)
    if not registry.is_aws():
        assert registry.blob_file(d).read_bytes() == data
    # the same bytes are unknown under their sha256 in this repo unless pushed so
    assert api.head(f"/v2/{repo_name}/blobs/{digest(data)}").status_code in (200, 404)


@pytest.mark.berth_only  # Berth's data-dir layout
@pytest.mark.embedded_only
def test_data_dir_layout(api, repo_name, registry):
    data = random_bytes(5000)
    d = api.push_blob(repo_name, data)
    f = registry.blob_file(d)
    assert f.is_file(), f"{f} missing; data dir has {sorted(registry.data_dir.rglob('*'))}"
    assert f.read_bytes() == data
    assert (registry.data_dir / "meta.db").is_file()
    assert (registry.data_dir / "tmp").is_dir()
    assert registry.staging_files() == []


def test_mount_from_repo_that_has_the_blob(api, repo_name):
    data = random_bytes(10_000)
    d = api.push_blob(repo_name, data)
    target = repo_name + "-mounted"
    r = api.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": repo_name},
                 headers={"Content-Length": "0"})
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("Location", "").endswith(f"/v2/{target}/blobs/{d}")
    _check_blob(api, target, data, d)


def test_mount_from_repo_without_the_blob_falls_back_to_upload(api, repo_name, registry):
    data = random_bytes(10_000)
    d = digest(data)
    api.push_blob(repo_name, b"something else")
    target = repo_name + "-target"
    sessions = []
    for source in (repo_name, "e2e/no-such-repo"):
        r = api.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": source},
                     headers={"Content-Length": "0"})
        assert r.status_code == 202, f"{r.status_code} {r.text}"
        loc = r.headers.get("Location")
        assert loc and f"/v2/{target}/blobs/uploads/" in loc
        sessions.append(api.url(loc))
        assert api.head(f"/v2/{target}/blobs/{d}").status_code == 404
    # the fallback sessions are real ones
    r = api.patch(sessions[0], data=data[:10], headers={**OCTET, "Content-Range": "0-9"})
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    sessions[0] = api.url(r.headers["Location"])
    r = api.put(sessions[1], params={"digest": d}, data=data, headers=OCTET)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    _check_blob(api, target, data, d)
    assert api.delete(sessions[0]).status_code == 204
    assert registry.staging_files() == []
