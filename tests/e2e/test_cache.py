"""Image caches (issue 15): pull-through registries in front of a source registry.

Every test starts its own servers on loopback: the Berth under test (`registry_factory`, with
BERTH_OUTBOUND_ALLOW=127.0.0.0/8 so that loopback sources pass the SSRF guard,
BERTH_CACHE_SOURCE_PORTS=* so that their ports do, and BERTH_CACHE_CHECK_SECS=0 so that every tag
request asks the source), and the source: the CNCF distribution registry with htpasswd (Basic)
authentication (test_replication's `Distribution`), or a second `berth serve` (token auth; on
embedded storage even in the E2E_BACKEND=aws pass, see `EmbeddedBerth`). Tests
that care about what the source was asked put `upstream_proxy.UpstreamProxy` between the cache and
the source: it counts the blob GETs and bytes it relays, throttles them, holds them at a gate, or
refuses connections.

What is checked is what comes back: manifest bytes, digests and media types equal to the
source's, blob bytes hashed, statuses and error codes, the local record (management API tags and
artifacts of the cache registry) and what the source was asked. Tests marked edge_only exercise
validation and roles only; embedded_only ones read the embedded data directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import subprocess
import threading
import time
import uuid
from typing import Optional

import pytest
import requests

from conftest import BACKEND, Registry, free_port
from e2e_util import (ALL_MANIFEST_TYPES, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Api, OciLayout,
                      descriptor, digest, image_config, random_bytes, run, skopeo_creds, tar_gz)
from test_replication import (  # noqa: F401 (distribution: the htpasswd-protected CNCF distribution fixture)
    assert_refused, assert_same_artifact, distribution, docker_build_push, ensure_registry, exact_fields, logs,
    new_user, push_index, stream_digest, unique)
from test_skopeo import skopeo  # noqa: F401 (fixture: skopeo with a private blob-info cache)
from upstream_proxy import UpstreamProxy, port_refuses

pytestmark = pytest.mark.berth_only

T = 30  # seconds: the timeout of every management request
ENV = {"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8", "BERTH_CACHE_SOURCE_PORTS": "*", "BERTH_CACHE_CHECK_SECS": "0"}
RECORD_WAIT = 90  # seconds for a pulled image's record to be committed by the background job
MIB = 1024 * 1024
CACHE_KEYS = {"name", "type", "url", "endpoint", "access_id", "secret_set", "skip_tls_verify", "description",
              "created_at", "updated_at", "created_by", "registries"}
GCR_KEY = json.dumps({"type": "service_account", "project_id": "p", "client_email": "bot@p.iam.gserviceaccount.com",
                      "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"})
QUAY_KEY = json.dumps({"account_name": "org+bot", "docker_cli_password": "quay-pw-" + uuid.uuid4().hex})


# --- servers ---------------------------------------------------------------------------------------

@pytest.fixture
def berth(registry_factory) -> Registry:
    """The Berth under test, holding the caches and the cache registries."""
    return registry_factory(env=ENV)


class Upstream:
    """A cache's source: CNCF distribution (htpasswd, Basic) or a `berth serve` (token flow). Its
    repositories are `prefix + name` (a Berth keeps images in registries: `e2e/...`)."""

    def __init__(self, kind: str, reg: Registry, prefix: str):
        self.kind, self.reg, self.prefix = kind, reg, prefix
        self.api = Api(reg)

    def repo(self, name: str) -> str:
        return self.prefix + name

    def cache_body(self, name: str, url: Optional[str] = None, **extra) -> dict:
        body = {"name": name, "type": "docker-registry", "url": url or self.reg.url,
                "access_id": self.reg.credentials[0], "access_secret": self.reg.credentials[1]}
        body.update(extra)
        return body

    def kill(self) -> None:
        self.reg.kill()

    def start(self) -> None:
        self.reg.start()

    def delete_manifest(self, repo: str, d: str) -> None:
        r = self.api.delete(f"/v2/{repo}/manifests/{d}")
        assert r.status_code == 202, f"DELETE {repo}@{d} at the source: {r.status_code} {r.text}"


class EmbeddedBerth(Registry):
    """A `berth serve` on embedded storage whatever E2E_BACKEND says: a cache's source. (In the AWS
    pass a source on moto would share moto, which serves one request at a time, with the cache under
    test: a cache reading a source blob from moto while writing it to moto deadlocks there, which
    real S3 never does.)"""

    def is_aws(self) -> bool:
        return False


@pytest.fixture
def source_berth(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("berth-source")
    reg = EmbeddedBerth("berth", base / "data", free_port(), base / "server.log", base)
    reg.extra_env = dict(ENV)
    reg.start()
    yield reg
    died = reg.proc is not None and reg.proc.poll() is not None and not reg.expected_exit
    if reg.alive():
        reg.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n{reg.log_tail(40)}")
    if died:
        pytest.fail(f"the source Berth died during the test with exit code {reg.proc.returncode}\n{reg.log_tail()}",
                    pytrace=False)


@pytest.fixture(params=["distribution", "berth"])
def upstream(request) -> Upstream:
    if request.param == "distribution":
        return Upstream("distribution", request.getfixturevalue("distribution"), "")
    return Upstream("berth", request.getfixturevalue("source_berth"), "e2e/")


@pytest.fixture
def dist_upstream(distribution) -> Upstream:
    return Upstream("distribution", distribution, "")


@pytest.fixture
def proxies():
    """UpstreamProxy instances made by the test; closed afterwards."""
    made: list[UpstreamProxy] = []

    def make(port: int, **kw) -> UpstreamProxy:
        p = UpstreamProxy(port, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# --- the caches API ------------------------------------------------------------------------------------

class Caches:
    """`/api/v1/caches` of one server, as one caller."""

    def __init__(self, reg: Registry, auth=None):
        self.reg = reg
        self.auth = auth if auth is not None else reg.credentials

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", T)
        return requests.request(method, self.reg.url + path, auth=self.auth, **kw)

    def create(self, **body) -> requests.Response:
        return self.req("POST", "/api/v1/caches", json=body)

    def make(self, **body) -> dict:
        r = self.create(**body)
        shown = {k: ("***" if k == "access_secret" else v) for k, v in body.items()}
        assert r.status_code == 201, f"creating cache {shown}: {r.status_code} {r.text}"
        view = r.json()
        check_cache_view(view)
        secret = body.get("access_secret")
        if secret:
            assert secret not in r.text, f"the secret is in the creation answer: {r.text}"
        return view

    def get(self, name: str) -> requests.Response:
        return self.req("GET", f"/api/v1/caches/{name}")

    def list(self, **params) -> requests.Response:
        return self.req("GET", "/api/v1/caches", params=params or None)

    def all(self) -> list[dict]:
        out, last = [], None
        for _ in range(100):
            r = self.list(n=1000, **({"last": last} if last else {}))
            assert r.status_code == 200, f"GET /api/v1/caches: {r.status_code} {r.text}"
            body = r.json()
            assert set(body) == {"items", "next"}, body
            out += body["items"]
            last = body["next"]
            if not last:
                return out
        raise AssertionError("more than 100 pages of caches")

    def patch(self, cache: str, **body) -> requests.Response:
        return self.req("PATCH", f"/api/v1/caches/{cache}", json=body)

    def delete(self, name: str) -> requests.Response:
        return self.req("DELETE", f"/api/v1/caches/{name}")

    def create_registry(self, name: str, cache: Optional[str], **extra) -> requests.Response:
        body = {"name": name, **extra}
        if cache is not None:
            body["cache"] = cache
        return self.req("POST", "/api/v1/registries", json=body)


def check_cache_view(v: dict) -> None:
    exact_fields(v, CACHE_KEYS, "cache")
    assert "access_secret" not in v and "secret" not in v, f"a cache view shows its secret: {v}"
    assert isinstance(v["secret_set"], bool) and isinstance(v["skip_tls_verify"], bool), v
    assert isinstance(v["registries"], list), v
    assert isinstance(v["created_at"], int) and isinstance(v["updated_at"], int), v
    assert v["access_id"] is None or isinstance(v["access_id"], str), v


def setup_cache(reg: Registry, up: Upstream, url: Optional[str] = None, prefix: str = "cache") -> tuple[str, str]:
    """A docker-registry cache of `up` (at `url`, e.g. a proxy) and a cache registry using it;
    returns (cache name, registry name)."""
    caches = Caches(reg)
    name = unique("src-")
    view = caches.make(**up.cache_body(name, url))
    assert (view["name"], view["type"], view["url"], view["endpoint"], view["access_id"], view["secret_set"]) == \
        (name, "docker-registry", url or up.reg.url, url or up.reg.url, up.reg.credentials[0], True), view
    registry = unique(prefix)
    r = caches.create_registry(registry, name)
    assert r.status_code == 201, f"creating cache registry {registry}: {r.status_code} {r.text}"
    assert r.json().get("cache") == name, f"the registry view does not name its cache: {r.json()}"
    return name, registry


# --- images and pulls ------------------------------------------------------------------------------------

def push_image(api: Api, repo: str, tags: list[str], sizes=(1000,), label: str = "") -> dict:
    """An OCI image of random layers (one per size) under `tags`. Returns dict(digest, manifest,
    blobs={digest: bytes})."""
    layers = [tar_gz({f"{label or 'f'}{i}.bin": random_bytes(n)}) for i, n in enumerate(sizes)]
    config = image_config(diff_ids=[digest(x) for x in layers])
    blobs = {api.push_blob(repo, config): config}
    for layer in layers:
        blobs[api.push_blob(repo, layer)] = layer
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(OCI_LAYER_GZIP, x) for x in layers]}, indent=2).encode()
    for ref in tags or [digest(body)]:
        r = api.put_manifest(repo, ref, body, OCI_MANIFEST)
        assert r.status_code == 201, f"PUT {repo}:{ref} at the source: {r.status_code} {r.text}"
    return {"digest": digest(body), "manifest": body, "blobs": blobs}


def push_raw_blob_image(api: Api, repo: str, tag: str, blob: bytes) -> dict:
    """An image whose one layer is `blob` as it is (random bytes typed as a gzip layer)."""
    config = image_config(diff_ids=[digest(blob)])
    blobs = {api.push_blob(repo, config): config}
    blobs[push_big_blob(api, repo, blob)] = blob
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor(OCI_LAYER_GZIP, blob)]}).encode()
    r = api.put_manifest(repo, tag, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    return {"digest": digest(body), "manifest": body, "blobs": blobs}


def push_big_blob(api: Api, repo: str, data: bytes, chunk: int = 16 * MIB) -> str:
    loc = api.new_session(repo)
    for off in range(0, len(data), chunk):
        piece = data[off:off + chunk]
        r = api.patch(loc, data=piece, headers={"Content-Type": "application/octet-stream",
                                                "Content-Range": f"{off}-{off + len(piece) - 1}"})
        assert r.status_code == 202, f"PATCH {off}: {r.status_code} {r.text}"
        loc = api.url(r.headers["Location"])
    d = digest(data)
    r = api.put(loc, params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, f"PUT ?digest: {r.status_code} {r.text}"
    return d


class As(Api):
    """Raw HTTP against a registry as another caller (Basic `auth`, or headers)."""

    def __init__(self, registry, auth=None, headers: Optional[dict] = None):
        super().__init__(registry)
        self.auth = auth
        if headers:
            self.s.headers.update(headers)

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("auth", self.auth)
        return super().req(method, path, **kw)


def get_manifest_ok(api: Api, repo: str, ref: str, expect: bytes, what: str = "") -> requests.Response:
    r = api.get_manifest(repo, ref)
    assert r.status_code == 200, f"{what} GET {repo}:{ref}: {r.status_code} {r.text[:300]}"
    assert r.content == expect, f"{what} {repo}:{ref}: the manifest bytes differ (digest {digest(r.content)}, " \
                                f"expected {digest(expect)})"
    assert r.headers.get("Docker-Content-Digest") == digest(expect), (what, dict(r.headers))
    return r


def pull_blobs(api: Api, repo: str, blobs: dict, what: str = "") -> None:
    """GET every blob of `blobs` (digest -> bytes) and compare the bytes."""
    for d, data in blobs.items():
        if len(data) > 8 * MIB:
            got = stream_digest(api, repo, d)
            assert got == (d, len(data)), f"{what} blob {d} of {repo}: read back as {got}"
        else:
            r = api.get(f"/v2/{repo}/blobs/{d}")
            assert r.status_code == 200, f"{what} GET blob {d} of {repo}: {r.status_code} {r.text[:300]}"
            assert r.content == data, f"{what} blob {d} of {repo}: {len(r.content)} bytes, digest {digest(r.content)}"


def pull_image(api: Api, repo: str, ref: str, img: dict, what: str = "") -> None:
    get_manifest_ok(api, repo, ref, img["manifest"], what)
    pull_blobs(api, repo, img["blobs"], what)


def local_tags(api: Api, repo: str) -> dict:
    """tag -> digest of the local record of `repo` ({} when there is none)."""
    r = api.get(f"/api/v1/images/{repo}/tags", params={"n": 1000})
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, f"GET tags of {repo}: {r.status_code} {r.text}"
    return {t["name"]: t["digest"] for t in r.json()["items"]}


def local_artifacts(api: Api, repo: str) -> dict:
    """digest -> artifact view of the local record of `repo`."""
    r = api.get(f"/api/v1/images/{repo}/artifacts", params={"n": 1000})
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, f"GET artifacts of {repo}: {r.status_code} {r.text}"
    return {a["digest"]: a for a in r.json()["items"]}


def local_images(api: Api, registry: str) -> dict:
    r = api.get(f"/api/v1/registries/{registry}/images", params={"n": 1000})
    assert r.status_code == 200, f"GET images of {registry}: {r.status_code} {r.text}"
    return {i["name"]: i for i in r.json()["items"]}


def wait_record(api: Api, repo: str, tag: str, d: str, *watch, timeout: float = RECORD_WAIT) -> None:
    """Until the local record of `repo` has `tag` -> `d`."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = local_tags(api, repo)
        if seen.get(tag) == d:
            return
        time.sleep(0.3)
    raise AssertionError(f"{repo}:{tag} -> {d} was not recorded within {timeout} s (tags: {seen})\n" + logs(*watch))


