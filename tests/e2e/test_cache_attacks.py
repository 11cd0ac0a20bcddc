"""Attacks on image caches (issue 15): pull-through registries, mirror hosts and cache sources.

Each test sends real requests to a running `berth serve` and asserts what an attacker gets back.
Tests cover both the attacks Berth correctly refuses and the ones found to succeed; a test of the
second kind is left failing on purpose (no xfail) and says so in its docstring ("VULNERABILITY").

The attackers:
- a user who may pull only from a cache registry, reaching for another registry's private content
  (by digest, through the source, through the mirror host, through path and Host tricks);
- a malicious cache source (`EvilSource`, a tiny HTTP server on loopback) that lies about what it
  holds, serves wrong bytes, lies about lengths, drips slowly, nests indexes, redirects Berth to
  other addresses and ports and logs the credentials it is sent;
- a user without administrator rights managing caches, and a deleted user's token.

Servers: the Berth under test (`registry_factory`, BERTH_OUTBOUND_ALLOW=127.0.0.0/8 and
BERTH_CACHE_SOURCE_PORTS=* unless a test narrows them), CNCF distribution as an honest source
(test_replication's `distribution`), and `EvilSource`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import pytest
import requests

from e2e_util import (ALL_MANIFEST_TYPES, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Api, descriptor,
                      digest, image_config, random_bytes, tar_gz)
from test_replication import distribution, logs, new_user, unique  # noqa: F401 (distribution: fixture)

pytestmark = pytest.mark.berth_only

T = 30  # seconds: the timeout of every request
ENV = {"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8", "BERTH_CACHE_SOURCE_PORTS": "*", "BERTH_CACHE_CHECK_SECS": "0"}
RECORD_WAIT = 30  # seconds for a cache-image job to record (or not) what it was given
KIB, MIB = 1024, 1024 * 1024


# --- a malicious cache source ------------------------------------------------------------------------------

class Seen:
    """One request the evil source received."""

    def __init__(self, method: str, path: str, headers: dict):
        self.method, self.path, self.headers = method, path, headers

    def __repr__(self) -> str:
        return f"{self.method} {self.path} auth={self.headers.get('authorization')!r}"


class EvilSource:
    """A registry on 127.0.0.1 that answers what the test scripts: `routes[(method, path)]` is either
    (status, headers, body) or a callable(handler) that writes the answer itself. `/v2/` answers 200
    (or a `challenge` 401 without valid Basic credentials); anything else 404. Every request is
    logged with its headers (lower-case names)."""

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None, challenge: Optional[str] = None,
                 user: str = "evil-user", password: str = "evil-pass"):
        self.routes: dict = {}
        self.seen: list[Seen] = []
        self.challenge = challenge
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.user, self.password = user, password
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def answer(self, status: int, headers: Optional[dict] = None, body: bytes = b"",
                       length: Optional[int] = None):
                self.send_response(status)
                hdrs = {"Connection": "close", **(headers or {})}
                if "Content-Length" not in hdrs and length is None:
                    hdrs["Content-Length"] = str(len(body))
                elif length is not None:
                    hdrs["Content-Length"] = str(length)
                for k, v in hdrs.items():
                    if v is not None:
                        self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD" and body:
                    try:
                        self.wfile.write(body)
                    except OSError:
                        pass
                self.close_connection = True

            def handle_any(self):
                path = self.path
                with outer.lock:
                    outer.seen.append(Seen(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                route = outer.routes.get((self.command, path.split("?")[0]))
                if route is None and self.command == "HEAD":
                    route = outer.routes.get(("GET", path.split("?")[0]))
                if outer.challenge and self.headers.get("Authorization") != outer.basic \
                        and not (route and getattr(route, "public", False)):
                    return self.answer(401, {"WWW-Authenticate": outer.challenge},
                                       b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}')
                if route is None:
                    if path.split("?")[0] == "/v2/":
                        return self.answer(200, {"Content-Type": "application/json"}, b"{}")
                    return self.answer(404, {"Content-Type": "application/json"},
                                       b'{"errors":[{"code":"NOT_FOUND","message":"evil: none"}]}')
                if callable(route):
                    return route(self)
                status, headers, body = route
                return self.answer(status, headers, body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.Handler = Handler
        self.server = http.server.ThreadingHTTPServer((host, port or 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests_for(self, method: str, path_part: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == method and path_part in s.path]

    # --- scripted content -----------------------------------------------------------------------
    def blob(self, repo: str, data: bytes, d: Optional[str] = None, **headers) -> str:
        """Serves `data` as blob `d` (default: its true digest) of `repo`."""
        d = d or digest(data)
        self.routes[("GET", f"/v2/{repo}/blobs/{d}")] = (
            200, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": d, **headers}, data)
        return d

    def manifest(self, repo: str, body: bytes, media_type: str = OCI_MANIFEST, tags=(), d: Optional[str] = None):
        """Serves manifest `body` by its digest and by `tags` (HEAD answers with its digest)."""
        d = d or digest(body)
        answer = (200, {"Content-Type": media_type, "Docker-Content-Digest": d}, body)
        for ref in [d, *tags]:
            self.routes[("GET", f"/v2/{repo}/manifests/{ref}")] = answer
        return d

    def image(self, repo: str, tag: str, layers: list[dict], extra_blobs: dict = None) -> dict:
        """An image the source serves: its own config plus `layers` (descriptors; the source serves
        only the blobs in `extra_blobs`). Returns dict(manifest, digest, config)."""
        config = image_config()
        self.blob(repo, config)
        for d, data in (extra_blobs or {}).items():
            self.blob(repo, data, d)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                           "layers": layers}).encode()
        return {"manifest": body, "digest": self.manifest(repo, body, tags=[tag]), "config": config}


@pytest.fixture
def evil():
    made: list[EvilSource] = []

    def make(**kw) -> EvilSource:
        e = EvilSource(**kw)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


class Listener:
    """A plain HTTP listener (another service on the network) that logs every request and answers
    `status` with `body`."""

    def __init__(self, host: str = "127.0.0.1", body: bytes = b"internal", status: int = 200):
        self.seen: list[Seen] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                outer.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        # in pieces, as a real service's large answer arrives
                        for i in range(0, len(body), 16 * KIB):
                            self.wfile.write(body[i:i + 16 * KIB])
                            self.wfile.flush()
                            time.sleep(0.002)
                    except OSError:
                        pass
                self.close_connection = True

            do_GET = do_HEAD = do_POST = handle_any

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def make(**kw) -> Listener:
        listener = Listener(**kw)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


# --- helpers ------------------------------------------------------------------------------------------------

def basic(creds) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def mgmt(reg, method: str, path: str, auth=None, **kw) -> requests.Response:
    kw.setdefault("timeout", T)
    return requests.request(method, reg.url + path, auth=auth or reg.credentials, **kw)


def make_cache(reg, url: str, name: Optional[str] = None, access=None, kind: str = "docker-registry") -> str:
    name = name or unique("src-")
    body = {"name": name, "type": kind, "url": url}
    if access:
        body.update(access_id=access[0], access_secret=access[1])
    r = mgmt(reg, "POST", "/api/v1/caches", json=body)
    assert r.status_code == 201, f"creating cache {name} ({url}): {r.status_code} {r.text}"
    return name


def make_cache_registry(reg, cache: str, name: Optional[str] = None) -> str:
    name = name or unique("cache")
    r = mgmt(reg, "POST", "/api/v1/registries", json={"name": name, "cache": cache})
    assert r.status_code == 201, f"creating cache registry {name}: {r.status_code} {r.text}"
    return name


def private_image(reg, registry: str, repo: str, tag: str = "v1", size: int = 300 * KIB) -> dict:
    """An image pushed into `registry/repo` of the Berth (its blobs land in the shared blob store).
    Returns dict(manifest, digest, config=(d, bytes), layers=[(d, bytes)])."""
    r = mgmt(reg, "POST", "/api/v1/registries", json={"name": registry})
    assert r.status_code in (201, 409), r.text
    layer = tar_gz({"secret.txt": b"TOP-SECRET " + random_bytes(size)})
    return Api(reg).push_image(f"{registry}/{repo}", tag, [layer])


class As(Api):
    """Raw HTTP against a registry as another caller (Basic `auth`, or headers)."""

    def __init__(self, registry, auth=None, headers: Optional[dict] = None):
        super().__init__(registry)
        self.auth = auth
        if headers:
            self.s.headers.update(headers)

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("auth", self.auth)
        kw.setdefault("timeout", 60)
        return super().req(method, path, **kw)


def token_for(reg, scope: str, auth, host: Optional[str] = None) -> str:
    headers = {"Host": host} if host else {}
    r = requests.get(f"{reg.url}/auth/token", params={"service": "berth", "scope": scope}, auth=auth,
                     headers=headers, timeout=T)
    assert r.status_code == 200, f"GET /auth/token {scope}: {r.status_code} {r.text}"
    return r.json().get("token") or r.json()["access_token"]


def jwt_claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def code_of(r) -> Optional[str]:
    try:
        return r.json()["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def read_all(url: str, headers: dict, timeout: float = 60) -> tuple[int, Optional[int], bytes, Optional[str]]:
    """GET `url` reading the body as far as it goes: (status, Content-Length, bytes read, error)."""
    got, error = b"", None
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
        cl = r.headers.get("Content-Length")
        try:
            for part in r.raw.stream(16 * KIB, decode_content=False):
                got += part
        except Exception as e:  # noqa: BLE001 (an aborted body is what is checked)
            error = repr(e)
        return r.status_code, int(cl) if cl is not None else None, got, error


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def local_tags(reg, repo: str) -> dict:
    r = mgmt(reg, "GET", f"/api/v1/images/{repo}/tags", params={"n": 1000})
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, f"GET tags of {repo}: {r.status_code} {r.text}"
    return {t["name"]: t["digest"] for t in r.json()["items"]}


def local_artifacts(reg, repo: str) -> list[str]:
    r = mgmt(reg, "GET", f"/api/v1/images/{repo}/artifacts", params={"n": 1000})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, f"GET artifacts of {repo}: {r.status_code} {r.text}"
    return [a["digest"] for a in r.json()["items"]]


@pytest.fixture
def berth(registry_factory):
    return registry_factory(env=ENV)


# --- 1. reading another registry's private content through a cache registry --------------------------------

def test_honest_source_a_cache_reader_gets_no_private_blob_or_manifest_by_digest(berth, distribution):
    """A user who may pull only from cache registry A asks A for blobs and a manifest that only
    private registry `vault` holds (the bytes are in Berth's shared blob store): the source does not
    have them, so A answers 404, by GET and HEAD, for blobs and the manifest; nothing gets linked."""
    secret = private_image(berth, "vault", "secret/app")
    creg = make_cache_registry(berth, make_cache(berth, distribution.url, access=distribution.credentials))
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    api = As(berth, auth=viewer)
    layer_d, layer = secret["layers"][0]
    for repo in ("x", "secret/app", "vault/secret/app"):
        crepo = f"{creg}/{repo}"
        for d in (layer_d, secret["config"][0]):
            r = api.get(f"/v2/{crepo}/blobs/{d}")
            assert r.status_code == 404 and code_of(r) == "BLOB_UNKNOWN", \
                f"GET {crepo} blob {d}: {r.status_code} {r.content[:100]!r}"
            assert layer not in r.content
            assert api.head(f"/v2/{crepo}/blobs/{d}").status_code == 404
        r = api.get_manifest(crepo, secret["digest"])
        assert r.status_code == 404 and code_of(r) == "MANIFEST_UNKNOWN", (crepo, r.status_code, r.text[:200])
        # a second ask (the blob is not half-linked by the first)
        assert api.get(f"/v2/{crepo}/blobs/{layer_d}").status_code == 404
    # and the private registry itself stays closed to this user
    r = api.get(f"/v2/vault/secret/app/blobs/{layer_d}")
    assert r.status_code in (401, 403) and layer not in r.content, r.status_code
    assert api.get_manifest("vault/secret/app", "v1").status_code in (401, 403)


def test_lying_source_head_gets_a_private_blob_through_the_cache(berth, evil):
    """VULNERABILITY (expected to fail until fixed). The cache source claims (HEAD 200) a blob it
    does not have (its GET is 404): a digest of private registry `vault`. Berth's `adopted()`
    (shared/src/cache/pull.rs) trusts the HEAD and links the stored bytes into the cache
    repository, so a user who may pull only from the cache registry reads vault's private layer.
    Expected: 404 BLOB_UNKNOWN (a source must prove it has a blob by serving bytes that verify)."""
    secret = private_image(berth, "vault", "secret/app")
    layer_d, layer = secret["layers"][0]
    src = evil()
    # HEAD says yes (with a plausible length), GET has nothing
    src.routes[("HEAD", f"/v2/x/blobs/{layer_d}")] = (200, {"Content-Length": str(len(layer)),
                                                           "Docker-Content-Digest": layer_d}, b"")
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    r = As(berth, auth=viewer).get(f"/v2/{creg}/x/blobs/{layer_d}")
    leaked = r.status_code == 200 and r.content == layer
    assert not leaked, (f"a cache-registry reader got vault's private layer {layer_d} ({len(layer)} bytes) because "
                        f"the source answered HEAD 200 without ever serving the bytes; source saw {src.seen}")
    assert r.status_code == 404 and code_of(r) == "BLOB_UNKNOWN", (r.status_code, r.text[:200])


def test_source_manifest_naming_a_private_layer_gets_it_linked_into_the_cache(berth, evil):
    """VULNERABILITY (expected to fail until fixed). The source serves an image (its own manifest
    and config) whose layer is the digest of private registry `vault`'s layer; it never serves that
    layer (GET and HEAD 404). The cache-image job (`ensure_blob(.., named_by_source = true)` in
    shared/src/cache/fill.rs) adopts the locally stored bytes without asking the source, and the
    cache registry then serves vault's layer to anyone who may pull from it.
    Expected: the image is never recorded and the blob stays 404 in the cache registry."""
    secret = private_image(berth, "vault", "secret/app")
    layer_d, layer = secret["layers"][0]
    src = evil()
    img = src.image("x", "v1", [{"mediaType": OCI_LAYER_GZIP, "digest": layer_d, "size": len(layer)}])
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    api = As(berth, auth=viewer)
    r = api.get_manifest(f"{creg}/x", "v1")
    assert r.status_code == 200 and r.content == img["manifest"], (r.status_code, r.text[:200])
    # the job runs in the background: look for the layer for a while
    got = {}

    def leaked() -> bool:
        b = api.get(f"/v2/{creg}/x/blobs/{layer_d}")
        got["r"] = (b.status_code, len(b.content))
        return b.status_code == 200 and b.content == layer

    assert not wait_until(leaked, RECORD_WAIT), (
        f"vault's private layer {layer_d} is served from {creg}/x to a cache-registry reader, although the "
        f"source never served it (source blob requests: {src.requests_for('GET', layer_d) + src.requests_for('HEAD', layer_d)}); "
        f"recorded tags: {local_tags(berth, f'{creg}/x')}")
    assert local_tags(berth, f"{creg}/x") == {}, "an image whose layer the source lacks was recorded"


def test_source_index_naming_a_private_manifest_exposes_the_whole_private_image(berth, evil):
    """VULNERABILITY (expected to fail until fixed). The source serves an index whose only child is
    the digest of private registry `vault`'s image manifest; the source has neither that manifest
    nor its blobs. The cache-image job (`ensure_manifest` in shared/src/cache/fill.rs) reads the
    child's bytes from Berth's own blob store, adopts its config and layers, and records it: a user
    who may pull only from the cache registry then pulls vault's whole private image by digest.
    Expected: the child is fetched from the source (404 here) and nothing private is served."""
    secret = private_image(berth, "vault", "secret/app")
    layer_d, layer = secret["layers"][0]
    src = evil()
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": secret["digest"], "size": len(secret["manifest"]),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    src.manifest("x", index, OCI_INDEX, tags=["v1"])
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    api = As(berth, auth=viewer)
    r = api.get_manifest(f"{creg}/x", "v1")
    assert r.status_code == 200 and r.content == index, (r.status_code, r.text[:200])

    def leaked() -> bool:
        m = api.get_manifest(f"{creg}/x", secret["digest"])
        return m.status_code == 200 and m.content == secret["manifest"]

    manifest_leaked = wait_until(leaked, RECORD_WAIT)
    b = api.get(f"/v2/{creg}/x/blobs/{layer_d}")
    assert not manifest_leaked and not (b.status_code == 200 and b.content == layer), (
        f"vault's private image {secret['digest']} (manifest: {manifest_leaked}, layer: {b.status_code} "
        f"{len(b.content)} bytes) is served from {creg}/x to a cache-registry reader; the source was asked for "
        f"{[s for s in src.seen if secret['digest'] in s.path or layer_d in s.path]}")


# --- 2. writing into a cache registry ------------------------------------------------------------------------

def push_to_source(reg, repo: str, tag: str, size: int = 2000) -> dict:
    """An image pushed to an honest source (distribution): dict(manifest, digest, config, layers)."""
    return Api(reg).push_image(repo, tag, [tar_gz({"f": random_bytes(size)})])


def cached(berth, creg: str, up, repo: str, tag: str, img: dict) -> None:
    """Pull `repo:tag` through cache registry `creg` (manifest and blobs) and wait for its record."""
    api = Api(berth)
    r = api.get_manifest(f"{creg}/{repo}", tag)
    assert r.status_code == 200 and r.content == img["manifest"], (r.status_code, r.text[:200])
    for d, data in [img["config"], *img["layers"]]:
        assert api.get_blob(f"{creg}/{repo}", d) == data
    assert wait_until(lambda: local_tags(berth, f"{creg}/{repo}").get(tag) == img["digest"], 60), \
        f"{creg}/{repo}:{tag} not recorded\n{logs(berth)}"


def test_every_kind_of_push_into_a_cache_registry_is_refused(berth, distribution):
    """Blob uploads (POST, monolithic POST, chunked session opened elsewhere and finished under the
    cache path), a cross-repository mount from a registry the caller may read, manifest PUT by tag
    and digest, a cosign signature tag and an OCI referrer: all 403 DENIED, as Basic and as a token
    holding push, for an administrator too. Nothing is stored or linked."""
    up_img = push_to_source(distribution, "app", "v1")
    creg = make_cache_registry(berth, make_cache(berth, distribution.url, access=distribution.credentials))
    crepo = f"{creg}/app"
    api = Api(berth)
    blob = random_bytes(5000)
    d = api.push_blob("e2e/mount-src", blob)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, image_config()), "layers": []}).encode()
    referrer = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x-sig",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": digest(b"{}"), "size": 2},
                           "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": up_img["digest"],
                                                     "size": len(up_img["manifest"])}}).encode()
    # a session opened in a registry the caller may push to, finished under the cache path
    session = api.new_session("e2e/elsewhere")
    sid = session.rstrip("/").split("/")[-1].split("?")[0]
    tok = token_for(berth, f"repository:{crepo}:pull,push,delete", berth.credentials)
    assert "push" in next(a["actions"] for a in jwt_claims(tok)["access"] if a["name"] == crepo)
    callers = {"basic admin": api, "bearer admin": As(berth, headers={"Authorization": f"Bearer {tok}"})}
    problems = []
    for who, c in callers.items():
        attempts = {
            "POST upload": c.post(f"/v2/{crepo}/blobs/uploads/", headers={"Content-Length": "0"}),
            "monolithic POST": c.post(f"/v2/{crepo}/blobs/uploads/", params={"digest": d}, data=blob,
                                      headers={"Content-Type": "application/octet-stream"}),
            "mount": c.post(f"/v2/{crepo}/blobs/uploads/", params={"mount": d, "from": "e2e/mount-src"},
                            headers={"Content-Length": "0"}),
            "foreign session PUT": c.put(f"/v2/{crepo}/blobs/uploads/{sid}", params={"digest": d}, data=blob,
                                         headers={"Content-Type": "application/octet-stream"}),
            "foreign session PATCH": c.patch(f"/v2/{crepo}/blobs/uploads/{sid}", data=blob,
                                             headers={"Content-Type": "application/octet-stream"}),
            "manifest PUT tag": c.put_manifest(crepo, "mine", body, OCI_MANIFEST),
            "manifest PUT over a source tag": c.put_manifest(crepo, "v1", body, OCI_MANIFEST),
            "manifest PUT digest": c.put_manifest(crepo, digest(body), body, OCI_MANIFEST),
            "cosign .sig tag": c.put_manifest(crepo, "sha256-" + up_img["digest"][7:] + ".sig", body, OCI_MANIFEST),
            "referrer": c.put_manifest(crepo, digest(referrer), referrer, OCI_MANIFEST),
        }
        for what, r in attempts.items():
            if r.status_code != 403 or code_of(r) != "DENIED" or "cache" not in r.text.lower():
                problems.append(f"{who}: {what}: {r.status_code} {r.text[:200]}")
    assert not problems, "pushes into a cache registry not refused:\n" + "\n".join(problems)
    assert api.head(f"/v2/{crepo}/blobs/{d}").status_code == 404
    assert local_tags(berth, crepo) == {} and local_artifacts(berth, crepo) == []
    # the source's tag is still what the cache serves
    r = api.get_manifest(crepo, "v1")
    assert r.status_code == 200 and r.content == up_img["manifest"]


def test_management_api_tag_put_into_a_cache_registry_is_refused(berth, distribution):
    """VULNERABILITY (expected to fail until fixed; low severity). `PUT /api/v1/images/<cache
    repo>/tags/<tag>` (ManageTags) is a push by another door: it re-points a cached tag at another
    cached artifact. The guard refuses every registry push into a cache registry, but this route
    (shared/src/api/manage/artifacts.rs put_tag) does not check the registry kind. When the source
    then cannot be reached, the cache serves the re-pointed tag: a tag poisoned against its source.
    Expected: 403 DENIED (the registry is an image cache), and v1 keeps naming the source's v1."""
    v1 = push_to_source(distribution, "app", "v1")
    v2 = push_to_source(distribution, "app", "v2")
    creg = make_cache_registry(berth, make_cache(berth, distribution.url, access=distribution.credentials))
    crepo = f"{creg}/app"
    cached(berth, creg, distribution, "app", "v1", v1)
    cached(berth, creg, distribution, "app", "v2", v2)
    r = mgmt(berth, "PUT", f"/api/v1/images/{crepo}/tags/v1", json={"digest": v2["digest"]})
    refused = r.status_code == 403 and code_of(r) == "DENIED"
    poisoned = None
    if not refused:
        distribution.kill()  # the source goes down: the cache serves what it has
        m = Api(berth).get_manifest(crepo, "v1")
        poisoned = m.status_code == 200 and m.content == v2["manifest"]
    assert refused, (f"PUT /api/v1/images/{crepo}/tags/v1 in a cache registry answered {r.status_code} "
                     f"{r.text[:200]}; with the source down, {crepo}:v1 then serves "
                     f"{'the re-pointed v2 manifest' if poisoned else 'something else'} (source's v1 is "
                     f"{v1['digest']})")


def test_deletes_in_a_cache_registry_work_and_the_next_pull_fetches_again(berth, distribution):
    """Deletes are allowed (the spec): a tag DELETE and an artifact DELETE through the management API
    and a manifest DELETE through /v2; the next pull serves the source's image again."""
    img = push_to_source(distribution, "app", "v1")
    creg = make_cache_registry(berth, make_cache(berth, distribution.url, access=distribution.credentials))
    crepo = f"{creg}/app"
    cached(berth, creg, distribution, "app", "v1", img)
    r = mgmt(berth, "DELETE", f"/api/v1/images/{crepo}/tags/v1")
    assert r.status_code == 204, (r.status_code, r.text)
    r = mgmt(berth, "DELETE", f"/api/v1/images/{crepo}/artifacts/{img['digest']}")
    assert r.status_code == 204, (r.status_code, r.text)
    assert local_artifacts(berth, crepo) == []
    cached(berth, creg, distribution, "app", "v1", img)
    r = Api(berth).delete(f"/v2/{crepo}/manifests/{img['digest']}")
    assert r.status_code == 202, (r.status_code, r.text)
    cached(berth, creg, distribution, "app", "v1", img)


# --- 3. the mirror host ------------------------------------------------------------------------------------

@pytest.fixture
def mirrored(registry_factory, distribution):
    """A Berth whose host `localhost` is the mirror of cache registry `mirror` (source: distribution
    with library/hello:v1), plus private registry `vault` holding secret/app:v1. Returns a namespace."""
    mirror = unique("mirror")
    berth = registry_factory(env={**ENV, "BERTH_MIRROR_HOSTS": f"localhost={mirror}"})
    make_cache_registry(berth, make_cache(berth, distribution.url, access=distribution.credentials), name=mirror)
    hello = push_to_source(distribution, "library/hello", "v1")
    secret = private_image(berth, "vault", "secret/app")
    _, viewer = new_user(berth, "service-viewer", registries=[mirror])

    class M:
        pass

    m = M()
    m.berth, m.mirror, m.hello, m.secret, m.viewer = berth, mirror, hello, secret, viewer
    m.host = f"localhost:{berth.port}"
    return m


def test_mirror_host_tokens_reach_only_the_cache_registry(mirrored):
    """On the mirror host the token endpoint prefixes every repository scope with the cache registry:
    a token asked there for `vault/secret/app` (by an administrator, who could read vault) names
    `<mirror>/vault/secret/app`, opens nothing in vault on any host, and on the mirror host that name
    is a repository of the cache registry (not at the source: 404). Registry scopes are unchanged
    and not granted to a scoped user."""
    m = mirrored
    b, api = m.berth, Api(m.berth)
    for creds in (b.credentials, m.viewer):
        tok = token_for(b, "repository:vault/secret/app:pull,push,delete", creds, host=m.host)
        names = {a["name"] for a in jwt_claims(tok)["access"]}
        assert names <= {f"{m.mirror}/vault/secret/app"}, names
        for host in (b.host, m.host, "127.0.0.1", "vault"):
            for path in ("/v2/vault/secret/app/manifests/v1", f"/v2/vault/secret/app/blobs/{m.secret['layers'][0][0]}"):
                status, _, body = api.raw("GET", path, headers={"Host": host, "Authorization": f"Bearer {tok}",
                                                                 "Accept": ALL_MANIFEST_TYPES})
                assert status in (401, 403, 404), (host, path, status, body[:200])
                assert body != m.secret["manifest"] and m.secret["layers"][0][1] not in body
    # a scoped viewer asking for the catalog on the mirror host gets no catalog access
    tok = token_for(b, "registry:catalog:*", m.viewer, host=m.host)
    assert not jwt_claims(tok)["access"], jwt_claims(tok)
    status, _, body = api.raw("GET", "/v2/_catalog", headers={"Host": m.host, "Authorization": f"Bearer {tok}"})
    assert status in (401, 403) and b"vault" not in body, (status, body[:200])
    # the pull the mirror is for works with the viewer's token
    tok = token_for(b, "repository:library/hello:pull", m.viewer, host=m.host)
    status, _, body = api.raw("GET", "/v2/library/hello/manifests/v1", headers={
        "Host": m.host, "Authorization": f"Bearer {tok}", "Accept": ALL_MANIFEST_TYPES})
    assert status == 200 and body == m.hello["manifest"], (status, body[:200])


HOST_TRICKS = ["localhost", "LOCALHOST", "LocalHost:{port}", "localhost.", "localhost.:{port}", "localhost:1@evil",
               "evil@localhost", "localhost:{port}:80", "[::1]:{port}", "[localhost]", "127.0.0.1:{port}",
               "localhost%00", "localhost vault", "vault", ""]
PATH_TRICKS = ["/v2/vault/secret/app/manifests/v1", "/v2/../vault/secret/app/manifests/v1",
               "/v2/%2e%2e/vault/secret/app/manifests/v1", "/v2/x/../../vault/secret/app/manifests/v1",
               "/v2/vault%2Fsecret%2Fapp/manifests/v1", "/v2//vault/secret/app/manifests/v1",
               "/v2/./vault/secret/app/manifests/v1", "/v2/vault/secret/app%0a/manifests/v1",
               "/v2/vault/secret/app/manifests/v1?ns=vault", "/v2/vault/secret/app/manifests/v1#x",
               "http://127.0.0.1/v2/vault/secret/app/manifests/v1", "/v2/vault/secret/app/blobs/{layer}",
               "/v2/..%2fvault/secret/app/blobs/{layer}", "/v2/vault/secret/app/tags/list",
               "/v2/vault/secret/app/referrers/{digest}", "/api/v1/images/vault/secret/app/tags",
               "/api/v1/images/vault/secret/app/artifacts"]


def test_mirror_host_and_path_tricks_never_reach_another_registry(mirrored):
    """A user who may pull only from the mirror's cache registry tries Host header variants (case,
    trailing dot, userinfo, extra port, IPv6, empty) and path tricks (`..`, encoded slashes and dots,
    newlines, absolute-form URI, other routes) to read private registry vault: never a 200 with
    vault's manifest, layer or tags. The upper-case Host still counts as the mirror."""
    m = mirrored
    api = Api(m.berth)
    layer_d, layer = m.secret["layers"][0]
    problems = []
    for host_t in HOST_TRICKS:
        host = host_t.format(port=m.berth.port)
        for path_t in PATH_TRICKS:
            path = path_t.format(layer=layer_d, digest=m.secret["digest"])
            try:
                status, _, body = api.raw("GET", path, headers={"Host": host, "Authorization": basic(m.viewer),
                                                                 "Accept": ALL_MANIFEST_TYPES})
            except (OSError, http.client.HTTPException):
                continue  # refused at the HTTP layer
            if body == m.secret["manifest"] or layer in body or (status == 200 and b"secret" in body) \
                    or (status == 200 and m.secret["digest"].encode() in body):
                problems.append(f"Host {host!r} GET {path}: {status} {body[:120]!r}")
    assert not problems, "the mirror's viewer read vault:\n" + "\n".join(problems)
    # the mirror host matches case-insensitively with or without a port, as DNS does
    for host in (f"LOCALHOST:{m.berth.port}", "LocalHost"):
        status, _, body = api.raw("GET", "/v2/library/hello/manifests/v1", headers={
            "Host": host, "Authorization": basic(m.viewer), "Accept": ALL_MANIFEST_TYPES})
        assert status == 200 and body == m.hello["manifest"], (host, status, body[:200])


# --- 4. SSRF: where a cache makes Berth connect ---------------------------------------------------------------

PRIVATE_URLS = ["http://127.0.0.1:{port}", "http://localhost:{port}", "http://169.254.169.254",
                "http://169.254.169.254:80", "http://[::1]:{port}", "http://[::ffff:127.0.0.1]:{port}",
                "http://0x7f.1:{port}", "http://2130706433:{port}", "http://127.1:{port}", "http://0.0.0.0:{port}",
                "http://10.0.0.1", "https://192.168.1.1", "http://100.64.0.1", "http://[fe80::1]",
                "http://[fd00::1]", "https://172.16.0.1:443"]


def test_cache_urls_to_private_addresses_are_refused_without_outbound_allow(registry_factory):
    """Without BERTH_OUTBOUND_ALLOW a cache URL naming loopback, link-local (the metadata service),
    private, CGNAT or unspecified addresses, in any spelling (IPv6, mapped, hex, integer, short form,
    names that resolve there) is refused with 400 on create and on PATCH, whatever the port setting."""
    berth = registry_factory(env={"BERTH_CACHE_SOURCE_PORTS": "*"})
    port = berth.port
    problems = []
    public = make_cache(berth, "https://1.1.1.1")
    for u in PRIVATE_URLS:
        u = u.format(port=port)
        r = mgmt(berth, "POST", "/api/v1/caches", json={"name": unique("ssrf-"), "type": "docker-registry", "url": u})
        if r.status_code != 400 or code_of(r) != "INVALID_REQUEST":
            problems.append(f"POST {u}: {r.status_code} {r.text[:160]}")
        r = mgmt(berth, "PATCH", f"/api/v1/caches/{public}", json={"url": u})
        if r.status_code != 400:
            problems.append(f"PATCH {u}: {r.status_code} {r.text[:160]}")
    assert not problems, "private cache URLs accepted:\n" + "\n".join(problems)
    assert mgmt(berth, "GET", f"/api/v1/caches/{public}").json()["url"] == "https://1.1.1.1"


def test_cache_url_ports_other_than_80_and_443_need_the_setting(registry_factory):
    """Without BERTH_CACHE_SOURCE_PORTS only 80 and 443 (explicit or implied) are accepted; userinfo,
    paths, queries and other schemes are refused."""
    berth = registry_factory()
    ok = ["http://1.1.1.1", "https://1.1.1.1", "https://1.1.1.1:443", "http://1.1.1.1:80", "https://1.1.1.1:80"]
    bad = ["http://1.1.1.1:5000", "https://1.1.1.1:8443", "http://1.1.1.1:22", "https://1.1.1.1:6379",
           "http://user:pw@1.1.1.1", "http://1.1.1.1/v2/", "http://1.1.1.1/?x=1", "ftp://1.1.1.1",
           "file:///etc/passwd", "gopher://1.1.1.1:70", "http://1.1.1.1#frag", "http:///", "1.1.1.1"]
    problems = []
    for u in ok:
        r = mgmt(berth, "POST", "/api/v1/caches", json={"name": unique("ok-"), "type": "docker-registry", "url": u})
        if r.status_code != 201:
            problems.append(f"refused {u}: {r.status_code} {r.text[:160]}")
    for u in bad:
        r = mgmt(berth, "POST", "/api/v1/caches", json={"name": unique("bad-"), "type": "docker-registry", "url": u})
        if r.status_code != 400:
            problems.append(f"accepted {u}: {r.status_code} {r.text[:160]}")
    assert not problems, "\n".join(problems)


def redirect_blob(src: EvilSource, repo: str, d: str, location: str) -> None:
    src.routes[("GET", f"/v2/{repo}/blobs/{d}")] = (307, {"Location": location}, b"")


def test_blob_redirects_to_refused_addresses_and_schemes_are_not_followed(registry_factory, evil, listeners):
    """BERTH_OUTBOUND_ALLOW=127.0.0.1/32 (only the source's own address). The source answers blob
    GETs with redirects to 127.0.0.2 (a listener there), the metadata service, ::1, other schemes
    and userinfo URLs: Berth follows none of them (the listener sees nothing) and the client gets an
    error, never a 200 body."""
    src = evil()
    berth = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.1/32", "BERTH_CACHE_SOURCE_PORTS": "*",
                                  "BERTH_CACHE_TIMEOUT_SECS": "5"})
    other = listeners(host="127.0.0.2")
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    api = Api(berth)
    targets = [f"{other.url}/x", f"http://127.0.0.2:{src.port}/v2/", "http://169.254.169.254/latest/meta-data/",
               f"http://[::1]:{src.port}/", "file:///etc/passwd", "gopher://127.0.0.1:70/x",
               f"http://u:p@127.0.0.1:{src.port}/v2/", "ftp://127.0.0.1/x", f"http://0.0.0.0:{other.port}/",
               f"http://localhost:{other.port}/"]
    problems = []
    for i, location in enumerate(targets):
        data = f"blob {i}".encode()
        d = digest(data)
        redirect_blob(src, "x", d, location)
        status, cl, body, err = read_all(f"{berth.url}/v2/{creg}/x/blobs/{d}", {"Authorization": basic(berth.credentials)})
        if status == 200 or b"internal" in body:
            problems.append(f"redirect to {location}: {status} {body[:100]!r} {err}")
    assert not other.seen, f"Berth followed a redirect to a refused address: {other.seen}"
    assert not problems, "\n".join(problems)
    assert api.get("/v2/").status_code == 200


