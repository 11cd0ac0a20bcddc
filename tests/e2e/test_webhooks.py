"""Registry events and webhooks (issue 13) against a running `berth serve`, with real HTTP receivers
on loopback (webhook_receiver.py): docker and registry-API changes produce exactly the expected
events, in the default (Harbor) shape, as CloudEvents 1.0 and as Slack blocks; signatures verify
with the secret shown once; retries, the dead state and redelivery; nothing lost when the receiver
is down across a restart of the server; a hanging receiver does not block pushes; the SSRF guard at
creation and at delivery time; validation, roles and the CLI.

The servers run with BERTH_OUTBOUND_ALLOW=127.0.0.0/8 (the receivers are on loopback) and short
retry settings (WEBHOOK_ENV), passed through registry_factory(env=...). Tests without a mark run on
both backends (the E2E_BACKEND=aws pass too: the receivers are on loopback there as well); those
marked edge_only exercise only validation, the CLI and access rules, which both backends share.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
import uuid
from typing import Optional

import pytest
import requests

from e2e_util import OCI_MANIFEST, digest, random_bytes, require_tool, run
from recording_proxy import RecordingProxy
from webhook_receiver import Hang, Receiver, Reply, assert_signed, verify_signature

pytestmark = pytest.mark.berth_only

T = 30  # seconds: the timeout of every management request
WEBHOOK_ENV = {
    "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8",
    "BERTH_WEBHOOK_RETRY_SECS": "1",
    "BERTH_WEBHOOK_TIMEOUT_SECS": "2",
    "BERTH_WEBHOOK_MAX_ATTEMPTS": "3",
}
DELIVERY_WAIT = 45  # seconds for an event to reach a receiver (the AWS pass goes through SQS on moto)

EMITTED = ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "CREATE_TAG", "DELETE_TAG", "DELETE_IMAGE",
           "TAG_RETENTION"]
ALL_EVENT_TYPES = EMITTED + ["SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED", "REPLICATION"]
CE_TYPES = {
    "PUSH_ARTIFACT": "io.berth.artifact.pushed", "PULL_ARTIFACT": "io.berth.artifact.pulled",
    "DELETE_ARTIFACT": "io.berth.artifact.deleted", "CREATE_TAG": "io.berth.tag.created",
    "DELETE_TAG": "io.berth.tag.deleted", "DELETE_IMAGE": "io.berth.image.deleted",
    "TAG_RETENTION": "io.berth.tag_retention.finished", "PING": "io.berth.ping",
}
POLICY_KEYS = {"id", "registry", "name", "description", "url", "type", "events", "format", "auth_header_set",
               "enabled", "skip_tls_verify", "created_at", "updated_at", "created_by"}
DELIVERY_KEYS = {"id", "event_type", "status", "created_at", "next_attempt_at", "attempts"}
ATTEMPT_KEYS = {"at", "url", "status", "latency_ms", "error", "response"}
POLICY_ID = re.compile(r"^wh-[0-9a-f]{12}$")
CE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$")


# --- fixtures and helpers ----------------------------------------------------------------------------

@pytest.fixture
def hook_server(registry_factory):
    """`berth serve` that may reach loopback receivers, with fast retries."""
    return registry_factory(env=WEBHOOK_ENV)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.close()


@pytest.fixture
def receivers():
    """A factory of extra receivers, all closed at teardown."""
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# Deviations that do not stop a test's behavioural checks (fields beyond the contract's shapes, a
# header value): recorded while the test runs, and failed together by verify_deferred() at its end.
_DEFERRED: list[str] = []


@pytest.fixture(autouse=True)
def _deferred_deviations(request):
    _DEFERRED.clear()
    _DEFERRED_SEEN.clear()
    yield
    rep = getattr(request.node, "rep_call", None)
    if _DEFERRED and rep is not None and rep.failed:
        print("\n--- also recorded before the failure (deviations from the contract) ---\n" + "\n".join(_DEFERRED))


_DEFERRED_SEEN: set[str] = set()


def defer(ok: bool, msg: str, example=None) -> None:
    """Records `msg` once per test (with the first `example`) unless ok."""
    if not ok and msg not in _DEFERRED_SEEN:
        _DEFERRED_SEEN.add(msg)
        _DEFERRED.append(msg if example is None else f"{msg} (e.g. {str(example)[:400]})")


def verify_deferred() -> None:
    assert not _DEFERRED, "deviations from the webhook contract:\n- " + "\n- ".join(_DEFERRED)


def exact_keys(obj: dict, keys, what: str) -> None:
    """The object has exactly the contract's fields; missing and extra ones are recorded (a test
    then fails at its end), so that one shape deviation does not hide the test's other checks."""
    assert isinstance(obj, dict), f"{what}: not an object: {obj!r}"
    missing = set(keys) - set(obj)
    defer(not missing, f"{what}: fields of the contract missing: {sorted(missing)}", json.dumps(obj))
    # fields beyond the contract are allowed (Berth adds `registry`, `media_type`, `size`, the
    # delivery's `event` …): receivers written for Harbor's shape ignore unknown fields


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def new_registry(reg, prefix: str = "wh", public: bool = True) -> str:
    """A fresh registry; a private one (repo_type "private") admits loopback as its private network."""
    name = unique(prefix)
    body = {"name": name, "public_access": public, **({} if public else {"private_networks": ["127.0.0.0/8"]})}
    r = requests.post(f"{reg.url}/api/v1/registries", json=body, auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating registry {name}: {r.status_code} {r.text}"
    return name


def new_user(reg, role: str, registries=None) -> tuple[str, tuple[str, str]]:
    name = unique(f"{role}-")
    body = {"name": name, "role": role}
    if registries is not None:
        body["registries"] = registries
    r = requests.post(f"{reg.url}/api/v1/users", json=body, auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating user {name}: {r.status_code} {r.text}"
    r = requests.post(f"{reg.url}/api/v1/users/{name}/keys", auth=reg.credentials, timeout=T)
    assert r.status_code == 201, f"creating a key of {name}: {r.status_code} {r.text}"
    return name, (r.json()["access_key"], r.json()["secret_key"])


class Hooks:
    """The webhook management API of one server, as one caller."""

    def __init__(self, reg, auth=None):
        self.reg = reg
        self.auth = auth or reg.credentials

    def path(self, scope: str, *rest: str) -> str:
        return "/".join([f"/api/v1/registries/{scope}/webhooks", *rest])

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", T)
        return requests.request(method, self.reg.url + path, auth=self.auth, **kw)

    def create(self, scope: str, **body) -> requests.Response:
        return self.req("POST", self.path(scope), json=body)

    def make(self, scope: str, **body) -> dict:
        r = self.create(scope, **body)
        assert r.status_code == 201, f"creating webhook {body}: {r.status_code} {r.text}"
        return r.json()

    def get(self, scope: str, wid: str) -> requests.Response:
        return self.req("GET", self.path(scope, wid))

    def list(self, scope: str, **params) -> requests.Response:
        return self.req("GET", self.path(scope), params=params or None)

    def patch(self, scope: str, wid: str, **body) -> requests.Response:
        return self.req("PATCH", self.path(scope, wid), json=body)

    def delete(self, scope: str, wid: str) -> requests.Response:
        return self.req("DELETE", self.path(scope, wid))

    def test(self, scope: str, wid: str) -> requests.Response:
        return self.req("POST", self.path(scope, wid, "test"))

    def deliveries(self, scope: str, wid: str, **params) -> requests.Response:
        return self.req("GET", self.path(scope, wid, "deliveries"), params=params or None)

    def redeliver(self, scope: str, wid: str, did: str) -> requests.Response:
        return self.req("POST", self.path(scope, wid, "deliveries", did, "redeliver"))

    def all_deliveries(self, scope: str, wid: str) -> list[dict]:
        """Every delivery of a policy, newest first (follows `next`)."""
        out, last = [], None
        for _ in range(100):
            r = self.deliveries(scope, wid, **({"last": last} if last else {}))
            assert r.status_code == 200, f"GET deliveries: {r.status_code} {r.text}"
            body = r.json()
            assert set(body) == {"items", "next"}, body
            out += body["items"]
            last = body["next"]
            if not last:
                return out
        raise AssertionError("deliveries: more than 100 pages")

    def wait_delivery(self, scope: str, wid: str, statuses, timeout: float = DELIVERY_WAIT,
                      delivery_id: Optional[str] = None, min_attempts: int = 0) -> dict:
        """Polls the policy's delivery log until a delivery (`delivery_id`, as X-Berth-Delivery
        names it, or any) has a status in `statuses` and at least `min_attempts` attempts."""
        statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            seen = self.all_deliveries(scope, wid)
            for d in seen:
                if (delivery_id is None or d["id"] == delivery_id) and d["status"] in statuses \
                        and len(d["attempts"]) >= min_attempts:
                    return d
            time.sleep(0.2)
        raise AssertionError(f"no delivery{f' {delivery_id}' if delivery_id else ''} of {scope}/{wid} reached "
                             f"{statuses} with >= {min_attempts} attempts within {timeout} s; log:\n"
                             + json.dumps(seen, indent=1)[:4000])


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
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    assert r.status_code == status, (f"{what or r.request.method + ' ' + r.request.url}: expected {status}, "
                                     f"got {r.status_code} {r.text[:400]}")
    code, text = error_text(r)
    assert code in codes, f"{what}: error code {code!r}, expected one of {codes} ({r.text[:300]})"
    for m in mentions:
        assert m.lower() in text.lower(), f"{what}: the error does not mention {m!r}: {r.text[:400]}"
    return text


def push_artifact(reg, repo: str, ref: Optional[str], label: bytes = b"") -> str:
    """An OCI image manifest (empty config, one unique small layer) under `ref` (a tag, or None for
    by digest). Returns its digest."""
    auth = reg.credentials
    blobs = []
    for data in (b"{}", label + random_bytes(48)):
        r = requests.post(f"{reg.url}/v2/{repo}/blobs/uploads/", auth=auth, timeout=T,
                          headers={"Content-Length": "0"})
        assert r.status_code == 202, f"POST upload: {r.status_code} {r.text}"
        loc = requests.compat.urljoin(reg.url + "/", r.headers["Location"])
        r = requests.put(loc, params={"digest": digest(data)}, data=data, auth=auth, timeout=T,
                         headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, f"PUT blob: {r.status_code} {r.text}"
        blobs.append((digest(data), len(data)))
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0][0],
                   "size": blobs[0][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[1][0],
                    "size": blobs[1][1]}],
    }).encode()
    d = digest(body)
    r = put_manifest(reg, repo, ref or d, body)
    assert r.status_code == 201, f"PUT manifest {repo}:{ref}: {r.status_code} {r.text}"
    return d


