"""Replication (issue 14): copying images from one `berth serve` to another Berth and to the CNCF
distribution registry, through the replication management API (targets, policies, runs, history)
and the CLI.

Every test starts its own servers: a source and a target `berth serve` (registry_factory, with
BERTH_OUTBOUND_ALLOW=127.0.0.0/8 so that loopback targets pass the SSRF guard) and, where needed,
a CNCF distribution registry on loopback with htpasswd (Basic) authentication. The target Berth's
administrator key is the replication target's username and password unless a test says otherwise.

What is checked is what arrives at the target: manifest bytes and digests, blob bytes, tags, the
referrers API, and the history the source records (executions and tasks with their counts and
bytes). Tests marked edge_only exercise validation, roles and the CLI; embedded_only ones read
the embedded data directory.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Optional

import pytest
import requests

from conftest import _DISTRIBUTION_CONFIG, DISTRIBUTION_BIN, Registry, free_port
from e2e_util import (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_EMPTY,
                      OCI_EMPTY_DIGEST, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Api, OciLayout, descriptor, digest,
                      image_config, random_bytes, require_tool, run, skopeo_creds, tar_gz)
from test_skopeo import skopeo  # noqa: F401 (fixture: skopeo with a private blob-info cache)

pytestmark = pytest.mark.berth_only

T = 30  # seconds: the timeout of every management request
ENV = {"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"}
RUN_WAIT = 120  # seconds for an execution to finish
EVENT_WAIT = 45  # seconds for a push to reach the target through the event trigger
ENABLED_WAIT = 30  # seconds for a new policy's target check

TARGET_KEYS = {"id", "registry", "name", "kind", "url", "username", "password_set", "skip_tls_verify",
               "chunk_bytes", "description", "created_at", "updated_at", "created_by"}
POLICY_KEYS = {"id", "registry", "name", "description", "target", "destination", "name_filter", "tag_filter",
               "tag_filter_mode", "trigger", "override", "enabled", "status", "status_reason",
               "target_checked_at", "created_at", "updated_at", "created_by"}
EXECUTION_KEYS = {"id", "replication", "registry", "trigger", "status", "started_at", "ended_at", "total",
                  "succeeded", "failed", "skipped", "bytes", "error"}
TASK_KEYS = {"id", "source", "destination", "digest", "tags", "status", "bytes", "blobs_sent", "blobs_skipped",
             "referrers", "error", "started_at", "ended_at"}
TARGET_ID = re.compile(r"^rt-[0-9a-f]{12}$")
POLICY_ID = re.compile(r"^rp-[0-9a-f]{12}$")
MIB = 1024 * 1024

SPDX = "application/spdx+json"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIG_ANNOTATION = "dev.cosignproject.cosign/signature"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- servers ---------------------------------------------------------------------------------------

@pytest.fixture
def source(registry_factory) -> Registry:
    """The `berth serve` images are replicated from."""
    return registry_factory(env=ENV)


@pytest.fixture
def target(registry_factory, source) -> Registry:
    """A second `berth serve`, the replication target (started after `source`)."""
    return registry_factory(env=ENV)


def bcrypt_hash(user: str, password: str) -> Optional[str]:
    """A bcrypt hash for an htpasswd line (distribution's htpasswd accepts only bcrypt): the
    `bcrypt` module, else the C library's crypt (Debian's libxcrypt has bcrypt), else `htpasswd -B`.
    Cost 4: distribution verifies the hash on every request."""
    try:
        import bcrypt  # type: ignore
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # type: ignore  (removed in Python 3.13)
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if h and h.startswith("$2"):
            return h
    except (ImportError, AttributeError, OSError):
        pass
    tool = shutil.which("htpasswd")
    if tool:
        p = subprocess.run([tool, "-nbB", "-C", "4", user, password], capture_output=True, text=True, timeout=30)
        if p.returncode == 0 and ":" in p.stdout:
            return p.stdout.strip().split(":", 1)[1]
    return None


class Distribution(Registry):
    """CNCF distribution (conftest's configuration) with htpasswd authentication; `credentials`
    is the (user, password) it takes as Basic credentials."""

    def __init__(self, base: Path):
        super().__init__("distribution", base / "data", free_port(), base / "server.log", base)
        self.htpasswd: Optional[Path] = None
        user, password = "repl", "pw-" + uuid.uuid4().hex
        h = bcrypt_hash(user, password)
        # a target without auth would let the Basic-credentials path go untested: fail instead
        assert h, "no bcrypt implementation here (Python's crypt, the bcrypt module or htpasswd -B)"
        self.htpasswd = base / "htpasswd"
        self.htpasswd.write_text(f"{user}:{h}\n")
        self.credentials = (user, password)

    def command(self, extra_args: list[str]) -> list[str]:
        cfg = self.workdir / "distribution-config.yml"
        text = _DISTRIBUTION_CONFIG.format(root=self.data_dir, addr=self.host,
                                           log_level=os.environ.get("E2E_PEER_LOG_LEVEL", "info"))
        if self.htpasswd:
            text += f"auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {self.htpasswd}\n"
        cfg.write_text(text)
        return [str(DISTRIBUTION_BIN), "serve", str(cfg)]


@pytest.fixture
def distribution(tmp_path_factory, request):
    reg = Distribution(tmp_path_factory.mktemp("distribution-target"))
    reg.start()
    yield reg
    died = reg.proc is not None and reg.proc.poll() is not None and not reg.expected_exit
    if reg.alive():
        reg.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n{reg.log_tail(40)}")
    if died:
        pytest.fail(f"distribution died during the test with exit code {reg.proc.returncode}\n{reg.log_tail()}",
                    pytrace=False)


def new_registry(reg: Registry, prefix: str = "r") -> str:
    name = unique(prefix)
    r = requests.post(f"{reg.url}/api/v1/registries", json={"name": name}, auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating registry {name} on {reg.url}: {r.status_code} {r.text}"
    return name


def ensure_registry(reg: Registry, name: str) -> None:
    r = requests.post(f"{reg.url}/api/v1/registries", json={"name": name}, auth=reg.credentials, timeout=T)
    assert r.status_code in (201, 409), f"creating registry {name} on {reg.url}: {r.status_code} {r.text}"


def new_user(reg: Registry, role: str, registries=None) -> tuple[str, tuple[str, str]]:
    name = unique(f"{role}-")
    body = {"name": name, "role": role}
    if registries is not None:
        body["registries"] = registries
    r = requests.post(f"{reg.url}/api/v1/users", json=body, auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating user {name}: {r.status_code} {r.text}"
    r = requests.post(f"{reg.url}/api/v1/users/{name}/keys", auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating a key of {name}: {r.status_code} {r.text}"
    return name, (r.json()["access_key"], r.json()["secret_key"])


def logs(*regs) -> str:
    return "\n".join(r.log_tail(40) for r in regs if r is not None)


# --- the replication API -----------------------------------------------------------------------------

def error_text(r: requests.Response) -> tuple[str, str]:
    """(code, message + detail) of a management error answer."""
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"error answer is not JSON: {r.status_code} {r.text[:300]!r}")
    assert isinstance(body.get("errors"), list) and body["errors"], f"no errors[] in {body}"
    e = body["errors"][0]
    detail = e.get("detail")
    detail = detail if isinstance(detail, str) else json.dumps(detail)
    return e.get("code", ""), f"{e.get('message', '')} {detail}"


def assert_refused(r: requests.Response, status: int, codes, *mentions: str, what: str = "") -> str:
    """The answer is `status` with the error shape and one of `codes`; its text names one of
    `mentions` (when given)."""
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    what = what or f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{what}: expected {status}, got {r.status_code} {r.text[:500]}"
    code, text = error_text(r)
    assert code in codes, f"{what}: error code {code!r}, expected one of {codes} ({r.text[:400]})"
    if mentions:
        assert any(m.lower() in text.lower() for m in mentions), \
            f"{what}: the error names none of {mentions}: {r.text[:500]}"
    return text


class Repl:
    """The replication management API of one server, as one caller. `watch`: servers whose log
    tails a timeout message shows."""

    def __init__(self, reg: Registry, auth=None, watch=()):
        self.reg = reg
        self.auth = auth if auth is not None else reg.credentials
        self.watch = [reg, *watch]

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", T)
        return requests.request(method, self.reg.url + path, auth=self.auth, **kw)

    # targets
    @staticmethod
    def tpath(scope: str, *rest: str) -> str:
        return "/".join([f"/api/v1/registries/{scope}/replication-targets", *rest])

    def create_target(self, scope: str, **body) -> requests.Response:
        return self.req("POST", self.tpath(scope), json=body)

    def make_target(self, scope: str, **body) -> dict:
        r = self.create_target(scope, **body)
        shown = {k: ("***" if k == "password" else v) for k, v in body.items()}
        assert r.status_code == 201, f"creating target {shown}: {r.status_code} {r.text}"
        view = r.json()
        check_target_view(view)
        return view

    def berth_target(self, scope: str, tgt: Registry, url: Optional[str] = None, **body) -> dict:
        """A target of kind berth for `tgt`, with its administrator key."""
        body.setdefault("name", unique("dr-"))
        return self.make_target(scope, kind="berth", url=url or tgt.url, username=tgt.credentials[0],
                                password=tgt.credentials[1], **body)

    def get_target(self, scope: str, tid: str) -> requests.Response:
        return self.req("GET", self.tpath(scope, tid))

    def list_targets(self, scope: str, **params) -> requests.Response:
        return self.req("GET", self.tpath(scope), params=params or None)

    def patch_target(self, scope: str, tid: str, **body) -> requests.Response:
        return self.req("PATCH", self.tpath(scope, tid), json=body)

    def delete_target(self, scope: str, tid: str) -> requests.Response:
        return self.req("DELETE", self.tpath(scope, tid))

    # policies
    @staticmethod
    def ppath(reg: str, *rest: str) -> str:
        return "/".join([f"/api/v1/registries/{reg}/replications", *rest])

    def create(self, reg: str, **body) -> requests.Response:
        return self.req("POST", self.ppath(reg), json=body)

    def make(self, reg: str, **body) -> dict:
        r = self.create(reg, **body)
        assert r.status_code == 201, f"creating replication {body}: {r.status_code} {r.text}"
        view = r.json()
        check_policy_view(view)
        return view

    def get(self, reg: str, pid: str) -> requests.Response:
        return self.req("GET", self.ppath(reg, pid))

    def list(self, reg: str, **params) -> requests.Response:
        return self.req("GET", self.ppath(reg), params=params or None)

    def patch(self, reg: str, pid: str, **body) -> requests.Response:
        return self.req("PATCH", self.ppath(reg, pid), json=body)

    def delete(self, reg: str, pid: str) -> requests.Response:
        return self.req("DELETE", self.ppath(reg, pid))

    def run(self, reg: str, pid: str) -> requests.Response:
        return self.req("POST", self.ppath(reg, pid, "run"))

    # history
    def executions(self, reg: str, pid: str, **params) -> requests.Response:
        return self.req("GET", self.ppath(reg, pid, "executions"), params=params or None)

    def execution(self, reg: str, pid: str, eid: str) -> requests.Response:
        return self.req("GET", self.ppath(reg, pid, "executions", eid))

    def tasks(self, reg: str, pid: str, eid: str, **params) -> requests.Response:
        return self.req("GET", self.ppath(reg, pid, "executions", eid, "tasks"), params=params or None)

    def pages(self, fetch, what: str) -> list[dict]:
        """Every item of a paged list (follows `next`)."""
        out, last = [], None
        for _ in range(200):
            r = fetch(**({"last": last} if last else {}))
            assert r.status_code == 200, f"{what}: {r.status_code} {r.text[:300]}"
            body = r.json()
            assert set(body) == {"items", "next"}, f"{what}: {body}"
            out += body["items"]
            last = body["next"]
            if not last:
                return out
        raise AssertionError(f"{what}: more than 200 pages")

    def all_executions(self, reg: str, pid: str) -> list[dict]:
        got = self.pages(lambda **p: self.executions(reg, pid, **p), f"executions of {reg}/{pid}")
        for e in got:
            check_execution_view(e)
        return got

    def all_tasks(self, reg: str, pid: str, eid: str) -> list[dict]:
        got = self.pages(lambda **p: self.tasks(reg, pid, eid, **p), f"tasks of {reg}/{pid}/{eid}")
        for t in got:
            check_task_view(t)
        return got

    def wait_execution(self, reg: str, pid: str, eid: str, timeout: float = RUN_WAIT) -> dict:
        deadline = time.monotonic() + timeout
        e = None
        while time.monotonic() < deadline:
            r = self.execution(reg, pid, eid)
            assert r.status_code == 200, f"GET execution {eid}: {r.status_code} {r.text}"
            e = r.json()
            if e["status"] != "running":
                check_execution_view(e)
                return e
            time.sleep(0.3)
        raise AssertionError(f"execution {reg}/{pid}/{eid} still running after {timeout} s: {e}\n"
                             + logs(*self.watch))

    def start_run(self, reg: str, pid: str) -> dict:
        r = self.run(reg, pid)
        assert r.status_code == 202, f"POST run of {reg}/{pid}: {r.status_code} {r.text}"
        e = r.json()
        check_execution_view(e)
        assert (e["status"], e["replication"], e["registry"], e["trigger"]) == \
            ("running", pid, reg, "manual"), f"the run's answer: {e}"
        assert e["ended_at"] is None, e
        return e

    def run_and_wait(self, reg: str, pid: str, timeout: float = RUN_WAIT) -> tuple[dict, list[dict]]:
        """A manual run, waited for; returns (execution, tasks)."""
        started = self.start_run(reg, pid)
        done = self.wait_execution(reg, pid, started["id"], timeout)
        assert done["id"] == started["id"] and done["started_at"] == started["started_at"], (started, done)
        tasks = self.all_tasks(reg, pid, done["id"])
        check_counts(done, tasks)
        return done, tasks

    def run_ok(self, reg: str, pid: str, timeout: float = RUN_WAIT) -> tuple[dict, list[dict]]:
        done, tasks = self.run_and_wait(reg, pid, timeout)
        assert done["status"] == "succeeded" and done["error"] is None and done["failed"] == 0, \
            f"execution did not succeed: {done}\ntasks: {json.dumps(tasks, indent=1)[:3000]}\n" + logs(*self.watch)
        return done, tasks

    def wait_status(self, reg: str, pid: str, status: str = "Enabled", timeout: float = ENABLED_WAIT) -> dict:
        """Polls a policy until its status is `status` (the target check runs after creation)."""
        deadline = time.monotonic() + timeout
        p = None
        while time.monotonic() < deadline:
            r = self.get(reg, pid)
            assert r.status_code == 200, r.text
            p = r.json()
            if p["status"] == status:
                return p
            time.sleep(0.3)
        raise AssertionError(f"policy {reg}/{pid} not {status} after {timeout} s: {p}\n" + logs(*self.watch))


class ExtraFields(UserWarning):
    """A view carries fields beyond the contract's (allowed, reported)."""


_EXTRA_SEEN: set = set()


def exact_fields(view: dict, keys: set, what: str) -> None:
    """Every field of the contract is there; fields beyond it are reported once as a warning
    (clients ignore unknown fields), a password never."""
    assert isinstance(view, dict), f"{what} view is not an object: {view!r}"
    missing = keys - set(view)
    assert not missing, f"{what} view lacks the contract's fields {sorted(missing)}: {json.dumps(view)}"
    assert "password" not in view, f"{what} view shows a password"
    extra = tuple(sorted(set(view) - keys))
    if extra and (what, extra) not in _EXTRA_SEEN:
        _EXTRA_SEEN.add((what, extra))
        warnings.warn(f"{what} view has fields beyond the contract: {list(extra)}", ExtraFields)


def check_target_view(v: dict) -> None:
    exact_fields(v, TARGET_KEYS, "target")
    assert TARGET_ID.match(v["id"]), v["id"]
    assert "password" not in v and isinstance(v["password_set"], bool), v
    assert v["kind"] in ("berth", "registry"), v
    assert isinstance(v["chunk_bytes"], int) and MIB <= v["chunk_bytes"] <= 64 * MIB, v
    assert isinstance(v["created_at"], int) and isinstance(v["updated_at"], int), v


def check_policy_view(v: dict) -> None:
    exact_fields(v, POLICY_KEYS, "policy")
    assert POLICY_ID.match(v["id"]), v["id"]
    assert v["tag_filter_mode"] in ("match", "exclude"), v
    assert v["trigger"]["type"] in ("manual", "event", "schedule"), v
    assert v["status"] in ("Enabled", "Disabled"), v
    assert v["status_reason"] is None or isinstance(v["status_reason"], str), v
    if v["status"] == "Enabled":
        assert v["status_reason"] is None, v
    else:
        assert v["status_reason"], f"Disabled without a reason: {v}"
    assert v["target_checked_at"] is None or isinstance(v["target_checked_at"], int), v


def check_execution_view(e: dict) -> None:
    exact_fields(e, EXECUTION_KEYS, "execution")
    assert e["status"] in ("running", "succeeded", "failed"), e
    assert e["trigger"] in ("manual", "event", "schedule"), e
    for k in ("total", "succeeded", "failed", "skipped", "bytes", "started_at"):
        assert isinstance(e[k], int) and e[k] >= 0, f"{k}: {e}"
    if e["status"] != "running":
        assert isinstance(e["ended_at"], int) and e["ended_at"] >= e["started_at"], e


def check_task_view(t: dict) -> None:
    exact_fields(t, TASK_KEYS, "task")
    assert t["status"] in ("pending", "running", "succeeded", "skipped", "failed"), t
    assert isinstance(t["tags"], list), t
    for k in ("bytes", "blobs_sent", "blobs_skipped", "referrers"):
        assert isinstance(t[k], int) and t[k] >= 0, f"{k}: {t}"
    if t["status"] == "failed":
        assert isinstance(t["error"], str) and t["error"], f"a failed task without its error: {t}"
    elif t["status"] in ("succeeded", "skipped"):
        assert t["error"] is None, t
        assert isinstance(t["ended_at"], int) and isinstance(t["started_at"], int), t
        assert t["ended_at"] >= t["started_at"], t


def check_counts(e: dict, tasks: list[dict]) -> None:
    """A finished execution's counts add up over its tasks."""
    what = f"execution {json.dumps(e)}\ntasks {json.dumps(tasks, indent=1)[:3000]}"
    assert e["total"] == len(tasks), f"total != number of tasks: {what}"
    for status in ("succeeded", "failed", "skipped"):
        assert e[status] == sum(1 for t in tasks if t["status"] == status), f"{status} count: {what}"
    assert e["bytes"] == sum(t["bytes"] for t in tasks), f"bytes != sum of the tasks' bytes: {what}"
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks), f"tasks not in order: {what}"
    assert all(t["status"] in ("succeeded", "skipped", "failed") for t in tasks), f"unfinished task: {what}"


