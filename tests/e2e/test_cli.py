"""The `berth` command-line client against a running server: login/logout and where credentials
live, every registry/image/artifact/tag/user/key/audit command with `--output json` checked field
by field (and against the management API's own answers), text output, paging, and the exit codes
scripts rely on (1 refused, 2 usage, 3 unreachable or not logged in, 4 authentication failed)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Optional

import pytest

from conftest import BERTH_BIN, free_port
from e2e_util import OCI_MANIFEST, random_bytes

pytestmark = pytest.mark.berth_only


# --- helpers --------------------------------------------------------------------------------------

class Cli:
    """Runs the `berth` binary with its own credentials file (BERTH_CONFIG) and no BERTH_* or
    HOME from the test environment leaking in."""

    def __init__(self, registry, home: Path):
        self.registry = registry
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "berth" / "credentials.json"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        self.env.update(HOME=str(home), BERTH_CONFIG=str(self.config))

    def run(self, *args: str, stdin: Optional[str] = None, env: Optional[dict] = None,
            json_output: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(BERTH_BIN), *args] + (["--output", "json"] if json_output else [])
        full_env = dict(self.env)
        full_env.update(env or {})
        return subprocess.run(cmd, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              timeout=120, env=full_env)

    def ok(self, *args: str, **kw):
        """Runs a command that must succeed; returns its parsed JSON output."""
        p = self.run(*args, **kw)
        assert p.returncode == 0, f"berth {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return json.loads(p.stdout)

    def text(self, *args: str) -> str:
        """Runs a command that must succeed with text output; returns stdout."""
        p = self.run(*args, json_output=False)
        assert p.returncode == 0, f"berth {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.stdout

    def fails(self, code: int, *args: str, **kw) -> subprocess.CompletedProcess:
        """Runs a command that must exit with `code`."""
        p = self.run(*args, **kw)
        assert p.returncode == code, (f"berth {' '.join(args)}: expected exit {code}, got {p.returncode}\n"
                                      f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p

    def login(self, access_key: str, secret: str, url: Optional[str] = None):
        return self.ok("login", url or self.registry.url, "--access-key", access_key, "--secret-key-stdin",
                       stdin=secret + "\n")


def server_error(p: subprocess.CompletedProcess) -> dict:
    """The error JSON a failed `--output json` command printed to stderr (its last line), after the
    `berth: CODE: detail` line."""
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("berth: "), p.stderr
    body = json.loads(lines[-1])
    assert isinstance(body["errors"], list) and body["errors"], body
    assert lines[0] == f"berth: {body['errors'][0]['code']}: {body['errors'][0]['detail']}", p.stderr
    return body["errors"][0]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cli(registry, api, tmp_path) -> Cli:
    """A CLI logged in as the e2e administrator."""
    c = Cli(registry, tmp_path / "admin-home")
    c.login(*registry.credentials)
    return c


def table_rows(text: str) -> list[list[str]]:
    """A text table split into cells (columns are separated by two or more spaces)."""
    import re
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


# --- login, logout, credentials -----------------------------------------------------------------

@pytest.mark.edge_only
def test_login_stores_credentials_privately_and_logout_forgets_them(registry, api, tmp_path):
    c = Cli(registry, tmp_path / "home")
    access, secret = registry.credentials
    out = c.login(access, secret, url=registry.url + "/")
    assert out == {"url": registry.url, "access_key": access, "config": str(c.config)}
    assert secret not in json.dumps(out)
    assert stat.S_IMODE(c.config.stat().st_mode) == 0o600
    assert json.loads(c.config.read_text()) == {"url": registry.url, "access_key": access, "secret_key": secret}

    names = [r["name"] for r in c.ok("registry", "ls")]
    assert set(registry.registries) <= set(names)

    out = c.ok("logout")
    assert out == {"logged_out": True, "config": str(c.config)}
    assert not c.config.exists()
    p = c.fails(3, "registry", "ls")
    assert "not logged in" in p.stderr
    assert c.ok("logout")["logged_out"] is False

    # Without a file, the environment alone is enough ...
    env = {"BERTH_URL": registry.url, "BERTH_ACCESS_KEY": access, "BERTH_SECRET_KEY": secret}
    assert set(registry.registries) <= {r["name"] for r in c.ok("registry", "ls", env=env)}
    # ... and it overrides the file, field by field.
    c.login(access, secret)
    p = c.fails(4, "registry", "ls", env={"BERTH_SECRET_KEY": "wrong-secret-wrong-secret"})
    assert p.stderr.startswith("berth: UNAUTHORIZED"), p.stderr
    dead = f"http://127.0.0.1:{free_port()}"
    c.fails(3, "registry", "ls", env={"BERTH_URL": dead})

    # No flags: the access key and the secret are asked for and read from standard input.
    c.ok("logout")
    p = c.run("login", registry.url, stdin=f"{access}\n{secret}\n", json_output=False)
    assert p.returncode == 0, p.stderr
    assert "Access key:" in p.stderr and "Secret key:" in p.stderr
    assert secret not in p.stdout + p.stderr
    assert f"Logged in to {registry.url} as {access}" in p.stdout
    assert json.loads(c.config.read_text())["secret_key"] == secret

    # The default location is ~/.config/berth/credentials.json.
    env = dict(c.env)
    env.pop("BERTH_CONFIG")
    p = subprocess.run([str(BERTH_BIN), "login", registry.url, "--access-key", access, "--secret-key-stdin"],
                       input=secret + "\n", capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    default = tmp_path / "home" / ".config" / "berth" / "credentials.json"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert json.loads(default.read_text())["access_key"] == access


@pytest.mark.edge_only
def test_login_failures_have_their_exit_codes(registry, api, tmp_path):
    c = Cli(registry, tmp_path / "home")
    access, secret = registry.credentials
    p = c.fails(4, "login", registry.url, "--access-key", access, "--secret-key-stdin",
                stdin="not-the-secret-at-all\n")
    assert "authentication failed" in p.stderr and access in p.stderr
    assert not c.config.exists()
    p = c.fails(4, "login", registry.url, "--access-key", "BKNOSUCHKEY000000000", "--secret-key-stdin",
                stdin=secret + "\n")
    assert not c.config.exists()

    dead = f"http://127.0.0.1:{free_port()}"
    p = c.fails(3, "login", dead, "--access-key", access, "--secret-key-stdin", stdin=secret + "\n")
    assert "cannot reach" in p.stderr and dead in p.stderr
    assert not c.config.exists()

    c.fails(2, "login", "ftp://example.invalid", "--access-key", access, "--secret-key-stdin", stdin=secret + "\n")
    c.fails(2, "login", registry.url, "--access-key", access, "--secret-key-stdin", stdin="\n")

    # Stored credentials for a server that went away: 3, for every command.
    c.login(access, secret)
    registry.stop()
    for args in (["registry", "ls"], ["user", "show", "admin"], ["audit", "ls"]):
        p = c.fails(3, *args)
        assert "cannot reach" in p.stderr
    registry.start()


@pytest.mark.edge_only
def test_usage_errors_exit_2_and_help_documents_exit_codes(registry, api, tmp_path, cli):
    p = subprocess.run([str(BERTH_BIN), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for line in ("0  success", "1  the server refused", "2  usage error", "3  the server cannot be reached",
                 "4  authentication failed"):
        assert line in p.stdout, p.stdout
    p = subprocess.run([str(BERTH_BIN), "tag", "add", "--help"], capture_output=True, text=True, timeout=30)
    assert "Exit codes:" in p.stdout
    # routes: a table by default, the declarations as JSON with --output json
    p = subprocess.run([str(BERTH_BIN), "routes"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.split()[:4] == ["ROUTE", "METHODS", "PATH", "PORTS"], p.stdout
    row = next(line.split() for line in p.stdout.splitlines() if line.startswith("manifest-put "))
    assert row == ["manifest-put", "PUT", "/v2/<name>/manifests/{reference}", "blobs:read,blobs:write,metadata:write,jobs:send"]
    p = subprocess.run([str(BERTH_BIN), "routes", "--output", "json"], capture_output=True, text=True, timeout=30)
    routes = {r["name"]: r for r in json.loads(p.stdout)}
    assert p.returncode == 0 and len(routes) == 60
    audit = routes["api-audit"]
    assert (audit["methods"], audit["ports"]) == (["GET"], [])
    assert audit["operations"][0]["rule"] == "admin" and audit["operations"][0]["audit"] == "never"
    get = routes["manifest-get"]["operations"]
    assert [(o["method"], o["rule"]) for o in get] == [("GET", {"repo": "pull"}), ("HEAD", {"repo": "view"})]

    p = cli.fails(2, "user", "create", unique("u"), "--role", "superuser")
    assert "superuser" in p.stderr and "service-viewer" in p.stderr  # names the valid roles
    cli.fails(2, "user", "create", unique("u"))  # --role is required
    cli.fails(2, "registry", "set", "e2e")  # nothing to change
    cli.fails(2, "registry", "set", "e2e", "--public", "--private")
    cli.fails(2, "registry", "create", unique("r"), "--private-network", "not-a-cidr")
    cli.fails(2, "tag", "add", "e2e/app", "sha256:" + "0" * 64)  # no tag
    cli.fails(2, "tag", "add", "e2e/app:v1", "latest")  # not a digest
    cli.fails(2, "artifact", "show", "e2e/app:v1")  # a tag, not a digest
    cli.fails(2, "image", "rm", "e2e")  # a registry, not an image
    cli.fails(2, "key", "ls")  # --user is required
    cli.fails(2, "audit", "ls", "--limit", "0")
    cli.fails(2, "registry", "ls", "--output", "yaml", json_output=False)


# --- registries ---------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_registry_commands(registry, api, cli):
    name = unique("cli")
    created = cli.ok("registry", "create", name, "--private", "--private-network", "10.0.0.0/8",
                     "--private-network", "192.168.1.0/24")
    assert created["name"] == name
    assert created["public_access"] is False
    assert created["private_networks"] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert created["created_by"] == "admin"
    assert isinstance(created["created_at"], int) and created["created_at"] > 0
    assert created == api.get(f"/api/v1/registries/{name}").json()

    public = cli.ok("registry", "create", unique("pub"))
    assert public["public_access"] is True and public["private_networks"] == []

    listed = cli.ok("registry", "ls")
    assert isinstance(listed, list)
    by_name = {r["name"]: r for r in listed}
    # one registry shown (create, show, set) also carries its storage use; the list does not
    assert created["storage_bytes"] == 0 and created["image_count"] == 0
    assert by_name[name] == {k: v for k, v in created.items() if k not in ("storage_bytes", "image_count")}
    assert set(registry.registries) | {name, public["name"]} <= set(by_name)
    assert [r["name"] for r in listed] == sorted(by_name)

    assert cli.ok("registry", "show", name) == created

    changed = cli.ok("registry", "set", name, "--public")
    assert changed["public_access"] is True and changed["private_networks"] == created["private_networks"]
    changed = cli.ok("registry", "set", name, "--private", "--private-network", "172.16.0.0/12")
    assert changed["public_access"] is False and changed["private_networks"] == ["172.16.0.0/12"]
    changed = cli.ok("registry", "set", name, "--clear-private-networks")
    assert changed["public_access"] is False and changed["private_networks"] == []
    assert cli.ok("registry", "show", name) == changed

    # text output: a header row and aligned columns; key: value lines for one object
    text = cli.text("registry", "ls")
    rows = table_rows(text)
    assert rows[0] == ["NAME", "PUBLIC", "PRIVATE NETWORKS", "CREATED", "CREATED BY"]
    row = next(r for r in rows if r[0] == name)
    assert row[1:3] == ["no", "-"] and row[4] == "admin"
    lines = text.splitlines()
    col = lines[0].index("PUBLIC")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:])
    shown = cli.text("registry", "show", name)
    assert f"name:             {name}" in shown.splitlines()
    assert "public_access:    no" in shown.splitlines()

    assert cli.ok("registry", "rm", name) == {"deleted": name}
    p = cli.fails(1, "registry", "show", name)
    err = server_error(p)
    assert err["code"] == "NOT_FOUND" and name in err["detail"]
    p = cli.fails(1, "registry", "rm", name, json_output=False)
    assert p.stderr.startswith("berth: NOT_FOUND: ") and name in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1  # the JSON body only with --output json

    p = cli.fails(1, "registry", "create", public["name"])
    assert server_error(p)["code"] in ("CONFLICT", "ALREADY_EXISTS")
    p = cli.fails(1, "registry", "create", "Not_Valid")
    assert server_error(p)["code"] in ("INVALID_REQUEST", "NAME_INVALID")


@pytest.mark.edge_only
def test_registry_rm_of_a_registry_with_images_needs_force(registry, api, cli):
    name = unique("full")
    cli.ok("registry", "create", name)
    api.push_image(f"{name}/app", "v1", [random_bytes(300)])
    api.push_image(f"{name}/tools/cli", "v1", [random_bytes(200)])

    p = cli.fails(1, "registry", "rm", name)
    err = server_error(p)
    assert err["code"] == "CONFLICT" and "2 image" in err["detail"]
    p = cli.fails(1, "registry", "rm", name, json_output=False)
    assert p.stderr.startswith("berth: CONFLICT: ")
    assert {i["name"] for i in cli.ok("image", "ls", name)} == {f"{name}/app", f"{name}/tools/cli"}

    assert cli.ok("registry", "rm", name, "--force") == {"deleted": name}
    assert server_error(cli.fails(1, "registry", "show", name))["code"] == "NOT_FOUND"
    assert api.get(f"/v2/{name}/app/tags/list").status_code == 404


# --- images, artifacts, tags --------------------------------------------------------------------

def test_image_artifact_and_tag_commands(registry, api, cli):
    reg = unique("apps")
    cli.ok("registry", "create", reg)
    repo = f"{reg}/web/frontend"
    layer = random_bytes(2048)
    pushed = api.push_image(repo, "v1", [layer])
    d = pushed["digest"]
    other = api.push_image(f"{reg}/worker", "latest", [random_bytes(100)])

    images = cli.ok("image", "ls", reg)
    assert [i["name"] for i in images] == [repo, f"{reg}/worker"]
    web = images[0]
    assert web["artifact_count"] == 1
    assert web["size"] == len(pushed["manifest"]) + len(pushed["config"][1]) + len(layer)
    assert isinstance(web["last_push"], int)
    assert images == api.get(f"/api/v1/registries/{reg}/images").json()["items"]
    rows = table_rows(cli.text("image", "ls", reg))
    assert rows[0] == ["NAME", "ARTIFACTS", "SIZE", "LAST PUSH"]
    assert rows[1][:2] == [repo, "1"] and rows[1][2].endswith("KiB")
    assert server_error(cli.fails(1, "image", "ls", unique("nope")))["code"] == "NOT_FOUND"

    artifacts = cli.ok("artifact", "ls", repo)
    assert len(artifacts) == 1
    a = artifacts[0]
    assert a["digest"] == d
    assert a["media_type"] == OCI_MANIFEST
    assert a["size"] == len(pushed["manifest"])
    assert a["tags"] == ["v1"]
    assert a["platforms"] == [{"os": "linux", "architecture": "amd64"}]
    assert a["subject"] is None and a["referrers"] == []
    assert isinstance(a["pushed_at"], int)
    assert artifacts == api.get(f"/api/v1/images/{repo}/artifacts").json()["items"]
    rows = table_rows(cli.text("artifact", "ls", repo))
    assert rows[0] == ["DIGEST", "TAGS", "TYPE", "PLATFORMS", "SIZE", "SIGNED", "PUSHED"]
    assert rows[1][:4] == [d, "v1", "image", "linux/amd64"] and rows[1][5] == "-"
    assert a["signature"]["signed"] is False

    tagged = cli.ok("tag", "add", f"{repo}:stable", d)
    assert tagged == {"name": "stable", "digest": d}
    cli.ok("tag", "add", f"{repo}:stable-2024", d)
    assert api.get_manifest(repo, "stable").headers["Docker-Content-Digest"] == d
    tags = cli.ok("tag", "ls", repo)
    assert tags == [{"name": "stable", "digest": d}, {"name": "stable-2024", "digest": d},
                    {"name": "v1", "digest": d}]
    assert cli.ok("tag", "ls", repo, "--search", "able-") == [{"name": "stable-2024", "digest": d}]
    assert cli.ok("tag", "ls", repo, "--search", "nothing-like-this") == []
    assert table_rows(cli.text("tag", "ls", repo, "--search", "v"))[0:2] == [["TAG", "DIGEST"], ["v1", d]]

    shown = cli.ok("artifact", "show", f"{repo}@{d}")
    assert shown["digest"] == d and sorted(shown["tags"]) == ["stable", "stable-2024", "v1"]
    assert shown == api.get(f"/api/v1/images/{repo}/artifacts/{d}").json()
    text = cli.text("artifact", "show", f"{repo}@{d}").splitlines()
    assert any(line.startswith("digest:") and line.endswith(d) for line in text)
    assert any(line.startswith("platforms:") and line.endswith("linux/amd64") for line in text)

    # an artifact of another image is not this image's
    p = cli.fails(1, "tag", "add", f"{repo}:wrong", other["digest"])
    assert server_error(p)["code"] == "NOT_FOUND"
    p = cli.fails(1, "artifact", "show", f"{repo}@sha256:{'0' * 64}")
    assert server_error(p)["code"] == "NOT_FOUND"

    assert cli.ok("tag", "rm", f"{repo}:stable") == {"deleted": f"{repo}:stable"}
    assert [t["name"] for t in cli.ok("tag", "ls", repo)] == ["stable-2024", "v1"]
    assert server_error(cli.fails(1, "tag", "rm", f"{repo}:stable"))["code"] == "NOT_FOUND"
    assert api.get_manifest(repo, "stable").status_code == 404

    assert cli.ok("artifact", "rm", f"{repo}@{d}") == {"deleted": f"{repo}@{d}"}
    assert api.get_manifest(repo, d).status_code == 404
    assert server_error(cli.fails(1, "artifact", "show", f"{repo}@{d}"))["code"] == "NOT_FOUND"

    out = cli.ok("image", "rm", f"{reg}/worker")
    assert out == {"deleted": f"{reg}/worker", "deleted_artifacts": 1}
    assert api.get_manifest(f"{reg}/worker", "latest").status_code == 404
    # the image is gone at once: no longer listed, and removing it again is refused
    assert [i["name"] for i in cli.ok("image", "ls", reg)] == [repo]
    assert api.get(f"/v2/{reg}/worker/tags/list").status_code == 404
    p = cli.fails(1, "image", "rm", f"{reg}/worker")
    assert server_error(p)["code"] == "NOT_FOUND", p.stderr


def test_listings_follow_next_until_the_end_or_limit(registry, api, cli):
    repo = f"e2e/{unique('paged')}"
    pushed = api.push_image(repo, "t00", [random_bytes(64)])
    tags = [f"t{i:02d}" for i in range(7)]
    for t in tags[1:]:
        cli.ok("tag", "add", f"{repo}:{t}", pushed["digest"])
    # --page-size (hidden) forces small pages so `next` is followed
    assert [t["name"] for t in cli.ok("tag", "ls", repo, "--page-size", "2")] == tags
    assert [t["name"] for t in cli.ok("tag", "ls", repo, "--page-size", "3", "--limit", "5")] == tags[:5]
    assert [t["name"] for t in cli.ok("tag", "ls", repo, "--limit", "1")] == tags[:1]

    users = [unique("pager") for _ in range(3)]
    for u in users:
        cli.ok("user", "create", u, "--role", "service-viewer")
    all_users = cli.ok("user", "ls")
    assert cli.ok("user", "ls", "--page-size", "1") == all_users
    assert set(users) <= {u["name"] for u in all_users}

    entries = cli.ok("audit", "ls")
    assert cli.ok("audit", "ls", "--page-size", "2") == entries
    assert len(entries) >= 9
    assert cli.ok("audit", "ls", "--limit", "4", "--page-size", "3") == entries[:4]


# --- users, keys, roles, audit ------------------------------------------------------------------

@pytest.mark.edge_only
def test_user_key_and_audit_commands(registry, api, cli, tmp_path):
    name = unique("member")
    created = cli.ok("user", "create", name, "--role", "project-member", "--registry", "e2e")
    assert created["name"] == name
    assert created["role"] == "project-member"
    assert created["registries"] == ["e2e"]
    assert created["access_keys"] == []
    assert created["created_by"] == "admin"
    assert isinstance(created["created_at"], int)
    assert cli.ok("user", "show", name) == created == api.get(f"/api/v1/users/{name}").json()
    assert created in cli.ok("user", "ls")
    rows = table_rows(cli.text("user", "ls"))
    assert rows[0] == ["NAME", "ROLE", "REGISTRIES", "KEYS", "CREATED", "CREATED BY"]
    assert [r for r in rows if r[0] == name][0][1:4] == ["project-member", "e2e", "0"]

    key = cli.ok("key", "create", "--user", name)
    assert key["user"] == name and key["access_key"].startswith("BK")
    assert len(key["secret_key"]) == 40
    assert key["rotated_at"] is None and isinstance(key["created_at"], int)
    p = cli.run("key", "create", "--user", name, json_output=False)
    assert p.returncode == 0 and "cannot be shown again" in p.stderr
    second = dict(line.split(": ", 1) for line in p.stdout.splitlines())
    second = {k.strip(): v.strip() for k, v in second.items()}
    assert second["user"] == name and len(second["secret_key"]) == 40

    listed = cli.ok("key", "ls", "--user", name)
    assert sorted(k["access_key"] for k in listed) == sorted([key["access_key"], second["access_key"]])
    for k in listed:
        assert "secret_key" not in k and k["user"] == name
    for out in (json.dumps(listed), cli.text("key", "ls", "--user", name)):
        assert key["secret_key"] not in out and second["secret_key"] not in out
    assert table_rows(cli.text("key", "ls", "--user", name))[0] == ["ACCESS KEY", "USER", "CREATED", "ROTATED",
                                                                        "LAST USED"]
    assert sorted(cli.ok("user", "show", name)["access_keys"]) == sorted(k["access_key"] for k in listed)

    # The new key logs in with `berth login` and acts as that user: it sees only its registry.
    member = Cli(registry, tmp_path / "member-home")
    member.login(key["access_key"], key["secret_key"])
    assert [r["name"] for r in member.ok("registry", "ls")] == ["e2e"]

    # A service viewer may look but not create.
    changed = cli.ok("user", "set", name, "--role", "service-viewer")
    assert changed["role"] == "service-viewer" and changed["registries"] is None
    assert set(registry.registries) <= {r["name"] for r in member.ok("registry", "ls")}
    p = member.fails(1, "registry", "create", unique("denied"))
    err = server_error(p)
    assert err["code"] == "DENIED"
    p = member.fails(1, "registry", "create", unique("denied"), json_output=False)
    assert p.stderr.startswith("berth: DENIED: ")
    changed = cli.ok("user", "set", name, "--role", "project-admin", "--registry", "e2e", "--registry", "charts")
    assert changed["role"] == "project-admin" and changed["registries"] == ["e2e", "charts"]

    # Rotation: the old secret stops working, the new one works.
    rotated = cli.ok("key", "rotate", key["access_key"], "--user", name)
    assert rotated["access_key"] == key["access_key"] and rotated["user"] == name
    assert len(rotated["secret_key"]) == 40 and rotated["secret_key"] != key["secret_key"]
    assert isinstance(rotated["rotated_at"], int)
    member.fails(4, "registry", "ls")
    p = member.fails(4, "login", registry.url, "--access-key", key["access_key"], "--secret-key-stdin",
                     stdin=key["secret_key"] + "\n")
    assert "authentication failed" in p.stderr
    member.login(key["access_key"], rotated["secret_key"])
    assert member.ok("user", "show", name)["role"] == "project-admin"

    assert cli.ok("key", "rm", key["access_key"], "--user", name) == {"deleted": key["access_key"]}
    member.fails(4, "registry", "ls")
    member.fails(4, "login", registry.url, "--access-key", key["access_key"], "--secret-key-stdin",
                 stdin=rotated["secret_key"] + "\n")
    assert [k["access_key"] for k in cli.ok("key", "ls", "--user", name)] == [second["access_key"]]
    assert server_error(cli.fails(1, "key", "rm", key["access_key"], "--user", name))["code"] == "NOT_FOUND"

    assert cli.ok("user", "rm", name) == {"deleted": name}
    assert server_error(cli.fails(1, "user", "show", name))["code"] == "NOT_FOUND"
    assert name not in [u["name"] for u in cli.ok("user", "ls")]
    assert server_error(cli.fails(1, "user", "create", "admin", "--role", "service-viewer"))["code"] in (
        "CONFLICT", "ALREADY_EXISTS")

    # The audit log recorded all of it.
    entries = cli.ok("audit", "ls")
    assert entries == api.get("/api/v1/audit", params={"n": 1000}).json()["items"]
    for e in entries:
        assert set(e) >= {"id", "at", "who", "source", "action", "method", "target", "status"}
    seen = {(e["method"], e["target"], e["status"]) for e in entries}
    assert ("POST", "/api/v1/users", 201) in seen
    assert ("PATCH", f"/api/v1/users/{name}", 200) in seen
    assert ("POST", f"/api/v1/users/{name}/keys/{key['access_key']}/rotate", 200) in seen
    assert ("DELETE", f"/api/v1/users/{name}/keys/{key['access_key']}", 204) in seen
    assert ("DELETE", f"/api/v1/users/{name}", 204) in seen
    assert all(e["who"] == "admin" for e in entries if e["target"].startswith(f"/api/v1/users/{name}"))
    assert cli.ok("audit", "ls", "--limit", "2") == entries[:2]
    rows = table_rows(cli.text("audit", "ls"))
    assert rows[0] == ["AT", "WHO", "SOURCE", "ACTION", "METHOD", "TARGET", "STATUS"]
    assert len(rows) == len(entries) + 1

    # No secret ever reached the server's log.
    log = registry.log_path.read_text(errors="replace")
    for secret in (registry.credentials[1], key["secret_key"], second["secret_key"], rotated["secret_key"]):
        assert secret not in log