def test_token_realms_on_refused_addresses_and_redirect_loops_are_not_followed(registry_factory, evil, listeners):
    """BERTH_OUTBOUND_ALLOW=127.0.0.1/32. Sources whose Bearer challenge names a realm on 127.0.0.2
    (a listener there), on the metadata service, or with another scheme: the realm is never asked
    and the cache's credentials go nowhere; the pull fails. A source that redirects a blob to
    itself forever is given up after a handful of hops."""
    other = listeners(host="127.0.0.2", body=b'{"token":"t"}')
    realms = [f"{other.url}/token", "http://169.254.169.254/token", "file:///etc/passwd",
              f"http://[::1]:{other.port}/token"]
    sources = [evil(challenge=f'Bearer realm="{realm}",service="x"') for realm in realms]
    loop = evil()
    berth = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.1/32", "BERTH_CACHE_SOURCE_PORTS": "*",
                                  "BERTH_CACHE_TIMEOUT_SECS": "5"})
    api = Api(berth)
    problems = []
    for realm, src in zip(realms, sources):
        creg = make_cache_registry(berth, make_cache(berth, src.url, access=("robot", "robot-secret")))
        r = api.get_manifest(f"{creg}/x", "v1")
        if r.status_code == 200:
            problems.append(f"realm {realm}: pull answered 200")
    assert not other.seen, f"a refused token realm was asked: {other.seen}"
    d = digest(b"loop")
    redirect_blob(loop, "x", d, f"{loop.url}/v2/x/blobs/{d}")
    creg = make_cache_registry(berth, make_cache(berth, loop.url))
    t0 = time.monotonic()
    r = api.get(f"/v2/{creg}/x/blobs/{d}")
    hops = len(loop.requests_for("GET", f"/blobs/{d}"))
    if r.status_code == 200 or hops > 10 or time.monotonic() - t0 > 20:
        problems.append(f"redirect loop: {r.status_code} after {hops} hops, {time.monotonic() - t0:.1f} s")
    assert not problems, "\n".join(problems)


