"""Security regressions (issue 11), one test per behaviour of the fix: upload sessions cannot be
raced, hijacked or overflowed; revoked keys, deleted users and changed roles take their tokens
with them (across processes too) and tokens carry only their scope and the server's lifetime;
the data directory is private; connection and login floods do not starve real clients; private
registries stay private; and the low-severity leaks (`_state` reuse, existence disclosure, header
and log injection, odd management paths, refused manifests, the audit trail) stay closed."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import resource
import socket
import stat
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from e2e_util import (DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Api,
                      assert_error, descriptor, digest, image_config, random_bytes)
from test_auth import admin, b64, bearer, claims, error_code, make_user, token

pytestmark = pytest.mark.berth_only

T = 30  # seconds: the timeout of every request
OCTET = {"Content-Type": "application/octet-stream"}
WRONG_SECRET = "wrong-secret-000000000000000000000000000"


# --- helpers --------------------------------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url(registry, path: str) -> str:
    return f"{registry.url}{path}"


def basic(creds) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def new_key(registry, user: str) -> tuple[str, str]:
    """A new access key of `user`, created by the administrator: (access key, secret key)."""
    r = requests.post(url(registry, f"/api/v1/users/{user}/keys"), auth=admin(registry), timeout=T)
    assert r.status_code == 201, f"creating a key of {user}: {r.status_code} {r.text}"
    return r.json()["access_key"], r.json()["secret_key"]


def new_user(registry, role: str, registries=None) -> tuple[str, tuple[str, str]]:
    """Like test_auth.make_user, but also returns the user's name: (name, (access key, secret))."""
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "role": role}
    if registries is not None:
        body["registries"] = registries
    r = requests.post(url(registry, "/api/v1/users"), json=body, auth=admin(registry), timeout=T)
    assert r.status_code == 201, f"creating user {name}: {r.status_code} {r.text}"
    return name, new_key(registry, name)


def new_registry(registry, prefix: str, **settings) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    r = requests.post(url(registry, "/api/v1/registries"), json={"name": name, **settings},
                      auth=admin(registry), timeout=T)
    assert r.status_code == 201, f"creating registry {name}: {r.status_code} {r.text}"
    return name


def make_private(registry, name: str) -> None:
    r = requests.patch(url(registry, f"/api/v1/registries/{name}"), auth=admin(registry), timeout=T,
                       json={"public_access": False, "private_networks": ["10.0.0.0/8"]})
    assert r.status_code == 200 and r.json()["public_access"] is False, f"{r.status_code} {r.text}"


def path_of(location: str) -> str:
    """Path and query of a Location (absolute or not)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def push_whole(registry, repo: str, data: bytes, creds=None, headers=None) -> requests.Response:
    """A monolithic upload: POST ?digest= with the whole blob."""
    return requests.post(url(registry, f"/v2/{repo}/blobs/uploads/"), params={"digest": digest(data)},
                         data=data, headers={**OCTET, **(headers or {})},
                         auth=None if headers else (creds or admin(registry)), timeout=T)


def describe_mix(got: bytes, want: bytes, other: bytes, block: int = 64 * 1024) -> str:
    """Whose bytes a served blob holds, per 64 KiB block (to show a poisoned blob)."""
    if len(got) != len(want):
        return f"{len(got)} bytes instead of {len(want)}"
    blocks = range(0, len(got), block)
    ours = sum(got[i:i + block] == want[i:i + block] for i in blocks)
    theirs = sum(got[i:i + block] == other[i:i + block] for i in blocks)
    return (f"of its {len(blocks)} blocks of 64 KiB, {ours} are the expected bytes, {theirs} the other "
            f"request's and {len(blocks) - ours - theirs} neither")


def status_and_code(r: requests.Response) -> tuple[int, Optional[str]]:
    try:
        return r.status_code, r.json()["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return r.status_code, None


class RawRequest:
    """One HTTP/1.1 request written to a plain socket piece by piece (a slow client). A send that
    fails because the server already answered and closed is remembered, not raised."""

    def __init__(self, registry, method: str, path: str, headers: dict, source: Optional[str] = None):
        self.method = method
        self.sock = socket.create_connection(("127.0.0.1", registry.port), timeout=T,
                                             source_address=(source, 0) if source else None)
        head = f"{method} {path} HTTP/1.1\r\nHost: {registry.host}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.send_error: Optional[OSError] = None
        self.send(head.encode())

    def send(self, data: bytes) -> None:
        if self.send_error is None:
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.send_error = e

    def response(self) -> tuple[Optional[int], dict, bytes]:
        """(status, lower-case headers, body); status None when no answer came."""
        resp = http.client.HTTPResponse(self.sock, method=self.method)
        try:
            resp.begin()
            body = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        except (OSError, http.client.HTTPException) as e:
            return None, {}, f"no answer: {e!r} (send error: {self.send_error!r})".encode()
        finally:
            self.sock.close()


class Background(threading.Thread):
    """Runs `fn` in a thread; `result()` joins and returns its value (or raises its error)."""

    def __init__(self, fn: Callable):
        super().__init__(daemon=True)
        self.fn, self.value, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn()
        except BaseException as e:  # noqa: BLE001 (re-raised in the test's thread)
            self.error = e

    def result(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), f"background request still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.value


def slow_patch(registry, path: str, body: bytes, half_sent: threading.Event, pause: float = 1.5,
               resume: Optional[threading.Event] = None):
    """PATCH `body`: headers and the first half, then `pause` seconds of silence (and, if given,
    until `resume` is set), then the rest. Runs in the background; its result is the raw answer
    (status, headers, body)."""
    def run():
        req = RawRequest(registry, "PATCH", path, {**OCTET, "Content-Length": str(len(body)),
                                                   "Authorization": basic(admin(registry))})
        req.send(body[:len(body) // 2])
        half_sent.set()
        time.sleep(pause)
        if resume is not None:
            resume.wait(T)
        req.send(body[len(body) // 2:])
        return req.response()
    return Background(run)


def blob_problem(api, repo: str, data: bytes, what: str, other: bytes = b"") -> Optional[str]:
    """None when `repo` serves exactly `data` under its digest, else what is wrong."""
    d = digest(data)
    r = api.get(f"/v2/{repo}/blobs/{d}", timeout=T)
    if r.status_code != 200:
        return f"{what}: GET {d} -> {r.status_code} {r.text[:200]}"
    if sha(r.content) != sha(data):
        return (f"{what}: the blob served as {d} has sha256 {sha(r.content)}: "
                f"{describe_mix(r.content, data, other)}")
    return None


def assert_blob_is(api, repo: str, data: bytes, what: str, other: bytes = b"") -> None:
    problem = blob_problem(api, repo, data, what, other)
    assert problem is None, problem


def victim_problem(registry, data: bytes, other: bytes) -> Optional[str]:
    """Another registry's repository pushes `data` monolithically and must read back `data`."""
    victim = new_registry(registry, "victim")
    r = push_whole(registry, f"{victim}/app", data)
    if r.status_code != 201:
        return f"another registry's push of the same bytes -> {r.status_code} {r.text[:200]}"
    return blob_problem(Api(registry), f"{victim}/app", data, f"another registry ({victim}/app)", other)