def put_manifest(reg, repo: str, ref: str, body: bytes) -> requests.Response:
    return requests.put(f"{reg.url}/v2/{repo}/manifests/{ref}", data=body, auth=reg.credentials, timeout=T,
                        headers={"Content-Type": OCI_MANIFEST})


def mgmt(reg, method: str, path: str, ok=(200, 201, 204), **kw) -> requests.Response:
    r = requests.request(method, reg.url + path, auth=reg.credentials, timeout=T, **kw)
    assert r.status_code in ok, f"{method} {path}: {r.status_code} {r.text[:300]}"
    return r


# --- what an event must look like -----------------------------------------------------------------------

class Window:
    """The unix-seconds interval an operation ran in (occur_at must fall inside, give or take 1 s)."""

    def __init__(self):
        self.start = time.time()
        self.end = None

    def close(self) -> "Window":
        self.end = time.time()
        return self

    def check(self, t: int, what: str) -> None:
        end = self.end if self.end is not None else time.time()
        assert isinstance(t, int), f"{what}: {t!r} is not whole unix seconds"
        assert int(self.start) - 1 <= t <= int(end) + 1, f"{what}: {t} outside [{self.start:.1f}, {end:.1f}]"


def res(digest_: str, tag: Optional[str], tags: Optional[list] = None) -> dict:
    """An expected resource: tag None means "the first of `tags`" (DELETE_ARTIFACT)."""
    out = {"digest": digest_, "tag": tag}
    if tags is not None:
        out["tags"] = tags
    return out


class Expect:
    """One expected event."""

    def __init__(self, etype: str, repo: str, resources: list[dict], window: Window, operator: str = "admin"):
        self.etype, self.repo, self.resources, self.window, self.operator = etype, repo, resources, window, operator

    def key(self):
        return (self.etype, tuple(r["digest"] for r in self.resources))

    def __repr__(self):
        return f"{self.etype} {self.repo} {[(r['digest'][:19], r['tag']) for r in self.resources]}"


def check_headers(req, etype: str, content_type: str, auth: Optional[str] = None) -> None:
    where = req.describe()
    assert req.method == "POST", where
    ct = (req.header("Content-Type") or "").split(";")[0].strip()
    assert ct == content_type, f"Content-Type {req.header('Content-Type')!r}, expected {content_type}: {where}"
    assert req.header("X-Berth-Event") == etype, where
    eid = req.header("X-Berth-Event-Id")
    assert eid, f"no X-Berth-Event-Id: {where}"
    try:
        uuid.UUID(eid)
        is_uuid = True
    except ValueError:
        is_uuid = False
    defer(is_uuid, f"{etype}: the event id is not a UUID (contract: \"event_id\":\"<uuid>\")", eid)
    assert req.header("X-Berth-Delivery"), f"no X-Berth-Delivery: {where}"
    assert (req.header("X-Berth-Timestamp") or "").isdigit(), where
    assert (req.header("X-Berth-Signature") or "").startswith("sha256="), where
    defer((req.header("User-Agent") or "").startswith("Berth-Webhook/"), "User-Agent is not Berth-Webhook/<version>",
          req.header("User-Agent"))
    assert req.header("Authorization") == auth, f"Authorization {req.header('Authorization')!r}, expected {auth!r}"


def check_resource_list(got: list, expected: list[dict], repo: str, hosts: set[str], what: str) -> None:
    assert isinstance(got, list) and len(got) == len(expected), f"{what}: resources {got}, expected {expected}"
    for g, e in zip(got, expected):
        keys = {"digest", "tag", "resource_url"} | ({"tags"} if "tags" in e else set())
        exact_keys(g, keys, f"event_data.resources[] of {what.split(' ')[0]}")
        assert g["digest"] == e["digest"], f"{what}: {g}"
        if "tags" in e:
            assert sorted(g["tags"]) == sorted(e["tags"]), f"{what}: tags {g['tags']}, expected {e['tags']}"
        tag = e["tag"] if e["tag"] is not None else (sorted(e["tags"])[0] if e["tags"] else e["digest"])
        if e["tag"] is None and len(e["tags"]) > 1:  # "first former tag": not pinned to an order
            assert g["tag"] in e["tags"], f"{what}: tag {g['tag']!r} not one of {e['tags']}"
            tag = g["tag"]
        assert g["tag"] == tag, f"{what}: tag {g['tag']!r}, expected {tag!r}"
        sep = "@" if tag.startswith("sha256:") else ":"
        # a background job (a cleanup run) has no request Host: without BERTH_PUBLIC_URL its
        # resource URLs start at the repository
        wanted = {f"{h}/{repo}{sep}{tag}" for h in hosts} | {f"{repo}{sep}{tag}"}
        defer(g["resource_url"] in wanted, f"{what.split(' ')[0]}: resource_url is not \"<host>/<repository>:<tag>\"",
              f"{g['resource_url']!r}, expected one of {sorted(wanted)}")


def check_default(req, exp: Expect, hosts: set[str], repo_type: str) -> dict:
    """A default-format (Harbor-shaped) body; returns it."""
    body = req.json()
    what = f"{exp} ({req.describe()[:200]})"
    exact_keys(body, {"type", "occur_at", "operator", "event_id", "event_data"}, "default payload")
    assert body["type"] == exp.etype, what
    assert body["event_id"] == req.event_id, what
    assert body["operator"] == exp.operator, f"{what}: operator {body['operator']!r}"
    exp.window.check(body["occur_at"], f"{what} occur_at")
    data = body["event_data"]
    exact_keys(data, {"resources", "repository"}, f"event_data of {exp.etype}")
    check_resource_list(data["resources"], exp.resources, exp.repo, hosts, what)
    namespace, name = exp.repo.split("/", 1)
    repo_obj = data["repository"]
    exact_keys(repo_obj, {"name", "namespace", "repo_full_name", "repo_type"},
               "event_data.repository")
    assert (repo_obj["namespace"], repo_obj["name"], repo_obj["repo_full_name"], repo_obj["repo_type"]) == \
        (namespace, name, exp.repo, repo_type), f"{what}: repository {repo_obj}"
    if "date_created" in repo_obj:
        assert isinstance(repo_obj["date_created"], int) and 0 < repo_obj["date_created"] <= body["occur_at"], \
            f"{what}: date_created {repo_obj['date_created']!r}"
    return body


def check_cloudevent(req, default_body: dict, registry_name: str, policy_id: str) -> None:
    body = req.json()
    what = f"cloudevent {req.describe()[:200]}"
    exact_keys(body, {"specversion", "id", "source", "type", "time", "datacontenttype", "operator", "data"},
               "CloudEvents payload")
    assert body["specversion"] == "1.0", what
    assert body["id"] == req.event_id == default_body["event_id"], what
    assert body["source"] == f"/registries/{registry_name}/webhooks/{policy_id}", f"{what}: source {body['source']}"
    assert body["type"] == CE_TYPES[default_body["type"]], f"{what}: type {body['type']}"
    m = CE_TIME.match(body["time"])
    assert m, f"{what}: time {body['time']!r} is not RFC 3339 UTC"
    t = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    assert int(t.timestamp()) == default_body["occur_at"], f"{what}: time {body['time']} != occur_at"
    assert body["datacontenttype"] == "application/json", what
    assert body["operator"] == default_body["operator"], what
    assert body["data"] == default_body["event_data"], f"{what}: data differs from the default payload's event_data"


def slack_date(t: int) -> str:
    iso = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"<!date^{t}^{{date}} at {{time}}|{iso}>"


def check_slack(req, default_body: dict, repo: str) -> None:
    body = req.json()
    what = f"slack {req.describe()[:200]}"
    etype = default_body["type"]
    exact_keys(body, {"text", "blocks"}, "Slack payload")
    res0 = (default_body["event_data"].get("resources") or [None])[0]
    if etype in ("PUSH_ARTIFACT", "PULL_ARTIFACT", "CREATE_TAG", "DELETE_TAG") and not res0["tag"].startswith("sha256:"):
        assert body["text"] == f"Berth: {etype} {repo}:{res0['tag']}", f"{what}: text {body['text']!r}"
    else:
        assert body["text"].startswith(f"Berth: {etype} {repo}"), f"{what}: text {body['text']!r}"
    blocks = body["blocks"]
    assert len(blocks) == 3, f"{what}: {len(blocks)} blocks"
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Berth webhook event"}}, blocks[0]
    assert blocks[1] == {"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*event_type:*\n{etype}"},
        {"type": "mrkdwn", "text": f"*occur_at:*\n{slack_date(default_body['occur_at'])}"},
        {"type": "mrkdwn", "text": f"*operator:*\n{default_body['operator']}"},
    ]}, f"{what}: {blocks[1]}"
    assert set(blocks[2]) == {"type", "text"} and blocks[2]["type"] == "section", blocks[2]
    assert blocks[2]["text"]["type"] == "mrkdwn", blocks[2]
    text = blocks[2]["text"]["text"]
    m = re.fullmatch(r"\*event_data:\*\n```(.*)```", text, re.S)
    assert m, f"{what}: third block {text[:200]!r}"
    assert json.loads(m.group(1)) == default_body["event_data"], f"{what}: event_data in the block differs"
    assert "\n" in m.group(1).strip(), f"{what}: event_data is not pretty-printed"


def check_delivery_shape(d: dict, url: Optional[str] = None) -> None:
    exact_keys(d, DELIVERY_KEYS, "Delivery")
    assert d["status"] in ("pending", "delivered", "retrying", "dead", "skipped"), d
    assert isinstance(d["created_at"], int), d
    assert d["next_attempt_at"] is None or isinstance(d["next_attempt_at"], int), d
    for a in d["attempts"]:
        exact_keys(a, ATTEMPT_KEYS, "Delivery.attempts[]")
        assert isinstance(a["at"], int) and isinstance(a["latency_ms"], int) and a["latency_ms"] >= 0, a
        if url is not None:
            assert a["url"] == url, a
    ats = [a["at"] for a in d["attempts"]]
    assert ats == sorted(ats), f"attempts not in time order: {d}"


# --- the event stream ----------------------------------------------------------------------------------