def test_redirects_and_token_realms_bypass_the_cache_source_port_setting(registry_factory, evil, listeners):
    """VULNERABILITY (expected to fail until fixed; medium). BERTH_CACHE_SOURCE_PORTS limits the
    ports a cache source may use (an SSRF guard: by default 80/443), but only the configured URL is
    checked (shared/src/cache/source.rs validate_url). A source's blob redirect (`fetch_blob`) and
    its token realm (`token`) in shared/src/remote.rs go to any port the outbound guard's address
    check admits. Worse, the redirected answer is streamed to the pulling client chunk by chunk
    before its digest is checked, so the client reads the internal service's answer (all but the
    last chunk). Here the only allowed source port is the source's own; a blob redirect reaches an
    internal service on 127.0.0.1:<other port> and its body comes back to the client; a Bearer realm
    on another port is asked too (with the cache's Basic credentials).
    Expected: neither listener is contacted, the client gets an error and none of those bytes."""
    src = evil()
    internal = listeners(body=b"INTERNAL-SECRET:" + b"s" * (512 * KIB))
    berth = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8",
                                  "BERTH_CACHE_SOURCE_PORTS": str(src.port)})
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    d = digest(b"anything")
    redirect_blob(src, "x", d, f"{internal.url}/admin/secret")
    status, cl, body, err = read_all(f"{berth.url}/v2/{creg}/x/blobs/{d}",
                                     {"Authorization": basic(berth.credentials)})
    redirect_reached = [s for s in internal.seen]
    leaked = body.count(b"s") if b"INTERNAL-SECRET" in body else 0

    # the token realm: a second source that challenges with a realm on a non-allowed port
    realm = listeners(body=b'{"token":"from-an-internal-service"}')
    src2 = evil(challenge=f'Bearer realm="{realm.url}/token",service="evil"')
    berth.extra_env["BERTH_CACHE_SOURCE_PORTS"] = f"{src.port},{src2.port}"
    berth.restart()
    creg2 = make_cache_registry(berth, make_cache(berth, src2.url, access=("cache-user", "cache-secret-42")))
    r = Api(berth).get_manifest(f"{creg2}/x", "v1")
    realm_reached = list(realm.seen)
    assert not redirect_reached and not leaked and not realm_reached, (
        f"port setting {src.port} bypassed: blob redirect reached {redirect_reached} and the client read "
        f"{len(body)} bytes ({leaked} of the internal answer; status {status}, Content-Length {cl}, {err}); "
        f"the token realm on port {realm.port} was asked {realm_reached} (pull answered {r.status_code})")