def wait_closed(sock: socket.socket, limit: float) -> Optional[float]:
    """Seconds until the server closed `sock` (EOF or reset, after any answer), None if it did not
    within `limit`."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (looks without waiting)."""
    sock.setblocking(False)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def get_from(registry, path: str, source: str, headers: dict) -> tuple[int, dict, bytes, float]:
    """GET from source address `source` (http.client); returns (status, headers, body, seconds
    from sending the request to the end of the answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=T, source_address=(source, 0))
    try:
        conn.connect()
        start = time.monotonic()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body, time.monotonic() - start
    finally:
        conn.close()


# --- 1. upload sessions ---------------------------------------------------------------------------

RACE_SIZE = 3 * 1024 * 1024


@pytest.mark.parametrize("interleaving", ["fast-inside-slow", "crossed"])
def test_racing_patches_cannot_poison_a_blob(registry, api, repo_name, interleaving):
    """fast-inside-slow (the spec's order): a slow PATCH of M is overtaken by a whole PATCH of G.
    crossed: PATCH of G starts, PATCH of M starts, G's finishes, then M's. Either way exactly
    the request that finished first (G's) counts, and D(G) serves G, in every registry."""
    g, m = random_bytes(RACE_SIZE), random_bytes(RACE_SIZE)
    loc = api.new_session(repo_name)
    path = path_of(loc)
    if interleaving == "fast-inside-slow":
        half_sent, fast_done = threading.Event(), threading.Event()
        slow = slow_patch(registry, path, m, half_sent, resume=fast_done)
        assert half_sent.wait(T), "the slow PATCH did not get its first half out"
        time.sleep(0.3)  # let the server start consuming it
        try:
            fast = api.patch(loc, data=g, headers=OCTET, timeout=T)
        finally:
            fast_done.set()  # the slow PATCH finishes after the fast one, however long it took
        g_status, g_headers = fast.status_code, fast.headers
        m_status, m_headers, m_body = slow.result()
    else:
        hdrs = {**OCTET, "Content-Length": str(RACE_SIZE), "Authorization": basic(admin(registry))}
        first = RawRequest(registry, "PATCH", path, hdrs)
        first.send(g[:RACE_SIZE // 2])
        time.sleep(0.3)
        second = RawRequest(registry, "PATCH", path, hdrs)
        second.send(m[:RACE_SIZE // 2])
        time.sleep(0.3)
        first.send(g[RACE_SIZE // 2:])
        g_status, g_headers, _ = first.response()
        second.send(m[RACE_SIZE // 2:])
        m_status, m_headers, m_body = second.response()
    assert g_status == 202, f"the PATCH of G that finished first -> {g_status}"
    r = api.put(urljoin(loc, g_headers.get("location") or loc), params={"digest": digest(g)}, timeout=T)
    assert r.status_code == 201, (f"PUT ?digest=D(G) after G's PATCH was answered 202 -> "
                                  f"{r.status_code} {r.text[:300]}")
    problems = [blob_problem(api, repo_name, g, "the raced session", other=m),
                victim_problem(registry, g, other=m)]
    if m_status is None or not 400 <= m_status < 500:
        problems.append(f"the overtaken PATCH of M must be refused (416 with Range, or 409), "
                        f"got {m_status} {m_body[:300]!r}")
    elif m_status == 416 and "range" not in m_headers:
        problems.append(f"416 without a Range header: {m_headers}")
    if api.blob_status(repo_name, digest(m)) != 404:
        problems.append("M's bytes became a blob")
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_final_put_racing_a_slow_patch(registry, api, repo_name):
    """A PUT ?digest=D(G) with body G lands while a slow PATCH of M is in flight: whatever each
    is answered, nothing but G is ever served under D(G), and D(M) is M or nothing."""
    g, m = random_bytes(RACE_SIZE), random_bytes(RACE_SIZE)
    loc = api.new_session(repo_name)
    half_sent = threading.Event()
    slow = slow_patch(registry, path_of(loc), m, half_sent)
    assert half_sent.wait(T), "the slow PATCH did not get its first half out"
    time.sleep(0.3)
    put = api.put(loc, params={"digest": digest(g)}, data=g, headers=OCTET, timeout=T)
    patch_status, _, _ = slow.result()
    problems = []
    r = api.get(f"/v2/{repo_name}/blobs/{digest(g)}", timeout=T)
    if r.status_code == 200 and sha(r.content) != sha(g):
        problems.append(f"D(G) serves sha256 {sha(r.content)}: {describe_mix(r.content, g, m)}")
    elif r.status_code != 200 and (put.status_code == 201 or r.status_code != 404):
        problems.append(f"GET D(G) -> {r.status_code} {r.text[:200]}")
    r = api.get(f"/v2/{repo_name}/blobs/{digest(m)}", timeout=T)
    if not (r.status_code == 404 or (r.status_code == 200 and sha(r.content) == sha(m))):
        problems.append(f"GET D(M) -> {r.status_code}, sha256 {sha(r.content)}")
    problems.append(victim_problem(registry, g, other=m))
    problems = [p for p in problems if p]
    assert not problems, "\n".join([f"PUT -> {put.status_code}, slow PATCH -> {patch_status}:", *problems])


def test_upload_session_belongs_to_its_opener(registry, repo_name):
    _, a = new_user(registry, "project-admin", ["e2e"])
    _, b = new_user(registry, "project-admin", ["e2e"])
    data = random_bytes(30_000)
    r = requests.post(url(registry, f"/v2/{repo_name}/blobs/uploads/"), auth=a, timeout=T)
    assert r.status_code == 202, f"A opens a session -> {r.status_code} {r.text}"
    loc = urljoin(registry.url, r.headers["Location"])
    r = requests.patch(loc, data=data[:10_000], headers={**OCTET, "Content-Range": "0-9999"}, auth=a, timeout=T)
    assert r.status_code == 202, f"A's first chunk -> {r.status_code} {r.text}"
    loc = urljoin(registry.url, r.headers["Location"])
    for who, creds in (("user B", b), ("the administrator", admin(registry))):
        for method, kw in [
            ("PATCH", {"data": data[10_000:20_000], "headers": {**OCTET, "Content-Range": "10000-19999"}}),
            ("GET", {}),
            ("PUT", {"params": {"digest": digest(data)}, "data": data[10_000:], "headers": OCTET}),
            ("DELETE", {}),
        ]:
            r = requests.request(method, loc, auth=creds, timeout=T, **kw)
            assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN", (
                f"{who} sent {method} to A's session: expected 404 BLOB_UPLOAD_UNKNOWN, got "
                f"{r.status_code} {r.text[:200]}")
    r = requests.patch(loc, data=data[10_000:20_000], headers={**OCTET, "Content-Range": "10000-19999"},
                       auth=a, timeout=T)
    assert r.status_code == 202, f"A's second chunk -> {r.status_code} {r.text}"
    r = requests.put(urljoin(registry.url, r.headers["Location"]), params={"digest": digest(data)},
                     data=data[20_000:], headers=OCTET, auth=a, timeout=T)
    assert r.status_code == 201, f"A's final PUT -> {r.status_code} {r.text}"
    assert_blob_is(Api(registry), repo_name, data, "A's blob")


@pytest.mark.edge_only
def test_content_range_end_overflow_is_refused(api, repo_name):
    loc = api.new_session(repo_name)
    try:
        r = api.patch(loc, data=b"0123456789", timeout=T,
                      headers={**OCTET, "Content-Range": "0-18446744073709551615"})
    except requests.ConnectionError as e:
        pytest.fail(f"the server dropped the connection instead of answering (overflow panic?): {e!r}")
    assert r.status_code != 202, "a 10-byte body was accepted as the chunk 0-(2^64-1)"
    assert_error(r, 416, "BLOB_UPLOAD_INVALID")
    s = api.get(loc, timeout=T)
    assert s.status_code == 204 and s.headers.get("Range") == "0-0", (
        f"session after the refused chunk: {s.status_code} Range={s.headers.get('Range')}")


# --- 2. revoked keys cannot mint keys ---------------------------------------------------------------

@pytest.mark.edge_only
def test_revoked_key_cannot_mint_or_rotate_keys(registry):
    user, k1 = new_user(registry, "project-admin")
    k2 = new_key(registry, user)
    t = token(registry, k1, "registry:management:*")
    keys_url = url(registry, f"/api/v1/users/{user}/keys")
    r = requests.get(keys_url, headers=bearer(t), timeout=T)
    assert r.status_code == 200, f"K1's management token lists U's keys -> {r.status_code} {r.text}"
    r = requests.delete(f"{keys_url}/{k1[0]}", auth=admin(registry), timeout=T)
    assert r.status_code == 204, f"revoking K1 -> {r.status_code} {r.text}"
    r = requests.post(keys_url, headers=bearer(t), timeout=T)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"the revoked key's token minted a key: {r.status_code} {r.text[:200]}")
    listed = [k["access_key"] for k in requests.get(keys_url, auth=admin(registry), timeout=T).json()["items"]]
    assert listed == [k2[0]], f"U's keys after the refused mint: {listed} (only K2 {k2[0]} may be left)"
    r = requests.post(f"{keys_url}/{k2[0]}/rotate", headers=bearer(t), timeout=T)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"the revoked key's token rotated K2: {r.status_code} {r.text[:200]}")
    r = requests.get(url(registry, "/v2/"), auth=k2, timeout=T)
    assert r.status_code == 200, f"K2's secret stopped working: {r.status_code}"


# --- 3. token scope on the management API -----------------------------------------------------------

@pytest.mark.edge_only
def test_repository_token_cannot_use_the_management_api(registry):
    reg = new_registry(registry, "tok")
    t = token(registry, admin(registry), f"repository:{reg}/app:pull")
    r = requests.delete(url(registry, f"/api/v1/registries/{reg}"), headers=bearer(t), timeout=T)
    assert r.status_code == 403 and error_code(r) == "DENIED", (
        f"a pull token of {reg}/app deleting the registry -> {r.status_code} {r.text[:200]}")
    r = requests.get(url(registry, f"/api/v1/registries/{reg}"), auth=admin(registry), timeout=T)
    assert r.status_code == 200, f"registry {reg} is gone: {r.status_code}"
    r = requests.get(url(registry, "/api/v1/users"), headers=bearer(t), timeout=T)
    assert r.status_code == 403, f"a pull token listing users -> {r.status_code} {r.text[:200]}"


@pytest.mark.edge_only
def test_management_token_manages_registries_within_the_role(registry):
    reg = new_registry(registry, "mgmt")
    t = token(registry, admin(registry), "registry:management:*")
    r = requests.get(url(registry, "/api/v1/registries"), headers=bearer(t), timeout=T)
    assert r.status_code == 200 and reg in [x["name"] for x in r.json()["items"]], f"{r.status_code} {r.text[:300]}"
    _, viewer = new_user(registry, "service-viewer")
    tv = token(registry, viewer, "registry:management:*")
    r = requests.delete(url(registry, f"/api/v1/registries/{reg}"), headers=bearer(tv), timeout=T)
    assert r.status_code == 403, f"a service-viewer's management token deleted a registry: {r.status_code}"
    r = requests.delete(url(registry, f"/api/v1/registries/{reg}"), headers=bearer(t), timeout=T)
    assert r.status_code == 204, f"the admin's management token deleting {reg} -> {r.status_code} {r.text}"
    r = requests.get(url(registry, f"/api/v1/registries/{reg}"), auth=admin(registry), timeout=T)
    assert r.status_code == 404, f"registry {reg} still there after its 204: {r.status_code}"


@pytest.mark.edge_only
def test_management_token_does_not_pull(registry, api, repo_name):
    api.push_image(repo_name, "v1", [random_bytes(1000)])
    t = token(registry, admin(registry), "registry:management:*")
    r = requests.get(url(registry, f"/v2/{repo_name}/manifests/v1"), headers=bearer(t), timeout=T)
    assert r.status_code in (401, 403), f"a management token pulled a manifest: {r.status_code}"


# --- 4. tokens follow role changes, user deletion, key revocation -----------------------------------

@pytest.mark.edge_only
def test_token_refused_after_role_change(registry, repo_name):
    user, creds = new_user(registry, "project-admin")
    t = token(registry, creds, f"repository:{repo_name}:pull,push")
    r = push_whole(registry, repo_name, random_bytes(2000), headers=bearer(t))
    assert r.status_code == 201, f"push with the fresh token -> {r.status_code} {r.text}"
    r = requests.patch(url(registry, f"/api/v1/users/{user}"), json={"role": "service-viewer"},
                       auth=admin(registry), timeout=T)
    assert r.status_code == 200 and r.json()["role"] == "service-viewer", f"{r.status_code} {r.text}"
    late = random_bytes(2000)
    r = push_whole(registry, repo_name, late, headers=bearer(t))
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"a push token outlived its user's demotion to service-viewer: {r.status_code} {r.text[:200]}")
    assert Api(registry).blob_status(repo_name, digest(late)) == 404


@pytest.mark.edge_only
def test_token_refused_after_user_deletion(registry, api, repo_name):
    data = random_bytes(2000)
    d = api.push_blob(repo_name, data)
    user, creds = new_user(registry, "project-admin")
    t = token(registry, creds, f"repository:{repo_name}:pull")
    r = requests.get(url(registry, f"/v2/{repo_name}/blobs/{d}"), headers=bearer(t), timeout=T)
    assert r.status_code == 200 and sha(r.content) == sha(data), f"pull with the fresh token -> {r.status_code}"
    r = requests.delete(url(registry, f"/api/v1/users/{user}"), auth=admin(registry), timeout=T)
    assert r.status_code == 204, f"deleting {user} -> {r.status_code} {r.text}"
    r = requests.get(url(registry, f"/v2/{repo_name}/blobs/{d}"), headers=bearer(t), timeout=T)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"a deleted user's token still pulls: {r.status_code}")


@pytest.mark.edge_only
def test_token_refused_after_key_revocation(registry, api, repo_name):
    data = random_bytes(2000)
    d = api.push_blob(repo_name, data)
    user, k1 = new_user(registry, "project-admin")
    k2 = new_key(registry, user)  # the user keeps a live key: what is revoked is K1's tokens
    t = token(registry, k1, f"repository:{repo_name}:pull")
    blob_url = url(registry, f"/v2/{repo_name}/blobs/{d}")
    assert requests.get(blob_url, headers=bearer(t), timeout=T).status_code == 200
    r = requests.delete(url(registry, f"/api/v1/users/{user}/keys/{k1[0]}"), auth=admin(registry), timeout=T)
    assert r.status_code == 204, f"revoking K1 -> {r.status_code} {r.text}"
    r = requests.get(blob_url, headers=bearer(t), timeout=T)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"a revoked key's token still pulls: {r.status_code}")
    t2 = token(registry, k2, f"repository:{repo_name}:pull")
    assert requests.get(blob_url, headers=bearer(t2), timeout=T).status_code == 200, "K2's token fails"


RECHECK = {"BERTH_CREDENTIAL_RECHECK_SECONDS": "2"}


@pytest.mark.edge_only
def test_a_token_minted_in_the_second_of_a_rotation_dies_with_the_old_secret(registry):
    """Rotation ends every token of the old secret, including those minted in the very second the
    key was rotated (a time in whole seconds cannot tell them apart)."""
    user, creds = new_user(registry, "project-admin")
    for _ in range(5):
        t = token(registry, creds, "registry:management:*")
        r = requests.post(url(registry, f"/api/v1/users/{user}/keys/{creds[0]}/rotate"), auth=admin(registry),
                          timeout=T)
        assert r.status_code == 200, f"rotate -> {r.status_code} {r.text}"
        creds = (creds[0], r.json()["secret_key"])
        if claims(t)["iat"] == r.json()["rotated_at"]:
            break
    else:
        pytest.fail("could not mint a token in the second of a rotation")
    r = requests.post(url(registry, f"/api/v1/users/{user}/keys"), headers=bearer(t), timeout=T)
    assert r.status_code == 401, f"a token of the old secret created a key: {r.status_code} {r.text}"
    r = requests.get(url(registry, "/v2/"), headers=bearer(t), timeout=T)
    assert r.status_code == 401, f"a token of the old secret still works: {r.status_code}"


def test_tokens_follow_changes_made_through_another_process(registry_factory, repo_name):
    first = registry_factory(env=RECHECK)
    second = registry_factory(share_with=first, env=RECHECK)
    data = random_bytes(2000)
    d = Api(first).push_blob(repo_name, data)
    demoted, c1 = new_user(first, "project-admin")
    deleted, c2 = new_user(first, "project-admin")
    push_token = token(second, c1, f"repository:{repo_name}:pull,push")
    pull_token = token(second, c2, f"repository:{repo_name}:pull")

    def push() -> requests.Response:
        return requests.post(url(second, f"/v2/{repo_name}/blobs/uploads/"), headers=bearer(push_token), timeout=T)

    def pull() -> requests.Response:
        return requests.get(url(second, f"/v2/{repo_name}/blobs/{d}"), headers=bearer(pull_token), timeout=T)

    assert push().status_code == 202, "server 2 refused the fresh push token"
    r = pull()
    assert r.status_code == 200 and sha(r.content) == sha(data), f"server 2 refused the fresh pull token: {r.status_code}"
    r = requests.patch(url(first, f"/api/v1/users/{demoted}"), json={"role": "service-viewer"},
                       auth=admin(first), timeout=T)
    assert r.status_code == 200, f"demoting {demoted} on server 1 -> {r.status_code} {r.text}"
    r = requests.delete(url(first, f"/api/v1/users/{deleted}"), auth=admin(first), timeout=T)
    assert r.status_code == 204, f"deleting {deleted} on server 1 -> {r.status_code} {r.text}"
    changed = time.monotonic()
    refused: dict[str, float] = {}
    while time.monotonic() - changed < 6 and len(refused) < 2:
        for what, call in (("push by the demoted user", push), ("pull by the deleted user", pull)):
            if what not in refused:
                r = call()
                if r.status_code == 401:
                    assert error_code(r) == "UNAUTHORIZED", r.text
                    refused[what] = time.monotonic() - changed
                else:
                    assert r.status_code in (200, 202), f"{what} on server 2 -> {r.status_code}"
        time.sleep(0.2)
    missing = [w for w in ("push by the demoted user", "pull by the deleted user") if w not in refused]
    assert not missing, f"server 2 still accepts after 6 s (recheck every 2 s): {missing}; refused: {refused}"


SIGNING_SEED = bytes(range(32))  # a fixed Ed25519 seed the test signs with as well


@pytest.mark.edge_only
def test_tokens_living_longer_than_issued_are_refused(registry_factory):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = base64.urlsafe_b64encode(SIGNING_SEED).rstrip(b"=").decode()  # Berth's form: unpadded base64url
    reg = registry_factory(env={"BERTH_TOKEN_SIGNING_KEY": seed})
    real = token(reg, admin(reg), "repository:e2e/app:pull")
    header_b64 = real.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    assert header["alg"] == "EdDSA", header
    key = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)

    def sign(c: dict) -> str:
        signing_input = f"{header_b64}.{b64(c)}"
        sig = base64.urlsafe_b64encode(key.sign(signing_input.encode())).rstrip(b"=").decode()
        return f"{signing_input}.{sig}"

    c = claims(real)
    control = sign({**c, "jti": uuid.uuid4().hex})
    r = requests.get(url(reg, "/v2/"), headers=bearer(control), timeout=T)
    assert r.status_code == 200, f"the test's own signing is wrong: control token -> {r.status_code} {r.text}"
    forever = sign({**c, "jti": uuid.uuid4().hex, "exp": int(time.time()) + 10 * 365 * 86400})
    r = requests.get(url(reg, "/v2/"), headers=bearer(forever), timeout=T)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (
        f"a token valid for 10 years (lifetime {c['exp'] - c['iat']} s issued) was accepted: {r.status_code}")
    # issued in the future: it would outlive any rotation of its key
    later = sign({**c, "jti": uuid.uuid4().hex, "iat": int(time.time()) + 10**6})
    r = requests.get(url(reg, "/v2/"), headers=bearer(later), timeout=T)
    assert r.status_code == 401, f"a token issued in the future was accepted: {r.status_code}"


# --- 5. files ---------------------------------------------------------------------------------------

@pytest.mark.embedded_only
def test_data_dir_and_stored_files_are_private(registry, api, repo_name):
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    d = registry.data_dir
    problems = [] if mode(d) == 0o700 else [f"data dir: {oct(mode(d))} after start"]
    api.push_image(repo_name, "v1", [random_bytes(5000)])
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=random_bytes(3000), headers=OCTET, timeout=T)  # left open: staged bytes
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert (d / "meta.db").exists(), "no meta.db"
    problems += [f"{p.name}: {oct(mode(p))}" for p in (d / f"meta.db{s}" for s in ("", "-wal", "-shm"))
                 if p.exists() and mode(p) != 0o600]
    for sub in ("blobs", "uploads"):
        files = [p for p in (d / sub).rglob("*") if p.is_file()]
        assert files, f"no file under {sub}/ after a push and an open upload"
        loose = [f"{p.relative_to(d)}: {oct(mode(p))}" for p in files if mode(p) & 0o077]
        problems += loose[:3] + ([f"... {len(loose) - 3} more under {sub}/"] if len(loose) > 3 else [])
    assert not problems, "not private to the server's user (want 0700 dir, 0600 files):\n" + "\n".join(problems)


# --- 6. connection flood ----------------------------------------------------------------------------

def raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def connect_from(source: str, port: int) -> Optional[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.bind((source, 0))
    try:
        s.connect(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


PARTIAL = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"


def within(seconds: float, what: str, call: Callable[[], requests.Response]) -> requests.Response:
    start = time.monotonic()
    try:
        r = call()
    except requests.RequestException as e:
        pytest.fail(f"{what} failed after {time.monotonic() - start:.1f}s during the flood: {e!r}")
    took = time.monotonic() - start
    assert took <= seconds, f"{what} took {took:.1f}s during the flood"
    return r


@pytest.mark.edge_only
def test_connection_flood_does_not_starve_other_clients(registry_factory, repo_name):
    raise_fd_limit(4096)
    reg = registry_factory(extra_args=["--max-connections-per-ip", "64", "--header-timeout", "2"])
    api = Api(reg)
    idle, partial, failed = [], [], 0
    try:
        for i in range(1300):
            s = connect_from("127.0.0.2", reg.port)
            if s is None:
                failed += 1
                if failed > 20:  # the listen backlog is full: the flood has done what it can
                    break
                continue
            (idle if i < 1000 else partial).append(s)
            if i >= 1000:
                try:
                    s.sendall(PARTIAL)
                except OSError:
                    pass  # closed at once: over the per-address limit
        probe = connect_from("127.0.0.4", reg.port)  # an address under the limit: surely served
        assert probe is not None, "could not connect from 127.0.0.4"
        partial.append(probe)
        probe.sendall(PARTIAL)
        sent = time.monotonic()

        data, cfg = random_bytes(200_000), image_config()
        loc = None
        for blob in (data, cfg):
            r = within(10, "POST upload", lambda: api.post(f"/v2/{repo_name}/blobs/uploads/", timeout=10))
            assert r.status_code == 202, f"POST upload -> {r.status_code}"
            loc = api.url(r.headers["Location"])
            r = within(10, "PUT blob", lambda: api.put(loc, params={"digest": digest(blob)}, data=blob,
                                                       headers=OCTET, timeout=10))
            assert r.status_code == 201, f"PUT blob -> {r.status_code} {r.text[:200]}"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, cfg),
                           "layers": [descriptor(OCI_LAYER_GZIP, data)]}).encode()
        r = within(10, "PUT manifest", lambda: api.put_manifest(repo_name, "v1", body, OCI_MANIFEST, timeout=10))
        assert r.status_code == 201, f"PUT manifest -> {r.status_code} {r.text[:200]}"
        r = within(10, "GET blob", lambda: api.get(f"/v2/{repo_name}/blobs/{digest(data)}", timeout=10))
        assert r.status_code == 200 and sha(r.content) == sha(data), f"GET blob -> {r.status_code}"
        r = within(10, "GET manifest", lambda: api.get(f"/v2/{repo_name}/manifests/v1", timeout=10,
                                                       headers={"Accept": OCI_MANIFEST}))
        assert r.status_code == 200 and r.content == body, f"GET manifest -> {r.status_code}"

        time.sleep(max(0.0, sent + 4 - time.monotonic()))
        deadline = sent + 6
        while not closed_by_server(probe) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert closed_by_server(probe), "a connection that sent half a request header is open after 6 s"
        closed = sum(closed_by_server(s) for s in partial)
        assert closed >= 1, (f"none of {len(partial)} partial-header connections was closed "
                             f"({len(idle)} idle connections open, {failed} connects failed)")
        assert reg.alive(), "the server died during the flood"
        assert api.get("/v2/", timeout=T).status_code == 200
    finally:
        for s in idle + partial:
            s.close()


@pytest.mark.edge_only
def test_idle_keep_alive_connections_are_closed(registry_factory):
    reg = registry_factory(extra_args=["--idle-timeout", "2"])
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=T)
    try:
        conn.request("GET", "/v2/", headers={"Authorization": basic(admin(reg))})
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and not r.will_close, f"GET /v2/ -> {r.status}, will_close={r.will_close}"
        took = wait_closed(conn.sock, 8)
        assert took is not None and took <= 4.5, f"an idle keep-alive connection was not closed ({took})"
    finally:
        conn.close()