class EventCheck:
    """Three policies on one registry (default, cloudevents with an auth header, slack), each to
    its own path of one receiver; `step` runs an operation, waits until exactly the expected
    events reached every path, and checks each of them in all three shapes."""

    def __init__(self, reg, receiver: Receiver, registry_name: str, repo_type: str, hosts: set[str]):
        self.reg, self.rcv, self.name, self.repo_type, self.hosts = reg, receiver, registry_name, repo_type, hosts
        hooks = Hooks(reg)
        self.default = hooks.make(registry_name, name="default", url=receiver.url("/default"))
        self.ce = hooks.make(registry_name, name="cloud", url=receiver.url("/ce"), format="cloudevents",
                             auth_header="Bearer ce-token")
        self.slack = hooks.make(registry_name, name="slack", url=receiver.url("/slack"), type="slack")
        self.count = 0
        self.bodies: dict[str, dict] = {}  # event id -> default body

    def step(self, label: str, action, expected) -> list[dict]:
        """`action()` runs in a Window; `expected` is a list of Expect or a function (window,
        action result) -> list of Expect. Returns the default bodies of the new events."""
        w = Window()
        result = action()
        w.close()
        exp = expected(w, result) if callable(expected) else [
            Expect(e.etype, e.repo, e.resources, w, e.operator) for e in expected]
        n = self.count + len(exp)
        if not exp:
            time.sleep(1.5)  # an event that should not exist gets time to show up
        new = {}
        for path in ("/default", "/ce", "/slack"):
            got = self.rcv.wait_events(n, path, timeout=DELIVERY_WAIT) if exp else self.rcv.events(path)
            assert len(got) == n, f"{label}: {path} has {len(got)} events, expected {n}:\n" + self.rcv.summary(path)
            new[path] = got[self.count:]
        self.count = n
        bodies = []
        # arrival order is the expected order; events of one operation (an image delete) are
        # matched by type and digest, and every artifact's own sequence is checked at the end
        order = sorted(range(len(exp)), key=lambda i: exp[i].key())
        got_default = sorted(new["/default"], key=lambda r: (r.event_type, tuple(
            x["digest"] for x in r.json()["event_data"].get("resources", []))))
        for i, req in zip(order, got_default):
            check_headers(req, exp[i].etype, "application/json")
            assert_signed(req, self.default["secret"])
            bodies.append(check_default(req, exp[i], self.hosts, self.repo_type))
            self.bodies[req.event_id] = bodies[-1]
        for req in new["/ce"]:
            assert req.event_id in self.bodies, f"{label}: /ce got an event /default did not: {req.describe()}"
            base = self.bodies[req.event_id]
            check_headers(req, base["type"], "application/cloudevents+json", auth="Bearer ce-token")
            assert_signed(req, self.ce["secret"])
            check_cloudevent(req, base, self.name, self.ce["id"])
        for req in new["/slack"]:
            assert req.event_id in self.bodies, f"{label}: /slack got an event /default did not: {req.describe()}"
            base = self.bodies[req.event_id]
            check_headers(req, base["type"], "application/json")
            assert_signed(req, self.slack["secret"])
            check_slack(req, base, base["event_data"]["repository"]["repo_full_name"])
        return bodies

    def finish(self, per_artifact: dict[str, list[str]]) -> None:
        """Nothing more arrives; each artifact's events arrived in the expected order; the default
        policy's delivery log holds exactly the received events, delivered."""
        for path in ("/default", "/ce", "/slack"):
            assert len(self.rcv.events(path)) == self.count
        self.rcv.assert_quiet(3, None)
        seq: dict[str, list[str]] = {}
        for req in self.rcv.events("/default"):
            b = req.json()
            for r in b["event_data"].get("resources", []):
                seq.setdefault(r["digest"], []).append(b["type"])
        assert seq == per_artifact, f"events per artifact, in arrival order:\n{seq}\nexpected:\n{per_artifact}"
        log = Hooks(self.reg).all_deliveries(self.name, self.default["id"])
        by_id = {d["id"]: d for d in log}
        assert len(by_id) == len(log), "a delivery id appears twice in the log"
        # one delivery per event and policy: X-Berth-Delivery names the log entry
        received = {r.header("X-Berth-Delivery"): r for r in self.rcv.events("/default")}
        assert set(by_id) == set(received), (f"delivery log ids != X-Berth-Delivery of the received events:\n"
                                             f"log only: {set(by_id) - set(received)}\n"
                                             f"received only: {set(received) - set(by_id)}")
        for did, d in by_id.items():
            check_delivery_shape(d, self.default["url"])
            assert d["status"] == "delivered" and d["next_attempt_at"] is None, d
            assert d["event_type"] == received[did].event_type, d
            assert d["attempts"][-1]["status"] == 200 and d["attempts"][-1]["error"] is None, d
            defer(did.endswith("-" + received[did].event_id), "a delivery's id does not end in its event id",
                  f"delivery {did}, event {received[did].event_id}")
        created = [d["created_at"] for d in log]
        defer(created == sorted(created, reverse=True), "the delivery log is not newest first",
              f"created_at in the order listed: {created}")
        verify_deferred()


def docker_cmd(cfg) -> list[str]:
    return ["docker", "--config", str(cfg)]


def manifest_requests(proxy: RecordingProxy, repo: str, since: int) -> list[dict]:
    prefix = f"/v2/{repo}/manifests/"
    return [r for r in proxy.records[since:] if r["path"].split("?")[0].startswith(prefix)]