def task_keys(tasks: list[dict]) -> set[tuple]:
    return {(t["source"], t["destination"], t["digest"], tuple(sorted(t["tags"]))) for t in tasks}


# --- images ------------------------------------------------------------------------------------------

def push_image(api: Api, repo: str, tags: list[str], label: str = "", layers: Optional[list[bytes]] = None,
               annotations: Optional[dict] = None) -> dict:
    """An OCI image (unique layers unless given) under every tag of `tags` (none: by digest only).
    Returns dict(digest, manifest, blobs=[(digest, bytes)], size)."""
    layers = layers if layers is not None else [tar_gz({f"{label or 'f'}.bin": random_bytes(2000)})]
    config = image_config(diff_ids=[digest(layer) for layer in layers])
    blobs = [(api.push_blob(repo, config), config)] + [(api.push_blob(repo, layer), layer) for layer in layers]
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
         "layers": [descriptor(OCI_LAYER_GZIP, layer) for layer in layers]}
    if annotations:
        m["annotations"] = annotations
    body = json.dumps(m, indent=1).encode()
    d = digest(body)
    for ref in tags or [d]:
        r = api.put_manifest(repo, ref, body, OCI_MANIFEST)
        assert r.status_code == 201, f"PUT manifest {repo}:{ref}: {r.status_code} {r.text}"
        assert r.headers.get("Docker-Content-Digest") == d
    return {"digest": d, "manifest": body, "blobs": blobs, "size": sum(len(b) for _, b in blobs)}


def tag_digest(api: Api, repo: str, tag: str) -> Optional[str]:
    r = api.get_manifest(repo, tag, method="HEAD")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, f"HEAD {repo}:{tag} on {api.base}: {r.status_code}"
    return r.headers["Docker-Content-Digest"]


def has_manifest(api: Api, repo: str, ref: str) -> bool:
    r = api.get_manifest(repo, ref, method="HEAD")
    assert r.status_code in (200, 404), f"HEAD {repo}@{ref} on {api.base}: {r.status_code}"
    return r.status_code == 200


def stream_digest(api: Api, repo: str, d: str) -> tuple[str, int]:
    r = api.get(f"/v2/{repo}/blobs/{d}", stream=True)
    assert r.status_code == 200, f"GET blob {repo}@{d} on {api.base}: {r.status_code}"
    h, n = hashlib.sha256(), 0
    for block in r.iter_content(1 << 20):
        h.update(block)
        n += len(block)
    return "sha256:" + h.hexdigest(), n


def assert_same_artifact(src: Api, src_repo: str, dst: Api, dst_repo: str, ref: str, seen=None) -> list[str]:
    """The artifact `ref` reads back from the target with the source's exact manifest bytes, media
    type and digest, and every blob (and index child, recursively) byte-equal. Returns the digests
    of the manifests checked."""
    seen = seen if seen is not None else []
    a = src.get_manifest(src_repo, ref)
    assert a.status_code == 200, f"source {src_repo}:{ref}: {a.status_code} {a.text[:200]}"
    b = dst.get_manifest(dst_repo, ref)
    assert b.status_code == 200, f"target {dst.base} {dst_repo}:{ref}: {b.status_code} {b.text[:300]}"
    assert b.content == a.content, f"{dst_repo}:{ref}: the manifest bytes differ from the source's"
    d = digest(a.content)
    assert b.headers.get("Docker-Content-Digest") == d, (dst_repo, ref, dict(b.headers))
    assert b.headers.get("Content-Type", "").split(";")[0] == a.headers["Content-Type"].split(";")[0], \
        (a.headers.get("Content-Type"), b.headers.get("Content-Type"))
    seen.append(d)
    m = json.loads(a.content)
    if "manifests" in m:
        for child in m["manifests"]:
            assert_same_artifact(src, src_repo, dst, dst_repo, child["digest"], seen)
    else:
        for desc in [m["config"], *m.get("layers", [])]:
            if desc["size"] > 16 * MIB:
                got, n = stream_digest(dst, dst_repo, desc["digest"])
                assert (got, n) == (desc["digest"], desc["size"]), f"{dst_repo}: blob {desc['digest']}: {got} {n}"
            else:
                body = dst.get_blob(dst_repo, desc["digest"])
                assert body == src.get_blob(src_repo, desc["digest"]), f"{dst_repo}: blob {desc['digest']} differs"
                assert digest(body) == desc["digest"] and len(body) == desc["size"]
    return seen


def wait_tag(api: Api, repo: str, tag: str, timeout: float, *watch) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = tag_digest(api, repo, tag)
        if d:
            return d
        time.sleep(0.3)
    raise AssertionError(f"{repo}:{tag} did not arrive at {api.base} within {timeout} s\n" + logs(*watch))


def catalog(api: Api, prefix: str) -> list[str]:
    """Repositories of the target under `prefix/`."""
    out, last = [], None
    for _ in range(100):
        r = api.get("/v2/_catalog", params={"n": 1000, **({"last": last} if last else {})})
        assert r.status_code == 200, f"catalog: {r.status_code} {r.text[:200]}"
        repos = r.json().get("repositories") or []
        out += repos
        if "Link" not in r.headers or not repos:
            break
        last = repos[-1]
    return sorted(x for x in out if x.startswith(prefix + "/"))