# --- 5. a malicious source's content --------------------------------------------------------------------------

def blob_url(berth, creg: str, repo: str, d: str) -> str:
    return f"{berth.url}/v2/{creg}/{repo}/blobs/{d}"


def raw_route(status: int, headers: dict, body: bytes, drip: Optional[tuple[int, float]] = None,
              chunked: bool = False, hold: float = 0) -> Callable:
    """A route writing its answer by hand: exact headers (no Content-Length unless given), the body
    in `drip` = (bytes, pause) pieces, chunked transfer coding, or only after `hold` seconds."""

    def route(h):
        time.sleep(hold)
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        if h.command == "HEAD":
            return
        try:
            if drip:
                n, pause = drip
                for i in range(0, len(body), n):
                    piece = body[i:i + n]
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    h.wfile.flush()
                    time.sleep(pause)
            elif chunked:
                for i in range(0, len(body), 64 * KIB):
                    piece = body[i:i + 64 * KIB]
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                h.wfile.write(body)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    return route


@pytest.mark.embedded_only
def test_wrong_or_mislengthed_blob_bytes_are_never_served_whole_nor_kept(berth, evil):
    """The source answers blob GETs with other bytes than the digest names (same length), with a
    Content-Length larger than what it sends (then closes), smaller than what it sends, and without
    a Content-Length (close-delimited and chunked). No client ever reads a complete 200 answer with
    wrong bytes, nothing is stored under the digest, and a second pull asks the source again."""
    src = evil()
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    auth = {"Authorization": basic(berth.credentials)}
    size = 600 * KIB
    cases = {}
    right = random_bytes(size)
    cases["other bytes"] = (right, raw_route(200, {"Content-Length": str(size)}, random_bytes(size)))
    right = random_bytes(size)
    cases["length too large"] = (right, raw_route(200, {"Content-Length": str(size + 5000)}, right))
    right = random_bytes(size)
    cases["length too small"] = (right, raw_route(200, {"Content-Length": str(size - 5000)}, right))
    right = random_bytes(size)
    cases["truncated, no length"] = (right, raw_route(200, {}, right[:-10]))
    right = random_bytes(size)
    cases["wrong, chunked"] = (right, raw_route(200, {}, random_bytes(size), chunked=True))
    right = random_bytes(size)
    cases["right bytes plus more, chunked"] = (right, raw_route(200, {}, right + b"extra", chunked=True))
    problems = []
    for what, (right, route) in cases.items():
        d = digest(right)
        src.routes[("GET", f"/v2/x/blobs/{d}")] = route
        for attempt in (1, 2):
            status, cl, body, err = read_all(blob_url(berth, creg, "x", d), auth)
            complete = status == 200 and err is None and (cl is None or len(body) == cl)
            if complete:
                problems.append(f"{what} (pull {attempt}): a complete 200 answer of {len(body)} bytes "
                                f"(Content-Length {cl}, {'right' if body == right else 'WRONG'} bytes)")
            if berth.blob_file(d).exists():
                problems.append(f"{what}: the blob store holds {d} after pull {attempt}")
        fetched = len(src.requests_for("GET", f"/blobs/{d}"))
        if fetched < 2:
            problems.append(f"{what}: the source was asked {fetched} times for two pulls (a bad blob was kept)")
    assert not problems, "\n".join(problems) + "\n" + logs(berth)
    assert Api(berth).get("/v2/").status_code == 200