def test_docker_and_management_changes_emit_exactly_the_expected_events(hook_server, receiver, tmp_path):
    """docker push and pull, tag create/delete, artifact delete and image delete through the
    management API: exactly the expected events, per artifact in order, in all three shapes."""
    require_tool("docker")
    from test_auth import build_image
    reg = hook_server
    name = new_registry(reg, "evt", public=False)
    proxy = RecordingProxy(reg.port)
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    docker = docker_cmd(cfg)
    repo = f"{name}/app"
    ref = f"{proxy.host}/{repo}:v1"
    try:
        ev = EventCheck(reg, receiver, name, "private", {proxy.host, reg.host})
        user, password = reg.credentials
        p = subprocess.run([*docker, "login", proxy.host, "-u", user, "--password-stdin"], input=password,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        build_image(tmp_path, ref)

        def from_proxy(since):
            def expected(w, _result):
                out = []
                for r in manifest_requests(proxy, repo, since):
                    reference = r["path"].split("?")[0].rsplit("/", 1)[1]
                    d = r.get("resp", {}).get("docker-content-digest")
                    if r["method"] == "PUT" and r.get("status") == 201:
                        out.append(Expect("PUSH_ARTIFACT", repo, [res(d, reference)], w))
                    elif r["method"] == "GET" and r.get("status") == 200:
                        out.append(Expect("PULL_ARTIFACT", repo, [res(d, reference)], w))
                return out
            return expected

        # docker push: one manifest PUT by tag
        since = len(proxy.records)
        ev.step("docker push", lambda: run([*docker, "push", ref], timeout=300), from_proxy(since))
        puts = [r for r in manifest_requests(proxy, repo, since) if r["method"] == "PUT"]
        assert len(puts) == 1, puts
        d1 = puts[0]["resp"]["docker-content-digest"]

        # docker pull (after removing the local image): one PULL_ARTIFACT per manifest GET, none per HEAD
        run([*docker, "rmi", "-f", ref], timeout=120)
        since = len(proxy.records)
        ev.step("docker pull", lambda: run([*docker, "pull", ref], timeout=300), from_proxy(since))
        assert any(r["method"] == "GET" for r in manifest_requests(proxy, repo, since)), proxy.summary()

        # management API: tag create and delete; a HEAD emits nothing
        img = f"/api/v1/images/{repo}"
        ev.step("HEAD", lambda: mgmt(reg, "HEAD", f"/v2/{repo}/manifests/v1", ok=(200,)), [])
        ev.step("tag create", lambda: mgmt(reg, "PUT", f"{img}/tags/stable", json={"digest": d1}),
                [Expect("CREATE_TAG", repo, [res(d1, "stable")], None)])
        ev.step("tag delete", lambda: mgmt(reg, "DELETE", f"{img}/tags/stable"),
                [Expect("DELETE_TAG", repo, [res(d1, "stable")], None)])

        # a second artifact, then the first deleted through the management API
        out = {}

        def push_second():
            out["d2"] = push_artifact(reg, repo, "v2", b"second")
        ev.step("push v2", push_second, lambda w, _r: [Expect("PUSH_ARTIFACT", repo, [res(out["d2"], "v2")], w)])
        d2 = out["d2"]
        ev.step("artifact delete", lambda: mgmt(reg, "DELETE", f"{img}/artifacts/{d1}"),
                [Expect("DELETE_ARTIFACT", repo, [res(d1, None, ["v1"])], None)])

        # image delete: one DELETE_ARTIFACT per artifact, then DELETE_IMAGE
        ev.step("tag v3", lambda: mgmt(reg, "PUT", f"{img}/tags/v3", json={"digest": d2}),
                [Expect("CREATE_TAG", repo, [res(d2, "v3")], None)])
        bodies = ev.step("image delete", lambda: mgmt(reg, "DELETE", img), [
            Expect("DELETE_ARTIFACT", repo, [res(d2, None, ["v2", "v3"])], None),
            Expect("DELETE_IMAGE", repo, [], None)])
        by_type = {b["type"]: b for b in bodies}
        # emitted in this order (arrival order across artifacts is best-effort)
        assert by_type["DELETE_IMAGE"]["occur_at"] >= by_type["DELETE_ARTIFACT"]["occur_at"]

        pulls = ["PULL_ARTIFACT"] * sum(1 for b in ev.bodies.values() if b["type"] == "PULL_ARTIFACT")
        ev.finish({
            d1: ["PUSH_ARTIFACT", *pulls, "CREATE_TAG", "DELETE_TAG", "DELETE_ARTIFACT"],
            d2: ["PUSH_ARTIFACT", "CREATE_TAG", "DELETE_ARTIFACT"],
        })
    finally:
        subprocess.run([*docker, "rmi", "-f", ref], capture_output=True, timeout=120)
        proxy.close()


def test_registry_api_changes_emit_exactly_the_expected_events(hook_server, receiver):
    """The OCI API: push by tag and by digest (resource_url with @), GET (PULL) but not HEAD, delete
    by tag (DELETE_TAG) and by digest (DELETE_ARTIFACT with its former tags); a nested image name."""
    reg = hook_server
    name = new_registry(reg, "oci", public=True)
    ev = EventCheck(reg, receiver, name, "public", {reg.host})
    repo = f"{name}/web/app"
    out = {}

    def push(ref, label):
        def action():
            out[label] = push_artifact(reg, repo, ref, label.encode())
        return action

    ev.step("push by tag", push("v1", "a"), lambda w, _: [Expect("PUSH_ARTIFACT", repo, [res(out["a"], "v1")], w)])
    a = out["a"]
    ev.step("push by digest", push(None, "b"), lambda w, _: [Expect("PUSH_ARTIFACT", repo, [res(out["b"], out["b"])], w)])
    b = out["b"]
    get = lambda ref: lambda: mgmt(reg, "GET", f"/v2/{repo}/manifests/{ref}", ok=(200,),  # noqa: E731
                                   headers={"Accept": OCI_MANIFEST})
    ev.step("GET by tag", get("v1"), [Expect("PULL_ARTIFACT", repo, [res(a, "v1")], None)])
    ev.step("GET by digest", get(b), [Expect("PULL_ARTIFACT", repo, [res(b, b)], None)])
    ev.step("HEAD", lambda: mgmt(reg, "HEAD", f"/v2/{repo}/manifests/v1", ok=(200,),
                                 headers={"Accept": OCI_MANIFEST}), [])
    ev.step("tag x1", lambda: mgmt(reg, "PUT", f"/api/v1/images/{repo}/tags/x1", json={"digest": a}),
            [Expect("CREATE_TAG", repo, [res(a, "x1")], None)])
    ev.step("OCI delete by tag", lambda: mgmt(reg, "DELETE", f"/v2/{repo}/manifests/x1", ok=(202,)),
            [Expect("DELETE_TAG", repo, [res(a, "x1")], None)])
    ev.step("OCI delete by digest (tagged)", lambda: mgmt(reg, "DELETE", f"/v2/{repo}/manifests/{a}", ok=(202,)),
            [Expect("DELETE_ARTIFACT", repo, [res(a, None, ["v1"])], None)])
    ev.step("OCI delete by digest (untagged)", lambda: mgmt(reg, "DELETE", f"/v2/{repo}/manifests/{b}", ok=(202,)),
            [Expect("DELETE_ARTIFACT", repo, [res(b, b, [])], None)])
    ev.finish({
        a: ["PUSH_ARTIFACT", "PULL_ARTIFACT", "CREATE_TAG", "DELETE_TAG", "DELETE_ARTIFACT"],
        b: ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"],
    })


def test_cleanup_run_emits_delete_artifact_then_tag_retention(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "ret")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="retention", url=receiver.url("/ret"))
    repo = f"{name}/app"
    digests = []
    for i in range(3):
        digests.append(push_artifact(reg, repo, f"t{i + 1}", f"ret{i}".encode()))
        time.sleep(1.05)  # push times are whole seconds
    receiver.wait_events(3, "/ret")
    mgmt(reg, "POST", f"/api/v1/registries/{name}/cleanup/rules",
         json={"image": "app", "tag": "**", "keep": "latest-pushed:1"})
    time.sleep(1.1)

    def run_cleanup(dry: bool) -> dict:
        r = mgmt(reg, "POST", f"/api/v1/registries/{name}/cleanup/runs", json={"dry_run": dry}, ok=(202,))
        path = f"/api/v1/registries/{name}/cleanup/runs/{r.json()['id']}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = mgmt(reg, "GET", path).json()
            if done["status"] in ("succeeded", "failed"):
                return done
            time.sleep(0.3)
        raise AssertionError(f"cleanup run {path} did not finish")

    dry = run_cleanup(True)
    assert dry["status"] == "succeeded" and dry["deleted"] == 2, dry
    receiver.assert_quiet(3, "/ret", expected=3)  # a test run emits nothing
    w = Window()
    done = run_cleanup(False)
    w.close()
    assert done["status"] == "succeeded" and (done["total"], done["retained"], done["deleted"]) == (3, 1, 2), done
    got = receiver.wait_events(6, "/ret")[3:]
    assert sorted(r.event_type for r in got) == ["DELETE_ARTIFACT", "DELETE_ARTIFACT", "TAG_RETENTION"], \
        receiver.summary("/ret")
    got.sort(key=lambda r: r.event_type)  # arrival order across artifacts is best-effort; occur_at below
    for req in got:
        assert_signed(req, pol["secret"])
        check_headers(req, req.event_type, "application/json")
    for req, (d, tag) in zip(sorted(got[:2], key=lambda r: r.json()["event_data"]["resources"][0]["tag"]),
                             [(digests[0], "t1"), (digests[1], "t2")]):
        check_default(req, Expect("DELETE_ARTIFACT", repo, [res(d, tag, [tag])], w, operator="cleanup"),
                      {reg.host}, "public")
    body = got[2].json()
    exact_keys(body, {"type", "occur_at", "operator", "event_id", "event_data"}, "default payload")
    exact_keys(body["event_data"], {"retention"}, "event_data of TAG_RETENTION")
    assert body["operator"] == "cleanup", body
    assert body["occur_at"] >= max(r.json()["occur_at"] for r in got[:2]), "TAG_RETENTION before a deletion"
    w.check(body["occur_at"], "TAG_RETENTION occur_at")
    ret = body["event_data"]["retention"]
    # counts only: each deleted artifact had its own DELETE_ARTIFACT event (README)
    exact_keys(ret, {"total", "retained", "project_name", "retention_policy_id", "result"},
               "event_data.retention")
    assert (ret["total"], ret["retained"], ret["project_name"]) == (3, 1, name), ret
    assert isinstance(ret["result"], str) and ret["retention_policy_id"], ret
    if "deleted_artifact" in ret:
        assert sorted(ret["deleted_artifact"], key=lambda x: x["name_tag"]) == [
            {"type": "image", "status": "SUCCEED", "name_tag": "app:t1"},
            {"type": "image", "status": "SUCCEED", "name_tag": "app:t2"}], ret["deleted_artifact"]
    receiver.assert_quiet(2, "/ret", expected=6)
    verify_deferred()


# --- secrets, signatures, the test ping ------------------------------------------------------------------

def test_secret_shown_once_signatures_verify_and_rotation(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "sig")
    hooks = Hooks(reg)
    w = Window()
    created = hooks.make(name, name="signed", url=receiver.url("/sig"), auth_header="Token abc123",
                         description="signed deliveries")
    w.close()
    secret = created["secret"]
    assert isinstance(secret, str) and secret.startswith("whsec_") and len(secret) >= 6 + 24, secret
    assert set(created) == POLICY_KEYS | {"secret"}, sorted(created)
    assert POLICY_ID.match(created["id"]), created["id"]
    assert created["auth_header_set"] is True and "abc123" not in json.dumps(created)

    # never again: show, list, PATCH answers
    shown = hooks.get(name, created["id"])
    assert shown.status_code == 200 and shown.json() == {k: v for k, v in created.items() if k != "secret"}
    listed = hooks.list(name)
    assert listed.status_code == 200
    for r in (shown, listed):
        assert secret not in r.text and "abc123" not in r.text and '"secret"' not in r.text, r.text

    # the test ping: sent synchronously, recorded, signed
    w = Window()
    r = hooks.test(name, created["id"])
    w.close()
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"delivery"}, r.json()
    delivery = r.json()["delivery"]
    check_delivery_shape(delivery, receiver.url("/sig"))
    assert delivery["event_type"] == "PING" and delivery["status"] == "delivered", delivery
    assert len(delivery["attempts"]) == 1 and delivery["attempts"][0]["status"] == 200, delivery
    pings = receiver.requests("/sig")
    assert len(pings) == 1, "the ping had not arrived when the test endpoint answered:\n" + receiver.summary()
    ping = pings[0]
    check_headers(ping, "PING", "application/json", auth="Token abc123")
    assert delivery["id"] == ping.header("X-Berth-Delivery"), (ping.headers, delivery)
    defer(delivery["id"].endswith("-" + ping.event_id), "a delivery's id does not end in its event id",
          f"delivery {delivery['id']}, event {ping.event_id}")
    body = ping.json()
    exact_keys(body, {"type", "occur_at", "operator", "event_id", "event_data"}, "default payload")
    assert body["type"] == "PING" and body["event_id"] == ping.event_id and body["operator"] == "admin", body
    w.check(body["occur_at"], "PING occur_at")
    exact_keys(body["event_data"], {"message", "webhook"}, "event_data of PING")
    assert (body["event_data"]["message"], body["event_data"]["webhook"]) == ("ping from Berth", created["id"]), body
    assert delivery["attempts"][0]["response"] == "receiver answered 200", delivery
    assert [d["id"] for d in hooks.all_deliveries(name, created["id"])] == [delivery["id"]]

    assert_signed(ping, secret)
    assert not verify_signature(ping, "whsec_" + "0" * 32), "a wrong secret verifies"
    assert not verify_signature(ping, secret + "x")
    tampered = type(ping)(**{**ping.__dict__, "body": ping.body.replace(b"ping from Berth", b"ping from Eve!")})
    assert not verify_signature(tampered, secret), "a changed body verifies"
    ts = int(ping.header("X-Berth-Timestamp"))
    shifted = type(ping)(**{**ping.__dict__, "headers": {**ping.headers, "x-berth-timestamp": str(ts + 1)}})
    assert not verify_signature(shifted, secret), "the signature does not cover the timestamp"

    # rotation: a new secret, shown once; later deliveries are signed with it only
    r = hooks.patch(name, created["id"], rotate_secret=True)
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert set(rotated) == POLICY_KEYS | {"secret"}, sorted(rotated)
    new_secret = rotated["secret"]
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert rotated["updated_at"] >= created["updated_at"]
    again = hooks.get(name, created["id"])
    assert new_secret not in again.text and secret not in again.text and "secret" not in again.json()
    # other PATCHes do not show a secret
    r = hooks.patch(name, created["id"], description="changed")
    assert r.status_code == 200 and "secret" not in r.json() and new_secret not in r.text, r.text
    assert hooks.test(name, created["id"]).status_code == 200
    second = receiver.wait_for(2, "/sig")[1]
    assert_signed(second, new_secret)
    assert not verify_signature(second, secret), "the old secret still verifies after rotation"
    # and pushes are signed with the new one too
    push_artifact(reg, f"{name}/app", "v1")
    third = receiver.wait_for(3, "/sig", timeout=DELIVERY_WAIT)[2]
    assert third.event_type == "PUSH_ARTIFACT"
    assert_signed(third, new_secret)
    assert third.header("Authorization") == "Token abc123"
    verify_deferred()


