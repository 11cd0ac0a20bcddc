"""Image protection, image cleanup, pull times and garbage collection against a running server (on
both backends): every protected operation refused through docker, skopeo, the registry API, the
management API and the CLI (and signature tags exempt); cleanup rules, test runs, real runs,
history and schedules driven through the `berth` CLI; a run interrupted by killing the server
finishing after a restart; and online GC reclaiming exactly the unreferenced blobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from e2e_util import OCI_MANIFEST, digest, random_bytes, require_tool, run, skopeo_creds
from test_auth import build_image
from test_cli import Cli
from test_skopeo import skopeo  # noqa: F401  (the fixture: skopeo with a private blob-info cache)

pytestmark = pytest.mark.berth_only


@pytest.fixture
def cli(registry, tmp_path) -> Cli:
    c = Cli(registry, tmp_path / "admin-home")
    c.login(*registry.credentials)
    return c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def push_artifact(api, repo: str, ref: str, label: bytes) -> tuple[str, bytes]:
    """An OCI image manifest with the empty config and one unique layer, under `ref` (a tag, or
    None for by digest). Returns (digest, layer bytes)."""
    config = api.push_blob(repo, b"{}")
    layer = label + random_bytes(32)
    layer_d = api.push_blob(repo, layer)
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d,
                    "size": len(layer)}],
    }).encode()
    d = digest(body)
    r = api.put_manifest(repo, ref or d, body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    return d, layer


def error_code(r) -> str:
    return r.json()["errors"][0]["code"]


def wait_run(api, path: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get(path)
        assert r.status_code == 200, r.text
        run_ = r.json()
        if run_["status"] in ("succeeded", "failed"):
            return run_
        time.sleep(0.3)
    raise AssertionError(f"{path} did not finish within {timeout} s: {run_}")


# --- protection ------------------------------------------------------------------------------------

def test_protected_tags_refuse_every_client(registry, api, cli, tmp_path, skopeo):
    require_tool("docker")
    host = registry.host
    image = unique("prot")
    repo = f"e2e/{image}"
    ref = f"{host}/{repo}:v1"
    user, password = registry.credentials
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    docker = ["docker", "--config", str(cfg)]
    p = subprocess.run([*docker, "login", host, "-u", user, "--password-stdin"], input=password,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    try:
        build_image(tmp_path, ref)
        run([*docker, "push", ref], timeout=300)
        v1 = api.get_manifest(repo, "v1").headers["Docker-Content-Digest"]
        other, _ = push_artifact(api, repo, "scratch", b"other")

        rule = cli.ok("protect", "add", "e2e", "--image", "prot-*", "--tag", "v*")
        assert rule["image"] == "prot-*" and rule["tag"] == "v*" and rule["enabled"] is True
        assert [r["id"] for r in cli.ok("protect", "ls", "e2e")] == [rule["id"]]
        dup = cli.run("protect", "add", "e2e", "--image", "prot-*", "--tag", "v*")
        assert dup.returncode == 1 and "ALREADY_EXISTS" in dup.stderr, dup.stderr

        # docker: the same image again is fine; another image onto v1 is refused with the reason
        run([*docker, "push", ref], timeout=300)
        build_image(tmp_path, ref)
        p = run([*docker, "push", ref], check=False, timeout=300)
        assert p.returncode != 0, p.stdout
        assert "protect" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
        assert api.get_manifest(repo, "v1").headers["Docker-Content-Digest"] == v1

        # skopeo: copying another artifact onto v1, and deleting v1, are refused
        p = run([*skopeo, "copy", "--preserve-digests", *skopeo_creds(registry, "src"),
                 *skopeo_creds(registry, "dest"), f"docker://{host}/{repo}:scratch", f"docker://{ref}"],
                check=False, timeout=300)
        assert p.returncode != 0 and "protect" in p.stderr.lower(), p.stderr
        p = run([*skopeo, "delete", "--tls-verify=false", f"--creds={user}:{password}", f"docker://{ref}"],
                check=False, timeout=120)
        assert p.returncode != 0 and "protect" in p.stderr.lower(), p.stderr

        # the registry API and the management API
        r = api.put_manifest(repo, "v1", api.get_manifest(repo, "scratch").content, OCI_MANIFEST)
        assert r.status_code == 412 and error_code(r) == "PROTECTED", r.text
        for path in (f"/v2/{repo}/manifests/v1", f"/v2/{repo}/manifests/{v1}",
                     f"/api/v1/images/{repo}/tags/v1", f"/api/v1/images/{repo}/artifacts/{v1}",
                     f"/api/v1/images/{repo}"):
            r = api.delete(path)
            assert r.status_code == 412 and error_code(r) == "PROTECTED", (path, r.status_code, r.text)
        r = api.put(f"/api/v1/images/{repo}/tags/v1", json={"digest": other})
        assert r.status_code == 412, r.text

        # the CLI: exit 1 with the server's PROTECTED error
        for args in (("tag", "rm", f"{repo}:v1"), ("artifact", "rm", f"{repo}@{v1}"), ("image", "rm", repo)):
            p = cli.run(*args)
            assert p.returncode == 1 and "PROTECTED" in p.stderr, (args, p.stderr)
        assert api.get_manifest(repo, "v1").headers["Docker-Content-Digest"] == v1

        # cosign-style signature tags stay writable even under a catch-all rule
        cli.ok("protect", "add", "e2e", "--image", "**", "--tag", "**")
        sig_tag = "sha256-" + v1.split(":")[1] + ".sig"
        for label in (b"sig-1", b"sig-2"):
            push_artifact(api, repo, sig_tag, label)

        # disabled rules protect nothing
        for r in cli.ok("protect", "ls", "e2e"):
            cli.ok("protect", "disable", "e2e", r["id"])
        run([*docker, "push", ref], timeout=300)
        assert api.get_manifest(repo, "v1").headers["Docker-Content-Digest"] != v1
        cli.ok("protect", "rm", "e2e", rule["id"])
        assert rule["id"] not in [r["id"] for r in cli.ok("protect", "ls", "e2e")]
    finally:
        subprocess.run([*docker, "rmi", "-f", ref], capture_output=True, timeout=120)


# --- cleanup ---------------------------------------------------------------------------------------

def test_cleanup_rules_test_run_run_history_and_schedule_through_the_cli(registry, api, cli):
    a, b = unique("clean-a"), unique("clean-b")
    pushed = {}
    for name, ref in [(a, "v1"), (a, "x2"), (a, None), (a, "x4"), (b, "x1"), (b, "x2")]:
        d, _ = push_artifact(api, f"e2e/{name}", ref, f"{name}{ref}".encode())
        pushed[(name, ref)] = d
        time.sleep(1.05)  # push times are whole seconds: keep them apart
    before_b = api.tags(f"e2e/{b}")

    rule = cli.ok("cleanup", "add", "e2e", "--image", a, "--tag", "**", "--untagged", "--keep", "latest-pushed:2")
    assert rule["keep"] == "latest-pushed:2" and rule["untagged"] is True and rule["tag_mode"] == "match"
    dup = cli.run("cleanup", "add", "e2e", "--image", a, "--tag", "**", "--untagged", "--keep", "latest-pushed:2")
    assert dup.returncode == 1 and "ALREADY_EXISTS" in dup.stderr, dup.stderr
    bad = cli.run("cleanup", "add", "e2e", "--image", a, "--tag", "**", "--keep", "newest:2")
    assert bad.returncode != 0

    # Test Run: nothing deleted, the would-be result recorded
    test_run = cli.ok("cleanup", "test", "e2e", "--wait")
    assert test_run["dry_run"] is True and test_run["status"] == "succeeded"
    assert (test_run["total"], test_run["retained"], test_run["deleted"]) == (4, 2, 2)
    assert api.tags(f"e2e/{a}") == ["v1", "x2", "x4"]

    # Run Immediately
    real = cli.ok("cleanup", "run", "e2e", "--wait")
    assert real["dry_run"] is False and real["status"] == "succeeded"
    assert (real["total"], real["retained"], real["deleted"]) == (4, 2, 2)
    assert api.tags(f"e2e/{a}") == ["x4"]
    assert api.get_manifest(f"e2e/{a}", pushed[(a, None)]).status_code == 200, "the untagged newer one stays"
    assert api.get_manifest(f"e2e/{a}", pushed[(a, "v1")]).status_code == 404
    assert api.tags(f"e2e/{b}") == before_b, "an image no rule selects is untouched"

    # history: newest first, with per-artifact decisions and reasons
    history = cli.ok("cleanup", "history", "e2e")
    assert [h["id"] for h in history][:2] == [real["id"], test_run["id"]]
    detail = cli.ok("cleanup", "history", "e2e", real["id"])
    by_digest = {d["digest"]: d for d in detail["decisions"]}
    assert by_digest[pushed[(a, "v1")]]["action"] == "delete"
    assert by_digest[pushed[(a, "x4")]]["action"] == "retain"
    assert rule["id"] in by_digest[pushed[(a, "x4")]]["reason"]

    # rules: disable, enable, remove
    assert cli.ok("cleanup", "disable", "e2e", rule["id"])["enabled"] is False
    assert cli.ok("cleanup", "enable", "e2e", rule["id"])["enabled"] is True
    assert [r["id"] for r in cli.ok("cleanup", "ls", "e2e")] == [rule["id"]]

    # the cycle: set, shown with its next run, invalid fields named, switched off
    cycle = cli.ok("cleanup", "schedule", "e2e", "0 3 * * *")
    assert cycle["cron"] == "0 3 * * *"
    now = time.time()
    assert now < cycle["next_run_at"] <= now + 86_400 and cycle["next_run_at"] % 86_400 == 3 * 3600
    p = cli.run("cleanup", "schedule", "e2e", "0 25 * * *")
    assert p.returncode == 1 and "hour" in p.stderr, p.stderr
    p = cli.run("cleanup", "schedule", "e2e", "0 3 * JANUARY *")
    assert p.returncode == 1 and "month" in p.stderr, p.stderr
    assert cli.ok("cleanup", "schedule", "e2e")["cron"] == "0 3 * * *"
    cli.ok("cleanup", "schedule", "e2e", "--off")
    assert cli.ok("cleanup", "schedule", "e2e")["cron"] is None
    cli.ok("cleanup", "rm", "e2e", rule["id"])
    assert cli.ok("cleanup", "ls", "e2e") == []


def test_protection_wins_over_cleanup(registry, api, cli):
    name = unique("keep")
    repo = f"e2e/{name}"
    old, _ = push_artifact(api, repo, "release-1", b"old")
    time.sleep(1.05)
    new, _ = push_artifact(api, repo, "dev-2", b"new")
    time.sleep(1.05)  # an artifact pushed in the second a run starts is never cleaned by it
    cli.ok("protect", "add", "e2e", "--image", name, "--tag", "release-*")
    cli.ok("cleanup", "add", "e2e", "--image", "**", "--tag", "**", "--untagged", "--keep", "latest-pushed:0")
    done = cli.ok("cleanup", "run", "e2e", "--wait")
    assert (done["protected"], done["deleted"]) == (1, 1), done
    assert api.tags(repo) == ["release-1"]
    detail = cli.ok("cleanup", "history", "e2e", done["id"])
    decision = next(d for d in detail["decisions"] if d["digest"] == old)
    assert decision["action"] == "protected" and "protection rule" in decision["reason"]
    assert api.get_manifest(repo, new).status_code == 404


def test_a_cleanup_run_killed_with_the_server_finishes_after_a_restart(registry_factory):
    from e2e_util import Api
    reg = registry_factory(env={"BERTH_JOB_LEASE_SECONDS": "2"})
    api = Api(reg)
    repo = f"e2e/{unique('bulk')}"
    n = 40 if reg.is_aws() else 210  # embedded: two chunks of decisions; moto is slow to seed
    for i in range(n):
        push_artifact(api, repo, f"t{i:04d}", f"bulk {i}".encode())
    r = api.post("/api/v1/registries/e2e/cleanup/rules",
                 json={"image": "**", "tag": "**", "keep": "latest-pushed:5"})
    assert r.status_code == 201, r.text
    time.sleep(1.1)
    r = api.post("/api/v1/registries/e2e/cleanup/runs", json={"dry_run": False})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    time.sleep(0.3)
    os.killpg(reg.proc.pid, signal.SIGKILL)
    reg.proc.wait(timeout=30)
    reg.expected_exit = True
    reg.start()
    done = wait_run(api, f"/api/v1/registries/e2e/cleanup/runs/{run_id}", timeout=180)
    assert done["status"] == "succeeded", done
    assert (done["total"], done["retained"], done["failed"]) == (n, 5, 0), done
    assert done["deleted"] == n - 5, done
    # the five newest by push time; pushes share seconds, so check the count and that they exist
    tags = api.tags(repo)
    assert len(tags) == 5, tags
    for t in tags:
        assert api.get_manifest(repo, t).status_code == 200


# --- pull time -------------------------------------------------------------------------------------

def test_pull_time_is_recorded_on_get_not_head(registry, api):
    repo = f"e2e/{unique('pull')}"
    d, _ = push_artifact(api, repo, "v1", b"pulled")
    shown = api.get(f"/api/v1/images/{repo}/artifacts/{d}").json()
    assert shown["pulled_at"] is None
    assert api.get_manifest(repo, "v1", method="HEAD").status_code == 200
    assert api.get(f"/api/v1/images/{repo}/artifacts/{d}").json()["pulled_at"] is None
    before = int(time.time())
    assert api.get_manifest(repo, "v1").status_code == 200
    pulled_at = api.get(f"/api/v1/images/{repo}/artifacts/{d}").json()["pulled_at"]
    assert pulled_at is not None and before - 1 <= pulled_at <= time.time() + 1


# --- garbage collection ----------------------------------------------------------------------------

def blob_present(registry, d: str) -> bool:
    if registry.is_aws():
        s3 = registry.s3()
        listing = s3.list_objects_v2(Bucket=registry.aws_name)
        return any(d.split(":")[1] in o["Key"] for o in listing.get("Contents", []))
    return registry.blob_file(d).exists()


def test_gc_reclaims_exactly_the_unreferenced_blobs(registry_factory, tmp_path):
    from e2e_util import Api
    reg = registry_factory(env={"BERTH_GC_GRACE_SECONDS": "0"})
    api = Api(reg)
    cli = Cli(reg, tmp_path / "gc-home")
    cli.login(*reg.credentials)
    keep_repo, drop_repo = f"e2e/{unique('gc-keep')}", f"e2e/{unique('gc-drop')}"
    kept_d, kept_layer = push_artifact(api, keep_repo, "v1", b"kept")
    dropped_d, dropped_layer = push_artifact(api, drop_repo, "v1", b"dropped")
    kept_layer_d, dropped_layer_d = digest(kept_layer), digest(dropped_layer)
    r = api.delete(f"/api/v1/images/{drop_repo}")
    assert r.status_code in (200, 204), r.text
    time.sleep(1.1)  # with no grace window, a blob is still "young" within the second it was written

    dry = cli.ok("gc", "run", "--dry-run", "--wait")
    assert dry["status"] == "succeeded" and dry["dry_run"] is True
    # the dropped image's layer and manifest bytes are garbage; the shared empty config is not
    assert dry["blobs_deleted"] == 2, dry
    assert blob_present(reg, dropped_layer_d) and blob_present(reg, dropped_d)

    done = cli.ok("gc", "run", "--wait")
    assert done["status"] == "succeeded" and done["dry_run"] is False
    assert done["blobs_deleted"] == 2, done
    assert done["bytes_deleted"] >= len(dropped_layer)
    assert not blob_present(reg, dropped_layer_d) and not blob_present(reg, dropped_d)
    # what is referenced is intact, byte for byte
    assert api.get_blob(keep_repo, kept_layer_d) == kept_layer
    m = api.get_manifest(keep_repo, "v1")
    assert m.status_code == 200 and digest(m.content) == kept_d
    assert api.get_blob(keep_repo, json.loads(m.content)["config"]["digest"]) == b"{}"
    assert cli.ok("gc", "show", done["id"])["id"] == done["id"]
    assert done["id"] in [g["id"] for g in cli.ok("gc", "ls")]
    # a push after GC of the same content works again
    d2, _ = push_artifact(api, drop_repo, "again", b"dropped-again")
    assert api.get_manifest(drop_repo, d2).status_code == 200