def test_manifest_lies_are_refused_and_nothing_is_recorded(berth, evil):
    """The source names digest D for tag v1 but serves other bytes for D; serves bytes for a
    digest reference that hash elsewhere; names a private manifest's digest it does not have;
    serves a 10 MiB manifest; serves an index nested three deep. None is served as a 200 with
    bytes that do not match their digest, no private manifest comes back, nothing is recorded, and
    Berth stays up."""
    secret = private_image(berth, "vault", "secret/app")
    src = evil()
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    api = Api(berth)
    problems = []
    # 1. tag -> D, but D's bytes are another manifest
    real = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, b"{}"),
                       "layers": []}).encode()
    other = real.replace(b"[]", b"[ ]")
    fake_d = digest(real)
    src.routes[("GET", "/v2/lie/manifests/v1")] = (200, {"Content-Type": OCI_MANIFEST,
                                                         "Docker-Content-Digest": fake_d}, real)
    src.routes[("GET", f"/v2/lie/manifests/{fake_d}")] = (200, {"Content-Type": OCI_MANIFEST}, other)
    for ref in ("v1", fake_d):
        r = api.get_manifest(f"{creg}/lie", ref)
        if r.status_code == 200 and digest(r.content) != r.headers.get("Docker-Content-Digest"):
            problems.append(f"lie:{ref}: 200 with bytes {digest(r.content)} under {r.headers.get('Docker-Content-Digest')}")
        if r.status_code == 200 and ref == fake_d and r.content != real:
            problems.append(f"lie@{ref}: served {digest(r.content)} for {fake_d}")
    # 2. a private manifest's digest the source does not have
    src.routes[("HEAD", "/v2/priv/manifests/v1")] = (200, {"Content-Type": OCI_MANIFEST,
                                                           "Docker-Content-Digest": secret["digest"],
                                                           "Content-Length": str(len(secret["manifest"]))}, b"")
    for ref in ("v1", secret["digest"]):
        r = api.get_manifest(f"{creg}/priv", ref)
        if r.status_code == 200 or r.content == secret["manifest"]:
            problems.append(f"priv:{ref}: {r.status_code} {r.content[:100]!r}")
    # 3. a 10 MiB manifest
    huge = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, b"{}"),
                       "layers": [], "annotations": {"pad": "x" * (10 * MIB)}}).encode()
    src.manifest("huge", huge, tags=["v1"])
    for ref in ("v1", digest(huge)):
        r = api.get_manifest(f"{creg}/huge", ref)
        if r.status_code == 200:
            problems.append(f"huge:{ref}: 200 with {len(r.content)} bytes")
    # 4. an index of an index of an index of an image
    config = image_config()
    src.blob("deep", config)
    leaf = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": []}).encode()
    src.manifest("deep", leaf)
    top, media = leaf, OCI_MANIFEST
    for _ in range(3):
        top = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": media, "digest": digest(top), "size": len(top)}]}).encode()
        media = OCI_INDEX
        src.manifest("deep", top, OCI_INDEX)
    src.manifest("deep", top, OCI_INDEX, tags=["v1"])
    r = api.get_manifest(f"{creg}/deep", "v1")
    assert r.status_code == 200 and r.content == top  # served as fetched; its recording is what is checked
    time.sleep(5)
    for repo in ("lie", "priv", "huge", "deep"):
        tags = local_tags(berth, f"{creg}/{repo}")
        if tags:
            problems.append(f"{repo}: recorded {tags}")
    assert not problems, "\n".join(problems)
    assert api.get("/v2/").status_code == 200