def test_ping_in_cloudevents_format_and_to_a_failing_receiver(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "ping")
    hooks = Hooks(reg)
    ce = hooks.make(name, name="ce", url=receiver.url("/ce"), format="cloudevents")
    r = hooks.test(name, ce["id"])
    assert r.status_code == 200, r.text
    req = receiver.requests("/ce")[0]
    check_headers(req, "PING", "application/cloudevents+json")
    body = req.json()
    assert body["type"] == "io.berth.ping" and body["id"] == req.event_id, body
    assert body["source"] == f"/registries/{name}/webhooks/{ce['id']}", body
    exact_keys(body["data"], {"message", "webhook"}, "CloudEvents data of PING")
    assert (body["data"]["message"], body["data"]["webhook"]) == ("ping from Berth", ce["id"]), body
    assert_signed(req, ce["secret"])

    failing = hooks.make(name, name="failing", url=receiver.url("/fail"))
    receiver.set_default("/fail", Reply(503, "maintenance"))
    r = hooks.test(name, failing["id"])
    assert r.status_code == 200, r.text
    d = r.json()["delivery"]
    check_delivery_shape(d, receiver.url("/fail"))
    assert d["event_type"] == "PING" and d["status"] != "delivered", d
    assert d["attempts"][0]["status"] == 503 and d["attempts"][0]["response"] == "maintenance", d
    verify_deferred()


# --- retries, dead, redelivery, redirects ----------------------------------------------------------------

def test_500_then_200_is_delivered_after_a_retry_and_logged(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "retry")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="flaky", url=receiver.url("/flaky"), events=["PUSH_ARTIFACT"])
    receiver.script("/flaky", [Reply(500, "E" * 600), Reply(200, "ok, got it")])
    d = push_artifact(reg, f"{name}/app", "v1")
    first, second = receiver.wait_for(2, "/flaky", timeout=DELIVERY_WAIT)[:2]
    assert first.event_id == second.event_id, "the retry is another event"
    assert first.body == second.body, "the retry's body differs"
    assert second.mono - first.mono >= 0.9, f"retried after {second.mono - first.mono:.2f} s (BERTH_WEBHOOK_RETRY_SECS=1)"
    for req in (first, second):
        check_headers(req, "PUSH_ARTIFACT", "application/json")
        assert_signed(req, pol["secret"])
    assert first.json()["event_data"]["resources"][0]["digest"] == d
    assert first.header("X-Berth-Delivery") == second.header("X-Berth-Delivery")
    done = hooks.wait_delivery(name, pol["id"], "delivered", delivery_id=first.header("X-Berth-Delivery"))
    check_delivery_shape(done, receiver.url("/flaky"))
    a1, a2 = done["attempts"]
    assert (a1["status"], a2["status"]) == (500, 200), done
    assert a1["response"] == "E" * 512, f"response snippet: {a1['response']!r} (the first 512 bytes expected)"
    assert a2["response"] == "ok, got it" and a2["error"] is None, a2
    assert a2["at"] >= a1["at"] + 1, done
    assert done["event_type"] == "PUSH_ARTIFACT" and done["next_attempt_at"] is None, done
    receiver.assert_quiet(2.5, "/flaky", expected=2)
    verify_deferred()


def test_always_failing_receiver_goes_dead_and_redeliver_delivers(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "dead")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="broken", url=receiver.url("/broken"))
    receiver.set_default("/broken", Reply(500, "still broken"))
    push_artifact(reg, f"{name}/app", "v1")
    reqs = receiver.wait_for(3, "/broken", timeout=DELIVERY_WAIT)
    eid, did = reqs[0].event_id, reqs[0].header("X-Berth-Delivery")
    assert {(r.event_id, r.header("X-Berth-Delivery")) for r in reqs} == {(eid, did)}, receiver.summary()
    dead = hooks.wait_delivery(name, pol["id"], "dead", delivery_id=did, timeout=30)
    check_delivery_shape(dead, receiver.url("/broken"))
    assert [a["status"] for a in dead["attempts"]] == [500, 500, 500], dead  # BERTH_WEBHOOK_MAX_ATTEMPTS=3
    assert all(a["response"] == "still broken" for a in dead["attempts"]), dead
    assert dead["next_attempt_at"] is None, dead
    gaps = [reqs[i + 1].mono - reqs[i].mono for i in range(2)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.8, f"backoff gaps {gaps} (1 s doubling expected)"
    receiver.assert_quiet(3, "/broken", expected=3)  # dead: no more attempts

    receiver.set_default("/broken", Reply(200, "fixed"))
    r = hooks.redeliver(name, pol["id"], did)
    assert r.status_code == 202, r.text
    queued = r.json()
    check_delivery_shape(queued)
    assert queued["id"] == did and queued["status"] == "pending" and len(queued["attempts"]) == 3, queued
    fourth = receiver.wait_for(4, "/broken", timeout=DELIVERY_WAIT)[3]
    assert fourth.event_id == eid and fourth.header("X-Berth-Delivery") == did and fourth.body == reqs[0].body
    assert_signed(fourth, pol["secret"])
    done = hooks.wait_delivery(name, pol["id"], "delivered", delivery_id=did)
    assert [a["status"] for a in done["attempts"]] == [500, 500, 500, 200], done
    assert done["attempts"][-1]["response"] == "fixed"
    receiver.assert_quiet(2, "/broken", expected=4)
    # redelivering a delivered event sends it once more
    r = hooks.redeliver(name, pol["id"], did)
    assert r.status_code == 202, r.text
    assert receiver.wait_for(5, "/broken", timeout=DELIVERY_WAIT)[4].event_id == eid
    r = hooks.redeliver(name, pol["id"], str(uuid.uuid4()))
    assert_refused(r, 404, "NOT_FOUND", what="redeliver of an unknown delivery")
    verify_deferred()


def test_redirects_are_not_followed(hook_server, receiver):
    reg = hook_server
    name = new_registry(reg, "redir")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="moved", url=receiver.url("/moved"))
    receiver.set_default("/moved", Reply(302, "", {"Location": receiver.url("/target")}))
    push_artifact(reg, f"{name}/app", "v1")
    dead = hooks.wait_delivery(name, pol["id"], "dead", timeout=DELIVERY_WAIT)
    assert [a["status"] for a in dead["attempts"]] == [302, 302, 302], dead
    for a in dead["attempts"]:
        assert a["error"] and "redirect" in a["error"].lower(), a
    assert receiver.requests("/target") == [], "the redirect was followed"


# --- durability and isolation ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["stop", "kill"])
def test_receiver_down_across_a_server_restart_loses_nothing(registry_factory, receivers, how):
    reg = registry_factory(env={**WEBHOOK_ENV, "BERTH_WEBHOOK_MAX_ATTEMPTS": "12", "BERTH_JOB_LEASE_SECONDS": "2"})
    rcv = receivers()
    name = new_registry(reg, "dur")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="durable", url=rcv.url("/d"))
    rcv.stop()
    repo = f"{name}/app"
    expected = []
    for i in range(3):
        d = push_artifact(reg, repo, f"v{i}", f"dur{i}".encode())
        expected.append(("PUSH_ARTIFACT", d, f"v{i}"))
    mgmt(reg, "PUT", f"/api/v1/images/{repo}/tags/extra", json={"digest": expected[0][1]})
    expected.append(("CREATE_TAG", expected[0][1], "extra"))
    mgmt(reg, "DELETE", f"/api/v1/images/{repo}/tags/extra")
    expected.append(("DELETE_TAG", expected[0][1], "extra"))
    if how == "stop":
        # some attempts failed against the stopped receiver before the server goes down
        hooks.wait_delivery(name, pol["id"], ("retrying", "pending"), min_attempts=1, timeout=DELIVERY_WAIT)
        reg.stop()
    else:
        os.killpg(reg.proc.pid, signal.SIGKILL)  # right after the changes, as a crash would
        reg.proc.wait(30)
        reg.expected_exit = True
    reg.start()
    rcv.start()
    got = rcv.wait_events(len(expected), "/d", timeout=120)
    seen = sorted((r.event_type, r.json()["event_data"]["resources"][0]["digest"],
                   r.json()["event_data"]["resources"][0]["tag"]) for r in got)
    assert seen == sorted(expected), f"after the restart: {seen}\nexpected {sorted(expected)}"
    for r in got:
        assert_signed(r, pol["secret"])
    log = hooks.all_deliveries(name, pol["id"])
    assert len(log) == len(expected), json.dumps(log, indent=1)[:3000]
    for d in log:
        if d["status"] != "delivered":
            d = hooks.wait_delivery(name, pol["id"], "delivered", delivery_id=d["id"])
        assert d["attempts"][-1]["status"] == 200, d
    rcv.assert_quiet(2, "/d")
    assert len(rcv.events("/d")) == len(expected)


