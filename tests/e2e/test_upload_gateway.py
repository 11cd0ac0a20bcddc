"""The upload gateway: an API process hands every upload session to another process (the
gateway) through an absolute Location carrying an HMAC-signed _state token, because on AWS the
API runs on Lambda, which cannot take a layer in one request. skopeo must push and pull through
it unchanged, and no layer byte may reach the API process."""

from __future__ import annotations

import gzip
import json

import pytest

from e2e_util import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, OciLayout, image_config, random_bytes, run
from test_skopeo import _assert_same_blobs, _skopeo_copy, skopeo  # noqa: F401 (fixture)

pytestmark = pytest.mark.berth_only  # a Berth deployment feature

TOKEN_KEY = "e2e-upload-token-key-of-at-least-32-characters"


def _gzip_layer(path, size: int):
    """A gzip (stored blocks) layer of `size` random bytes, written in chunks."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as gz:
        left = size
        while left:
            n = min(8 << 20, left)
            gz.write(random_bytes(n))
            left -= n


def _image(tmp_path, layer_size: int) -> tuple[OciLayout, set[str], bytes]:
    src = OciLayout(tmp_path / "src")
    big = tmp_path / "layer.tar.gz"
    _gzip_layer(big, layer_size)
    from e2e_util import file_digest
    layer = src.add_file(OCI_LAYER_GZIP, big, file_digest(big), big.stat().st_size)
    small = src.add_bytes(OCI_LAYER_GZIP, gzip.compress(random_bytes(5000), mtime=0))
    cfg = src.add_bytes(OCI_CONFIG, image_config(diff_ids=[layer["digest"], small["digest"]]))
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                       "layers": [layer, small]}).encode()
    src.set_ref(src.add_bytes(OCI_MANIFEST, body), "v1")
    return src, set(src.blob_digests()), body


def test_api_hands_uploads_to_the_gateway(registry_factory, skopeo, tmp_path, repo_name):  # noqa: F811
    from recording_proxy import RecordingProxy
    gateway = registry_factory(env={"BERTH_UPLOAD_TOKEN_KEY": TOKEN_KEY})
    gateway_proxy = RecordingProxy(gateway.port)
    api = registry_factory(env={"BERTH_UPLOAD_TOKEN_KEY": TOKEN_KEY,
                                "BERTH_UPLOAD_GATEWAY_URL": f"http://{gateway_proxy.host}"},
                           share_with=gateway)
    api_proxy = RecordingProxy(api.port)
    try:
        import requests
        r = requests.post(f"{api.url}/v2/{repo_name}/blobs/uploads/", auth=api.credentials, timeout=30)
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        assert location.startswith(f"http://{gateway_proxy.host}/v2/{repo_name}/blobs/uploads/"), location
        path, query = location.split(gateway_proxy.host, 1)[1].split("?", 1)
        assert query.startswith("_state=")
        # the session answers only with its token, on either host, even to a signed-in user;
        # without credentials and without the token, the answer is a 401 challenge
        r = requests.patch(f"{api.url}{path}", data=b"abc", auth=api.credentials, timeout=30)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
        r = requests.patch(f"{api.url}{path}?_state=1.AAAA", data=b"abc", auth=api.credentials, timeout=30)
        assert r.status_code == 403, r.text
        r = requests.patch(f"{api.url}{path}?_state=1.AAAA", data=b"abc", timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer realm="), r.text

        layer_size = 24 * 1024 * 1024 + 4321
        src, expected, body = _image(tmp_path, layer_size)
        _skopeo_copy(skopeo, api, f"oci:{src.root}:v1", f"docker://{api_proxy.host}/{repo_name}:v1")

        upload_bytes = lambda recs: sum(r["body_bytes"] for r in recs  # noqa: E731
                                        if r["method"] in ("PATCH", "PUT") and "/blobs/uploads/" in r["path"])
        assert upload_bytes(api_proxy.records) == 0, f"layer bytes reached the API:\n{api_proxy.summary()}"
        assert upload_bytes(gateway_proxy.records) >= layer_size, gateway_proxy.summary()
        assert all("_state=" in r["path"] for r in gateway_proxy.records if "/blobs/uploads/" in r["path"])

        dst = OciLayout(tmp_path / "dst")
        _skopeo_copy(skopeo, api, f"docker://{api.host}/{repo_name}:v1", f"oci:{dst.root}:v1",
                     "--dest-oci-accept-uncompressed-layers")
        _assert_same_blobs(src, dst, expected)
    finally:
        api_proxy.close()
        gateway_proxy.close()


@pytest.mark.slow
@pytest.mark.embedded_only  # 1 GiB through moto's in-memory S3 would test moto, not Berth
def test_one_gib_layer_through_gateway_locations(registry_factory, skopeo, tmp_path, repo_name):  # noqa: F811
    """A 1 GiB layer pushed by skopeo through absolute, token-carrying upload locations, then
    pulled back byte-for-byte (the server streams: see the benchmark's peak-RSS figure)."""
    port = None
    from conftest import free_port
    port = free_port()
    reg = registry_factory(port=port, env={"BERTH_UPLOAD_TOKEN_KEY": TOKEN_KEY,
                                           "BERTH_UPLOAD_GATEWAY_URL": f"http://127.0.0.1:{port}"})
    src, expected, _ = _image(tmp_path, 1024 * 1024 * 1024)
    _skopeo_copy(skopeo, reg, f"oci:{src.root}:v1", f"docker://{reg.host}/{repo_name}:v1", timeout=900)
    dst = OciLayout(tmp_path / "dst")
    _skopeo_copy(skopeo, reg, f"docker://{reg.host}/{repo_name}:v1", f"oci:{dst.root}:v1",
                 "--dest-oci-accept-uncompressed-layers", timeout=900)
    _assert_same_blobs(src, dst, expected)
    assert reg.staging_files() == []