def test_a_slow_drip_or_silent_source_is_cut_off_and_the_server_stays_responsive(registry_factory, evil):
    """The source drips a 1 MiB blob a few bytes at a time, answers a manifest GET the same way, and
    holds another request without answering at all. With BERTH_CACHE_TIMEOUT_SECS=3 every pull ends
    (as an error, never a complete 200) within seconds, and meanwhile other requests are answered
    at once."""
    src = evil()
    berth = registry_factory(env={**ENV, "BERTH_CACHE_TIMEOUT_SECS": "3", "BERTH_CACHE_BUDGET_SECS": "8"})
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    auth = {"Authorization": basic(berth.credentials)}
    blob = random_bytes(MIB)
    d = digest(blob)
    src.routes[("GET", f"/v2/x/blobs/{d}")] = raw_route(200, {"Content-Length": str(len(blob))}, blob,
                                                       drip=(64, 0.2))
    silent = digest(b"silent")
    src.routes[("GET", f"/v2/x/blobs/{silent}")] = raw_route(200, {"Content-Length": "6"}, b"silent", hold=60)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, b"{}"),
                           "layers": []}).encode()
    md = digest(manifest)
    src.routes[("GET", "/v2/x/manifests/v1")] = raw_route(200, {"Content-Type": OCI_MANIFEST,
                                                                "Docker-Content-Digest": md,
                                                                "Content-Length": str(len(manifest))}, manifest,
                                                         drip=(4, 0.5))
    src.routes[("GET", f"/v2/x/manifests/{md}")] = src.routes[("GET", "/v2/x/manifests/v1")]
    results = {}

    def timed(name, fn):
        t0 = time.monotonic()
        try:
            results[name] = (fn(), time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            results[name] = (repr(e), time.monotonic() - t0)

    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(timed, "drip", lambda: read_all(blob_url(berth, creg, "x", d), auth, timeout=60)),
                pool.submit(timed, "silent", lambda: read_all(blob_url(berth, creg, "x", silent), auth, timeout=60)),
                pool.submit(timed, "manifest", lambda: requests.get(
                    f"{berth.url}/v2/{creg}/x/manifests/v1", headers={**auth, "Accept": ALL_MANIFEST_TYPES},
                    timeout=60))]
        time.sleep(1)
        t0 = time.monotonic()
        assert Api(berth).get("/v2/", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 2, "the server is slow to answer while a source drips"
        for f in futs:
            f.result()
    drip, took = results["drip"]
    assert isinstance(drip, tuple) and took < 25, (drip if not isinstance(drip, tuple) else drip[:2], took)
    status, cl, body, err = drip
    assert not (status == 200 and err is None and len(body) == cl), "a dripped blob was served whole"
    status, cl, body, err = results["silent"][0]
    assert results["silent"][1] < 25 and status != 200, results["silent"]
    r, took = results["manifest"]
    assert took < 25 and not isinstance(r, str) and r.status_code == 503, (r, took)
    assert Api(berth).head(f"/v2/{creg}/x/manifests/{md}").status_code != 200 or not local_tags(berth, f"{creg}/x")


def test_tag_lists_of_a_cache_repository_do_not_go_to_the_source(berth, evil):
    """A source with 10,000 tags: `/v2/<cache repo>/tags/list` answers from Berth's own record (never
    asking the source, so no unbounded answer is read)."""
    src = evil()
    tags = json.dumps({"name": "x", "tags": [f"t{i}" for i in range(10_000)]}).encode()
    src.routes[("GET", "/v2/x/tags/list")] = (200, {"Content-Type": "application/json"}, tags)
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    r = Api(berth).get(f"/v2/{creg}/x/tags/list", params={"n": 100000})
    assert r.status_code in (200, 404), (r.status_code, r.text[:200])
    assert not src.requests_for("GET", "/tags/list"), src.seen


# --- 6. credentials on the way to the source -----------------------------------------------------------------

def test_credentials_go_only_to_the_sources_origin_never_to_a_redirect_host(berth, evil, listeners):
    """The source needs Basic credentials and redirects blob GETs to a storage host: another port of
    the same address, another address, and its own origin. The storage hosts get
    no Authorization header (the pull still succeeds with the right bytes); the same-origin hop
    does get it."""
    src = evil(challenge='Basic realm="evil"')
    creg = make_cache_registry(berth, make_cache(berth, src.url, access=(src.user, src.password)))
    api = Api(berth)
    hops = {}
    for name, host in [("other port", "127.0.0.1"), ("other address", "127.0.0.2"), ("same origin", None)]:
        data = f"layer via {name} ".encode() + random_bytes(200 * KIB)
        d = digest(data)
        if host is not None:
            store = listeners(host=host, body=data)
            location = f"{store.url}/storage/{d}"
        else:
            store = None
            location = f"/storage/{d[7:]}"
            src.routes[("GET", location)] = (200, {"Content-Length": str(len(data))}, data)
        redirect_blob(src, "x", d, location)
        hops[name] = (d, data, store, location)
    problems = []
    for name, (d, data, store, location) in hops.items():
        r = api.get(f"/v2/{creg}/x/blobs/{d}")
        if r.status_code != 200 or r.content != data:
            problems.append(f"{name}: pull answered {r.status_code} ({len(r.content)} bytes)")
        if store is not None:
            seen = store.seen
        else:
            seen = src.requests_for("GET", location)
        auth = [s.headers.get("authorization") for s in seen]
        if name == "same origin":
            # each GET of it (on AWS the pull checks the source, then the worker fetches) has them
            if not auth or any(a != src.basic for a in auth):
                problems.append(f"{name}: the source's own storage path got {auth}")
        elif any(auth) or not seen:
            problems.append(f"{name}: the redirect host {location} got Authorization {auth} (requests {seen})")
    assert not problems, "\n".join(problems)


def test_the_cache_secret_never_appears_in_answers_errors_or_logs(berth, evil):
    """access_secret is shown nowhere: cache views (create, GET, list, PATCH), registry views, the
    audit log, errors of refused PATCHes, pull errors when the source refuses the credentials or
    fails, the OpenAPI document, and the server's log."""
    secret = "S3cr3t-" + uuid.uuid4().hex
    b64 = base64.b64encode(f"cache-user:{secret}".encode()).decode()
    src = evil(challenge='Basic realm="evil"', user="cache-user", password=secret)
    name = make_cache(berth, src.url, access=("cache-user", secret))
    creg = make_cache_registry(berth, name)
    answers = [mgmt(berth, "GET", f"/api/v1/caches/{name}"), mgmt(berth, "GET", "/api/v1/caches"),
               mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"description": "d"}),
               mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"type": "gcr"}),
               mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"type": "quay", "access_id": "json_file"}),
               mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"url": "ftp://x"}),
               mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"access_secret": 12345}),
               mgmt(berth, "GET", f"/api/v1/registries/{creg}"), mgmt(berth, "GET", "/api/v1/registries"),
               mgmt(berth, "GET", "/api/v1/openapi.json")]
    api = Api(berth)
    # the source: fine, then a 500, then refusing the credentials, then echoing what it was sent
    img = src.image("x", "v1", [])
    answers.append(api.get_manifest(f"{creg}/x", "v1"))
    src.routes[("GET", "/v2/x/manifests/v2")] = (500, {}, b"internal error")
    answers.append(api.get_manifest(f"{creg}/x", "v2"))
    src.password = "changed"
    src.basic = "Basic " + base64.b64encode(b"cache-user:changed").decode()
    answers.append(api.get_manifest(f"{creg}/x", "v3"))
    answers.append(api.get(f"/v2/{creg}/x/blobs/{digest(b'z')}"))
    answers.append(mgmt(berth, "GET", "/api/v1/audit", params={"n": 1000}))
    leaks = [f"{r.request.method} {r.request.url}: {r.status_code}" for r in answers
             if secret in r.text or b64 in r.text]
    assert not leaks, "the cache secret is in answers:\n" + "\n".join(leaks)
    assert src.requests_for("GET", "/v2/"), "the source was never asked"
    assert img["digest"]
    log = berth.log_path.read_text(errors="replace")
    assert secret not in log and b64 not in log, "the cache secret is in the server log"