def test_hanging_receiver_does_not_block_pushes_or_other_policies(registry_factory, receivers):
    timeout = 3
    reg = registry_factory(env={**WEBHOOK_ENV, "BERTH_WEBHOOK_TIMEOUT_SECS": str(timeout),
                                "BERTH_WEBHOOK_MAX_ATTEMPTS": "2"})
    hang, ok = receivers(default=Hang(60)), receivers()
    name = new_registry(reg, "hang")
    repo = f"{name}/app"

    pushed: dict[str, float] = {}  # digest -> push time (monotonic)

    def timed_push(i) -> float:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": empty, "size": 2},
                           "layers": [], "annotations": {"n": f"{i}-{uuid.uuid4()}"}}).encode()
        t0 = time.monotonic()
        r = put_manifest(reg, repo, f"t{i}", body)
        took = time.monotonic() - t0
        assert r.status_code == 201, r.text
        pushed[digest(body)] = t0
        return took

    # the empty config blob once; then a baseline without policies
    r = requests.post(f"{reg.url}/v2/{repo}/blobs/uploads/", params={"digest": digest(b"{}")}, data=b"{}",
                      auth=reg.credentials, timeout=T, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    empty = digest(b"{}")
    baseline = [timed_push(i) for i in range(3)]
    pushed.clear()  # only the pushes made once the policies exist are counted below
    hooks = Hooks(reg)
    hung = hooks.make(name, name="hangs", url=hang.url("/h"), events=["PUSH_ARTIFACT"])
    fine = hooks.make(name, name="fine", url=ok.url("/ok"), events=["PUSH_ARTIFACT"])
    times = [timed_push(i) for i in range(3, 9)]
    pushed_at = time.monotonic()
    assert max(times) < max(baseline) + timeout - 1, (
        f"pushes with a hanging receiver took {[round(t, 2) for t in times]} s (baseline "
        f"{[round(t, 2) for t in baseline]} s, webhook timeout {timeout} s): a push waited for a delivery")
    measured = lambda r: r.json()["event_data"]["resources"][0]["digest"] in pushed  # noqa: E731
    got = ok.wait_events(6, "/ok", timeout=DELIVERY_WAIT, match=measured)
    late = max(r.mono for r in got) - pushed_at
    assert late < 4 * timeout, (f"the healthy policy's last delivery came {late:.1f} s after the pushes: "
                                "deliveries queue behind the hanging receiver")
    for r in got:
        assert_signed(r, fine["secret"])
    hang.wait_for(1, "/h", timeout=DELIVERY_WAIT)
    # the hanging policy's deliveries time out (and are retried, then dead)
    d = hooks.wait_delivery(name, hung["id"], ("retrying", "dead"), min_attempts=1, timeout=60)
    a = d["attempts"][0]
    assert a["status"] is None and a["error"] and "timed out" in a["error"].lower(), a
    assert timeout * 1000 - 200 <= a["latency_ms"] <= timeout * 1000 + 3000, a
    ok.assert_quiet(1, "/ok")
    assert len([r for r in ok.requests("/ok") if measured(r)]) == 6, ok.summary("/ok")


def test_registry_wide_policy_gets_every_registry_and_a_registry_policy_only_its_own(hook_server, receiver):
    reg = hook_server
    hooks = Hooks(reg)
    a, b = new_registry(reg, "alla", public=True), new_registry(reg, "allb", public=False)
    glob = hooks.make("_all", name=unique("global-"), url=receiver.url("/all"), events=["PUSH_ARTIFACT"])
    own = hooks.make(a, name="own", url=receiver.url("/a"), events=["PUSH_ARTIFACT"])
    assert glob["registry"] == "_all" and own["registry"] == a
    try:
        w = Window()
        da = push_artifact(reg, f"{a}/app", "x")
        db = push_artifact(reg, f"{b}/app", "y")
        w.close()
        got = receiver.wait_events(2, "/all")
        by_ns = {r.json()["event_data"]["repository"]["namespace"]: r for r in got}
        assert set(by_ns) == {a, b}, receiver.summary("/all")
        check_default(by_ns[a], Expect("PUSH_ARTIFACT", f"{a}/app", [res(da, "x")], w), {reg.host}, "public")
        check_default(by_ns[b], Expect("PUSH_ARTIFACT", f"{b}/app", [res(db, "y")], w), {reg.host}, "private")
        for r in got:
            assert_signed(r, glob["secret"])
        only = receiver.wait_events(1, "/a")
        assert only[0].json()["event_data"]["resources"][0]["digest"] == da
        receiver.assert_quiet(2, "/a", expected=1)
        assert len(receiver.events("/all")) == 2

        # listings: each scope lists its own; deliveries of the registry-wide one
        assert [p["id"] for p in hooks.list(a).json()["items"]] == [own["id"]]
        assert glob["id"] in [p["id"] for p in hooks.list("_all").json()["items"]]
        assert own["id"] not in [p["id"] for p in hooks.list("_all").json()["items"]]
        assert hooks.list(b).json()["items"] == []
        assert hooks.get(a, glob["id"]).status_code == 404
        log = hooks.all_deliveries("_all", glob["id"])
        assert sorted(d["id"] for d in log) == sorted(r.header("X-Berth-Delivery") for r in got)
        verify_deferred()
    finally:
        hooks.delete("_all", glob["id"])


def test_disabled_policy_gets_nothing_and_deleting_a_policy_stops_deliveries(hook_server, receivers):
    reg = hook_server
    rcv = receivers()
    name = new_registry(reg, "onoff")
    hooks = Hooks(reg)
    on = hooks.make(name, name="on", url=rcv.url("/on"), events=["PUSH_ARTIFACT"])
    off = hooks.make(name, name="off", url=rcv.url("/off"), events=["PUSH_ARTIFACT"], enabled=False)
    gone = hooks.make(name, name="gone", url=rcv.url("/gone"), events=["PUSH_ARTIFACT"])
    assert off["enabled"] is False
    repo = f"{name}/app"
    push_artifact(reg, repo, "a")
    rcv.wait_events(1, "/on")
    rcv.wait_events(1, "/gone")
    assert hooks.delete(name, gone["id"]).status_code == 204
    push_artifact(reg, repo, "b")
    rcv.wait_events(2, "/on")
    enabled = hooks.patch(name, off["id"], enabled=True)
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True, enabled.text
    c = push_artifact(reg, repo, "c")
    rcv.wait_events(3, "/on")
    late = rcv.wait_events(1, "/off")
    assert late[0].json()["event_data"]["resources"][0]["digest"] == c, "events from before enabling were sent"
    rcv.assert_quiet(2)
    assert (len(rcv.events("/on")), len(rcv.events("/off")), len(rcv.events("/gone"))) == (3, 1, 1)
    for r in rcv.events("/on"):
        assert_signed(r, on["secret"])

    # disabled while its event waits for a retry: skipped, never sent
    down = receivers()
    later = hooks.make(name, name="later", url=down.url("/later"), events=["PUSH_ARTIFACT"])
    down.stop()
    push_artifact(reg, repo, "d")
    hooks.wait_delivery(name, later["id"], ("retrying",), min_attempts=1)
    assert hooks.patch(name, later["id"], enabled=False).status_code == 200
    skipped = hooks.wait_delivery(name, later["id"], "skipped", timeout=30)
    assert skipped["next_attempt_at"] is None, skipped
    down.start()
    down.assert_quiet(4, expected=0)


# --- the SSRF guard ------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_ssrf_targets_are_refused_without_the_allow_list(registry, receiver):
    assert "BERTH_OUTBOUND_ALLOW" not in registry.environment(), "the default server must not allow loopback"
    hooks = Hooks(registry)
    port = receiver.port
    cases = [
        (f"http://127.0.0.1:{port}/", ["127.0.0.1"]),
        ("http://169.254.169.254/latest/meta-data/", ["169.254.169.254"]),
        (f"http://localhost:{port}/", ["127.0.0.1", "::1"]),  # a DNS name resolving to loopback
        ("http://[::1]/", ["::1"]),
        (f"http://127.0.0.2:{port}/", ["127.0.0.2"]),
        ("http://10.1.2.3/", ["10.1.2.3"]),
        ("http://172.16.0.1/", ["172.16.0.1"]),
        ("https://192.168.1.1/", ["192.168.1.1"]),
        ("http://100.64.0.1/", ["100.64.0.1"]),
        ("http://0.0.0.0/", ["0.0.0.0"]),
        ("http://224.0.0.1/", ["224.0.0.1"]),
        ("http://[fd00::1]/", ["fd00::1"]),
        ("http://[fe80::1]/", ["fe80::1"]),
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:7f00:1"]),
        # other spellings of 127.0.0.1 (URL parsers turn them into 127.0.0.1)
        (f"http://2130706433:{port}/", ["127.0.0.1"]),
        (f"http://0x7f000001:{port}/", ["127.0.0.1"]),
        (f"http://127.1:{port}/", ["127.0.0.1"]),
    ]
    for url, addresses in cases:
        r = hooks.create("e2e", name=unique("ssrf-"), url=url)
        text = assert_refused(r, 400, ("INVALID_REQUEST", "OUTBOUND_REFUSED"), what=f"policy for {url}")
        assert any(a in text for a in addresses), f"{url}: the error names none of {addresses}: {r.text[:300]}"
        # and PATCHing an existing policy to it is refused the same way: nothing to patch here,
        # the test below does it with the allow-list
    assert hooks.list("e2e").json()["items"] == []
    assert receiver.requests() == []


@pytest.mark.edge_only
def test_allow_list_admits_only_its_cidr(hook_server, receiver):
    hooks = Hooks(hook_server)
    name = new_registry(hook_server, "allow")
    ok = hooks.make(name, name="loop", url=receiver.url("/ok"))
    assert ok["url"] == receiver.url("/ok")
    assert hooks.test(name, ok["id"]).json()["delivery"]["status"] == "delivered"
    for url, address in [("http://[::1]/", "::1"), ("http://169.254.169.254/", "169.254.169.254"),
                         ("http://10.0.0.1/", "10.0.0.1")]:
        assert_refused(hooks.create(name, name=unique("x-"), url=url), 400, ("INVALID_REQUEST", "OUTBOUND_REFUSED"),
                       address, what=f"create {url} with 127.0.0.0/8 allowed")
        assert_refused(hooks.patch(name, ok["id"], url=url), 400, ("INVALID_REQUEST", "OUTBOUND_REFUSED"),
                       address, what=f"PATCH url to {url}")
    assert hooks.get(name, ok["id"]).json()["url"] == receiver.url("/ok")


def test_delivery_time_guard_refuses_a_target_no_longer_allowed(registry_factory, receiver):
    """A policy created while loopback was allowed: once the server runs without the allow-list,
    every attempt is refused before connecting (the guard runs at delivery time too)."""
    reg = registry_factory(env=WEBHOOK_ENV)
    name = new_registry(reg, "rebind")
    hooks = Hooks(reg)
    pol = hooks.make(name, name="was-allowed", url=receiver.url("/r"))
    reg.stop()
    reg.extra_env = {k: v for k, v in WEBHOOK_ENV.items() if k != "BERTH_OUTBOUND_ALLOW"}
    reg.start()
    push_artifact(reg, f"{name}/app", "v1")
    dead = hooks.wait_delivery(name, pol["id"], "dead", timeout=DELIVERY_WAIT)
    for a in dead["attempts"]:
        assert a["status"] is None and a["error"] and "127.0.0.1" in a["error"], a
    r = hooks.test(name, pol["id"])
    assert r.status_code == 200, r.text
    d = r.json()["delivery"]
    assert d["status"] != "delivered" and d["attempts"][0]["status"] is None and d["attempts"][0]["error"], d
    assert receiver.requests() == [], "a refused target was contacted:\n" + receiver.summary()


# --- validation ----------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_bad_policy_input_gets_clear_400s(hook_server, receiver):
    reg = hook_server
    hooks = Hooks(reg)
    name = new_registry(reg, "bad")
    url = receiver.url("/v")
    good = {"name": "valid", "url": url}
    # (body, what the error must name: the field, or for a value of the wrong kind the value)
    bad = [
        ({**good, "events": ["PUSH_IMAGE"]}, ("events", "PUSH_IMAGE")),
        ({**good, "events": ["PING"]}, ("events", "PING")),
        ({**good, "events": []}, ("events",)),
        ({**good, "events": ["PUSH_ARTIFACT", "PUSH_ARTIFACT"]}, ("events", "duplicate")),
        ({**good, "events": "PUSH_ARTIFACT"}, ("events", "sequence")),
        ({**good, "url": "not a url"}, ("url",)),
        ({**good, "url": "/relative/path"}, ("url",)),
        ({**good, "url": f"ftp://127.0.0.1:{receiver.port}/"}, ("url",)),
        ({**good, "url": "file:///etc/passwd"}, ("url",)),
        ({**good, "url": f"http://user:pw@127.0.0.1:{receiver.port}/"}, ("url",)),
        ({**good, "url": url + "#frag"}, ("url",)),
        ({**good, "url": url + "?q=" + "a" * 2100}, ("url",)),
        ({**good, "url": ""}, ("url",)),
        ({**good, "type": "teams"}, ("type", "teams")),
        ({**good, "format": "xml"}, ("format", "xml")),
        ({**good, "format": "CloudEvents"}, ("format", "CloudEvents")),
        ({**good, "auth_header": "Bearer x\r\nX-Injected: 1"}, ("auth_header",)),
        ({**good, "auth_header": "Bearer x\nX-Injected: 1"}, ("auth_header",)),
        ({**good, "auth_header": "B" * 4097}, ("auth_header",)),
        ({**good, "nmae": "typo"}, ("nmae",)),
        ({**good, "secret": "whsec_mine"}, ("secret",)),
        ({**good, "name": ""}, ("name",)),
        ({**good, "name": "x" * 65}, ("name",)),
        ({**good, "name": "bad/name"}, ("name",)),
        ({**good, "name": "tab\tname"}, ("name",)),
        ({**good, "enabled": "yes"}, ("enabled", "yes")),
        ({"url": url}, ("name",)),
        ({"name": "nourl"}, ("url",)),
    ]
    for body, names in bad:
        r = hooks.create(name, **body)
        what = f"POST {json.dumps(body)[:120]}"
        text = assert_refused(r, 400, "INVALID_REQUEST", what=what)
        assert any(n.lower() in text.lower() for n in names), f"{what}: the error names none of {names}: {r.text[:300]}"
    r = hooks.req("POST", hooks.path(name), data=b"{not json", headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "INVALID_REQUEST", what="POST of invalid JSON")
    assert hooks.list(name).json()["items"] == [], "a refused policy was stored"

    # the limits that are allowed: 64-character names, 2048-byte URLs, 4096-byte auth headers
    edge = hooks.make(name, name="n" * 64, url=url + "?q=" + "a" * (2048 - len(url) - 3),
                      auth_header="B" * 4096, description="edge")
    assert len(edge["url"]) == 2048
    ok_names = hooks.make(name, name="Ok name_1.2-3", url=url)
    assert ok_names["name"] == "Ok name_1.2-3"

    # PATCH is validated the same way, and unknown fields are refused there too
    for body, names in [({"events": ["NOPE"]}, ("events", "NOPE")), ({"url": "ftp://x/"}, ("url",)),
                        ({"type": "irc"}, ("type", "irc")), ({"format": "yaml"}, ("format", "yaml")),
                        ({"auth_header": "a\r\nb"}, ("auth_header",)), ({"colour": "red"}, ("colour",)),
                        ({"name": ""}, ("name",))]:
        r = hooks.patch(name, edge["id"], **body)
        text = assert_refused(r, 400, "INVALID_REQUEST", what=f"PATCH {body}")
        assert any(n.lower() in text.lower() for n in names), f"PATCH {body}: the error names none of {names}: {r.text}"
    assert hooks.get(name, edge["id"]).json() == {k: v for k, v in edge.items() if k != "secret"}

    # at most 20 policies per scope
    for i in range(18):
        hooks.make(name, name=f"p{i:02d}", url=url)
    assert len(hooks.list(name).json()["items"]) == 20
    r = hooks.create(name, name="twenty-first", url=url)
    assert_refused(r, 400, "INVALID_REQUEST", "20", what="a 21st policy")


def test_policy_crud_duplicates_and_unknown_ids(hook_server, receiver):
    reg = hook_server
    hooks = Hooks(reg)
    name = new_registry(reg, "crud")
    url = receiver.url("/c")
    before = int(time.time())
    full = hooks.make(name, name="full", url=url, type="http", events=["DELETE_ARTIFACT", "PUSH_ARTIFACT"],
                      format="cloudevents", auth_header="Bearer xyz", enabled=False, skip_tls_verify=True,
                      description="every field")
    assert set(full) == POLICY_KEYS | {"secret"}, sorted(full)
    assert POLICY_ID.match(full["id"]), full["id"]
    assert (full["registry"], full["name"], full["url"], full["type"], full["format"], full["auth_header_set"],
            full["enabled"], full["skip_tls_verify"], full["description"], full["created_by"]) == \
        (name, "full", url, "http", "cloudevents", True, False, True, "every field", "admin"), full
    assert sorted(full["events"]) == ["DELETE_ARTIFACT", "PUSH_ARTIFACT"], full["events"]
    assert before - 1 <= full["created_at"] <= time.time() + 1 and full["updated_at"] == full["created_at"], full

    minimal = hooks.make(name, name="minimal", url=url)
    assert (minimal["type"], minimal["format"], minimal["enabled"], minimal["skip_tls_verify"],
            minimal["auth_header_set"]) == ("http", "default", True, False, False), minimal
    assert minimal["description"] in ("", None), minimal
    assert sorted(minimal["events"]) == sorted(ALL_EVENT_TYPES), f"default events: {minimal['events']}"
    slack = hooks.make(name, name="chat", url=url, type="slack", events=["PUSH_ARTIFACT"])
    assert slack["type"] == "slack"

    # show and list (paged like the other lists: n and last)
    for p in (full, minimal, slack):
        r = hooks.get(name, p["id"])
        assert r.status_code == 200 and r.json() == {k: v for k, v in p.items() if k != "secret"}, r.text
    listed = hooks.list(name).json()
    assert set(listed) == {"items", "next"} and listed["next"] is None, listed
    assert sorted(p["id"] for p in listed["items"]) == sorted(p["id"] for p in (full, minimal, slack))
    assert all(set(p) == POLICY_KEYS for p in listed["items"]), listed
    page1 = hooks.list(name, n=2).json()
    assert len(page1["items"]) == 2 and page1["next"], page1
    page2 = hooks.list(name, n=2, last=page1["next"]).json()
    assert len(page2["items"]) == 1 and page2["next"] is None, page2
    assert [p["id"] for p in page1["items"] + page2["items"]] == [p["id"] for p in listed["items"]]

    # PATCH any field
    time.sleep(1.05)
    r = hooks.patch(name, full["id"], name="renamed", events=["CREATE_TAG"], format="default", enabled=True,
                    skip_tls_verify=False, description="", url=receiver.url("/other"), type="slack")
    assert r.status_code == 200, r.text
    changed = r.json()
    assert set(changed) == POLICY_KEYS, sorted(changed)
    assert (changed["name"], changed["events"], changed["format"], changed["enabled"], changed["skip_tls_verify"],
            changed["url"], changed["type"], changed["auth_header_set"]) == \
        ("renamed", ["CREATE_TAG"], "default", True, False, receiver.url("/other"), "slack", True), changed
    assert changed["updated_at"] > changed["created_at"] == full["created_at"], changed
    assert hooks.get(name, full["id"]).json() == changed

    # duplicates: 409 on create and on rename; the same name in another scope is fine
    assert_refused(hooks.create(name, name="minimal", url=url), 409, "ALREADY_EXISTS", "minimal",
                   what="duplicate name")
    assert_refused(hooks.patch(name, full["id"], name="minimal"), 409, "ALREADY_EXISTS", what="rename onto a name")
    other = new_registry(reg, "crud2")
    assert hooks.make(other, name="minimal", url=url)["registry"] == other

    # unknown ids and registries: 404
    missing = "wh-000000000000"
    for r, what in [(hooks.get(name, missing), "GET"), (hooks.patch(name, missing, enabled=False), "PATCH"),
                    (hooks.delete(name, missing), "DELETE"), (hooks.test(name, missing), "test"),
                    (hooks.deliveries(name, missing), "deliveries"),
                    (hooks.redeliver(name, missing, str(uuid.uuid4())), "redeliver"),
                    (hooks.get(other, full["id"]), "another registry's policy"),
                    (hooks.list("no-such-registry"), "list of an unknown registry"),
                    (hooks.create("no-such-registry", name="x", url=url), "create in an unknown registry")]:
        assert_refused(r, 404, "NOT_FOUND", what=what)

    # delete
    r = hooks.delete(name, minimal["id"])
    assert r.status_code == 204 and r.content == b"", r.text
    assert_refused(hooks.get(name, minimal["id"]), 404, "NOT_FOUND", what="GET after DELETE")
    assert_refused(hooks.delete(name, minimal["id"]), 404, "NOT_FOUND", what="DELETE twice")
    assert minimal["id"] not in [p["id"] for p in hooks.list(name).json()["items"]]
    # the name is free again
    assert hooks.make(name, name="minimal", url=url)["id"] != minimal["id"]


# --- roles ---------------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_viewers_may_look_and_only_administrators_change(hook_server, receiver):
    reg = hook_server
    admin = Hooks(reg)
    name = new_registry(reg, "roles")
    pol = admin.make(name, name="watched", url=receiver.url("/w"))
    glob = admin.make("_all", name=unique("roles-"), url=receiver.url("/g"), events=["DELETE_IMAGE"])
    try:
        ping = admin.test(name, pol["id"]).json()["delivery"]
        viewer_name, viewer_key = new_user(reg, "service-viewer")
        viewer = Hooks(reg, viewer_key)
        shown = {k: v for k, v in pol.items() if k != "secret"}
        assert viewer.get(name, pol["id"]).json() == shown
        assert pol["id"] in [p["id"] for p in viewer.list(name).json()["items"]]
        assert viewer.deliveries(name, pol["id"]).json()["items"][0]["id"] == ping["id"]
        assert glob["id"] in [p["id"] for p in viewer.list("_all").json()["items"]]
        refused = [
            (viewer.create(name, name="mine", url=receiver.url("/v")), "create"),
            (viewer.patch(name, pol["id"], enabled=False), "PATCH"),
            (viewer.patch(name, pol["id"], rotate_secret=True), "rotate"),
            (viewer.delete(name, pol["id"]), "DELETE"),
            (viewer.test(name, pol["id"]), "test"),
            (viewer.redeliver(name, pol["id"], ping["id"]), "redeliver"),
            (viewer.create("_all", name="mine", url=receiver.url("/v")), "create in _all"),
            (viewer.delete("_all", glob["id"]), "DELETE in _all"),
        ]
        for r, what in refused:
            assert_refused(r, 403, "DENIED", what=f"service-viewer {what}")
            assert "whsec_" not in r.text
        assert admin.get(name, pol["id"]).json() == shown, "a refused change changed the policy"
        assert len(receiver.requests("/w")) == 1, "a refused test or redeliver sent something"
        assert receiver.requests("/v") == []

        # the audit log has the changes and the refusals
        entries, last = [], None
        while True:
            r = requests.get(f"{reg.url}/api/v1/audit", params={"n": 1000, **({"last": last} if last else {})},
                             auth=reg.credentials, timeout=T)
            assert r.status_code == 200, r.text
            entries += r.json()["items"]
            last = r.json().get("next")
            if not last:
                break
        base = f"/api/v1/registries/{name}/webhooks"
        assert any(e["method"] == "POST" and e["target"] == base and e["status"] == 201 for e in entries), \
            "no audit entry for the webhook's creation"
        assert any(e["method"] == "PATCH" and e["target"] == f"{base}/{pol['id']}" and e["status"] == 403
                   and e["who"] == viewer_name for e in entries), "no audit entry for the viewer's refused PATCH"

        # an administrator of one registry: manages its webhooks, views but cannot change _all
        _, padmin_key = new_user(reg, "project-admin", registries=[name])
        padmin = Hooks(reg, padmin_key)
        mine = padmin.make(name, name="mine", url=receiver.url("/p"))
        assert mine["created_by"] != "admin"
        # registry-wide policies see every registry's events: only roles over every registry see them
        assert_refused(padmin.list("_all"), 403, "DENIED",
                       what="a one-registry admin listing the registry-wide policies")
        assert_refused(padmin.create("_all", name="mine", url=receiver.url("/p")), 403, "DENIED",
                       what="a one-registry admin creating a registry-wide policy")
        assert_refused(padmin.patch("_all", glob["id"], enabled=False), 403, "DENIED",
                       what="a one-registry admin changing a registry-wide policy")
        other = new_registry(reg, "roles2")
        r = padmin.create(other, name="x", url=receiver.url("/p"))
        assert r.status_code in (403, 404), f"a one-registry admin created a webhook elsewhere: {r.status_code}"
    finally:
        admin.delete("_all", glob["id"])


# --- the CLI -------------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_webhook_cli_end_to_end(hook_server, receiver, tmp_path):
    from test_cli import Cli, server_error
    reg = hook_server
    cli = Cli(reg, tmp_path / "cli-home")
    cli.login(*reg.credentials)
    name = new_registry(reg, "cli")
    hooks = Hooks(reg)

    def items(out):
        return out["items"] if isinstance(out, dict) and "items" in out else out

    added = cli.ok("webhook", "add", name, "--name", "ci", "--url", receiver.url("/ci"),
                   "--events", "PUSH_ARTIFACT,DELETE_TAG", "--format", "cloudevents", "--auth-header", "Bearer cli")
    assert added["secret"].startswith("whsec_"), added
    wid = added["id"]
    assert POLICY_ID.match(wid) and added["registry"] == name and added["format"] == "cloudevents", added
    assert sorted(added["events"]) == ["DELETE_TAG", "PUSH_ARTIFACT"] and added["auth_header_set"] is True, added
    policy = hooks.get(name, wid).json()
    assert {k: v for k, v in added.items() if k != "secret"} == policy

    slack = cli.ok("webhook", "add", name, "--name", "chat", "--url", receiver.url("/slack"), "--type", "slack",
                   "--disabled")
    assert slack["type"] == "slack" and slack["enabled"] is False, slack
    glob = cli.ok("webhook", "add", "_all", "--name", unique("cli-"), "--url", receiver.url("/all"),
                  "--events", "DELETE_IMAGE", "--skip-tls-verify")
    assert glob["registry"] == "_all" and glob["skip_tls_verify"] is True, glob
    try:
        # text output of add shows the secret once; ls and show never do
        p = cli.run("webhook", "add", name, "--name", "texty", "--url", receiver.url("/t"), json_output=False)
        assert p.returncode == 0, p.stderr
        texty_secret = re.search(r"whsec_[A-Za-z0-9_\-+/=]+", p.stdout + p.stderr)
        assert texty_secret, f"the text output of add does not show the secret:\n{p.stdout}\n{p.stderr}"
        listed = items(cli.ok("webhook", "ls", name))
        assert sorted(x["id"] for x in listed) == sorted([wid, slack["id"]] + [
            x["id"] for x in hooks.list(name).json()["items"] if x["name"] == "texty"])
        assert listed == hooks.list(name).json()["items"]
        text_ls = cli.text("webhook", "ls", name)
        for out in (json.dumps(listed), text_ls, cli.text("webhook", "show", name, wid)):
            assert added["secret"] not in out and texty_secret.group(0) not in out and "Bearer cli" not in out
        assert wid in text_ls and "chat" in text_ls and "texty" in text_ls, text_ls
        assert cli.ok("webhook", "show", name, wid) == policy
        assert glob["id"] in [x["id"] for x in items(cli.ok("webhook", "ls", "_all"))]

        assert cli.ok("webhook", "disable", name, wid)["enabled"] is False
        assert hooks.get(name, wid).json()["enabled"] is False
        assert cli.ok("webhook", "enable", name, wid)["enabled"] is True

        out = cli.ok("webhook", "test", name, wid)
        d = out.get("delivery", out)
        assert d["event_type"] == "PING" and d["status"] == "delivered", out
        ping = receiver.requests("/ci")[0]
        assert ping.event_type == "PING" and ping.header("Authorization") == "Bearer cli"
        assert_signed(ping, added["secret"])

        # a delivery that dies, then redelivered from the CLI
        receiver.set_default("/ci", Reply(500, "down"))
        push_artifact(reg, f"{name}/app", "v1")
        dead = hooks.wait_delivery(name, wid, "dead", timeout=DELIVERY_WAIT)
        log = items(cli.ok("webhook", "deliveries", name, wid))
        assert sorted(x["id"] for x in log) == sorted([dead["id"], d["id"]]), log  # order: see finish()
        by_id = {x["id"]: x for x in log}
        assert by_id[dead["id"]]["status"] == "dead" and by_id[dead["id"]]["event_type"] == "PUSH_ARTIFACT", log
        text_log = cli.text("webhook", "deliveries", name, wid)
        assert dead["id"] in text_log and "dead" in text_log, text_log
        receiver.set_default("/ci", 200)
        again = cli.ok("webhook", "redeliver", name, wid, dead["id"])
        again = again.get("delivery", again)
        assert again["id"] == dead["id"] and again["status"] == "pending", again
        hooks.wait_delivery(name, wid, "delivered", delivery_id=dead["id"])
        got = [r for r in receiver.requests("/ci") if r.header("X-Berth-Delivery") == dead["id"]]
        assert len(got) == 4 and got[-1].json()["type"] == "io.berth.artifact.pushed", receiver.summary("/ci")

        # errors: the server's refusals exit 1 with its error, usage errors exit 2
        assert server_error(cli.fails(1, "webhook", "show", name, "wh-000000000000"))["code"] == "NOT_FOUND"
        assert server_error(cli.fails(1, "webhook", "add", name, "--name", "ci", "--url",
                                      receiver.url("/x")))["code"] == "ALREADY_EXISTS"
        p = cli.run("webhook", "add", name, "--name", "bad", "--url", receiver.url("/x"), "--events", "NOPE")
        assert p.returncode in (1, 2) and "NOPE" in p.stderr, p.stderr
        p = cli.run("webhook", "add", name, "--name", "bad", "--url", "ftp://127.0.0.1/")
        assert p.returncode in (1, 2) and "url" in p.stderr.lower(), p.stderr
        cli.fails(2, "webhook", "add", name, "--url", receiver.url("/x"))  # --name is required
        cli.fails(2, "webhook", "add", name, "--name", "x")  # --url is required
        cli.fails(2, "webhook", "frobnicate", name)
        cli.fails(2, "webhook", "redeliver", name, wid)  # the delivery is missing

        out = cli.ok("webhook", "rm", name, wid)
        assert isinstance(out, dict), out
        assert_refused(hooks.get(name, wid), 404, "NOT_FOUND", what="GET after `webhook rm`")
        assert wid not in [x["id"] for x in items(cli.ok("webhook", "ls", name))]
    finally:
        hooks.delete("_all", glob["id"])


def test_racing_creates_keep_the_limit_and_unique_names(hook_server, receiver):
    """60 creates released together: exactly 20 (the limit per registry) succeed, the rest are
    refused with 400 (limit) or 409 (name taken); 20 creates of one name: one succeeds."""
    import concurrent.futures as cf
    import threading
    reg = hook_server
    hooks = Hooks(reg)
    name = new_registry(reg, "race")
    barrier = threading.Barrier(20)

    def create(i: int, same: bool) -> int:
        barrier.wait(timeout=30)
        return hooks.create(name, name="same" if same else f"h{i}", url=receiver.url("/r")).status_code

    with cf.ThreadPoolExecutor(20) as pool:
        same = list(pool.map(lambda i: create(i, True), range(20)))
    assert sorted(same) == [201] + [409] * 19, same
    with cf.ThreadPoolExecutor(20) as pool:
        many = [s for batch in range(3) for s in pool.map(lambda i: create(batch * 20 + i, False), range(20))]
    assert many.count(201) == 19, many  # 19 more than "same": 20 in all
    assert set(many) <= {201, 400}, many
    listed = hooks.list(name).json()["items"]
    assert len(listed) == 20, len(listed)
    assert len({p["name"] for p in listed}) == 20


@pytest.mark.edge_only
def test_deleting_a_registry_deletes_its_webhooks_and_urls_with_control_characters_are_refused(
        hook_server, receiver):
    reg = hook_server
    hooks = Hooks(reg)
    name = new_registry(reg, "ephem")
    made = hooks.make(name, name="old", url=receiver.url("/old"), auth_header="Bearer STALE")
    mgmt(reg, "DELETE", f"/api/v1/registries/{name}")
    r = requests.post(f"{reg.url}/api/v1/registries", json={"name": name}, auth=reg.credentials, timeout=T)
    assert r.status_code == 201, r.text
    assert hooks.list(name).json()["items"] == []
    assert hooks.get(name, made["id"]).status_code == 404
    # and the name is free again in the new registry
    hooks.make(name, name="old", url=receiver.url("/new"))
    for bad in (receiver.url("/a") + "\r\nX-Injected: yes", receiver.url("/a b"), receiver.url("/a\tb")):
        assert_refused(hooks.create(name, name="ctl", url=bad), 400, "INVALID_REQUEST", "url",
                       what=f"url {bad!r}")