def docker_build_push(tmp_path: Path, reg: Registry, repo: str, tag: str, sizes: list[int]) -> tuple[str, Path, str]:
    """docker build (FROM scratch, one COPY per file) and push to `reg` with a private docker
    config; returns (pushed digest, docker config dir, local reference)."""
    require_tool("docker")
    cfg = tmp_path / unique("docker-")
    cfg.mkdir()
    p = subprocess.run(["docker", "--config", str(cfg), "login", reg.host, "-u", reg.credentials[0],
                        "--password-stdin"], input=reg.credentials[1], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ctx = tmp_path / unique("ctx-")
    ctx.mkdir()
    lines = ["FROM scratch"]
    for i, n in enumerate(sizes):
        (ctx / f"f{i}.bin").write_bytes(random_bytes(n))
        lines.append(f"COPY f{i}.bin /data/f{i}.bin")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    ref = f"{reg.host}/{repo}:{tag}"
    run(["docker", "--config", str(cfg), "build", "-t", ref, str(ctx)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    out = run(["docker", "--config", str(cfg), "push", ref], timeout=300)
    m = re.search(rf"{re.escape(tag)}: digest: (sha256:[0-9a-f]{{64}}) size: \d+", out.stdout)
    assert m, f"no digest in docker push output:\n{out.stdout}"
    return m.group(1), cfg, ref


def skopeo_to_dir(skopeo_argv, reg: Registry, ref: str, dest: Path) -> dict[str, bytes]:
    """skopeo copy docker://reg/ref -> dir:dest; returns {"manifest": bytes, <digest>: blob bytes}."""
    run([*skopeo_argv, "copy", "--preserve-digests", *skopeo_creds(reg, "src"), f"docker://{reg.host}/{ref}",
         f"dir:{dest}"], timeout=300)
    out = {"manifest": (dest / "manifest.json").read_bytes()}
    for f in dest.iterdir():
        if re.fullmatch(r"[0-9a-f]{64}", f.name):
            out["sha256:" + f.name] = f.read_bytes()
    return out


# --- 1. a manual run to a Berth ------------------------------------------------------------------------

def test_manual_run_to_berth_copies_the_image_and_records_history(source, target, tmp_path, skopeo):
    """docker push to the source; a manual run to a Berth target (through a recording proxy, with
    1 MiB chunks); skopeo and docker pull it back from the target byte-equal; the history holds the
    execution and its task; a REPLICATION webhook event is emitted."""
    from recording_proxy import RecordingProxy
    from webhook_receiver import Receiver
    repo_in = unique("app-")
    src_repo = f"e2e/{repo_in}"
    sizes = [3 * MIB + 123, 70_000]
    pushed, docker_cfg, local_ref = docker_build_push(tmp_path, source, src_repo, "v1", sizes)
    src_api, dst_api = Api(source), Api(target)
    manifest = json.loads(src_api.get_manifest(src_repo, "v1").content)
    blob_sizes = {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}

    ensure_registry(target, "dr")
    proxy = RecordingProxy(target.port)
    receiver = Receiver().start()
    try:
        hook = requests.post(f"{source.url}/api/v1/registries/e2e/webhooks", auth=source.credentials, timeout=T,
                             json={"name": "repl-events", "url": receiver.url("/repl"), "events": ["REPLICATION"]})
        assert hook.status_code == 201, hook.text
        repl = Repl(source, watch=[target])
        tgt = repl.berth_target("e2e", target, url=f"http://{proxy.host}", chunk_bytes=MIB, description="dr site")
        assert (tgt["registry"], tgt["kind"], tgt["url"], tgt["username"], tgt["password_set"], tgt["chunk_bytes"],
                tgt["skip_tls_verify"], tgt["description"], tgt["created_by"]) == \
            ("e2e", "berth", f"http://{proxy.host}", target.credentials[0], True, MIB, False, "dr site", "admin"), tgt
        pol = repl.make("e2e", name="to-dr", target=tgt["id"], destination="dr", name_filter=repo_in)
        assert (pol["registry"], pol["target"], pol["destination"], pol["name_filter"], pol["tag_filter"],
                pol["tag_filter_mode"], pol["trigger"], pol["override"], pol["enabled"]) == \
            ("e2e", tgt["id"], "dr", repo_in, "", "match", {"type": "manual"}, True, True), pol
        enabled = repl.wait_status("e2e", pol["id"], "Enabled")
        assert enabled["status_reason"] is None and isinstance(enabled["target_checked_at"], int), enabled

        before = int(time.time())
        proxy.clear()
        done, tasks = repl.run_ok("e2e", pol["id"])
        assert done["trigger"] == "manual" and (done["total"], done["succeeded"], done["skipped"]) == (1, 1, 0), done
        assert before - 1 <= done["started_at"] <= done["ended_at"] <= time.time() + 1, done
        [task] = tasks
        assert (task["source"], task["destination"], task["digest"], task["tags"], task["status"], task["error"]) == \
            (src_repo, f"dr/{repo_in}", pushed, ["v1"], "succeeded", None), task
        total_blobs = sum(blob_sizes.values())
        manifest_len = len(src_api.get_manifest(src_repo, "v1").content)
        assert total_blobs <= task["bytes"] <= total_blobs + manifest_len, \
            f"task bytes {task['bytes']}: the blobs are {total_blobs} bytes, the manifest {manifest_len}"
        assert (task["blobs_sent"], task["blobs_skipped"], task["referrers"]) == (len(blob_sizes), 0, 0), task
        assert done["bytes"] == task["bytes"]

        # what travelled: no request body above chunk_bytes; the blob bytes were all uploaded once
        uploads = [r for r in proxy.records
                   if r["method"] in ("PATCH", "PUT", "POST") and "/blobs/uploads/" in r["path"]]
        assert uploads, proxy.summary()
        biggest = max(r["body_bytes"] for r in proxy.records)
        assert biggest <= MIB, f"a request carried {biggest} bytes with chunk_bytes {MIB}:\n{proxy.summary()}"
        assert sum(r["body_bytes"] for r in uploads) == total_blobs, proxy.summary()

        # the target holds the image byte for byte
        assert_same_artifact(src_api, src_repo, dst_api, f"dr/{repo_in}", "v1")
        assert dst_api.tags(f"dr/{repo_in}") == ["v1"]
        got = skopeo_to_dir(skopeo, target, f"dr/{repo_in}:v1", tmp_path / "pulled")
        assert digest(got["manifest"]) == pushed
        for d, n in blob_sizes.items():
            assert d in got and len(got[d]) == n and digest(got[d]) == d, f"skopeo pulled {d} wrong"
            assert got[d] == src_api.get_blob(src_repo, d)
        # docker pulls it from the target
        image_id = run(["docker", "--config", str(docker_cfg), "image", "inspect", "--format", "{{.Id}}",
                        local_ref]).stdout.strip()
        run(["docker", "--config", str(docker_cfg), "rmi", "-f", local_ref], timeout=120)
        tref = f"{target.host}/dr/{repo_in}:v1"
        p = subprocess.run(["docker", "--config", str(docker_cfg), "login", target.host, "-u", target.credentials[0],
                            "--password-stdin"], input=target.credentials[1], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stderr
        try:
            run(["docker", "--config", str(docker_cfg), "pull", tref], timeout=300)
            info = json.loads(run(["docker", "image", "inspect", tref]).stdout)[0]
            assert info["Id"] == image_id and f"{target.host}/dr/{repo_in}@{pushed}" in info["RepoDigests"], info
        finally:
            run(["docker", "rmi", "-f", tref], check=False, timeout=120)

        # the history
        execs = repl.all_executions("e2e", pol["id"])
        assert [e["id"] for e in execs] == [done["id"]] and execs[0] == done, execs
        assert repl.all_tasks("e2e", pol["id"], done["id"]) == tasks
        assert_refused(repl.execution("e2e", pol["id"], "no-such-execution"), 404, "NOT_FOUND")

        # a finished execution emits REPLICATION
        [event] = receiver.wait_events(1, "/repl", timeout=EVENT_WAIT)
        assert event.event_type == "REPLICATION" and event.json()["type"] == "REPLICATION", event.describe()
    finally:
        run(["docker", "rmi", "-f", local_ref], check=False, timeout=120)
        receiver.close()
        proxy.close()


# --- 2. the event trigger ------------------------------------------------------------------------------

def test_event_trigger_replicates_only_pushes_after_the_policy_that_pass_the_filters(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    dest = new_registry(target, "ev")
    repo = "e2e/events/app"
    old = push_image(src_api, repo, ["rel-0"], "old")
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="on-push", target=tgt["id"], destination=dest, name_filter="events/*",
                    tag_filter="rel-*", trigger={"type": "event"})
    assert pol["trigger"] == {"type": "event"}, pol
    repl.wait_status("e2e", pol["id"], "Enabled")

    dev = push_image(src_api, repo, ["dev-1"], "dev")  # fails the tag filter
    elsewhere = push_image(src_api, "e2e/elsewhere/app", ["rel-1"], "elsewhere")  # fails the name filter
    new = push_image(src_api, repo, ["rel-1"], "new")
    got = wait_tag(dst_api, f"{dest}/events/app", "rel-1", EVENT_WAIT, source, target)
    assert got == new["digest"]
    assert_same_artifact(src_api, repo, dst_api, f"{dest}/events/app", "rel-1")
    time.sleep(3)  # anything else the events could bring has time to arrive
    assert dst_api.tags(f"{dest}/events/app") == ["rel-1"], "more than the pushed rel-1 arrived"
    assert not has_manifest(dst_api, f"{dest}/events/app", old["digest"]), \
        "an image pushed before the policy existed was replicated by the event trigger"
    assert not has_manifest(dst_api, f"{dest}/events/app", dev["digest"]), \
        "a push whose tag fails the tag filter was replicated"
    assert catalog(dst_api, dest) == [f"{dest}/events/app"] and \
        not has_manifest(dst_api, f"{dest}/elsewhere/app", elsewhere["digest"]), \
        f"a push whose image fails the name filter was replicated: {catalog(dst_api, dest)}"

    execs = repl.all_executions("e2e", pol["id"])
    assert execs and all(e["trigger"] == "event" for e in execs), execs
    sent = []
    for e in execs:
        e = repl.wait_execution("e2e", pol["id"], e["id"])
        tasks = repl.all_tasks("e2e", pol["id"], e["id"])
        check_counts(e, tasks)
        sent += [(t["digest"], tuple(t["tags"]), t["status"]) for t in tasks if t["status"] != "skipped"]
    assert sent == [(new["digest"], ("rel-1",), "succeeded")], f"event executions sent {sent}"

    # a manual run of the same policy brings the older image
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert done["trigger"] == "manual"
    assert tag_digest(dst_api, f"{dest}/events/app", "rel-0") == old["digest"]
    assert tag_digest(dst_api, f"{dest}/events/app", "dev-1") is None


# --- 3. the guide's filter table -----------------------------------------------------------------------

def test_filter_table_and_tag_filter_modes(source, target):
    """NCR's filter table: name `path/*`, `path/**`, `{path,ncr}/**`; tag `1.?` in match and exclude
    mode; untagged artifacts travel only without a tag filter."""
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    A = push_image(src_api, "e2e/path/hello-world", ["1.0", "latest"], "a")
    B = push_image(src_api, "e2e/path/hello-world", ["1.01"], "b")
    U = push_image(src_api, "e2e/path/hello-world", [], "u")  # untagged
    C = push_image(src_api, "e2e/path/my/hello-world", ["1.0"], "c")
    D = push_image(src_api, "e2e/ncr/hello-world", ["1.0"], "d")
    E = push_image(src_api, "e2e/other/hello-world", ["2.0"], "e")
    tgt = repl.berth_target("e2e", target)

    hw, my, ncr, other = "path/hello-world", "path/my/hello-world", "ncr/hello-world", "other/hello-world"
    cases = [
        # (name filter, tag filter, mode, {image: [(artifact, tags)]})
        ("path/*", "", None, {hw: [(A, ["1.0", "latest"]), (B, ["1.01"]), (U, [])]}),
        ("path/**", "", None, {hw: [(A, ["1.0", "latest"]), (B, ["1.01"]), (U, [])], my: [(C, ["1.0"])]}),
        ("", "1.?", "match", {hw: [(A, ["1.0"])], my: [(C, ["1.0"])], ncr: [(D, ["1.0"])]}),
        ("{path,ncr}/**", "", None, {hw: [(A, ["1.0", "latest"]), (B, ["1.01"]), (U, [])], my: [(C, ["1.0"])],
                                     ncr: [(D, ["1.0"])]}),
        ("", "1.?", "exclude", {hw: [(A, ["latest"]), (B, ["1.01"])], other: [(E, ["2.0"])]}),
        ("path/*", "1.?", None, {hw: [(A, ["1.0"])]}),
    ]
    everything = {hw: [A, B, U], my: [C], ncr: [D], other: [E]}
    for name_filter, tag_filter, mode, expected in cases:
        label = f"name {name_filter!r} tag {tag_filter!r} {mode or ''}"
        dest = new_registry(target, "flt")
        body = {"name": unique("f-"), "target": tgt["id"], "destination": dest, "name_filter": name_filter,
                "tag_filter": tag_filter}
        if mode:
            body["tag_filter_mode"] = mode
        pol = repl.make("e2e", **body)
        assert (pol["name_filter"], pol["tag_filter"], pol["tag_filter_mode"]) == \
            (name_filter, tag_filter, mode or "match"), pol
        done, tasks = repl.run_ok("e2e", pol["id"])
        want_tasks = {(f"e2e/{img}", f"{dest}/{img}", art["digest"], tuple(sorted(tags)))
                      for img, arts in expected.items() for art, tags in arts}
        assert task_keys(tasks) == want_tasks, (f"{label}: tasks\n{sorted(task_keys(tasks))}\nexpected\n"
                                                f"{sorted(want_tasks)}")
        assert len(tasks) == len(want_tasks) and done["succeeded"] == len(want_tasks), f"{label}: {done}"
        # the target holds exactly these repositories, tags and artifacts
        assert catalog(dst_api, dest) == sorted(f"{dest}/{img}" for img in expected), \
            f"{label}: repositories at the target {catalog(dst_api, dest)}"
        for img, arts in everything.items():
            want = dict((a["digest"], tags) for a, tags in expected.get(img, []))
            if img in expected:
                assert sorted(dst_api.tags(f"{dest}/{img}")) == sorted(t for tags in want.values() for t in tags), \
                    f"{label}: tags of {dest}/{img}: {dst_api.tags(f'{dest}/{img}')}"
            for art in arts:
                present = has_manifest(dst_api, f"{dest}/{img}", art["digest"])
                assert present == (art["digest"] in want), \
                    f"{label}: {img}@{art['digest'][:19]} present at the target: {present}"
                if present:
                    for tag in want[art["digest"]]:
                        assert tag_digest(dst_api, f"{dest}/{img}", tag) == art["digest"], f"{label}: {img}:{tag}"
                    assert_same_artifact(src_api, f"e2e/{img}", dst_api, f"{dest}/{img}", art["digest"])


# --- 4. identical digests are skipped; override ----------------------------------------------------------

def test_identical_digest_is_skipped_and_override_decides_a_conflicting_tag(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    img = push_image(src_api, "e2e/skip/app", ["v1"], "s", layers=[tar_gz({"a": random_bytes(50_000)}),
                                                                    tar_gz({"b": random_bytes(20_000)})])
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="skip", target=tgt["id"], destination="e2e")  # the target's e2e registry
    first, [t1] = repl.run_ok("e2e", pol["id"])
    assert (t1["status"], t1["destination"], t1["tags"]) == ("succeeded", "e2e/skip/app", ["v1"]), t1
    assert t1["bytes"] >= img["size"] and t1["blobs_sent"] == 3, t1

    second, [t2] = repl.run_ok("e2e", pol["id"])
    assert (second["total"], second["succeeded"], second["skipped"], second["bytes"]) == (1, 0, 1, 0), second
    assert (t2["status"], t2["bytes"], t2["blobs_sent"], t2["digest"], t2["tags"]) == \
        ("skipped", 0, 0, img["digest"], ["v1"]), t2
    execs = repl.all_executions("e2e", pol["id"])
    assert [e["id"] for e in execs] == [second["id"], first["id"]], "executions not newest first"

    # a new tag on the same digest: not identical any more, but no blob travels again
    r = src_api.put_manifest("e2e/skip/app", "v1.1", img["manifest"], OCI_MANIFEST)
    assert r.status_code == 201, r.text
    third, [t3] = repl.run_ok("e2e", pol["id"])
    assert t3["status"] == "succeeded" and sorted(t3["tags"]) == ["v1", "v1.1"], t3
    assert t3["blobs_sent"] == 0 and t3["bytes"] <= len(img["manifest"]), f"blobs travelled again: {t3}"
    assert tag_digest(dst_api, "e2e/skip/app", "v1.1") == img["digest"]

    # override false: a target tag pointing elsewhere stays; override true (PATCH) overwrites it
    other = push_image(dst_api, "e2e/skip/app", ["v2"], "other-at-target")
    mine = push_image(src_api, "e2e/skip/app", ["v2"], "mine")
    r = repl.patch("e2e", pol["id"], override=False)
    assert r.status_code == 200 and r.json()["override"] is False, r.text
    done, _ = repl.run_and_wait("e2e", pol["id"])
    assert done["status"] in ("succeeded", "failed"), done
    assert tag_digest(dst_api, "e2e/skip/app", "v2") == other["digest"], "override false overwrote a target tag"
    r = repl.patch("e2e", pol["id"], override=True)
    assert r.status_code == 200 and r.json()["override"] is True, r.text
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert tag_digest(dst_api, "e2e/skip/app", "v2") == mine["digest"], "override true did not overwrite"
    assert_same_artifact(src_api, "e2e/skip/app", dst_api, "e2e/skip/app", "v2")
    assert tag_digest(dst_api, "e2e/skip/app", "v1") == img["digest"]


def test_a_protected_tag_at_the_target_is_a_recorded_failure(source, target):
    """Protection at the target is respected: moving its protected tag is refused there (412), which
    the task records as its error; the run ends failed, the server keeps working, the tag stays."""
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    dest = new_registry(target, "prot")
    first = push_image(src_api, "e2e/prot/app", ["v1"], "first")
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="prot", target=tgt["id"], destination=dest)
    repl.run_ok("e2e", pol["id"])
    assert tag_digest(dst_api, f"{dest}/prot/app", "v1") == first["digest"]
    r = requests.post(f"{target.url}/api/v1/registries/{dest}/protection/rules",
                      json={"image": "prot/**", "tag": "v*"}, auth=target.credentials, timeout=30)
    assert r.status_code == 201, r.text
    moved = push_image(src_api, "e2e/prot/app", ["v1"], "moved")
    done, tasks = repl.run_and_wait("e2e", pol["id"])
    # the first digest, untagged now, is replicated by digest (skipped: it is there)
    [task] = [t for t in tasks if t["digest"] == moved["digest"]]
    assert (done["status"], done["failed"], task["status"]) == ("failed", 1, "failed"), (done, tasks)
    assert "412" in (task["error"] or ""), f"the target's answer is not recorded: {task}"
    assert tag_digest(dst_api, f"{dest}/prot/app", "v1") == first["digest"], "a protected tag moved"
    # the artifact itself arrived by digest; only the tag was refused
    assert dst_api.get_manifest(f"{dest}/prot/app", moved["digest"], method="HEAD").status_code == 200
    # and the source keeps replicating what the rule allows
    push_image(src_api, "e2e/prot/app", ["latest"], "free")
    pol2 = repl.make("e2e", name="prot-latest", target=tgt["id"], destination=dest, tag_filter="latest")
    repl.run_ok("e2e", pol2["id"])


# --- 5. deletes are not propagated ------------------------------------------------------------------------

def test_deletes_at_the_source_are_not_propagated(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    img = push_image(src_api, "e2e/del/app", ["v1", "v2"], "del")
    tgt = repl.berth_target("e2e", target)
    dest = new_registry(target, "del")
    pol = repl.make("e2e", name="keep", target=tgt["id"], destination=dest)
    repl.run_ok("e2e", pol["id"])
    assert_same_artifact(src_api, "e2e/del/app", dst_api, f"{dest}/del/app", "v1")

    # a tag deleted, then the whole image
    r = requests.delete(f"{source.url}/api/v1/images/e2e/del/app/tags/v2", auth=source.credentials, timeout=T)
    assert r.status_code == 204, r.text
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert tag_digest(dst_api, f"{dest}/del/app", "v2") == img["digest"], "a tag deleted at the source was deleted"
    r = requests.delete(f"{source.url}/api/v1/images/e2e/del/app", auth=source.credentials, timeout=T)
    assert r.status_code in (200, 202, 204), r.text
    assert not has_manifest(src_api, "e2e/del/app", img["digest"])
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert (done["total"], tasks) == (0, []), f"nothing is left to replicate: {done} {tasks}"
    assert sorted(dst_api.tags(f"{dest}/del/app")) == ["v1", "v2"]
    r = dst_api.get_manifest(f"{dest}/del/app", "v1")
    assert r.status_code == 200 and r.content == img["manifest"]
    for d, data in img["blobs"]:
        assert dst_api.get_blob(f"{dest}/del/app", d) == data


# --- 6. the target down, then up -------------------------------------------------------------------------

def test_target_down_fails_the_run_and_a_run_after_its_restart_succeeds(registry_factory):
    # short retries (a copy is tried twice, 1 s apart) and target re-checks every second
    source = registry_factory(env={**ENV, "BERTH_REPLICATION_RETRY_SECS": "1", "BERTH_REPLICATION_MAX_ATTEMPTS": "2",
                                   "BERTH_REPLICATION_RECHECK_SECS": "1"})
    target = registry_factory(env=ENV)
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    img = push_image(src_api, "e2e/down/app", ["v1"], "down")
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="flaky", target=tgt["id"])
    repl.wait_status("e2e", pol["id"], "Enabled")
    target.stop()
    failed, tasks = repl.run_and_wait("e2e", pol["id"])
    assert failed["status"] == "failed", f"a run against a stopped target: {failed}\n{tasks}"
    if tasks:
        assert failed["failed"] >= 1 and failed["succeeded"] == 0, failed
        for t in tasks:
            assert t["status"] == "failed" and t["error"], t
            assert str(target.port) in t["error"] or "connect" in t["error"].lower(), \
                f"the task's error does not say what failed: {t}"
    else:
        assert failed["error"], f"a failed execution without tasks records no error: {failed}"
    # a policy made while the target is down is Disabled, "target unreachable: …", until it answers
    other = repl.make("e2e", name="made-while-down", target=tgt["id"])
    deadline = time.monotonic() + ENABLED_WAIT
    while True:
        down = repl.get("e2e", other["id"]).json()
        assert down["status"] == "Disabled", f"Enabled with its target down: {down}"
        if down["status_reason"] != "checking the target" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert down["enabled"] is True and down["status_reason"].startswith("target unreachable"), down
    assert isinstance(down["target_checked_at"], int), down

    target.start()
    up = repl.wait_status("e2e", other["id"], "Enabled")
    assert up["status_reason"] is None and up["target_checked_at"] >= down["target_checked_at"], up
    ok, tasks = repl.run_ok("e2e", pol["id"])
    [t] = tasks
    assert (t["status"], t["digest"], t["destination"]) == ("succeeded", img["digest"], "e2e/down/app"), t
    assert_same_artifact(src_api, "e2e/down/app", dst_api, "e2e/down/app", "v1")
    execs = repl.all_executions("e2e", pol["id"])
    assert [(e["id"], e["status"]) for e in execs] == [(ok["id"], "succeeded"), (failed["id"], "failed")], execs


def test_outbound_guard_applies_at_creation_and_at_every_request(registry_factory):
    """Without BERTH_OUTBOUND_ALLOW a loopback target is refused at creation; a target created while
    loopback was allowed is refused at run time once the server runs without the allow-list, and
    nothing reaches it."""
    from recording_proxy import RecordingProxy
    target = registry_factory(env=ENV)
    plain = registry_factory()  # no allow-list
    assert "BERTH_OUTBOUND_ALLOW" not in plain.environment()
    for url in (target.url, f"http://localhost:{target.port}", "http://[::1]:5000", "http://169.254.169.254/"):
        r = Repl(plain).create_target("e2e", name=unique("loop-"), kind="berth", url=url)
        assert_refused(r, 400, ("INVALID_REQUEST", "OUTBOUND_REFUSED"), "127.0.0.1", "::1", "169.254.169.254",
                       what=f"a target at {url} without the allow-list")
    assert Repl(plain).list_targets("e2e").json()["items"] == []

    fast = {"BERTH_REPLICATION_RETRY_SECS": "1", "BERTH_REPLICATION_MAX_ATTEMPTS": "2"}
    source = registry_factory(env={**ENV, **fast})
    proxy = RecordingProxy(target.port)
    try:
        repl = Repl(source, watch=[target])
        push_image(Api(source), "e2e/guard/app", ["v1"], "guard")
        tgt = repl.berth_target("e2e", target, url=f"http://{proxy.host}")
        pol = repl.make("e2e", name="was-allowed", target=tgt["id"])
        repl.wait_status("e2e", pol["id"], "Enabled")
        source.stop()
        source.extra_env = dict(fast)
        source.start()
        time.sleep(1)
        proxy.clear()
        failed, tasks = repl.run_and_wait("e2e", pol["id"])
        assert failed["status"] == "failed", f"a run to a target no longer allowed: {failed} {tasks}"
        errors = " ".join([failed["error"] or ""] + [t["error"] or "" for t in tasks])
        assert "127.0.0.1" in errors, f"the error does not name the refused address: {failed} {tasks}"
        assert proxy.records == [], "a refused target was contacted:\n" + proxy.summary()
        assert catalog(Api(target), "e2e") == []
    finally:
        proxy.close()


def test_schedule_trigger_runs_on_its_cron(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    img = push_image(src_api, "e2e/cron/app", ["v1"], "cron")
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="every-minute", target=tgt["id"], trigger={"type": "schedule", "cron": "* * * * *"})
    assert pol["trigger"] == {"type": "schedule", "cron": "* * * * *"}, pol
    deadline = time.monotonic() + 150
    execs = []
    while time.monotonic() < deadline:
        execs = repl.all_executions("e2e", pol["id"])
        if any(e["status"] != "running" for e in execs):
            break
        time.sleep(1)
    done = [e for e in execs if e["status"] != "running"]
    assert done, f"no scheduled execution finished within 150 s: {execs}\n" + logs(source, target)
    e = done[-1]  # the first one
    assert (e["trigger"], e["status"], e["total"], e["succeeded"]) == ("schedule", "succeeded", 1, 1), e
    assert tag_digest(dst_api, "e2e/cron/app", "v1") == img["digest"]
    assert_same_artifact(src_api, "e2e/cron/app", dst_api, "e2e/cron/app", "v1")


def test_wrong_credentials_disable_the_policy_and_fail_its_runs(source, target):
    src_api = Api(source)
    repl = Repl(source, watch=[target])
    push_image(src_api, "e2e/creds/app", ["v1"], "creds")
    bad = repl.make_target("e2e", name="bad-password", kind="berth", url=target.url,
                           username=target.credentials[0], password="not-the-secret")
    pol = repl.make("e2e", name="bad", target=bad["id"])
    deadline = time.monotonic() + ENABLED_WAIT
    while True:
        seen = repl.get("e2e", pol["id"]).json()
        assert seen["status"] == "Disabled", f"Enabled although the target refuses the credentials: {seen}"
        if seen["status_reason"] != "checking the target" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert seen["status_reason"].startswith("target unreachable"), seen
    failed, tasks = repl.run_and_wait("e2e", pol["id"])
    assert failed["status"] == "failed" and failed["succeeded"] == 0, (failed, tasks)
    errors = " ".join([failed["error"] or ""] + [t["error"] or "" for t in tasks])
    assert "401" in errors or "auth" in errors.lower(), f"the error does not say the login failed: {failed} {tasks}"
    assert catalog(Api(target), "e2e") == [], "something reached the target with a wrong password"
    # the right password (PATCH) makes it usable
    r = repl.patch_target("e2e", bad["id"], password=target.credentials[1])
    assert r.status_code == 200 and r.json()["password_set"] is True, r.text
    repl.wait_status("e2e", pol["id"], "Enabled")
    repl.run_ok("e2e", pol["id"])
    assert_same_artifact(src_api, "e2e/creds/app", Api(target), "e2e/creds/app", "v1")


def test_registry_wide_target_generic_kind_and_nested_destination(source, target):
    """A policy using an `_all` target of kind "registry" (plain OCI, here a Berth) and a destination
    with several path segments."""
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    img = push_image(src_api, "e2e/app", ["v1"], "wide")
    dest = new_registry(target, "wide")
    glob = repl.make_target("_all", name=unique("wide-"), kind="registry", url=target.url,
                            username=target.credentials[0], password=target.credentials[1])
    try:
        pol = repl.make("e2e", name="wide", target=glob["id"], destination=f"{dest}/nested/deeper")
        repl.wait_status("e2e", pol["id"], "Enabled")
        done, [t] = repl.run_ok("e2e", pol["id"])
        assert (t["source"], t["destination"], t["digest"], t["tags"]) == \
            ("e2e/app", f"{dest}/nested/deeper/app", img["digest"], ["v1"]), t
        assert_same_artifact(src_api, "e2e/app", dst_api, f"{dest}/nested/deeper/app", "v1")
        assert repl.delete("e2e", pol["id"]).status_code == 204
    finally:
        repl.delete_target("_all", glob["id"])


# --- 7. a multi-platform index ------------------------------------------------------------------------------

def push_index(api: Api, repo: str, tag: str) -> tuple[dict, list[dict]]:
    children = []
    for arch in ("amd64", "arm64"):
        layer = tar_gz({f"{arch}.bin": random_bytes(30_000)})
        config = image_config(arch=arch, diff_ids=[digest(layer)])
        api.push_blob(repo, config)
        api.push_blob(repo, layer)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER_GZIP, layer)]}, indent=2).encode()
        r = api.put_manifest(repo, digest(body), body, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        children.append(descriptor(OCI_MANIFEST, body, platform={"architecture": arch, "os": "linux"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, indent=3).encode()
    r = api.put_manifest(repo, tag, index, OCI_INDEX)
    assert r.status_code == 201, r.text
    return {"digest": digest(index), "manifest": index}, children


def test_multi_platform_index_travels_with_its_children(source, target, tmp_path, skopeo):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    index, children = push_index(src_api, "e2e/multi/app", "multi")
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="multi", target=tgt["id"], tag_filter="multi")
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert [(t["digest"], t["tags"], t["status"]) for t in tasks] == [(index["digest"], ["multi"], "succeeded")], \
        f"one task for the index (its children travel with it): {tasks}"
    checked = assert_same_artifact(src_api, "e2e/multi/app", dst_api, "e2e/multi/app", "multi")
    assert checked == [index["digest"]] + [c["digest"] for c in children]
    for c in children:
        r = dst_api.get_manifest("e2e/multi/app", c["digest"])
        assert r.status_code == 200 and digest(r.content) == c["digest"], f"child {c['digest']} at the target"
    # skopeo copies the whole index back from the target
    out = OciLayout(tmp_path / "back")
    run([*skopeo, "copy", "--all", "--preserve-digests", *skopeo_creds(target, "src"),
         f"docker://{target.host}/e2e/multi/app:multi", f"oci:{out.root}:multi"], timeout=300)
    assert out.ref_descriptor("multi")["digest"] == index["digest"]
    assert out.blob_path(index["digest"]).read_bytes() == index["manifest"]
    for c in children:
        assert out.blob_path(c["digest"]).exists(), f"skopeo did not get child {c['digest']}"

    # a Docker manifest list (schema 2 media types) travels the same way
    layer = tar_gz({"docker.bin": random_bytes(20_000)})
    config = image_config(diff_ids=[digest(layer)])
    src_api.push_blob("e2e/multi/docker", layer)
    src_api.push_blob("e2e/multi/docker", config)
    child = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                        "config": descriptor(DOCKER_CONFIG, config),
                        "layers": [descriptor(DOCKER_LAYER, layer)]}).encode()
    assert src_api.put_manifest("e2e/multi/docker", digest(child), child, DOCKER_MANIFEST).status_code == 201
    mlist = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        descriptor(DOCKER_MANIFEST, child, platform={"architecture": "amd64", "os": "linux"})]}).encode()
    assert src_api.put_manifest("e2e/multi/docker", "multi", mlist, DOCKER_LIST).status_code == 201
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert [(t["source"], t["digest"], t["status"]) for t in tasks if t["status"] != "skipped"] == \
        [("e2e/multi/docker", digest(mlist), "succeeded")], tasks
    checked = assert_same_artifact(src_api, "e2e/multi/docker", dst_api, "e2e/multi/docker", "multi")
    assert checked == [digest(mlist), digest(child)]