@pytest.mark.edge_only
def test_a_full_process_gives_quiet_connections_places_to_clients_that_use_theirs(registry_factory):
    """An attacker fills every slot with connections that sent pipelined requests and never read
    the answers (so the server's writes back up): when the process is full, the quietest
    connection gives way to a new one instead of the new one being refused."""
    reg = registry_factory(extra_args=["--max-connections", "60", "--max-connections-per-ip", "30"])
    raise_fd_limit(4096)
    held = []
    try:
        pipelined = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" * 300
        for source in ("127.0.0.21", "127.0.0.22"):
            for _ in range(30):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # answers back up at once
                s.bind((source, 0))
                s.connect(("127.0.0.1", reg.port))
                s.setblocking(False)
                try:
                    s.send(pipelined)
                except BlockingIOError:
                    pass
                held.append(s)
        time.sleep(2.5)  # the server has filled what the attacker will not read: quiet
        got, tries, started = None, [], time.monotonic()
        while got is None and time.monotonic() - started < 10:
            try:
                got = requests.get(url(reg, "/v2/"), auth=admin(reg), timeout=T)
            except requests.ConnectionError as e:
                tries.append(repr(e)[:80])
                time.sleep(0.5)
        assert got is not None and got.status_code == 200, f"refused while 60 unread connections fill the process: {tries}"
        assert not tries, f"the new client was refused {len(tries)} time(s) first: {tries[:2]}"
        # the evicted connection is closed by its own task, which may run after the new client's
        # answer: look for its FIN for a few seconds rather than at one instant
        deadline = time.monotonic() + 5
        while not any(closed_by_server(s) for s in held) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(closed_by_server(s) for s in held) >= 1, "no quiet connection gave way"
    finally:
        for s in held:
            s.close()