def challenge(resp: requests.Response) -> dict:
    h = resp.headers.get("WWW-Authenticate", "")
    assert h.startswith("Bearer "), f"no Bearer challenge: {resp.status_code} {h!r}"
    return dict(re.findall(r'(\w+)="([^"]*)"', h))


def token_for(reg: Registry, scope: str, auth, host: Optional[str] = None) -> str:
    """A registry token for `scope` (the token flow clients use)."""
    headers = {"Host": host} if host else {}
    r = requests.get(f"{reg.url}/auth/token", params={"service": "berth", "scope": scope}, auth=auth,
                     headers=headers, timeout=T)
    assert r.status_code == 200, f"GET /auth/token {scope}: {r.status_code} {r.text}"
    return r.json().get("token") or r.json()["access_token"]


# --- 1. clients pull through the cache -------------------------------------------------------------------

def skopeo_pull_dir(skopeo_argv, reg: Registry, ref: str, dest, *extra: str) -> dict:
    """skopeo copy docker://reg/ref -> dir:dest; returns {"manifest": bytes, digest: blob bytes}."""
    run([*skopeo_argv, "copy", "--preserve-digests", *extra, *skopeo_creds(reg, "src"),
         f"docker://{reg.host}/{ref}", f"dir:{dest}"], timeout=300)
    out = {"manifest": (dest / "manifest.json").read_bytes()}
    for f in dest.iterdir():
        if re.fullmatch(r"[0-9a-f]{64}", f.name):
            out["sha256:" + f.name] = f.read_bytes()
    return out


def test_skopeo_pulls_through_the_cache_the_sources_exact_image(berth, upstream, tmp_path, skopeo):
    repo = upstream.repo(unique("app-"))
    img = push_image(upstream.api, repo, ["v1"], sizes=(2 * MIB + 5, 70_000, 10))
    _, creg = setup_cache(berth, upstream)
    crepo = f"{creg}/{repo}"
    assert local_images(Api(berth), creg) == {}, "a new cache registry holds images"

    got = skopeo_pull_dir(skopeo, berth, f"{crepo}:v1", tmp_path / "pulled")
    assert got["manifest"] == img["manifest"], "skopeo got other manifest bytes than the source's"
    for d, data in img["blobs"].items():
        assert got.get(d) == data, f"skopeo pulled blob {d} wrong"
    api = Api(berth)
    assert_same_artifact(upstream.api, repo, api, crepo, "v1")
    assert_same_artifact(upstream.api, repo, api, crepo, img["digest"])
    wait_record(api, crepo, "v1", img["digest"], berth, upstream.reg)
    [(name, shown)] = local_images(api, creg).items()
    assert name == crepo and shown["artifact_count"] == 1, shown
    arts = local_artifacts(api, crepo)
    assert list(arts) == [img["digest"]] and arts[img["digest"]]["tags"] == ["v1"], arts
    assert arts[img["digest"]]["media_type"] == OCI_MANIFEST, arts

    # a second skopeo pull (warm) returns the same bytes
    again = skopeo_pull_dir(skopeo, berth, f"{crepo}@{img['digest']}", tmp_path / "again")
    assert again == got