# --- 8. referrers and cosign tags travel with their subject -----------------------------------------------

def push_referrers(api: Api, repo: str, subject: dict) -> dict:
    """An SBOM (subject + artifactType application/spdx+json) and a cosign-style signature under
    the `sha256-<hex>.sig` tag. Returns dict(sbom=digest, sbom_body, sig=digest, sig_body, sig_tag)."""
    api.push_blob(repo, b"{}")
    sbom_doc = json.dumps({"spdxVersion": "SPDX-2.3", "name": uuid.uuid4().hex}).encode()
    api.push_blob(repo, sbom_doc)
    subj = {"mediaType": OCI_MANIFEST, "digest": subject["digest"], "size": len(subject["manifest"])}
    sbom = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX,
                       "config": {"mediaType": OCI_EMPTY, "digest": OCI_EMPTY_DIGEST, "size": 2},
                       "layers": [descriptor(SPDX, sbom_doc)], "subject": subj,
                       "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}}).encode()
    r = api.put_manifest(repo, digest(sbom), sbom, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    payload = json.dumps({"critical": {"identity": {"docker-reference": repo},
                                       "image": {"docker-manifest-digest": subject["digest"]},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest(payload)]}}).encode()
    api.push_blob(repo, payload)
    api.push_blob(repo, config)
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                      "layers": [descriptor(COSIGN_LAYER, payload, annotations={
                          COSIGN_SIG_ANNOTATION: base64.b64encode(random_bytes(70)).decode()})]}).encode()
    sig_tag = "sha256-" + subject["digest"].split(":", 1)[1] + ".sig"
    r = api.put_manifest(repo, sig_tag, sig, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    # an attestation under the `.att` tag (an in-toto envelope layer)
    att_tag = "sha256-" + subject["digest"].split(":", 1)[1] + ".att"
    att = push_image(api, repo, [att_tag], "att", layers=[json.dumps({
        "payloadType": "application/vnd.in-toto+json", "payload": base64.b64encode(random_bytes(64)).decode(),
        "signatures": []}).encode()])
    return {"sbom": digest(sbom), "sbom_body": sbom, "sig": digest(sig), "sig_body": sig, "sig_tag": sig_tag,
            "att": att["digest"], "att_tag": att_tag}


def referrers(api: Api, repo: str, d: str) -> list[dict]:
    r = api.get(f"/v2/{repo}/referrers/{d}")
    assert r.status_code == 200, f"referrers of {repo}@{d} on {api.base}: {r.status_code} {r.text[:300]}"
    return r.json()["manifests"]


def test_referrers_and_cosign_tags_travel_with_their_subject(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    repo = "e2e/signed/app"
    subject = push_image(src_api, repo, ["v1"], "subject")
    refs = push_referrers(src_api, repo, subject)
    dev = push_image(src_api, repo, ["dev"], "dev")  # not matched by the tag filter: nor its referrers
    dev_refs = push_referrers(src_api, repo, dev)
    tgt = repl.berth_target("e2e", target)
    dest = new_registry(target, "sig")
    pol = repl.make("e2e", name="signed", target=tgt["id"], destination=dest, tag_filter="v*")
    done, tasks = repl.run_ok("e2e", pol["id"])
    by_digest = {t["digest"]: t for t in tasks if t["status"] == "succeeded"}
    assert subject["digest"] in by_digest, f"the subject was not replicated: {tasks}"
    assert by_digest[subject["digest"]]["tags"] == ["v1"], tasks
    assert by_digest[subject["digest"]]["referrers"] >= 1, f"the subject's task counts no referrer: {tasks}"
    assert dev["digest"] not in by_digest, tasks

    drepo = f"{dest}/signed/app"
    assert_same_artifact(src_api, repo, dst_api, drepo, "v1")
    listed = {m["digest"]: m for m in referrers(dst_api, drepo, subject["digest"])}
    assert refs["sbom"] in listed, f"the SBOM is not among the target's referrers: {listed}"
    assert listed[refs["sbom"]]["artifactType"] == SPDX, listed[refs["sbom"]]
    assert_same_artifact(src_api, repo, dst_api, drepo, refs["sbom"])
    # the cosign signature tag came along although "v*" does not match it
    assert tag_digest(dst_api, drepo, refs["sig_tag"]) == refs["sig"], f"{refs['sig_tag']} is not at the target"
    assert_same_artifact(src_api, repo, dst_api, drepo, refs["sig_tag"])
    assert tag_digest(dst_api, drepo, refs["att_tag"]) == refs["att"], f"{refs['att_tag']} is not at the target"
    assert_same_artifact(src_api, repo, dst_api, drepo, refs["att_tag"])
    assert sorted(dst_api.tags(drepo)) == sorted(["v1", refs["sig_tag"], refs["att_tag"]]), dst_api.tags(drepo)
    # nothing of the unmatched image
    for d in (dev["digest"], dev_refs["sbom"], dev_refs["sig"], dev_refs["att"]):
        assert not has_manifest(dst_api, drepo, d), f"{d} of the unmatched image reached the target"
    assert referrers(dst_api, drepo, dev["digest"]) == []


# --- 9. CNCF distribution as the target ----------------------------------------------------------------------

def test_replication_to_cncf_distribution(source, distribution, tmp_path, skopeo):
    src_api, dist_api = Api(source), Api(distribution)
    repl = Repl(source, watch=[distribution])
    img = push_image(src_api, "e2e/dist/app", ["v1"], "dist",
                     layers=[tar_gz({"a": random_bytes(2 * MIB + 5)}), tar_gz({"b": random_bytes(1000)})])
    index, children = push_index(src_api, "e2e/dist/multi", "m1")
    body = {"name": "cncf", "url": distribution.url}  # kind defaults to "registry"
    if distribution.credentials:
        body.update(username=distribution.credentials[0], password=distribution.credentials[1])
        # unauthenticated access is refused there: the credentials are needed
        assert requests.get(f"{distribution.url}/v2/", timeout=T).status_code == 401
    tgt = repl.make_target("e2e", **body)
    assert (tgt["kind"], tgt["password_set"]) == ("registry", bool(distribution.credentials)), tgt
    pol = repl.make("e2e", name="to-cncf", target=tgt["id"], destination="mirror", name_filter="dist/**")
    repl.wait_status("e2e", pol["id"], "Enabled")
    done, tasks = repl.run_ok("e2e", pol["id"])
    assert task_keys(tasks) == {("e2e/dist/app", "mirror/dist/app", img["digest"], ("v1",)),
                                ("e2e/dist/multi", "mirror/dist/multi", index["digest"], ("m1",))}, tasks
    assert_same_artifact(src_api, "e2e/dist/app", dist_api, "mirror/dist/app", "v1")
    assert_same_artifact(src_api, "e2e/dist/multi", dist_api, "mirror/dist/multi", "m1")
    got = skopeo_to_dir(skopeo, distribution, "mirror/dist/app:v1", tmp_path / "from-cncf")
    assert digest(got["manifest"]) == img["digest"] and got["manifest"] == img["manifest"]
    for d, data in img["blobs"]:
        assert got.get(d) == data, f"blob {d} pulled back from distribution differs"
    # a second run finds everything there
    again, tasks = repl.run_ok("e2e", pol["id"])
    assert all(t["status"] == "skipped" and t["bytes"] == 0 for t in tasks) and again["skipped"] == 2, tasks


# --- 10. a 200 MiB layer, streamed ----------------------------------------------------------------------------

def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Resets VmHWM to the current RSS (clear_refs 5, Linux >= 4.0); False if not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def push_big_blob(api: Api, repo: str, size: int, chunk: int = 16 * MIB) -> str:
    loc = api.new_session(repo)
    h, off = hashlib.sha256(), 0
    while off < size:
        n = min(chunk, size - off)
        data = random_bytes(n)
        h.update(data)
        r = api.patch(loc, data=data, headers={"Content-Type": "application/octet-stream",
                                               "Content-Range": f"{off}-{off + n - 1}"})
        assert r.status_code == 202, f"PATCH {off}: {r.status_code} {r.text}"
        loc = api.url(r.headers["Location"])
        off += n
    d = "sha256:" + h.hexdigest()
    r = api.put(loc, params={"digest": d}, headers={"Content-Length": "0"})
    assert r.status_code == 201, f"PUT ?digest: {r.status_code} {r.text}"
    return d


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_200_mib_layer_replicates_with_flat_memory(source, target):
    src_api, dst_api = Api(source), Api(target)
    repl = Repl(source, watch=[target])
    repo = "e2e/big/app"
    size = 200 * MIB + 4321
    big = push_big_blob(src_api, repo, size)
    config = image_config(diff_ids=[big])
    src_api.push_blob(repo, config)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": big, "size": size}]}).encode()
    r = src_api.put_manifest(repo, "big", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    tgt = repl.berth_target("e2e", target)
    pol = repl.make("e2e", name="big", target=tgt["id"])
    repl.wait_status("e2e", pol["id"], "Enabled")

    pid, tpid = source.pid, target.pid
    reset = reset_peak_rss(pid) and reset_peak_rss(tpid)
    before, tbefore = proc_kib(pid, "VmHWM"), proc_kib(tpid, "VmHWM")
    t0 = time.monotonic()
    done, [task] = repl.run_ok("e2e", pol["id"], timeout=600)
    took = time.monotonic() - t0
    after, tafter = proc_kib(pid, "VmHWM"), proc_kib(tpid, "VmHWM")
    growth = (after - before) / 1024
    print(f"\n200 MiB replication: {took:.1f} s; source peak RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB "
          f"(+{growth:.0f}); target {tbefore / 1024:.0f} -> {tafter / 1024:.0f} MiB (peak reset: {reset})")
    assert growth < 100, (f"the source's peak RSS grew by {growth:.0f} MiB replicating a 200 MiB layer "
                          f"({before} -> {after} KiB): the blob is buffered, not streamed")
    assert task["bytes"] >= size and task["blobs_sent"] == 2, task
    h = dst_api.head(f"/v2/{repo}/blobs/{big}")
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == size, (h.status_code, dict(h.headers))
    assert stream_digest(dst_api, repo, big) == (big, size)
    r = dst_api.get_manifest(repo, "big")
    assert r.status_code == 200 and r.content == body


# --- 11. validation -----------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_bad_input_gets_400s_naming_the_field(source, target):
    repl = Repl(source)
    good_t = {"name": "good", "kind": "berth", "url": target.url}
    bad_targets = [
        ({**good_t, "name": ""}, ("name",)),
        ({**good_t, "name": "bad/name"}, ("name",)),
        ({**good_t, "name": "n" * 300}, ("name",)),
        ({**good_t, "kind": "harbor"}, ("kind", "harbor")),
        ({**good_t, "url": "ftp://127.0.0.1:5000/"}, ("url",)),
        ({**good_t, "url": "not a url"}, ("url",)),
        ({**good_t, "url": ""}, ("url",)),
        ({**good_t, "url": "file:///etc/passwd"}, ("url",)),
        ({**good_t, "url": "http://169.254.169.254/"}, ("169.254.169.254", "url")),
        ({**good_t, "url": "http://10.1.2.3:5000/"}, ("10.1.2.3", "url")),
        ({**good_t, "chunk_bytes": MIB - 1}, ("chunk_bytes",)),
        ({**good_t, "chunk_bytes": 64 * MIB + 1}, ("chunk_bytes",)),
        ({**good_t, "chunk_bytes": "big"}, ("chunk_bytes", "big")),
        ({**good_t, "skip_tls_verify": "yes"}, ("skip_tls_verify", "yes")),
        ({**good_t, "passwrd": "typo"}, ("passwrd",)),
        ({**good_t, "password_set": True}, ("password_set",)),
        ({"name": "nourl", "kind": "berth"}, ("url",)),
        ({"url": target.url}, ("name",)),
    ]
    for body, names in bad_targets:
        codes = ("INVALID_REQUEST", "OUTBOUND_REFUSED") if "169.254.169.254" in names or "10.1.2.3" in names \
            else "INVALID_REQUEST"
        assert_refused(repl.create_target("e2e", **body), 400, codes, *names, what=f"POST target {body}")
    r = repl.req("POST", repl.tpath("e2e"), data=b"{not json", headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "INVALID_REQUEST", what="POST target of invalid JSON")
    assert repl.list_targets("e2e").json()["items"] == [], "a refused target was stored"
    # the chunk size limits themselves are fine
    assert repl.make_target("e2e", name="min", url=target.url, chunk_bytes=MIB)["chunk_bytes"] == MIB
    tgt = repl.make_target("e2e", name="max", url=target.url, chunk_bytes=64 * MIB)
    assert tgt["chunk_bytes"] == 64 * MIB and tgt["kind"] == "registry" and tgt["password_set"] is False, tgt
    for body, names in [({"url": "ftp://x/"}, ("url",)), ({"url": "http://169.254.169.254/"}, ("169.254.169.254",)),
                        ({"kind": "quay"}, ("kind", "quay")), ({"chunk_bytes": 1}, ("chunk_bytes",)),
                        ({"colour": "red"}, ("colour",)), ({"name": ""}, ("name",))]:
        codes = ("INVALID_REQUEST", "OUTBOUND_REFUSED")
        assert_refused(repl.patch_target("e2e", tgt["id"], **body), 400, codes, *names, what=f"PATCH target {body}")
    assert repl.get_target("e2e", tgt["id"]).json() == tgt, "a refused PATCH changed the target"

    good_p = {"name": "good", "target": tgt["id"]}
    other_reg = new_registry(source, "other")
    foreign = repl.make_target(other_reg, name="foreign", url=target.url)
    bad_policies = [
        ({**good_p, "name": ""}, ("name",)),
        ({**good_p, "name": "bad/name"}, ("name",)),
        ({**good_p, "target": "rt-000000000000"}, ("target",)),
        ({**good_p, "target": "nonsense"}, ("target",)),
        ({**good_p, "target": foreign["id"]}, ("target",)),  # another registry's target
        ({"name": "no-target"}, ("target",)),
        ({**good_p, "trigger": {"type": "schedule", "cron": "61 * * * *"}}, ("cron", "trigger", "minute")),
        ({**good_p, "trigger": {"type": "schedule", "cron": "not a cron"}}, ("cron", "trigger")),
        ({**good_p, "trigger": {"type": "schedule"}}, ("cron", "trigger")),
        ({**good_p, "trigger": {"type": "hourly"}}, ("trigger", "type", "hourly")),
        ({**good_p, "trigger": "manual"}, ("trigger", "manual")),
        ({**good_p, "tag_filter_mode": "regex"}, ("tag_filter_mode", "regex")),
        ({**good_p, "name_filter": "{}"}, ("name_filter",)),
        ({**good_p, "tag_filter": "{}"}, ("tag_filter",)),
        ({**good_p, "tag_filter": "{v1,v2"}, ("tag_filter",)),
        ({**good_p, "name_filter": "a" * 300}, ("name_filter",)),
        ({**good_p, "override": "yes"}, ("override", "yes")),
        ({**good_p, "colour": "red"}, ("colour",)),
        ({**good_p, "status": "Enabled"}, ("status",)),
    ]
    for body, names in bad_policies:
        assert_refused(repl.create("e2e", **body), 400, "INVALID_REQUEST", *names, what=f"POST policy {body}")
    r = repl.req("POST", repl.ppath("e2e"), data=b"[1,2", headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "INVALID_REQUEST", what="POST policy of invalid JSON")
    assert repl.list("e2e").json()["items"] == [], "a refused policy was stored"

    pol = repl.make("e2e", **good_p, trigger={"type": "schedule", "cron": "0 3 * * *"})
    assert pol["trigger"] == {"type": "schedule", "cron": "0 3 * * *"}, pol
    for body, names in [({"tag_filter_mode": "all"}, ("tag_filter_mode", "all")),
                        ({"name_filter": "{}"}, ("name_filter",)),
                        ({"trigger": {"type": "schedule", "cron": "0 25 * * *"}}, ("cron", "trigger", "hour")),
                        ({"target": "rt-000000000000"}, ("target",)), ({"colour": "red"}, ("colour",))]:
        assert_refused(repl.patch("e2e", pol["id"], **body), 400, "INVALID_REQUEST", *names,
                       what=f"PATCH policy {body}")
    assert {k: v for k, v in repl.get("e2e", pol["id"]).json().items() if k not in ("status", "status_reason",
                                                                                   "target_checked_at")} == \
        {k: v for k, v in pol.items() if k not in ("status", "status_reason", "target_checked_at")}, \
        "a refused PATCH changed the policy"

    # a target in use cannot be deleted; once its policy is gone it can
    assert_refused(repl.delete_target("e2e", tgt["id"]), 409, ("CONFLICT", "ALREADY_EXISTS"),
                   what="DELETE of a target in use")
    assert repl.get_target("e2e", tgt["id"]).status_code == 200
    assert repl.delete("e2e", pol["id"]).status_code == 204
    r = repl.delete_target("e2e", tgt["id"])
    assert r.status_code == 204 and r.content == b"", r.text
    assert_refused(repl.get_target("e2e", tgt["id"]), 404, "NOT_FOUND")


@pytest.mark.edge_only
def test_crud_scopes_duplicates_and_unknown_ids(source, target):
    repl = Repl(source, watch=[target])
    before = int(time.time())
    t_local = repl.berth_target("e2e", target, name="local")
    glob = repl.berth_target("_all", target, name=unique("global-"), skip_tls_verify=True)
    assert glob["registry"] == "_all" and glob["skip_tls_verify"] is True, glob
    assert before - 1 <= t_local["created_at"] == t_local["updated_at"] <= time.time() + 1, t_local
    try:
        assert repl.get_target("e2e", t_local["id"]).json() == t_local
        listed = repl.list_targets("e2e").json()
        assert set(listed) == {"items", "next"} and [t["id"] for t in listed["items"]] == [t_local["id"]], listed
        assert glob["id"] in [t["id"] for t in repl.list_targets("_all").json()["items"]]
        assert_refused(repl.get_target("e2e", glob["id"]), 404, "NOT_FOUND", what="an _all target under e2e")
        # duplicate names in one scope: 409
        assert_refused(repl.create_target("e2e", name="local", url=target.url), 409, ("ALREADY_EXISTS", "CONFLICT"),
                       what="a duplicate target name")
        # a policy of e2e may use an _all target
        p_glob = repl.make("e2e", name="via-global", target=glob["id"], trigger={"type": "event"}, enabled=False)
        assert (p_glob["target"], p_glob["enabled"], p_glob["status"]) == (glob["id"], False, "Disabled"), p_glob
        assert p_glob["status_reason"] == "disabled", p_glob
        assert_refused(repl.run("e2e", p_glob["id"]), 409, ("CONFLICT",), what="running a disabled policy")
        assert repl.all_executions("e2e", p_glob["id"]) == [], "a refused run left an execution"
        p = repl.make("e2e", name="full", target=t_local["id"], description="every field", destination="team-dr",
                      name_filter="app/**", tag_filter="v*", tag_filter_mode="exclude", override=False,
                      trigger={"type": "schedule", "cron": "0 3 * * *"})
        assert (p["description"], p["destination"], p["name_filter"], p["tag_filter"], p["tag_filter_mode"],
                p["override"], p["trigger"], p["created_by"]) == \
            ("every field", "team-dr", "app/**", "v*", "exclude", False, {"type": "schedule", "cron": "0 3 * * *"},
             "admin"), p
        minimal = repl.make("e2e", name="minimal", target=t_local["id"])
        assert (minimal["destination"], minimal["trigger"], minimal["tag_filter_mode"], minimal["override"],
                minimal["enabled"], minimal["name_filter"], minimal["tag_filter"]) == \
            ("e2e", {"type": "manual"}, "match", True, True, "", ""), f"defaults: {minimal}"
        assert_refused(repl.create("e2e", name="minimal", target=t_local["id"]), 409, ("ALREADY_EXISTS", "CONFLICT"),
                       what="a duplicate policy name")
        # list, paged
        items = repl.pages(lambda **kw: repl.list("e2e", n=1, **kw), "policies")
        assert sorted(x["id"] for x in items) == sorted([p_glob["id"], p["id"], minimal["id"]]), items
        page = repl.list("e2e", n=2).json()
        assert len(page["items"]) == 2 and page["next"], page
        # PATCH
        time.sleep(1.05)
        r = repl.patch("e2e", p["id"], enabled=False, tag_filter="", name="renamed", trigger={"type": "manual"})
        assert r.status_code == 200, r.text
        changed = r.json()
        check_policy_view(changed)
        assert (changed["enabled"], changed["status"], changed["tag_filter"], changed["name"], changed["trigger"],
                changed["destination"]) == (False, "Disabled", "", "renamed", {"type": "manual"}, "team-dr"), changed
        assert changed["updated_at"] > changed["created_at"] == p["created_at"], changed
        assert repl.get("e2e", p["id"]).json() == changed
        r = repl.patch_target("e2e", t_local["id"], description="changed", chunk_bytes=2 * MIB)
        assert r.status_code == 200 and (r.json()["description"], r.json()["chunk_bytes"]) == ("changed", 2 * MIB)
        # unknown ids and registries: 404
        other = new_registry(source, "crud")
        missing_p, missing_t = "rp-000000000000", "rt-000000000000"
        for r, what in [(repl.get("e2e", missing_p), "GET policy"),
                        (repl.patch("e2e", missing_p, enabled=True), "PATCH"),
                        (repl.delete("e2e", missing_p), "DELETE"), (repl.run("e2e", missing_p), "run"),
                        (repl.executions("e2e", missing_p), "executions"),
                        (repl.get(other, p["id"]), "another registry's policy"),
                        (repl.get_target("e2e", missing_t), "GET target"),
                        (repl.delete_target("e2e", missing_t), "DELETE target"),
                        (repl.list("no-such-registry"), "policies of an unknown registry"),
                        (repl.list_targets("no-such-registry"), "targets of an unknown registry")]:
            assert_refused(r, 404, "NOT_FOUND", what=what)
        # targets are paged too
        more = [repl.make_target("e2e", name=f"page{i}", url=target.url)["id"] for i in range(2)]
        page = repl.list_targets("e2e", n=2)
        assert page.status_code == 200 and len(page.json()["items"]) == 2 and page.json()["next"], page.text
        listed = repl.pages(lambda **kw: repl.list_targets("e2e", n=2, **kw), "targets")
        assert sorted(t["id"] for t in listed) == sorted([t_local["id"], *more]), listed
        # delete: the policy's history goes with it
        minimal_run = repl.start_run("e2e", minimal["id"])
        repl.wait_execution("e2e", minimal["id"], minimal_run["id"])
        for x in (p, minimal, p_glob):
            r = repl.delete("e2e", x["id"])
            assert r.status_code == 204 and r.content == b"", r.text
        assert_refused(repl.get("e2e", p["id"]), 404, "NOT_FOUND", what="GET after DELETE")
        assert_refused(repl.delete("e2e", p["id"]), 404, "NOT_FOUND", what="DELETE twice")
        assert_refused(repl.executions("e2e", minimal["id"]), 404, "NOT_FOUND", what="history of a deleted policy")
        assert_refused(repl.execution("e2e", minimal["id"], minimal_run["id"]), 404, "NOT_FOUND",
                       what="an execution of a deleted policy")
        assert repl.list("e2e").json()["items"] == []
        assert repl.make("e2e", name="minimal", target=t_local["id"])["id"] != minimal["id"], "the name is free again"

        # deleting a registry deletes its targets and replications
        gone = new_registry(source, "gone")
        gt = repl.berth_target(gone, target)
        repl.make(gone, name="x", target=gt["id"])
        r = requests.delete(f"{source.url}/api/v1/registries/{gone}", auth=source.credentials, timeout=T)
        assert r.status_code == 204, r.text
        r = requests.post(f"{source.url}/api/v1/registries", json={"name": gone}, auth=source.credentials, timeout=T)
        assert r.status_code == 201, r.text
        assert repl.list(gone).json()["items"] == [] and repl.list_targets(gone).json()["items"] == []
        assert_refused(repl.get_target(gone, gt["id"]), 404, "NOT_FOUND", what="a deleted registry's target")
    finally:
        repl.delete_target("_all", glob["id"])


# --- 12. roles ---------------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_viewers_and_uploaders_see_but_cannot_change_or_run(source, target):
    admin = Repl(source, watch=[target])
    push_image(Api(source), "e2e/roles/app", ["v1"], "roles")
    tgt = admin.berth_target("e2e", target)
    pol = admin.make("e2e", name="watched", target=tgt["id"])
    done, tasks = admin.run_ok("e2e", pol["id"])
    glob = admin.berth_target("_all", target, name=unique("roles-"))
    try:
        for role in ("service-viewer", "image-uploader"):
            _, key = new_user(source, role)
            who = Repl(source, auth=key)
            assert who.get_target("e2e", tgt["id"]).json() == tgt, role
            assert [t["id"] for t in who.list_targets("e2e").json()["items"]] == [tgt["id"]], role
            assert glob["id"] in [t["id"] for t in who.list_targets("_all").json()["items"]], role
            shown = who.get("e2e", pol["id"])
            assert shown.status_code == 200 and shown.json()["id"] == pol["id"], (role, shown.text)
            assert pol["id"] in [p["id"] for p in who.list("e2e").json()["items"]], role
            assert [e["id"] for e in who.all_executions("e2e", pol["id"])] == [done["id"]], role
            assert who.execution("e2e", pol["id"], done["id"]).json() == done, role
            assert who.all_tasks("e2e", pol["id"], done["id"]) == tasks, role
            for r, what in [
                (who.create_target("e2e", name="mine", url=target.url), "create target"),
                (who.patch_target("e2e", tgt["id"], description="x"), "PATCH target"),
                (who.delete_target("e2e", tgt["id"]), "DELETE target"),
                (who.create_target("_all", name="mine", url=target.url), "create an _all target"),
                (who.create("e2e", name="mine", target=tgt["id"]), "create policy"),
                (who.patch("e2e", pol["id"], enabled=False), "PATCH policy"),
                (who.delete("e2e", pol["id"]), "DELETE policy"),
                (who.run("e2e", pol["id"]), "run"),
            ]:
                assert_refused(r, 403, "DENIED", what=f"{role}: {what}")
            assert target.credentials[1] not in who.list_targets("e2e").text
        assert [e["id"] for e in admin.all_executions("e2e", pol["id"])] == [done["id"]], "a refused run ran"
        assert admin.get_target("e2e", tgt["id"]).json() == tgt
        assert [p["id"] for p in admin.list("e2e").json()["items"]] == [pol["id"]]

        # an administrator of one registry manages its replications but not the _all targets
        mine = new_registry(source, "own")
        _, pkey = new_user(source, "project-admin", registries=[mine])
        padmin = Repl(source, auth=pkey)
        own_t = padmin.berth_target(mine, target)
        own_p = padmin.make(mine, name="own", target=own_t["id"])
        assert own_p["created_by"] != "admin", own_p
        assert_refused(padmin.list_targets("_all"), 403, "DENIED", what="a one-registry admin listing _all targets")
        assert_refused(padmin.create_target("_all", name="x", url=target.url), 403, "DENIED",
                       what="a one-registry admin creating an _all target")
        r = padmin.list("e2e")
        assert r.status_code in (403, 404), f"a one-registry admin listed another registry's policies: {r.status_code}"
        # a shared target's credentials push wherever they reach: only an administrator over every
        # registry points a policy at one, or changes such a policy
        assert_refused(padmin.create(mine, name="via-shared", target=glob["id"]), 403, "DENIED",
                       what="a one-registry admin using an _all target")
        shared_p = admin.make(mine, name="shared", target=glob["id"])
        assert_refused(padmin.patch(mine, shared_p["id"], destination="elsewhere"), 403, "DENIED",
                       what="a one-registry admin redirecting a policy that uses an _all target")
        assert_refused(padmin.patch(mine, own_p["id"], target=glob["id"]), 403, "DENIED",
                       what="a one-registry admin moving a policy onto an _all target")
        assert admin.get(mine, shared_p["id"]).json()["destination"] == mine
        assert admin.get(mine, own_p["id"]).json()["target"] == own_t["id"]
        admin.delete(mine, shared_p["id"])
    finally:
        admin.delete_target("_all", glob["id"])


# --- 13. the target password --------------------------------------------------------------------------------

@pytest.mark.embedded_only
def test_target_password_is_never_returned_nor_stored_in_plain_text(source, target):
    src_api = Api(source)
    repl = Repl(source, watch=[target])
    dest = new_registry(target, "sec")
    _, (access, secret) = new_user(target, "project-admin", registries=[dest])
    push_image(src_api, "e2e/secret/app", ["v1"], "sec")
    created = repl.make_target("e2e", name="sec", kind="berth", url=target.url, username=access, password=secret)
    assert created["password_set"] is True and created["username"] == access, created
    pol = repl.make("e2e", name="sec", target=created["id"], destination=dest)
    done, [task] = repl.run_ok("e2e", pol["id"])  # the stored password works
    assert task["status"] == "succeeded" and tag_digest(Api(target), f"{dest}/secret/app", "v1") == task["digest"]
    answers = [repl.get_target("e2e", created["id"]), repl.list_targets("e2e"),
               repl.patch_target("e2e", created["id"], description="d")]
    for r in answers:
        assert r.status_code == 200, r.text
        assert secret not in r.text and '"password"' not in r.text, f"the password is shown: {r.text}"
    assert answers[0].json()["password_set"] is True and answers[2].json()["password_set"] is True

    # neither the metadata database (with its WAL) nor any other file of the data dir holds it
    needle = secret.encode()
    leaks = []
    for f in source.data_dir.rglob("*"):
        if f.is_file() and needle in f.read_bytes():
            leaks.append(str(f.relative_to(source.data_dir)))
    assert (source.data_dir / "meta.db").is_file()
    assert not leaks, f"the target password is stored in plain text in {leaks}"
    assert secret not in source.log_path.read_text(errors="replace"), "the password is in the server log"

    # a new password replaces it; "" removes it
    r = repl.patch_target("e2e", created["id"], password="")
    assert r.status_code == 200 and r.json()["password_set"] is False, r.text
    r = repl.patch_target("e2e", created["id"], password=secret)
    assert r.status_code == 200 and r.json()["password_set"] is True, r.text
    assert "password" not in r.json()


# --- 14. the CLI ---------------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_replication_cli_end_to_end(source, target, tmp_path):
    from test_cli import Cli, server_error
    cli = Cli(source, tmp_path / "cli-home")
    cli.login(*source.credentials)
    repl = Repl(source, watch=[target])
    src_api, dst_api = Api(source), Api(target)
    img = push_image(src_api, "e2e/cli/app", ["v1", "dev"], "cli")
    dest = new_registry(target, "cli")

    def items(out):
        return out["items"] if isinstance(out, dict) and "items" in out else out

    user, password = target.credentials
    t = cli.ok("replication", "target", "add", "e2e", "dr", "--url", target.url, "--kind", "berth",
               "--username", user, "--password-stdin", "--chunk-bytes", str(2 * MIB), "--description", "from cli",
               stdin=password + "\n")
    check_target_view(t)
    assert (t["name"], t["kind"], t["url"], t["username"], t["password_set"], t["chunk_bytes"], t["description"]) == \
        ("dr", "berth", target.url, user, True, 2 * MIB, "from cli"), t
    assert password not in json.dumps(t)
    assert items(cli.ok("replication", "target", "ls", "e2e")) == repl.list_targets("e2e").json()["items"]
    assert cli.ok("replication", "target", "show", "e2e", t["id"]) == repl.get_target("e2e", t["id"]).json()
    text = cli.text("replication", "target", "ls", "e2e")
    assert t["id"] in text and "dr" in text and password not in text, text

    p = cli.ok("replication", "add", "e2e", "to-dr", "--target", t["id"], "--destination", dest,
               "--name-filter", "cli/**", "--tag-filter", "v*")
    check_policy_view(p)
    assert (p["name"], p["target"], p["destination"], p["name_filter"], p["tag_filter"], p["tag_filter_mode"],
            p["trigger"], p["override"], p["enabled"]) == \
        ("to-dr", t["id"], dest, "cli/**", "v*", "match", {"type": "manual"}, True, True), p
    q = cli.ok("replication", "add", "e2e", "nightly", "--target", t["id"], "--exclude-tags", "--tag-filter", "dev",
               "--trigger", "schedule", "--cron", "0 3 * * *", "--no-override", "--disabled")
    assert (q["tag_filter_mode"], q["trigger"], q["override"], q["enabled"]) == \
        ("exclude", {"type": "schedule", "cron": "0 3 * * *"}, False, False), q
    listed = items(cli.ok("replication", "ls", "e2e"))
    assert sorted(x["id"] for x in listed) == sorted([p["id"], q["id"]]), listed
    shown = cli.ok("replication", "show", "e2e", p["id"])
    assert shown["id"] == p["id"] and shown["destination"] == dest, shown
    text = cli.text("replication", "ls", "e2e")
    assert p["id"] in text and "to-dr" in text and "nightly" in text, text

    out = cli.ok("replication", "run", "e2e", p["id"], "--wait")
    done = out.get("execution", out)
    check_execution_view(done)
    assert (done["status"], done["trigger"], done["total"], done["succeeded"]) == ("succeeded", "manual", 1, 1), out
    assert tag_digest(dst_api, f"{dest}/cli/app", "v1") == img["digest"]
    assert tag_digest(dst_api, f"{dest}/cli/app", "dev") is None
    history = items(cli.ok("replication", "history", "e2e", p["id"]))
    assert [e["id"] for e in history] == [done["id"]] and history[0]["status"] == "succeeded", history
    out = cli.ok("replication", "history", "e2e", p["id"], done["id"])
    if isinstance(out, dict) and "tasks" in out:  # the execution with its tasks
        assert out.get("execution", done)["id"] == done["id"], out
        out = out["tasks"]
    tasks = items(out)
    assert [(x["digest"], x["tags"], x["status"]) for x in tasks] == [(img["digest"], ["v1"], "succeeded")], tasks
    text = cli.text("replication", "history", "e2e", p["id"])
    assert done["id"] in text and "succeeded" in text, text
    text = cli.text("replication", "history", "e2e", p["id"], done["id"])
    assert "cli/app" in text and "succeeded" in text, text

    # enable/disable; a run without --wait answers at once with the running execution
    assert cli.ok("replication", "disable", "e2e", p["id"])["enabled"] is False
    assert server_error(cli.fails(1, "replication", "run", "e2e", p["id"]))["code"] == "CONFLICT"
    assert cli.ok("replication", "enable", "e2e", p["id"])["enabled"] is True
    started = cli.ok("replication", "run", "e2e", p["id"])
    started = started.get("execution", started)
    assert started["status"] == "running", started
    finished = repl.wait_execution("e2e", p["id"], started["id"])
    assert finished["status"] == "succeeded" and finished["skipped"] == 1, finished

    # errors: the server's refusals exit 1 with its error, usage errors exit 2
    assert server_error(cli.fails(1, "replication", "show", "e2e", "rp-000000000000"))["code"] == "NOT_FOUND"
    bad = cli.run("replication", "add", "e2e", "bad", "--target", t["id"], "--tag-filter", "{}")
    assert bad.returncode in (1, 2) and ("tag_filter" in bad.stderr or "tag-filter" in bad.stderr), bad.stderr
    if bad.returncode == 1:
        assert server_error(bad)["code"] == "INVALID_REQUEST", bad.stderr
    p2 = cli.run("replication", "target", "add", "e2e", "bad", "--url", "ftp://127.0.0.1/")
    assert p2.returncode in (1, 2) and "url" in p2.stderr.lower(), p2.stderr
    cli.fails(2, "replication", "add", "e2e", "no-target")  # --target is required
    cli.fails(2, "replication", "target", "add", "e2e", "nourl")  # --url is required
    cli.fails(2, "replication", "frobnicate", "e2e")
    assert server_error(cli.fails(1, "replication", "target", "rm", "e2e", t["id"]))["code"] in ("CONFLICT",
                                                                                               "ALREADY_EXISTS")

    for x in (p, q):
        cli.ok("replication", "rm", "e2e", x["id"])
    assert items(cli.ok("replication", "ls", "e2e")) == []
    cli.ok("replication", "target", "rm", "e2e", t["id"])
    assert_refused(repl.get_target("e2e", t["id"]), 404, "NOT_FOUND", what="GET after `replication target rm`")


# --- attacks found by review -----------------------------------------------------------------------------

def test_a_policy_replicating_into_its_own_server_makes_one_hop_per_push(source):
    """A registry replicating to itself (or two replicating to each other) cannot loop: a push made
    by a replication carries X-Berth-Replication, and its event starts no event-triggered
    replication again (one hop per push, as ECR)."""
    api = Api(source)
    repl = Repl(source)
    tgt = repl.berth_target("e2e", source, name=unique("self-"))
    pol = repl.make("e2e", name="self", target=tgt["id"], destination="e2e/x", trigger={"type": "event"})
    repl.wait_status("e2e", pol["id"])
    img = push_image(api, "e2e/loop/app", ["v1"], "loop")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and tag_digest(api, "e2e/x/loop/app", "v1") is None:
        time.sleep(0.3)
    assert tag_digest(api, "e2e/x/loop/app", "v1") == img["digest"], logs(source)
    time.sleep(3)  # what a loop would have done by now
    executions = repl.all_executions("e2e", pol["id"])
    assert len(executions) == 1, f"the replicated push was replicated again: {executions}"
    assert tag_digest(api, "e2e/x/x/loop/app", "v1") is None, "a second hop happened"
    catalog = requests.get(f"{source.url}/v2/_catalog", auth=source.credentials, timeout=T).json()
    assert not [r for r in catalog["repositories"] if r.startswith("e2e/x/x")], catalog


class _Recorder(http.server.ThreadingHTTPServer):
    """A minimal HTTP server on loopback that records every request's method, path and headers."""

    def __init__(self, host: str, handler):
        super().__init__((host, 0), handler)
        self.seen: list[tuple[str, str, dict]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_credentials_never_go_to_an_upload_location_on_another_host(source):
    """A target answers its upload POST with a Location on another host (a storage host): the
    chunks go there, but never the target's credentials (Basic or Bearer)."""
    user, password = "repl", "pw-" + uuid.uuid4().hex
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self):
            self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            self.send_response(202 if self.command == "PATCH" else 201)
            self.send_header("Location", self.path.split("?")[0])
            self.send_header("Range", "0-0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PATCH = do_PUT = _answer

    storage = _Recorder("127.0.0.3", Storage)

    class Fake(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self):
            self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            if self.headers.get("Authorization") != basic:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fake"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.command == "HEAD":
                self.send_response(404)
            elif self.command == "POST" and "/blobs/uploads/" in self.path:
                self.send_response(202)
                self.send_header("Location", f"{storage.url}/upload/{uuid.uuid4().hex}")
            elif self.command == "PUT" and "/manifests/" in self.path:
                self.send_response(201)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer

    fake = _Recorder("127.0.0.2", Fake)
    try:
        api = Api(source)
        repl = Repl(source)
        push_image(api, "e2e/xorigin/app", ["v1"], "xo")
        tgt = repl.make_target("e2e", name=unique("xo-"), kind="registry", url=fake.url, username=user,
                               password=password)
        pol = repl.make("e2e", name="xo", target=tgt["id"], name_filter="xorigin/**")
        repl.wait_status("e2e", pol["id"])
        done, tasks = repl.run_ok("e2e", pol["id"])
        assert tasks[0]["blobs_sent"] == 2, tasks
        patches = [s for s in storage.seen if s[0] == "PATCH"]
        assert patches, f"no chunk went to the storage host: {storage.seen}"
        leaked = [(m, p) for m, p, h in storage.seen if "authorization" in h]
        assert not leaked, f"credentials sent to another host: {leaked}"
        assert any(h.get("authorization") == basic for _, _, h in fake.seen), "the target itself got no credentials"
        puts = [h for m, p, h in fake.seen if m == "PUT" and "/manifests/" in p]
        assert puts and all(h.get("x-berth-replication") == "1" for h in puts), puts
    finally:
        fake.close()
        storage.close()


@pytest.mark.edge_only
def test_odd_ids_and_trigger_shapes_are_refused_cleanly(source):
    repl = Repl(source)
    long = "x" * 256
    for r, what in [(repl.get("e2e", long), "a 256-byte policy id"),
                    (repl.executions("e2e", long), "executions of a 256-byte policy id"),
                    (repl.execution("e2e", long, long), "a 256-byte execution id"),
                    (repl.tasks("e2e", long, long), "tasks of a 256-byte execution id"),
                    (repl.get_target("e2e", long), "a 256-byte target id")]:
        assert r.status_code == 404, f"{what}: {r.status_code} {r.text[:300]}"
        assert r.json()["errors"][0]["code"] == "NOT_FOUND", r.text
    assert_refused(repl.list("_all"), 400, "INVALID_REQUEST", "_all", what="listing replications of _all")
    tgt = repl.make_target("e2e", name=unique("shape-"), url="http://127.0.0.1:9")
    for trigger in ({"type": "manual", "cron": "* * * * *"}, {"type": "event", "bogus": 1}, {"type": "schedule"},
                    {"type": "hourly"}):
        r = repl.create("e2e", name=unique("t-"), target=tgt["id"], trigger=trigger)
        assert_refused(r, 400, "INVALID_REQUEST", "trigger", "cron", "unknown", what=f"trigger {trigger}")
    for name in (" lead", "trail "):
        assert_refused(repl.create_target("e2e", name=name, url="http://127.0.0.1:9"), 400, "INVALID_REQUEST",
                       "name", what=f"name {name!r}")
    repl.delete_target("e2e", tgt["id"])


def test_a_hanging_target_delays_no_other_job(registry_factory):
    """A target that accepts connections and never answers holds only its own copies: a webhook
    of another registry is delivered at once, and other registries' replications still run."""
    import socket

    from webhook_receiver import Receiver

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    held: list = []
    stop = threading.Event()

    def accept():
        hang.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hang.accept()[0])  # never answered
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    source = registry_factory(env={**ENV, "BERTH_REPLICATION_TIMEOUT_SECS": "60"})
    target = registry_factory(env=ENV)
    receiver = Receiver().start()
    try:
        api = Api(source)
        repl = Repl(source, watch=[target])
        for i in range(4):
            push_image(api, f"e2e/hang/app{i}", ["v1"], f"h{i}")
        # a target that hangs, its check pending, and copies of four images queued against it
        tgt = repl.make_target("e2e", name=unique("hang-"), url=f"http://127.0.0.1:{hang.getsockname()[1]}")
        pol = repl.make("e2e", name="hang", target=tgt["id"], name_filter="hang/**")
        assert repl.run("e2e", pol["id"]).status_code == 202
        time.sleep(1)  # the four copies are now waiting on the hanging target
        # a second run while this one runs is refused, naming it
        [running] = repl.all_executions("e2e", pol["id"])
        assert_refused(repl.run("e2e", pol["id"]), 409, ("CONFLICT",), running["id"], what="a second run")
        # meanwhile: a webhook of another registry, and another registry's replication
        r = requests.post(f"{source.url}/api/v1/registries/charts/webhooks", auth=source.credentials, timeout=T,
                          json={"name": "hang-check", "url": receiver.url(), "events": ["PUSH_ARTIFACT"]})
        assert r.status_code == 201, r.text
        started = time.monotonic()
        push_image(api, "charts/other/app", ["v1"], "other")
        receiver.wait_events(1, timeout=10)
        delivered = time.monotonic() - started
        assert delivered < 5, f"the webhook waited {delivered:.1f} s behind the hanging target"
        ok_tgt = repl.berth_target("charts", target)
        ok = repl.make("charts", name="fine", target=ok_tgt["id"], destination="e2e")
        repl.wait_status("charts", ok["id"], timeout=10)
        done, _ = repl.run_ok("charts", ok["id"], timeout=20)
        assert done["succeeded"] == 1, done
        # and the hanging run is still running, not failed early nor finished
        [running, *_] = repl.all_executions("e2e", pol["id"])
        assert running["status"] == "running", running
    finally:
        stop.set()
        receiver.close()
        for c in held:
            c.close()
        hang.close()