@pytest.mark.edge_only
def test_a_trickled_token_form_is_cut_off(registry_factory):
    """A form body sent a byte at a time (before any credentials are checked) holds its
    connection no longer than the small-body deadline, whatever the stall timeout."""
    reg = registry_factory()
    s = connect_from("127.0.0.23", reg.port)
    assert s is not None
    try:
        s.sendall(b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 16000\r\n\r\n")
        deadline = time.monotonic() + 45
        answer = b""
        s.settimeout(1)
        while time.monotonic() < deadline and not answer:
            try:
                s.sendall(b"a")
            except OSError:
                break
            try:
                answer = s.recv(4096)
                if not answer:
                    break
            except socket.timeout:
                pass
        took = 45 - (deadline - time.monotonic())
        assert took < 40, f"a trickled 16 KB form held its connection for {took:.0f} s"
        assert not answer or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    finally:
        s.close()


# --- 7. login storm ---------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_login_storm_verifies_at_most_ten_secrets(registry):
    key, _ = make_user(registry, "service-viewer")

    def attempt(_):
        r = requests.get(url(registry, "/v2/"), auth=(key, WRONG_SECRET), timeout=120)
        return r.status_code, r.headers.get("Retry-After"), status_and_code(r)[1]

    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(attempt, range(400)))
    verified = [a for a in answers if a[0] == 401]
    others = [a for a in answers if a[0] != 401]
    assert len(verified) <= 10, f"{len(verified)} of 400 concurrent wrong-secret logins were verified (401)"
    bad = [a for a in others if a[0] != 429 or a[2] != "TOOMANYREQUESTS" or not (a[1] or "").isdigit()]
    assert not bad, f"answers other than 429 TOOMANYREQUESTS with Retry-After: {bad[:5]} ({len(bad)})"
    status, _, body, _ = get_from(registry, "/v2/", "127.0.0.3", {"Authorization": basic(admin(registry))})
    assert status == 200, f"the admin key from 127.0.0.3 after the storm -> {status} {body[:200]!r}"