def test_an_echoing_source_cannot_hand_the_cache_credentials_to_a_pulling_user(berth, evil):
    """VULNERABILITY (expected to fail until fixed; low). Pull errors carry the first 300 characters
    of the source's error answer (shared/src/remote.rs status_error -> CacheError -> the client's
    error message). A source (or a proxy in front of it) whose error page echoes the request headers
    thus hands the cache's access_id and access_secret (Basic) to any user who may pull from the
    cache registry. Expected: source answers are summarised (status only) for clients, or at least
    never include the Authorization Berth sent."""
    secret = "S3cr3t-" + uuid.uuid4().hex
    src = evil(challenge='Basic realm="evil"', user="cache-user", password=secret)

    def echo(h):
        body = f"error; you sent Authorization: {h.headers.get('Authorization')}".encode()
        h.answer(502, {"Content-Type": "text/plain"}, body)

    # the tag resolves (HEAD), the manifest GET fails with the echo
    d = digest(b"never served")
    src.routes[("HEAD", "/v2/x/manifests/v1")] = (200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": d,
                                                        "Content-Length": "12"}, b"")
    src.routes[("GET", f"/v2/x/manifests/{d}")] = echo
    creg = make_cache_registry(berth, make_cache(berth, src.url, access=("cache-user", secret)))
    _, viewer = new_user(berth, "service-viewer", registries=[creg])
    r = As(berth, auth=viewer).get_manifest(f"{creg}/x", "v1")
    b64 = base64.b64encode(f"cache-user:{secret}".encode()).decode()
    assert b64 not in r.text, (f"a pulling user's error message carries the cache's Basic credentials "
                               f"({r.status_code}): {r.text[:400]}")


# --- 7. races -------------------------------------------------------------------------------------------------

def test_twenty_concurrent_cold_pulls_of_one_blob_fetch_it_once(berth, evil):
    """Twenty clients, released together, GET one uncached 2 MiB blob that the source serves slowly:
    every client reads the right bytes and the source is asked for the blob once."""
    src = evil()
    data = random_bytes(2 * MIB)
    d = digest(data)
    src.routes[("GET", f"/v2/x/blobs/{d}")] = raw_route(200, {"Content-Length": str(len(data))}, data,
                                                       drip=(64 * KIB, 0.05))
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    tok = token_for(berth, f"repository:{creg}/x:pull", berth.credentials)
    barrier = threading.Barrier(20)

    def pull(_):
        barrier.wait(30)
        h = hashlib.sha256()
        with requests.get(blob_url(berth, creg, "x", d), headers={"Authorization": f"Bearer {tok}"},
                          stream=True, timeout=120) as r:
            for part in r.iter_content(256 * KIB):
                h.update(part)
            return r.status_code, "sha256:" + h.hexdigest()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(pull, range(20)))
    assert results == [(200, d)] * 20, results
    gets = src.requests_for("GET", f"/blobs/{d}")
    assert len(gets) == 1, f"the source was asked {len(gets)} times for one blob: {gets}"


def test_deleting_a_cache_while_a_registry_starts_using_it_never_leaves_a_dangling_registry(berth):
    """Fifteen rounds of DELETE /api/v1/caches/<c> racing POST /api/v1/registries {cache: c}: never
    both succeed (204 + 201), and a registry that exists always has its cache. (Both may lose: the
    DELETE sees the registry's claim and answers 409 naming a registry that then is not created.)"""
    problems = []
    for i in range(15):
        cache = make_cache(berth, "http://127.0.0.1:1")
        reg = unique("race")
        barrier = threading.Barrier(2)

        def delete():
            barrier.wait(10)
            return mgmt(berth, "DELETE", f"/api/v1/caches/{cache}")

        def create():
            barrier.wait(10)
            return mgmt(berth, "POST", "/api/v1/registries", json={"name": reg, "cache": cache})

        with ThreadPoolExecutor(2) as pool:
            fd, fc = pool.submit(delete), pool.submit(create)
            rd, rc = fd.result(), fc.result()
        outcome = (rd.status_code, rc.status_code)
        exists_reg = mgmt(berth, "GET", f"/api/v1/registries/{reg}").status_code == 200
        exists_cache = mgmt(berth, "GET", f"/api/v1/caches/{cache}").status_code == 200
        if outcome not in ((204, 400), (409, 201), (409, 400)) or (exists_reg and not exists_cache) \
                or exists_reg != (rc.status_code == 201) or exists_cache != (rd.status_code != 204):
            problems.append(f"round {i}: DELETE {rd.status_code} {rd.text[:80]}, POST {rc.status_code} "
                            f"{rc.text[:80]}; registry exists {exists_reg}, cache exists {exists_cache}")
    assert not problems, "\n".join(problems)