@pytest.fixture
def docker_images():
    refs: list[str] = []
    yield refs
    for ref in refs:
        run(["docker", "rmi", "-f", ref], check=False, timeout=120)


def test_docker_pulls_the_library_path_through_the_cache_and_cannot_push(berth, dist_upstream, tmp_path,
                                                                          docker_images):
    """docker build + push `library/<name>` to distribution; docker pull `<cache>/library/<name>`
    from Berth: same image id and digest; a docker push into the cache registry is denied."""
    up = dist_upstream
    name = unique("hello-")
    pushed, cfg, local_ref = docker_build_push(tmp_path, up.reg, f"library/{name}", "v1", [3 * MIB + 7, 50_000])
    docker_images.append(local_ref)
    manifest = up.api.get_manifest(f"library/{name}", "v1")
    assert manifest.status_code == 200 and digest(manifest.content) == pushed
    config_digest = json.loads(manifest.content)["config"]["digest"]
    run(["docker", "--config", str(cfg), "rmi", "-f", local_ref], timeout=120)

    _, creg = setup_cache(berth, up)
    p = subprocess.run(["docker", "--config", str(cfg), "login", berth.host, "-u", berth.credentials[0],
                        "--password-stdin"], input=berth.credentials[1], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ref = f"{berth.host}/{creg}/library/{name}:v1"
    docker_images.append(ref)
    run(["docker", "--config", str(cfg), "pull", ref], timeout=300)
    info = json.loads(run(["docker", "image", "inspect", ref]).stdout)[0]
    assert info["Id"] == config_digest, f"docker pulled image {info['Id']}, the source's config is {config_digest}"
    assert f"{berth.host}/{creg}/library/{name}@{pushed}" in info["RepoDigests"], info["RepoDigests"]
    api = Api(berth)
    assert_same_artifact(up.api, f"library/{name}", api, f"{creg}/library/{name}", "v1")
    wait_record(api, f"{creg}/library/{name}", "v1", pushed, berth, up.reg)

    # docker push into the cache registry: denied, saying why
    other = f"{berth.host}/{creg}/library/{name}-mine:v1"
    docker_images.append(other)
    run(["docker", "tag", ref, other])
    p = run(["docker", "--config", str(cfg), "push", other], check=False, timeout=300)
    out = (p.stdout + p.stderr).lower()
    assert p.returncode != 0, f"docker push into a cache registry succeeded:\n{p.stdout}"
    assert "denied" in out and "cache" in out, f"docker push output does not say denied/cache:\n{p.stdout}\n{p.stderr}"
    assert local_tags(api, f"{creg}/library/{name}-mine") == {}


def test_library_path_and_a_multi_platform_index_with_its_children(berth, upstream, tmp_path, skopeo):
    """`<cache>/library/<name>` pulls `library/<name>`; an index is pulled with --all and its
    children are cached with it: they are still served with the source stopped."""
    if upstream.kind == "berth":
        ensure_registry(upstream.reg, "library")
    name = unique("multi-")
    index, children = push_index(upstream.api, f"library/{name}", "m1")
    _, creg = setup_cache(berth, upstream)
    crepo = f"{creg}/library/{name}"
    api = Api(berth)

    src = tmp_path / "from-cache"
    run([*skopeo, "copy", "--all", "--preserve-digests", *skopeo_creds(berth, "src"),
         f"docker://{berth.host}/{crepo}:m1", f"oci:{src}:m1"], timeout=300)
    layout = OciLayout(src)
    assert layout.ref_descriptor("m1")["digest"] == index["digest"]
    assert layout.blob_path(index["digest"]).read_bytes() == index["manifest"]
    checked = assert_same_artifact(upstream.api, f"library/{name}", api, crepo, "m1")
    assert set(checked) == {index["digest"], *(c["digest"] for c in children)}, checked
    got_blobs = layout.blob_digests()
    for c in children:
        assert c["digest"] in got_blobs
        m = json.loads(layout.blob_path(c["digest"]).read_bytes())
        for desc in [m["config"], *m["layers"]]:
            assert got_blobs.get(desc["digest"]) == desc["size"], f"skopeo --all missed {desc['digest']}"

    wait_record(api, crepo, "m1", index["digest"], berth, upstream.reg)
    deadline = time.monotonic() + RECORD_WAIT
    while time.monotonic() < deadline:
        arts = local_artifacts(api, crepo)
        if all(c["digest"] in arts for c in children):
            break
        time.sleep(0.3)
    assert set(arts) >= {index["digest"], *(c["digest"] for c in children)}, \
        f"the index's children are not recorded: {sorted(arts)}"
    assert arts[index["digest"]]["media_type"] == OCI_INDEX and arts[index["digest"]]["tags"] == ["m1"], arts

    # the source stopped: the index and its children still come, by tag and by digest
    upstream.kill()
    again = tmp_path / "again"
    run([*skopeo, "copy", "--all", "--preserve-digests", *skopeo_creds(berth, "src"),
         f"docker://{berth.host}/{crepo}:m1", f"oci:{again}:m1"], timeout=300)
    assert OciLayout(again).blob_digests() == got_blobs, "the pull from the cache alone differs"
    for c in children:
        r = api.get_manifest(crepo, c["digest"])
        assert r.status_code == 200 and digest(r.content) == c["digest"], (r.status_code, c["digest"])


# --- 2. the record appears only once every blob is stored ---------------------------------------------------

def test_the_record_appears_only_once_every_blob_is_stored(berth, dist_upstream, proxies):
    up = dist_upstream
    proxy = proxies(up.reg.port)
    repo = unique("gate-")
    img = push_image(up.api, repo, ["v1"], sizes=(1 * MIB + 3, 200_000, 5_000))
    _, creg = setup_cache(berth, up, url=proxy.url)
    crepo = f"{creg}/{repo}"
    api = Api(berth)
    layer0 = next(d for d, b in img["blobs"].items() if len(b) > MIB)

    proxy.gate.clear()  # the source's blob answers are held
    try:
        get_manifest_ok(api, crepo, "v1", img["manifest"], "first pull:")
        outcome = {}

        def fetch():
            try:
                outcome["r"] = Api(berth).get(f"/v2/{crepo}/blobs/{layer0}", timeout=120)
            except requests.RequestException as e:
                outcome["e"] = e

        t = threading.Thread(target=fetch, daemon=True)
        t.start()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert local_tags(api, crepo) == {}, "the tag is recorded while the source still holds its blobs"
            assert img["digest"] not in local_artifacts(api, crepo), "the manifest is recorded before its blobs"
            assert crepo not in local_images(api, creg) or local_images(api, creg)[crepo]["artifact_count"] == 0
            time.sleep(0.2)
        assert any(r.get("digest") == layer0 for r in proxy.records), \
            f"the blob GET did not reach the source:\n{proxy.summary()}"
    finally:
        proxy.gate.set()
    t.join(120)
    assert "r" in outcome, f"GET blob through the cache failed: {outcome}"
    assert outcome["r"].status_code == 200 and outcome["r"].content == img["blobs"][layer0], \
        (outcome["r"].status_code, len(outcome["r"].content))

    # a client pulls the rest; then the record appears, and everything it names is stored here
    pull_blobs(api, crepo, img["blobs"], "after the gate:")
    wait_record(api, crepo, "v1", img["digest"], berth, up.reg)
    proxy.pause()
    assert port_refuses(proxy.port)
    pull_image(api, crepo, "v1", img, "source unreachable:")
    assert proxy.blob_gets() == {d: 1 for d in img["blobs"]}, \
        f"each blob should have been fetched once:\n{proxy.summary()}"


# --- 3. the decision table ------------------------------------------------------------------------------------

def test_tag_moved_source_down_and_deleted_at_the_source(berth, upstream, proxies):
    """Same digest → cached (the source is asked, no blob fetched); moved → the source's; the
    source down (5xx, connection refused) → cached; deleted at the source → 404 MANIFEST_UNKNOWN."""
    proxy = proxies(upstream.reg.port)
    repo = upstream.repo(unique("moving-"))
    a = push_image(upstream.api, repo, ["v1"], sizes=(300_000,), label="a")
    _, creg = setup_cache(berth, upstream, url=proxy.url)
    crepo = f"{creg}/{repo}"
    api = Api(berth)
    pull_image(api, crepo, "v1", a, "cold:")
    wait_record(api, crepo, "v1", a["digest"], berth, upstream.reg)

    # same digest at the source: served from the cache, the source asked about the tag only
    proxy.clear()
    pull_image(api, crepo, "v1", a, "warm:")
    asked = proxy.manifest_requests("v1")
    assert asked, f"BERTH_CACHE_CHECK_SECS=0, yet the source was not asked about v1:\n{proxy.summary()}"
    assert proxy.blob_gets() == {}, f"a cached blob was fetched again:\n{proxy.summary()}"

    # the tag moves at the source: the new digest is served, then recorded; the old stays by digest
    b = push_image(upstream.api, repo, ["v1"], sizes=(400_000,), label="b")
    assert b["digest"] != a["digest"]
    pull_image(api, crepo, "v1", b, "moved:")
    wait_record(api, crepo, "v1", b["digest"], berth, upstream.reg)
    get_manifest_ok(api, crepo, a["digest"], a["manifest"], "old by digest:")
    assert local_tags(api, crepo) == {"v1": b["digest"]}

    # the source stopped (the proxy answers 502): cached
    upstream.kill()
    pull_image(api, crepo, "v1", b, "source 502:")
    assert any(r["status"] == 502 for r in proxy.records), proxy.summary()
    get_manifest_ok(api, crepo, a["digest"], a["manifest"], "source 502, old by digest:")
    r = api.get_manifest(crepo, "never-pulled")
    assert_refused(r, 503, "UNAVAILABLE", what="an uncached tag with the source down")
    # connection refused: cached
    proxy.pause()
    assert port_refuses(proxy.port)
    pull_image(api, crepo, "v1", b, "connection refused:")
    h = api.get_manifest(crepo, "v1", method="HEAD")
    assert h.status_code == 200 and h.headers.get("Docker-Content-Digest") == b["digest"], (h.status_code, h.headers)

    # back; deleted at the source: not served by tag any more
    upstream.start()
    proxy.resume()
    get_manifest_ok(api, crepo, "v1", b["manifest"], "source back:")
    upstream.delete_manifest(repo, b["digest"])
    assert upstream.api.get_manifest(repo, "v1").status_code == 404, "the source still has v1"
    r = api.get_manifest(crepo, "v1")
    assert_refused(r, 404, "MANIFEST_UNKNOWN", what="a tag deleted at the source")
    h = api.get_manifest(crepo, "v1", method="HEAD")
    assert h.status_code == 404, f"HEAD of a tag deleted at the source: {h.status_code}"
    # by digest, a cached manifest is served without asking the source (the contract)
    proxy.clear()
    get_manifest_ok(api, crepo, a["digest"], a["manifest"], "cached by digest:")
    assert proxy.manifest_requests(a["digest"]) == [], f"the source was asked:\n{proxy.summary()}"


# --- 4. pushes are refused ----------------------------------------------------------------------------------

def test_push_into_a_cache_registry_is_denied_and_deletes_work(berth, dist_upstream):
    up = dist_upstream
    repo = unique("ro-")
    img = push_image(up.api, repo, ["v1"])
    _, creg = setup_cache(berth, up)
    crepo = f"{creg}/{repo}"
    api = Api(berth)
    blob = random_bytes(1000)
    d = digest(blob)
    # a blob the caller may read elsewhere on this server, for the mount
    mounted = api.push_blob("e2e/mount-src", blob)
    assert mounted == d

    def denied(r, what):
        text = assert_refused(r, 403, "DENIED", what=what)
        assert "cache" in text.lower(), f"{what}: the message does not say the registry is an image cache: {r.text}"

    denied(api.post(f"/v2/{crepo}/blobs/uploads/", headers={"Content-Length": "0"}), "POST upload")
    denied(api.post(f"/v2/{crepo}/blobs/uploads/", params={"digest": d}, data=blob,
                    headers={"Content-Type": "application/octet-stream"}), "monolithic POST")
    denied(api.post(f"/v2/{crepo}/blobs/uploads/", params={"mount": d, "from": "e2e/mount-src"},
                    headers={"Content-Length": "0"}), "cross-repository mount")
    config = image_config()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": []}).encode()
    denied(api.put_manifest(crepo, "mine", body, OCI_MANIFEST), "manifest PUT")
    denied(api.put_manifest(crepo, digest(body), body, OCI_MANIFEST), "manifest PUT by digest")
    # a cosign signature is a push too
    sig_tag = "sha256-" + img["digest"].split(":", 1)[1] + ".sig"
    denied(api.put_manifest(crepo, sig_tag, body, OCI_MANIFEST), "cosign signature PUT")
    # with a push token as docker would use it
    token = token_for(berth, f"repository:{crepo}:pull,push", berth.credentials)
    bearer = As(berth, headers={"Authorization": f"Bearer {token}"})
    denied(bearer.post(f"/v2/{crepo}/blobs/uploads/", headers={"Content-Length": "0"}), "POST upload (token)")
    # nothing was stored; a blob the source lacks is unknown (not "busy, retry")
    t0 = time.monotonic()
    h = api.head(f"/v2/{crepo}/blobs/{d}")
    absent_blob = (f"HEAD /v2/{crepo}/blobs/{d} (in no repository of the source): {h.status_code} "
                   f"after {time.monotonic() - t0:.1f} s {dict(h.headers)}, expected 404")
    assert local_tags(api, crepo) == {} and local_artifacts(api, crepo) == {}
    assert api.get_manifest(f"{creg}/{repo}", "mine").status_code == 404

    # deletes are allowed: a cached image is deleted, then pulled (and cached) again
    pull_image(api, crepo, "v1", img)
    wait_record(api, crepo, "v1", img["digest"], berth, up.reg)
    r = api.delete(f"/v2/{crepo}/manifests/{img['digest']}")
    assert r.status_code == 202, f"DELETE of a cached manifest: {r.status_code} {r.text}"
    assert img["digest"] not in local_artifacts(api, crepo) and local_tags(api, crepo) == {}
    pull_image(api, crepo, "v1", img, "after the delete:")
    wait_record(api, crepo, "v1", img["digest"], berth, up.reg)
    assert h.status_code == 404, absent_blob


# --- 5. twenty concurrent cold pulls fetch each blob once --------------------------------------------------------

def concurrent_pulls(reg: Registry, crepo: str, ref: str, token: str, n: int) -> list:
    """`n` threads, released together, each GET the manifest and every blob (in its own order) with
    the Bearer token; returns per thread a list of (what, status, digest read, size) or an exception."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def pull(i: int):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        out = []
        try:
            barrier.wait(60)
            r = s.get(f"{reg.url}/v2/{crepo}/manifests/{ref}", headers={"Accept": ALL_MANIFEST_TYPES}, timeout=120)
            out.append(("manifest", r.status_code, digest(r.content), len(r.content)))
            m = json.loads(r.content)
            descs = [m["config"], *m["layers"]]
            random.Random(i).shuffle(descs)
            for desc in descs:
                h, size = hashlib.sha256(), 0
                with s.get(f"{reg.url}/v2/{crepo}/blobs/{desc['digest']}", stream=True, timeout=300) as b:
                    for part in b.iter_content(1 << 20):
                        h.update(part)
                        size += len(part)
                    out.append((desc["digest"], b.status_code, "sha256:" + h.hexdigest(), size))
            results[i] = out
        except Exception as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=pull, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return results


def test_twenty_concurrent_cold_pulls_fetch_each_blob_once_from_the_source(berth, upstream, proxies):
    # throttled, so that the twenty pulls overlap while the blobs are being cached
    proxy = proxies(upstream.reg.port, rate=8 * MIB)
    repo = upstream.repo(unique("herd-"))
    img = push_image(upstream.api, repo, ["v1"], sizes=(6 * MIB + 1, 1 * MIB + 2, 20_000))
    _, creg = setup_cache(berth, upstream, url=proxy.url)
    crepo = f"{creg}/{repo}"
    r = requests.get(f"{berth.url}/v2/{crepo}/manifests/v1", timeout=T)
    assert r.status_code == 401
    ch = challenge(r)
    assert ch.get("scope") == f"repository:{crepo}:pull", ch
    token = token_for(berth, ch["scope"], berth.credentials)
    proxy.clear()

    results = concurrent_pulls(berth, crepo, "v1", token, 20)
    expected = {d: (d, len(b)) for d, b in img["blobs"].items()}
    for i, res in enumerate(results):
        assert not isinstance(res, Exception) and res is not None, f"pull {i} failed: {res!r}\n" + logs(berth)
        (what, status, got, size), *blobs = res
        assert (what, status, got, size) == ("manifest", 200, img["digest"], len(img["manifest"])), (i, res[0])
        assert len(blobs) == len(expected), (i, blobs)
        for d, status, got, size in blobs:
            assert status == 200 and (got, size) == expected[d], \
                f"pull {i}: blob {d}: {status}, read {got} ({size} B), expected {expected[d]}"
    fetched = proxy.blob_gets()
    assert fetched == {d: 1 for d in img["blobs"]}, \
        f"blob GETs answered by the source: {fetched} (want each once)\n{proxy.summary()}"
    total = sum(len(b) for b in img["blobs"].values())
    assert proxy.blob_bytes() == total, f"{proxy.blob_bytes()} blob bytes came from the source for {total}"
    wait_record(Api(berth), crepo, "v1", img["digest"], berth, upstream.reg)


# --- 6. kill -9 mid-caching -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill9_mid_caching_leaves_nothing_half_visible_and_a_restart_completes(registry_factory, dist_upstream,
                                                                                proxies):
    up = dist_upstream
    # a short lease: the killed process's claim on the blob lapses soon after the restart
    berth = registry_factory(env={**ENV, "BERTH_CACHE_LEASE_SECS": "5"},
                             extra_args=["--upload-expiry", "30", "--sweep-interval", "2"])
    proxy = proxies(up.reg.port, rate=4 * MIB)  # 40 MiB: 10 s from the source
    repo = unique("crash-")
    big = random_bytes(40 * MIB + 123)
    img = push_raw_blob_image(up.api, repo, "v1", big)
    big_d = digest(big)
    _, creg = setup_cache(berth, up, url=proxy.url)
    crepo = f"{creg}/{repo}"
    api = Api(berth)
    get_manifest_ok(api, crepo, "v1", img["manifest"], "first pull:")
    outcome = {}

    def fetch():
        try:
            got = stream_digest(Api(berth), crepo, big_d)
            outcome["got"] = got
        except (requests.RequestException, AssertionError) as e:
            outcome["error"] = repr(e)

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while proxy.streaming(big_d) < 12 * MIB:
        assert time.monotonic() < deadline, f"the big blob does not stream from the source:\n{proxy.summary()}"
        assert t.is_alive() or "error" not in outcome, outcome
        time.sleep(0.05)
    berth.kill()
    t.join(60)
    assert outcome.get("got") != (big_d, len(big)), "the client got the whole blob although Berth was killed"
    leftovers = berth.staging_files()
    if not berth.is_aws():
        f = berth.blob_file(big_d)
        assert not f.exists() or digest(f.read_bytes()) == big_d, f"a half-cached blob is stored as {f}"

    berth.start()
    # nothing half-visible: no tag, no manifest record, no image
    assert local_tags(api, crepo) == {}, "a tag of a half-cached image is recorded"
    assert local_artifacts(api, crepo) == {}, "a manifest of a half-cached image is recorded"
    # the repository may be listed (a small blob of it was cached whole before the kill), but empty
    shown = local_images(api, creg)
    assert crepo not in shown or shown[crepo]["artifact_count"] == 0, shown
    # the blob: the whole of it (fetched again) or 404, never a part
    h = api.head(f"/v2/{crepo}/blobs/{big_d}")
    assert h.status_code in (200, 404), h.status_code
    if h.status_code == 200:
        assert int(h.headers["Content-Length"]) == len(big), dict(h.headers)
    r = api.get(f"/v2/{crepo}/blobs/{big_d}", stream=True)
    if r.status_code == 200:
        hh, n = hashlib.sha256(), 0
        for part in r.iter_content(1 << 20):
            hh.update(part)
            n += len(part)
        assert ("sha256:" + hh.hexdigest(), n) == (big_d, len(big)), "a blob GET after the restart is partial"
    else:
        assert r.status_code == 404, f"GET of the blob after the restart: {r.status_code} {r.text[:200]}"
        r.close()
    # a pull completes with the right bytes and the record follows
    pull_image(api, crepo, "v1", img, "after the restart:")
    wait_record(api, crepo, "v1", img["digest"], berth, up.reg)
    up.kill()
    pull_image(api, crepo, "v1", img, "from the cache alone:")
    # the staged bytes of the killed caching are reclaimed (upload expiry 30 s)
    if leftovers:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and set(berth.staging_files()) & set(leftovers):
            time.sleep(1)
        assert not set(berth.staging_files()) & set(leftovers), \
            f"the killed caching's staged bytes are still there: {leftovers}"


# --- 7. cache definitions -------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_bad_cache_definitions_are_refused_with_400(registry_factory, berth):
    caches = Caches(berth)
    good = {"name": "good", "type": "docker-registry", "url": "http://127.0.0.1:5999", "access_id": "u",
            "access_secret": "pw-" + uuid.uuid4().hex}
    gcr = {"name": "g", "type": "gcr", "url": "https://gcr.io", "access_id": "_json_key", "access_secret": GCR_KEY}
    quay = {"name": "q", "type": "quay", "url": "https://quay.io", "access_id": "json_file", "access_secret": QUAY_KEY}
    ecr = {"name": "e", "type": "ecr", "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
           "access_id": "AKIAIOSFODNN7EXAMPLE", "access_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    bad = [
        ({**good, "type": "dockerhub"}, ("type", "dockerhub")),
        ({**good, "type": 5}, ()),  # serde says "expected value" without the field: the status and code suffice
        ({**good, "type": "ftp"}, ("type", "ftp")),
        ({**good, "url": "ftp://127.0.0.1:5999"}, ("url", "ftp")),
        ({**good, "url": "file:///etc/passwd"}, ("url", "file")),
        ({**good, "url": "http://127.0.0.1:5999/v2/"}, ("url", "path")),
        ({**good, "url": "http://127.0.0.1:5999/?x=1"}, ("url", "query")),
        ({**good, "url": "http://u:p@127.0.0.1:5999"}, ("url",)),
        ({**good, "url": "not a url"}, ("url",)),
        ({**good, "url": ""}, ("url",)),
        ({**good, "url": "http://169.254.169.254"}, ("169.254.169.254", "url")),
        ({**good, "url": "http://10.1.2.3:5000"}, ("10.1.2.3", "url")),
        ({**good, "access_secret": None}, ("access_secret",)),
        ({k: v for k, v in good.items() if k != "access_id"}, ("access_id",)),
        ({**gcr, "access_id": "bot"}, ("_json_key", "access_id")),
        ({**gcr, "access_secret": "not json"}, ("access_secret", "json")),
        ({**gcr, "access_secret": json.dumps({"type": "service_account"})}, ("client_email", "private_key")),
        ({**quay, "access_secret": "plain-password"}, ("access_secret", "account_name", "json")),
        ({**quay, "access_id": "bot"}, ("json_file", "access_id")),
        ({**ecr, "url": "https://ecr.example.com"}, ("url", "ecr")),
        ({k: v for k, v in ecr.items() if k not in ("access_id", "access_secret")}, ("ecr", "access", "IAM")),
        ({**good, "type": "docker-hub"}, ("url", "hub")),
        ({**good, "colour": "red"}, ("colour",)),
        ({**good, "secret_set": True}, ("secret_set",)),
        ({**good, "endpoint": "http://127.0.0.1:1"}, ("endpoint",)),
        ({**good, "skip_tls_verify": "yes"}, ("skip_tls_verify", "yes")),
        ({**good, "name": "Bad"}, ("name",)),
        ({**good, "name": "a/b"}, ("name",)),
        ({**good, "name": ""}, ("name",)),
        ({**good, "name": "n" * 64}, ("name",)),
        ({k: v for k, v in good.items() if k != "name"}, ("name",)),
        ({k: v for k, v in good.items() if k != "type"}, ("type",)),
        ({k: v for k, v in good.items() if k != "url"}, ("url",)),
    ]
    for body, names in bad:
        body = {k: v for k, v in body.items() if v is not None}
        shown = {k: ("***" if k == "access_secret" else v) for k, v in body.items()}
        assert_refused(caches.create(**body), 400, "INVALID_REQUEST", *names, what=f"POST cache {shown}")
    r = caches.req("POST", "/api/v1/caches", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "INVALID_REQUEST", what="POST cache of invalid JSON")
    assert caches.all() == [], "a refused cache was stored"

    # every type in its form is accepted (no connection is made at creation)
    made = {
        "ncr": caches.make(name="ncr", type="ncr", url="https://example.kr.ncr.ntruss.com", access_id="key",
                           access_secret="s1"),
        "ecr": caches.make(**{**ecr, "name": "ecr"}),
        "acr": caches.make(name="acr", type="acr", url="https://myreg.azurecr.io", access_id="myreg",
                           access_secret="s2"),
        "gcr": caches.make(**{**gcr, "name": "gcr"}),
        "docker-hub": caches.make(name="hub", type="docker-hub", url="https://hub.docker.com"),
        "docker-registry": caches.make(name="plain", type="docker-registry", url="http://127.0.0.1:5999"),
        "harbor": caches.make(name="harbor", type="harbor", url="https://harbor.example.com", access_id="robot$x",
                              access_secret="s3"),
        "quay": caches.make(**{**quay, "name": "quay"}),
    }
    for kind, v in made.items():
        assert v["type"] == kind and v["registries"] == [] and v["created_by"] == "admin", v
    assert made["docker-hub"]["endpoint"] == "https://registry-1.docker.io", made["docker-hub"]
    assert (made["docker-hub"]["access_id"], made["docker-hub"]["secret_set"]) == (None, False), made["docker-hub"]
    assert (made["docker-registry"]["access_id"], made["docker-registry"]["secret_set"]) == (None, False), made
    assert made["ecr"]["endpoint"] == ecr["url"] and made["ecr"]["secret_set"] is True, made["ecr"]
    assert (made["gcr"]["access_id"], made["quay"]["access_id"]) == ("_json_key", "json_file")
    assert_refused(caches.create(**{**good, "name": "gcr"}), 409, "ALREADY_EXISTS", what="a duplicate cache name")

    # PATCH: the same validation, an empty body refused, a refused PATCH changes nothing
    for body, names in [({}, ()), ({"url": "ftp://x"}, ("url",)), ({"type": "nope"}, ("type", "nope")),
                        ({"access_id": "bot"}, ("_json_key", "access_id")), ({"access_secret": "not json"}, ("json",)),
                        ({"colour": "red"}, ("colour",)), ({"name": "renamed"}, ("name",)),
                        ({"url": "http://169.254.169.254"}, ("169.254.169.254", "url"))]:
        assert_refused(caches.patch("gcr", **body), 400, "INVALID_REQUEST", *names, what=f"PATCH gcr {body}")
    assert caches.get("gcr").json() == made["gcr"], "a refused PATCH changed the cache"
    for name in ("no-such-cache", "x" * 64):
        for r, what in [(caches.get(name), "GET"), (caches.patch(name, description="d"), "PATCH"),
                        (caches.delete(name), "DELETE")]:
            assert_refused(r, 404, "NOT_FOUND", what=f"{what} of an unknown cache {name[:12]}")

    # the list, paged with n/last
    page = caches.list(n=3)
    assert page.status_code == 200 and len(page.json()["items"]) == 3 and page.json()["next"], page.text
    listed = caches.all()
    assert sorted(c["name"] for c in listed) == sorted(v["name"] for v in made.values()), listed
    assert {c["name"]: c for c in listed} == {v["name"]: v for v in made.values()}

    # a registry names an existing cache
    r = caches.create_registry(unique("c"), "no-such-cache")
    assert_refused(r, 400, "INVALID_REQUEST", "no-such-cache", what="a registry with an unknown cache")

    # the port rule: 80 and 443 only, unless the operator allows more
    strict = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"})
    sc = Caches(strict)
    assert_refused(sc.create(**{**good, "url": "http://127.0.0.1:5000"}), 400, "INVALID_REQUEST", "5000", "port",
                   what="port 5000 without BERTH_CACHE_SOURCE_PORTS")
    assert sc.make(**{**good, "name": "p80", "url": "http://127.0.0.1:80"})["endpoint"] in \
        ("http://127.0.0.1", "http://127.0.0.1:80")
    assert sc.make(**{**good, "name": "p443", "url": "https://127.0.0.1"})["url"] == "https://127.0.0.1"
    assert_refused(sc.patch("p80", url="http://127.0.0.1:8080"), 400, "INVALID_REQUEST", "8080", "port",
                   what="PATCH to port 8080 without BERTH_CACHE_SOURCE_PORTS")
    # loopback needs BERTH_OUTBOUND_ALLOW
    guarded = registry_factory(env={"BERTH_CACHE_SOURCE_PORTS": "*"})
    gc = Caches(guarded)
    for url in ("http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000", "http://0.0.0.0:5000"):
        assert_refused(gc.create(**{**good, "url": url}), 400, "INVALID_REQUEST", what=f"loopback {url} unallowed")
    assert gc.all() == [] and sorted(c["name"] for c in sc.all()) == ["p443", "p80"]


def test_registries_use_caches_deletes_and_the_secret_is_never_shown(berth):
    """Not edge_only: the claims that keep a cache in use, the default cleanup rule and the sealed
    secret live in the metadata store (DynamoDB in the AWS pass)."""
    caches = Caches(berth)
    secret = "cache-secret-" + uuid.uuid4().hex
    created = caches.make(name="src", type="docker-registry", url="http://127.0.0.1:5999", access_id="user",
                          access_secret=secret, description="the source")
    assert (created["secret_set"], created["access_id"], created["description"], created["skip_tls_verify"]) == \
        (True, "user", "the source", False), created
    creg = unique("pull")
    r = caches.create_registry(creg, "src")
    assert r.status_code == 201 and r.json()["cache"] == "src", r.text
    shown = requests.get(f"{berth.url}/api/v1/registries/{creg}", auth=berth.credentials, timeout=T)
    assert shown.status_code == 200 and shown.json()["cache"] == "src", shown.text
    plain = requests.get(f"{berth.url}/api/v1/registries/e2e", auth=berth.credentials, timeout=T).json()
    assert plain.get("cache") is None, plain
    # the default cleanup rule and cycle of a cache registry
    rules = requests.get(f"{berth.url}/api/v1/registries/{creg}/cleanup/rules", auth=berth.credentials, timeout=T)
    assert rules.status_code == 200, rules.text
    [rule] = rules.json()["items"]
    assert (rule["image"], rule["tag"], rule["untagged"], rule["keep"], rule["enabled"]) == \
        ("**", "**", True, "pulled-within:7d", True), rule
    cycle = requests.get(f"{berth.url}/api/v1/registries/{creg}/cleanup/schedule", auth=berth.credentials, timeout=T)
    assert cycle.status_code == 200 and cycle.json()["cron"] == "0 4 * * *", cycle.text
    # editable
    r = requests.patch(f"{berth.url}/api/v1/registries/{creg}/cleanup/rules/{rule['id']}", json={"enabled": False},
                       auth=berth.credentials, timeout=T)
    assert r.status_code == 200 and r.json()["enabled"] is False, r.text
    assert requests.get(f"{berth.url}/api/v1/registries/e2e/cleanup/rules", auth=berth.credentials,
                        timeout=T).json()["items"] == [], "a normal registry got the cache's cleanup rule"

    second = unique("pull")
    assert caches.create_registry(second, "src").status_code == 201
    view = caches.get("src").json()
    assert sorted(view["registries"]) == sorted([creg, second]), view
    # in use: 409 naming a registry
    text = assert_refused(caches.delete("src"), 409, "CONFLICT", what="DELETE of a cache in use")
    assert creg in text or second in text, text
    # a change keeps the secret unless a new one is given
    time.sleep(1.05)
    r = caches.patch("src", description="changed", skip_tls_verify=True)
    assert r.status_code == 200, r.text
    changed = r.json()
    check_cache_view(changed)
    assert (changed["description"], changed["skip_tls_verify"], changed["secret_set"]) == ("changed", True, True)
    assert changed["updated_at"] > changed["created_at"] == created["created_at"], changed
    new_secret = "cache-secret-2-" + uuid.uuid4().hex
    r = caches.patch("src", access_secret=new_secret)
    assert r.status_code == 200 and r.json()["secret_set"] is True, r.text
    answers = [r, caches.get("src"), caches.list(),
               requests.get(f"{berth.url}/api/v1/registries/{creg}", auth=berth.credentials, timeout=T),
               requests.get(f"{berth.url}/api/v1/registries", auth=berth.credentials, timeout=T),
               requests.get(f"{berth.url}/api/v1/audit", params={"n": 1000}, auth=berth.credentials, timeout=T)]
    for a in answers:
        assert a.status_code == 200, (a.request.url, a.status_code)
        for s in (secret, new_secret):
            assert s not in a.text, f"{a.request.method} {a.request.url} shows the secret"
    for reg_name in (creg, second):
        r = requests.delete(f"{berth.url}/api/v1/registries/{reg_name}", auth=berth.credentials, timeout=T)
        assert r.status_code == 204, r.text
    assert caches.get("src").json()["registries"] == []
    r = caches.delete("src")
    assert r.status_code == 204 and r.content == b"", r.text
    assert_refused(caches.get("src"), 404, "NOT_FOUND", what="GET after DELETE")
    assert_refused(caches.delete("src"), 404, "NOT_FOUND", what="DELETE twice")
    # the name is free again
    caches.make(name="src", type="docker-registry", url="http://127.0.0.1:5999")


@pytest.mark.embedded_only
def test_the_secret_is_sealed_at_rest(berth, dist_upstream):
    up = dist_upstream
    _, creg = setup_cache(berth, up)
    repo = unique("sealed-")
    img = push_image(up.api, repo, ["v1"])
    pull_image(Api(berth), f"{creg}/{repo}", "v1", img)  # the stored secret works
    needle = up.reg.credentials[1].encode()
    leaks = [str(f.relative_to(berth.data_dir)) for f in berth.data_dir.rglob("*")
             if f.is_file() and needle in f.read_bytes()]
    assert (berth.data_dir / "meta.db").is_file()
    assert not leaks, f"the cache secret is stored in plain text in {leaks}"
    assert up.reg.credentials[1] not in berth.log_path.read_text(errors="replace"), "the secret is in the log"


# --- 8. roles -------------------------------------------------------------------------------------------------

def test_only_administrators_manage_caches_and_pulls_need_the_cache_registry(berth, dist_upstream):
    up = dist_upstream
    name, creg = setup_cache(berth, up)
    repo = unique("roles-")
    img = push_image(up.api, repo, ["v1"])
    crepo = f"{creg}/{repo}"
    admin = Caches(berth)
    before = admin.get(name).json()
    body = {"name": "mine", "type": "docker-registry", "url": "http://127.0.0.1:5999"}
    users = [("service-viewer", None), ("image-uploader", None), ("project-admin", [creg]),
             ("project-member", ["e2e"])]
    for role, regs in users:
        _, key = new_user(berth, role, registries=regs)
        who = Caches(berth, auth=key)
        for r, what in [(who.create(**body), "create"), (who.patch(name, description="x"), "PATCH"),
                        (who.delete(name), "DELETE")]:
            assert_refused(r, 403, "DENIED", what=f"{role} {regs}: {what} a cache")
        if regs is None:  # a viewer of every registry sees the caches
            assert who.get(name).json() == before, role
            assert [c["name"] for c in who.all()] == [name], role
    assert admin.get(name).json() == before, "a refused change changed the cache"
    assert [c["name"] for c in admin.all()] == [name], "a refused create made a cache"

    # a user of another registry cannot pull through the cache registry
    _, other = new_user(berth, "project-member", registries=["e2e"])
    r = As(berth, auth=other).get_manifest(crepo, "v1")
    assert_refused(r, 403, "DENIED", what="Basic pull by a user of another registry")
    tok = requests.get(f"{berth.url}/auth/token", params={"service": "berth", "scope": f"repository:{crepo}:pull"},
                       auth=other, timeout=T)
    if tok.status_code == 200:
        t = tok.json().get("token") or tok.json()["access_token"]
        r = As(berth, headers={"Authorization": f"Bearer {t}"}).get_manifest(crepo, "v1")
        assert r.status_code in (401, 403), f"token pull by a user of another registry: {r.status_code}"
    else:
        assert tok.status_code in (401, 403), tok.status_code
    assert local_tags(Api(berth), crepo) == {}, "a refused pull cached the image"
    # a viewer limited to the cache registry pulls
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    pull_image(As(berth, auth=viewer), crepo, "v1", img, "a viewer of the cache registry:")
    # anonymous: 401 with a challenge for the cache repository
    r = requests.get(f"{berth.url}/v2/{crepo}/manifests/v1", timeout=T)
    assert r.status_code == 401 and challenge(r).get("scope") == f"repository:{crepo}:pull", r.headers


# --- 9. Docker Hub --------------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_a_docker_hub_cache_redirects_single_segment_names_to_library(berth):
    caches = Caches(berth)
    hub = caches.make(name="hub", type="docker-hub", url="https://hub.docker.com")
    assert (hub["url"], hub["endpoint"]) == ("https://hub.docker.com", "https://registry-1.docker.io"), hub
    assert caches.get("hub").json()["endpoint"] == "https://registry-1.docker.io"
    creg = unique("hub")
    assert caches.create_registry(creg, "hub").status_code == 201
    api = Api(berth)
    d = "sha256:" + "ab" * 32
    problems = []
    for path, target in [(f"/v2/{creg}/alpine/manifests/3", f"/v2/{creg}/library/alpine/manifests/3"),
                         (f"/v2/{creg}/alpine/blobs/{d}", f"/v2/{creg}/library/alpine/blobs/{d}"),
                         (f"/v2/{creg}/alpine/tags/list", f"/v2/{creg}/library/alpine/tags/list")]:
        for method in ("GET", "HEAD") if "/tags/" not in path else ("GET",):
            r = api.req(method, path, allow_redirects=False)
            loc = r.headers.get("Location", "")
            if r.status_code != 301 or loc.split("?")[0] not in (target, berth.url + target):
                problems.append(f"{method} {path}: {r.status_code} Location {loc!r} {r.text[:160]}")
    # two segments are not redirected (Docker Hub is out of reach here: the source is unavailable)
    r = api.get(f"/v2/{creg}/library/alpine/manifests/3", allow_redirects=False, timeout=90)
    assert r.status_code != 301, r.headers
    assert_refused(r, 503, "UNAVAILABLE", what="a Docker Hub pull with no Docker Hub reachable")
    # a docker-registry cache does not redirect
    other = caches.make(name="plain", type="docker-registry", url="http://127.0.0.1:1")
    preg = unique("plain")
    assert caches.create_registry(preg, other["name"]).status_code == 201
    r = api.get(f"/v2/{preg}/alpine/manifests/3", allow_redirects=False)
    assert r.status_code != 301, f"a docker-registry cache redirected: {r.headers.get('Location')}"
    assert not problems, "single-segment names of a docker-hub cache not redirected to library/:\n" + \
        "\n".join(problems)


# --- 10. mirror mode ------------------------------------------------------------------------------------------

def test_mirror_mode_serves_the_cache_registry_without_its_prefix(registry_factory, dist_upstream, tmp_path, skopeo):
    up = dist_upstream
    mirror = unique("mirror")
    berth = registry_factory(env={**ENV, "BERTH_MIRROR_HOSTS": f"localhost={mirror}"})
    caches = Caches(berth)
    name = unique("src-")
    caches.make(**up.cache_body(name))
    assert caches.create_registry(mirror, name).status_code == 201
    repo = unique("hello-")
    img = push_image(up.api, f"library/{repo}", ["v1"], sizes=(500_000, 100))
    host = f"localhost:{berth.port}"
    api = Api(berth)
    basic = "Basic " + base64.b64encode(f"{berth.credentials[0]}:{berth.credentials[1]}".encode()).decode()

    # raw HTTP with the mirror's Host header
    status, headers, body = api.raw("GET", f"/v2/library/{repo}/manifests/v1",
                                    headers={"Host": host, "Authorization": basic, "Accept": ALL_MANIFEST_TYPES})
    assert status == 200 and body == img["manifest"], (status, body[:200])
    assert headers.get("docker-content-digest") == img["digest"], headers
    for d, data in img["blobs"].items():
        status, hdrs, body = api.raw("GET", f"/v2/library/{repo}/blobs/{d}",
                                     headers={"Host": host, "Authorization": basic})
        if status in (302, 307) and BACKEND == "aws":  # the blob store's presigned URL
            status, body = 200, requests.get(hdrs["location"], timeout=T).content
        assert status == 200 and body == data, (d, status, len(body))
    status, _, _ = api.raw("GET", "/v2/", headers={"Host": host, "Authorization": basic})
    assert status == 200
    # credentials are still needed. A client configured with the mirror knows only the name it pulls
    # (docker and containerd ask for a token for that name, whatever the challenge says), so the
    # mirror host's challenge and token endpoint speak the unprefixed name and map it.
    problems = []
    status, headers, _ = api.raw("GET", f"/v2/library/{repo}/manifests/v1", headers={"Host": host})
    assert status == 401, status
    ch = dict(re.findall(r'(\w+)="([^"]*)"', headers.get("www-authenticate", "")))
    assert ch.get("scope") in (f"repository:library/{repo}:pull", f"repository:{mirror}/library/{repo}:pull"), ch
    assert ch.get("realm", "").startswith(f"http://{host}/"), ch
    tokens = {f"{scope!r} from the mirror host": token_for(berth, scope, berth.credentials, host=host)
              for scope in dict.fromkeys([ch["scope"], f"repository:library/{repo}:pull"])}
    prefixed = f"repository:{mirror}/library/{repo}:pull"
    tokens[f"{prefixed!r} from {berth.host}"] = token_for(berth, prefixed, berth.credentials)
    for what, token in tokens.items():
        status, _, body = api.raw("GET", f"/v2/library/{repo}/manifests/v1", headers={
            "Host": host, "Authorization": f"Bearer {token}", "Accept": ALL_MANIFEST_TYPES})
        if status != 200 or body != img["manifest"]:
            problems.append(f"GET /v2/library/{repo}/manifests/v1 (Host {host}) with a token for {what}: "
                            f"{status} {body[:160]!r}")
    # a token for the unprefixed name is no token for another registry's repository of that name
    ensure_registry(berth, "library")
    status, _, _ = api.raw("GET", f"/v2/library/{repo}/manifests/v1", headers={
        "Host": berth.host, "Authorization": f"Bearer {tokens[next(iter(tokens))]}", "Accept": ALL_MANIFEST_TYPES})
    assert status in (401, 403), f"a mirror-host token opened library/{repo} on {berth.host}: {status}"
    # another host is routed as usual: registry "library" has no such image
    status, _, _ = api.raw("GET", f"/v2/library/{repo}/manifests/v1",
                           headers={"Host": berth.host, "Authorization": basic, "Accept": ALL_MANIFEST_TYPES})
    assert status == 404, status
    # the same image under its prefixed name
    get_manifest_ok(api, f"{mirror}/library/{repo}", "v1", img["manifest"])

    # skopeo, as a client configured with the mirror would: no prefix, the token flow
    out = tmp_path / "skopeo"
    p = run([*skopeo, "copy", "--preserve-digests", "--src-tls-verify=false",
             f"--src-creds={berth.credentials[0]}:{berth.credentials[1]}",
             f"docker://{host}/library/{repo}:v1", f"dir:{out}"], timeout=300, check=False)
    if p.returncode != 0:
        problems.append(f"skopeo copy docker://{host}/library/{repo}:v1 failed: {p.stderr.strip()[-400:]}")
    else:
        assert (out / "manifest.json").read_bytes() == img["manifest"]
        for d, data in img["blobs"].items():
            assert (out / d.split(":", 1)[1]).read_bytes() == data, d
    assert not problems, "mirror mode:\n" + "\n".join(problems)


# --- 11. the CLI ------------------------------------------------------------------------------------------

def test_cache_cli_end_to_end(berth, dist_upstream, tmp_path):
    """`berth cache add|ls|show|set|rm` and `berth registry create --cache`: the cache the CLI makes
    pulls; nothing it prints holds the secret; refusals exit 1 with the server's code."""
    from test_cli import Cli, server_error
    up = dist_upstream
    cli = Cli(berth, tmp_path / "home")
    cli.login(*berth.credentials)
    secret = up.reg.credentials[1]
    made = cli.ok("cache", "add", "src", "--type", "docker-registry", "--url", up.reg.url, "--access-id",
                  up.reg.credentials[0], "--access-secret-stdin", "--description", "the source", stdin=secret + "\n")
    check_cache_view(made)
    assert (made["name"], made["type"], made["url"], made["access_id"], made["secret_set"], made["description"]) == \
        ("src", "docker-registry", up.reg.url, up.reg.credentials[0], True, "the source"), made
    # a gcr key spans lines: all of stdin but its trailing newline is the secret
    key = json.dumps(json.loads(GCR_KEY), indent=2)
    g = cli.ok("cache", "add", "gcr", "--type", "gcr", "--url", "https://gcr.io", "--access-id", "_json_key",
               "--access-secret-stdin", stdin=key + "\n")
    assert g["secret_set"] is True and g["access_id"] == "_json_key", g
    bad = cli.fails(1, "cache", "add", "bad", "--type", "gcr", "--url", "https://gcr.io", "--access-id", "me",
                    "--access-secret", "x")
    assert server_error(bad)["code"] == "INVALID_REQUEST"
    assert cli.fails(2, "cache", "add", "bad", "--type", "nope", "--url", "https://x.example").returncode == 2
    assert cli.fails(2, "cache", "set", "src").returncode == 2, "a set without a change"

    reg = cli.ok("registry", "create", "pulls", "--cache", "src")
    assert reg["name"] == "pulls" and reg["cache"] == "src", reg
    assert "src" in cli.text("registry", "show", "pulls")
    listed = cli.ok("cache", "ls")
    items = listed["items"] if isinstance(listed, dict) else listed
    assert sorted(c["name"] for c in items) == ["gcr", "src"], listed
    shown = cli.ok("cache", "show", "src")
    assert shown["registries"] == ["pulls"] and shown["secret_set"] is True, shown
    texts = [cli.text("cache", "ls"), cli.text("cache", "show", "src"), cli.text("cache", "show", "gcr")]
    rows = table_rows_of(texts[0])
    assert rows[0][:2] == ["NAME", "TYPE"] and {r[0] for r in rows[1:]} == {"gcr", "src"}, texts[0]
    for t in texts + [json.dumps(listed), json.dumps(shown)]:
        assert secret not in t and "PRIVATE KEY" not in t, f"the CLI printed a secret:\n{t}"

    # the cache the CLI made pulls
    repo = unique("cli-")
    img = push_image(up.api, repo, ["v1"])
    pull_image(Api(berth), f"pulls/{repo}", "v1", img, "through the CLI's cache:")

    changed = cli.ok("cache", "set", "src", "--description", "changed", "--skip-tls-verify", "true")
    assert (changed["description"], changed["skip_tls_verify"], changed["secret_set"]) == ("changed", True, True)
    in_use = cli.fails(1, "cache", "rm", "src")
    err = server_error(in_use)
    assert err["code"] == "CONFLICT" and "pulls" in json.dumps(err), err
    r = requests.delete(f"{berth.url}/api/v1/registries/pulls", params={"force": "true"}, auth=berth.credentials,
                        timeout=T)
    assert r.status_code == 204, r.text
    assert cli.run("cache", "rm", "src").returncode == 0
    assert server_error(cli.fails(1, "cache", "show", "src"))["code"] == "NOT_FOUND"
    # a non-administrator is refused
    _, key_pair = new_user(berth, "service-viewer")
    viewer = Cli(berth, tmp_path / "viewer")
    viewer.login(*key_pair)
    assert [c["name"] for c in (lambda x: x["items"] if isinstance(x, dict) else x)(viewer.ok("cache", "ls"))] == \
        ["gcr"]
    assert server_error(viewer.fails(1, "cache", "rm", "gcr"))["code"] == "DENIED"


def table_rows_of(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]