@pytest.mark.edge_only
def test_wrong_guesses_at_a_key_id_do_not_lock_out_its_holder(registry):
    """Ten wrong secrets for a key from elsewhere put the key over its limit: further guesses at it
    get 429, but its holder, with the right secret, still gets in (guessing is limited per
    address)."""
    _, creds = new_user(registry, "project-admin")
    for i in range(10):
        status, _, _, _ = get_from(registry, "/v2/", f"127.0.0.{60 + i}",
                                   {"Authorization": basic((creds[0], f"{WRONG_SECRET}{i}"))})
        assert status == 401, f"guess {i} -> {status}"
    status, _, _, _ = get_from(registry, "/v2/", "127.0.0.71", {"Authorization": basic((creds[0], WRONG_SECRET))})
    assert status == 429, f"a guess at a key over its limit -> {status}"
    status, _, _, _ = get_from(registry, "/v2/", "127.0.0.72", {"Authorization": basic(creds)})
    assert status == 200, f"the key's holder was locked out by others' guesses: {status}"


@pytest.mark.edge_only
def test_unknown_key_ids_take_as_long_as_known_ones(registry):
    key, _ = make_user(registry, "service-viewer")
    known, unknown = [], []
    for i in range(7):  # interleaved, one source address each (under the per-address limit)
        for times, ident, source in ((known, key, f"127.0.0.{10 + i}"),
                                     (unknown, "BK" + uuid.uuid4().hex[:18].upper(), f"127.0.0.{20 + i}")):
            status, _, _, took = get_from(registry, "/v2/", source, {"Authorization": basic((ident, WRONG_SECRET))})
            assert status == 401, f"wrong-secret login for {ident} from {source} -> {status}"
            times.append(took)
    k, u = statistics.median(known), statistics.median(unknown)
    assert u >= 0.4 * k, (f"unknown key ids are refused {k / u:.0f}x faster than known ones "
                          f"(median {u * 1000:.1f} ms vs {k * 1000:.1f} ms): key ids can be enumerated")