def test_concurrent_patches_leave_a_consistent_access_id_and_secret(berth, evil):
    """Ten concurrent PATCHes each set their own access_id and access_secret: each answers 200 or 409,
    and the cache ends with one PATCH's pair, which is exactly what the source is then sent."""
    src = evil()
    name = make_cache(berth, src.url, access=("u0", "p0"))
    creg = make_cache_registry(berth, name)
    barrier = threading.Barrier(10)

    def patch(i):
        barrier.wait(10)
        return i, mgmt(berth, "PATCH", f"/api/v1/caches/{name}", json={"access_id": f"user{i}",
                                                                         "access_secret": f"secret{i}"})

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(patch, range(10)))
    statuses = sorted({r.status_code for _, r in results})
    assert set(statuses) <= {200, 409}, [(i, r.status_code, r.text[:100]) for i, r in results]
    assert 200 in statuses
    final = mgmt(berth, "GET", f"/api/v1/caches/{name}").json()["access_id"]
    k = int(final.removeprefix("user"))
    src.challenge = 'Basic realm="evil"'
    src.basic = "Basic " + base64.b64encode(f"user{k}:secret{k}".encode()).decode()
    src.image("x", "v1", [])
    r = Api(berth).get_manifest(f"{creg}/x", "v1")
    assert r.status_code == 200, (r.status_code, r.text[:300], src.seen[-3:])


# --- 8. who may manage caches, and tokens of deleted users ------------------------------------------------------

def test_non_administrators_cannot_create_change_or_delete_caches_or_cache_registries(berth):
    """A project admin of one registry, a member of every registry... only the administrator of every
    registry creates, changes and deletes caches and creates cache registries; a registry's
    ManageRegistries holder cannot turn it into (or out of) a cache registry; a management token
    does not widen this."""
    cache = make_cache(berth, "http://127.0.0.1:1")
    creg = make_cache_registry(berth, cache)
    body = {"name": "mine", "type": "docker-registry", "url": "http://127.0.0.1:2"}
    problems = []
    for role, regs in [("project-admin", [creg]), ("project-admin", ["e2e"]), ("service-viewer", None),
                       ("image-uploader", None), ("project-member", [creg, "e2e"])]:
        _, key = new_user(berth, role, registries=regs)
        tok = token_for(berth, "registry:management:*", key)
        for who, auth, headers in [("basic", key, {}), ("token", ("x", "x"), {"Authorization": f"Bearer {tok}"})]:
            kw = {"headers": headers} if headers else {}
            a = None if headers else auth
            attempts = [
                ("create cache", requests.post(f"{berth.url}/api/v1/caches", json=body, auth=a, timeout=T, **kw)),
                ("patch cache", requests.patch(f"{berth.url}/api/v1/caches/{cache}", json={"url": "http://127.0.0.1:3"},
                                               auth=a, timeout=T, **kw)),
                ("delete cache", requests.delete(f"{berth.url}/api/v1/caches/{cache}", auth=a, timeout=T, **kw)),
                ("create cache registry", requests.post(f"{berth.url}/api/v1/registries",
                                                        json={"name": unique("c"), "cache": cache}, auth=a,
                                                        timeout=T, **kw)),
                ("patch registry cache", requests.patch(f"{berth.url}/api/v1/registries/{creg}", json={"cache": None},
                                                        auth=a, timeout=T, **kw)),
                ("patch e2e into a cache", requests.patch(f"{berth.url}/api/v1/registries/e2e",
                                                          json={"cache": cache}, auth=a, timeout=T, **kw)),
            ]
            for what, r in attempts:
                if r.status_code not in (400, 401, 403):
                    problems.append(f"{role} {regs} ({who}): {what}: {r.status_code} {r.text[:120]}")
    view = mgmt(berth, "GET", f"/api/v1/caches/{cache}").json()
    assert view["url"] == "http://127.0.0.1:1" and view["registries"] == [creg], view
    assert [c["name"] for c in mgmt(berth, "GET", "/api/v1/caches").json()["items"]] == [cache]
    assert mgmt(berth, "GET", "/api/v1/registries/e2e").json().get("cache") is None
    assert not problems, "\n".join(problems)


def test_a_registry_scoped_user_does_not_learn_other_registries_through_the_cache_views(berth):
    """VULNERABILITY (expected to fail until fixed; low, information disclosure). A user limited to
    registry `e2e` (ViewRegistries there) lists registries and sees only `e2e`; but GET
    /api/v1/caches (shared/src/api/manage/caches.rs, Rule::Role(ViewRegistries) with no registry)
    shows every cache with its source URL, access_id and the names of *all* registries using it,
    which GET /api/v1/registries hides from this user. Expected: a scoped user sees only the cache
    registries it covers (and arguably only caches those use)."""
    cache = make_cache(berth, "http://127.0.0.1:1", access=("team-b-robot", "pw"))
    hidden = make_cache_registry(berth, cache, name=unique("teamb-private-"))
    _, key = new_user(berth, "project-admin", registries=["e2e"])
    regs = [r["name"] for r in mgmt(berth, "GET", "/api/v1/registries", auth=key).json()["items"]]
    assert hidden not in regs, regs
    shown = {}
    r = mgmt(berth, "GET", "/api/v1/caches", auth=key)
    if r.status_code == 200:
        shown["list"] = r.text
    r = mgmt(berth, "GET", f"/api/v1/caches/{cache}", auth=key)
    if r.status_code == 200:
        shown["show"] = r.text
    leaks = {k: v[:300] for k, v in shown.items() if hidden in v or "team-b-robot" in v}
    assert not leaks, f"a user of registry e2e learns registry {hidden} (and the source's account) from: {leaks}"


def test_deleted_users_and_revoked_keys_lose_their_cache_pull_tokens(berth, evil):
    """A pull token for a cache repository stops working once its user is deleted, or its key is
    deleted; the pull is not served from the cache and does not reach the source."""
    src = evil()
    src.image("x", "v1", [])
    creg = make_cache_registry(berth, make_cache(berth, src.url))
    problems = []
    for how in ("delete user", "delete key"):
        name, key = new_user(berth, "service-viewer", registries=[creg])
        tok = token_for(berth, f"repository:{creg}/x:pull", key)
        bearer = As(berth, headers={"Authorization": f"Bearer {tok}"})
        assert bearer.get_manifest(f"{creg}/x", "v1").status_code == 200
        if how == "delete user":
            r = mgmt(berth, "DELETE", f"/api/v1/users/{name}")
        else:
            r = mgmt(berth, "DELETE", f"/api/v1/users/{name}/keys/{key[0]}")
        assert r.status_code in (200, 204), (how, r.status_code, r.text)
        before = len(src.seen)
        for path in (f"/v2/{creg}/x/manifests/v1", f"/v2/{creg}/x/manifests/v2",
                     f"/v2/{creg}/x/blobs/{digest(b'q')}"):
            r = bearer.get(path, headers={"Accept": ALL_MANIFEST_TYPES})
            if r.status_code not in (401, 403):
                problems.append(f"{how}: GET {path} with the old token: {r.status_code}")
        if len(src.seen) != before:
            problems.append(f"{how}: the old token made Berth ask the source: {src.seen[before:]}")
    assert not problems, "\n".join(problems)


# --- 9. docker-hub short names on the mirror host ----------------------------------------------------------------

def test_docker_hub_short_name_redirect_on_the_mirror_host_stays_in_the_mirror(registry_factory):
    """FUNCTIONAL BUG (not a security issue; expected to fail until fixed). On a mirror host of a
    docker-hub cache, `/v2/alpine/manifests/3` answers 301 with Location
    `/v2/<cache registry>/library/alpine/...` (shared/src/api/manifests.rs `moved` builds it from the
    rewritten path): a client following it on the mirror host is routed to
    `<cache registry>/<cache registry>/library/alpine`. Expected: Location
    `/v2/library/alpine/manifests/3` on the mirror host."""
    mirror = unique("hub")
    berth = registry_factory(env={**ENV, "BERTH_MIRROR_HOSTS": f"localhost={mirror}"})
    make_cache_registry(berth, make_cache(berth, "https://hub.docker.com", kind="docker-hub"), name=mirror)
    status, headers, _ = Api(berth).raw("GET", "/v2/alpine/manifests/3", headers={
        "Host": f"localhost:{berth.port}", "Authorization": basic(berth.credentials)})
    assert status == 301, (status, headers)
    loc = headers.get("location", "")
    assert loc.split("?")[0].endswith("/v2/library/alpine/manifests/3") and mirror not in loc, \
        f"the mirror host redirects to {loc!r}, which that host maps to {mirror}/{mirror}/library/alpine"