# --- 8. private registries --------------------------------------------------------------------------

def test_private_registry_blobs_cannot_be_mounted_from_outside(registry, api, repo_name):
    p = new_registry(registry, "priv")
    d = api.push_blob(f"{p}/app", random_bytes(4000))
    make_private(registry, p)
    r = api.post(f"/v2/{repo_name}/blobs/uploads/", params={"mount": d, "from": f"{p}/app"},
                 headers={"Content-Length": "0"}, timeout=T)
    assert r.status_code == 202, (f"mount from private {p}/app by a client outside its networks -> "
                                  f"{r.status_code} (201 = mounted)")
    assert r.headers.get("Location"), "202 without Location"
    assert api.head(f"/v2/{repo_name}/blobs/{d}", timeout=T).status_code == 404, "the blob was linked anyway"


def test_catalog_hides_private_registries(registry, api, repo_name):
    p = new_registry(registry, "priv")
    api.push_image(f"{p}/app", "v1", [random_bytes(1000)])
    api.push_image(repo_name, "v1", [random_bytes(1000)])
    make_private(registry, p)
    r = api.get("/v2/_catalog", params={"n": 1000}, timeout=T)
    assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
    repos = r.json()["repositories"]
    assert repo_name in repos, f"public {repo_name} missing from {repos}"
    assert f"{p}/app" not in repos, f"private {p}/app listed to a client outside its networks: {repos}"


# --- low ----------------------------------------------------------------------------------------------

UPLOAD_TOKEN_KEY = "e2e-upload-token-key-0123456789abcdefghi"  # 40 characters


def test_catalog_pages_never_name_a_hidden_repository(registry, api, repo_name):
    """Paging the catalog one name at a time, from anywhere, never reveals a private registry's
    repository, in the body or in the Link cursor."""
    name = new_registry(registry, "pv")
    push_whole(registry, f"{name}/secret", b"hidden")
    make_private(registry, name)
    seen, cursor = [], name[:2]
    for _ in range(500):
        params = {"n": 1} | ({"last": cursor} if cursor else {})
        r = api.get("/v2/_catalog", params=params, timeout=T)
        assert r.status_code == 200, r.text
        assert f"{name}/" not in r.text and f"{name}/" not in r.headers.get("Link", ""), (
            f"page after {cursor!r} names the hidden repository: {r.json()} Link={r.headers.get('Link')}")
        seen += r.json()["repositories"]
        link = r.headers.get("Link")
        if not link:
            break
        cursor = parse_qs(urlsplit(link.split(";")[0].strip("<>")).query)["last"][0]
    assert seen == sorted(seen), seen


@pytest.mark.edge_only
def test_the_audit_log_cannot_be_flooded_with_refusals(registry, repo_name):
    _, viewer = new_user(registry, "service-viewer")
    for _ in range(80):
        r = requests.delete(url(registry, f"/v2/{repo_name}/manifests/latest"), auth=viewer, timeout=T)
        assert r.status_code == 403, r.status_code
    r = requests.get(url(registry, "/api/v1/audit"), params={"n": 1000}, auth=admin(registry), timeout=T)
    entries = [e for e in r.json()["items"] if e["who"] != "admin" and e["status"] == 403]
    assert 1 <= len(entries) <= 60, f"{len(entries)} refusal entries for one principal within a minute"


def test_upload_state_token_needs_its_live_owner(registry_factory, repo_name):
    assert len(UPLOAD_TOKEN_KEY) == 40
    reg = registry_factory(env={"BERTH_UPLOAD_TOKEN_KEY": UPLOAD_TOKEN_KEY})
    u_name, u = new_user(reg, "project-admin", ["e2e"])
    _, b = new_user(reg, "project-admin", ["e2e"])

    def open_session(creds) -> tuple[str, str]:
        r = requests.post(url(reg, f"/v2/{repo_name}/blobs/uploads/"), auth=creds, timeout=T)
        assert r.status_code == 202, f"{r.status_code} {r.text}"
        parts = urlsplit(r.headers["Location"])
        state = parse_qs(parts.query).get("_state", [""])[0]
        assert state, f"Location without _state: {r.headers['Location']}"
        return url(reg, parts.path), state

    problems = []
    chunk = random_bytes(1000)
    # (a) the owner's credentials without the session's _state
    session, _ = open_session(u)
    patch = requests.patch(session, data=chunk, headers=OCTET, auth=u, timeout=T)
    r = requests.put(session, params={"digest": digest(chunk)}, data=chunk, headers=OCTET, auth=u, timeout=T)
    if r.status_code not in (401, 403, 404):
        problems.append(f"(a) PUT without _state, owner's Basic -> {r.status_code} "
                        f"(a PATCH without _state -> {patch.status_code} {status_and_code(patch)[1]})")
    # (c) U's _state on B's own session
    session, u_state = open_session(u)
    b_session, _ = open_session(b)
    r = requests.patch(b_session, params={"_state": u_state}, data=chunk, headers=OCTET, auth=b, timeout=T)
    if r.status_code not in (403, 404):
        problems.append(f"(c) U's _state on B's session -> {r.status_code} {r.text[:150]}")
    # (b) the _state alone works while U exists, not after
    r = requests.patch(session, params={"_state": u_state}, data=chunk, headers=OCTET, timeout=T)
    if r.status_code != 202:
        problems.append(f"(b) PATCH with _state, no credentials, owner alive -> {r.status_code} {r.text[:150]}")
    r = requests.delete(url(reg, f"/api/v1/users/{u_name}"), auth=admin(reg), timeout=T)
    assert r.status_code == 204, f"deleting {u_name} -> {r.status_code} {r.text}"
    r = requests.patch(session, params={"_state": u_state}, data=chunk, headers=OCTET, timeout=T)
    if r.status_code not in (401, 404):
        problems.append(f"(b) PATCH with _state after the owner was deleted -> {r.status_code} {r.text[:150]}")
    assert not problems, "\n".join(problems)


@pytest.mark.edge_only
def test_registry_existence_is_not_disclosed(registry):
    _, s = new_user(registry, "project-admin", ["e2e"])
    targets = {"public other registry": new_registry(registry, "other"),
               "private registry": new_registry(registry, "priv", public_access=False,
                                                private_networks=["10.0.0.0/8"]),
               "missing registry": f"nope{uuid.uuid4().hex[:8]}"}
    answers = {}
    for what, reg in targets.items():
        h = requests.head(url(registry, f"/v2/{reg}/app/manifests/latest"), auth=s, timeout=T)
        p = requests.post(url(registry, f"/v2/{reg}/app/blobs/uploads/"), auth=s, timeout=T)
        answers[what] = (h.status_code, *status_and_code(p))
        assert not re.search(r"\d+\.\d+\.\d+\.\d+/\d+", p.text), f"{what}: the answer names a network: {p.text}"
    assert len(set(answers.values())) == 1, (
        f"(HEAD manifest status, POST upload status, code) differ, so registries can be probed: {answers}")


@pytest.mark.edge_only
def test_host_header_cannot_inject_challenge_parameters(registry):
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=T)
    try:
        conn.putrequest("GET", "/v2/", skip_host=True)
        conn.putheader("Host", 'evil",error="injected')
        conn.endheaders()
        r = conn.getresponse()
        r.read()
    finally:
        conn.close()
    assert r.status == 401, f"GET /v2/ without credentials -> {r.status}"
    value = r.getheader("WWW-Authenticate") or ""
    assert re.fullmatch(r'Bearer \w+="[^"\\]*"(,\s*\w+="[^"\\]*")*', value), f"malformed challenge: {value!r}"
    params = dict(re.findall(r'(\w+)="([^"]*)"', value))
    assert "error" not in params, f"the Host header injected a challenge parameter: {value!r}"
    assert set(params) <= {"realm", "service", "scope"}, value


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.edge_only
def test_credentials_cannot_forge_or_flood_log_lines(registry):
    for ident in ("ABC\nINJECTED-LOG-LINE", "A" * 200_000):
        r = requests.get(url(registry, "/v2/"), headers={"Authorization": basic((ident, "secret"))}, timeout=T)
        assert r.status_code == 401, f"Basic id {ident[:20]!r}... -> {r.status_code}"
    time.sleep(0.3)  # the server's log lines are written as they happen; let the last one land
    lines = registry.log_path.read_text(errors="replace").splitlines()
    forged = [line for line in lines if ANSI.sub("", line).startswith("INJECTED-LOG-LINE")]
    long = [len(line) for line in lines if len(line) > 4096]
    assert not forged and not long, (f"forged log lines: {forged[:2]}; "
                                     f"lines over 4096 characters: {long}")


@pytest.mark.edge_only
def test_empty_and_overlong_management_segments(registry, api):
    a600 = "a" * 600
    problems = []
    for method, path in [("GET", "/api/v1/registries//images"), ("GET", "/api/v1/users//keys"),
                         ("GET", f"/api/v1/registries/{a600}"), ("DELETE", f"/api/v1/users/{a600}/keys/x"),
                         ("GET", f"/api/v1/registries/{a600}/cleanup/rules")]:
        status, _, body = api.raw(method, path, headers={"Authorization": basic(admin(registry))})
        try:
            err = json.loads(body)["errors"][0]
            shaped = isinstance(err.get("code"), str) and "message" in err
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            shaped = False
        if status not in (400, 404) or not shaped:
            problems.append(f"{method} {path[:60]} -> {status} {body[:150]!r}")
    assert not problems, "expected 400/404 with the management error JSON:\n" + "\n".join(problems)


def test_refused_manifest_leaves_no_bytes(registry, api, repo_name):
    cfg = image_config()
    api.push_blob(repo_name, cfg)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, cfg),
                       "layers": [descriptor(OCI_LAYER_GZIP, random_bytes(100))]}).encode()
    assert_error(api.put_manifest(repo_name, "v1", body, OCI_MANIFEST, timeout=T), 400, "MANIFEST_BLOB_UNKNOWN")
    md = digest(body)
    r = api.get(f"/v2/{repo_name}/blobs/{md}", timeout=T)
    assert r.status_code == 404, f"GET blobs/<refused manifest digest> -> {r.status_code}"
    if registry.is_aws():
        hexpart = md.split(":", 1)[1]
        key = f"blobs/sha256/{hexpart[:2]}/{hexpart}"
        listed = registry.s3().list_objects_v2(Bucket=registry.aws_name, Prefix=key).get("KeyCount", 0)
        assert listed == 0, f"the refused manifest's bytes were stored as s3://{registry.aws_name}/{key}"
    else:
        assert not registry.blob_file(md).exists(), f"the refused manifest's bytes were stored: {registry.blob_file(md)}"


@pytest.mark.edge_only
def test_audit_records_refusals_failed_logins_and_uploads(registry, api, repo_name):
    viewer_name, viewer = new_user(registry, "service-viewer")
    denied, src, mounted, whole, chunked = (f"{repo_name}-{x}" for x in ("denied", "src", "mnt", "mono", "chunk"))
    r = requests.post(url(registry, f"/v2/{denied}/blobs/uploads/"), auth=viewer, timeout=T)
    assert r.status_code == 403, f"service-viewer push -> {r.status_code}"
    r = requests.get(url(registry, "/v2/"), auth=(viewer[0], WRONG_SECRET), timeout=T)
    assert r.status_code == 401, f"wrong secret -> {r.status_code}"
    d = api.push_blob(src, random_bytes(3000))
    r = api.post(f"/v2/{mounted}/blobs/uploads/", params={"mount": d, "from": src},
                 headers={"Content-Length": "0"}, timeout=T)
    assert r.status_code == 201, f"mount -> {r.status_code}"
    assert push_whole(registry, whole, random_bytes(3000)).status_code == 201
    data = random_bytes(3000)
    loc = api.new_session(chunked)
    r = api.patch(loc, data=data, headers=OCTET, timeout=T)
    assert r.status_code == 202
    r = api.put(api.url(r.headers["Location"]), params={"digest": digest(data)}, timeout=T)
    assert r.status_code == 201

    entries, last = [], None
    while True:
        r = api.get("/api/v1/audit", params={"limit": 1000, "n": 1000, **({"last": last} if last else {})}, timeout=T)
        assert r.status_code == 200, f"GET /api/v1/audit -> {r.status_code} {r.text[:200]}"
        entries += r.json()["items"]
        last = r.json().get("next")
        if not last:
            break
    for e in entries:
        assert {"who", "action", "method", "target", "status"} <= set(e), f"audit entry shape: {e}"
    uploads = lambda repo: f"/v2/{repo}/blobs/uploads/"  # noqa: E731
    wanted = {
        "(a) the service-viewer's refused push": lambda e: (e["status"] == 403 and e["method"] == "POST"
                                                            and e["target"] == uploads(denied)
                                                            and e["who"] == viewer_name),
        "(b) the failed login": lambda e: e["status"] == 401 and e["target"] == "/v2/",
        "(c) the cross-repository mount": lambda e: (e["status"] == 201 and e["method"] == "POST"
                                                     and e["target"] == uploads(mounted)),
        "(d) the monolithic upload": lambda e: (e["status"] == 201 and e["method"] == "POST"
                                                and e["target"] == uploads(whole)),
        "(d) the chunked upload's final PUT": lambda e: (e["status"] == 201 and e["method"] == "PUT"
                                                         and e["target"].startswith(uploads(chunked))),
    }
    missing = [what for what, match in wanted.items() if not any(match(e) for e in entries)]
    seen = sorted({(e["method"], e["target"], e["status"]) for e in entries})
    assert not missing, f"no audit entry for: {missing}\nentries (method, target, status): {seen}"


# --- also found ---------------------------------------------------------------------------------------

def test_chunk_past_the_offset_is_refused_and_the_session_kept(api, repo_name):
    loc = api.new_session(repo_name)
    r = api.patch(loc, data=random_bytes(10), headers={**OCTET, "Content-Range": "0-9"}, timeout=T)
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    loc = api.url(r.headers["Location"])
    r = api.patch(loc, data=random_bytes(10), headers={**OCTET, "Content-Range": "20-29"}, timeout=T)
    assert r.status_code == 416, f"a chunk at 20 after 10 bytes -> {r.status_code} {r.text[:200]}"
    s = api.get(loc, timeout=T)
    assert s.status_code == 204 and s.headers.get("Range") == "0-9", (
        f"session after the refused chunk: {s.status_code} Range={s.headers.get('Range')}")


def test_reversed_byte_range_is_not_a_client_error(api, repo_name):
    data = random_bytes(100)
    d = api.push_blob(repo_name, data)
    r = api.get(f"/v2/{repo_name}/blobs/{d}", headers={"Range": "bytes=500-0"}, timeout=T)
    assert r.status_code in (200, 416), f"Range: bytes=500-0 -> {r.status_code} {r.text[:200]}"
    if r.status_code == 200:
        assert sha(r.content) == sha(data), "200 without the whole blob"


def test_manifests_with_foreign_layers_are_stored(api, repo_name):
    for manifest_type, config_type, layer_type in [
        (OCI_MANIFEST, OCI_CONFIG, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
        (DOCKER_MANIFEST, DOCKER_CONFIG, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
    ]:
        cfg = image_config()
        api.push_blob(repo_name, cfg)
        foreign = random_bytes(500)  # never pushed: clients fetch it from `urls`
        body = json.dumps({"schemaVersion": 2, "mediaType": manifest_type,
                           "config": descriptor(config_type, cfg),
                           "layers": [descriptor(layer_type, foreign,
                                                 urls=["https://example.com/layer.tar.gz"])]}).encode()
        r = api.put_manifest(repo_name, digest(body), body, manifest_type, timeout=T)
        assert r.status_code == 201, f"{layer_type}: PUT -> {r.status_code} {r.text[:200]}"
        r = api.get_manifest(repo_name, digest(body))
        assert r.status_code == 200 and r.content == body, f"{layer_type}: GET -> {r.status_code}"
