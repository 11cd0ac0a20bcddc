"""Authentication and roles with real clients: docker, skopeo and oras log in with access keys
through the Bearer token flow; an Image Uploader pushes but cannot pull, a Service Viewer pulls but
cannot push or delete; tokens are scoped, expire, and refuse tampering and `alg: none`; failed
logins are rate limited; public access off refuses outside addresses; secrets never reach logs."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid
from typing import Optional

import oras.client
import pytest
import requests

from test_docker import docker_images  # noqa: F401 (fixture: images removed after the test)
from e2e_util import OCI_MANIFEST, OciLayout, random_bytes, require_tool, run, tar_gz

pytestmark = pytest.mark.berth_only


# --- helpers --------------------------------------------------------------------------------------

def admin(registry):
    return registry.credentials


def make_user(registry, role: str, registries=None, name: Optional[str] = None) -> tuple[str, str]:
    """Creates a user with `role` (named `name`, or after the role) and one access key; returns
    (access key, secret key)."""
    name = name or f"{role}-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "role": role}
    if registries is not None:
        body["registries"] = registries
    r = requests.post(f"{registry.url}/api/v1/users", json=body, auth=admin(registry), timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == role and r.json()["name"] == name
    r = requests.post(f"{registry.url}/api/v1/users/{name}/keys", auth=admin(registry), timeout=30)
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["user"] == name and len(key["secret_key"]) == 40 and key["access_key"].startswith("BK")
    return key["access_key"], key["secret_key"]


def token(registry, creds, scope=None, status=200):
    params = {"service": "berth"}
    if scope:
        params["scope"] = scope
    r = requests.get(f"{registry.url}/auth/token", params=params, auth=creds, timeout=30)
    assert r.status_code == status, r.text
    return r.json().get("token") if status == 200 else r


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def bearer(t: str) -> dict:
    return {"Authorization": f"Bearer {t}"}


def challenge(resp) -> dict:
    value = resp.headers["WWW-Authenticate"]
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def error_code(resp) -> str:
    return resp.json()["errors"][0]["code"]


def docker_as(tmp_path, creds, host, *args, check=True, timeout=300):
    """docker with a private config dir, logged in as `creds`."""
    cfg = tmp_path / f"docker-{creds[0]}"
    if not cfg.exists():
        cfg.mkdir()
        p = subprocess.run(["docker", "--config", str(cfg), "login", host, "-u", creds[0], "--password-stdin"],
                           input=creds[1], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    return run(["docker", "--config", str(cfg), *args], check=check, timeout=timeout)


def build_image(tmp_path, ref: str) -> None:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "data.bin").write_bytes(random_bytes(200_000))
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY data.bin /data.bin\n")
    run(["docker", "build", "-t", ref, str(ctx)], env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)


# --- the token flow ---------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_unauthenticated_requests_get_a_bearer_challenge(registry):
    r = requests.get(f"{registry.url}/v2/", timeout=30)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    c = challenge(r)
    assert c["realm"] == f"{registry.url}/auth/token" and c["service"] == "berth"
    r = requests.get(f"{registry.url}/v2/e2e/app/manifests/latest", timeout=30)
    assert r.status_code == 401 and challenge(r)["scope"] == "repository:e2e/app:pull"
    r = requests.post(f"{registry.url}/v2/e2e/app/blobs/uploads/", timeout=30)
    assert r.status_code == 401 and challenge(r)["scope"] == "repository:e2e/app:pull,push"
    r = requests.get(f"{registry.url}/v2/_catalog", timeout=30)
    assert r.status_code == 401 and challenge(r)["scope"] == "registry:catalog:*"
    # the token endpoint itself asks for Basic credentials
    r = requests.get(f"{registry.url}/auth/token", params={"service": "berth"}, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = requests.get(f"{registry.url}/auth/token", auth=(admin(registry)[0], "wrong-secret-0000000000"), timeout=30)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"


@pytest.mark.edge_only
def test_tokens_grant_only_the_requested_repository(registry, api, repo_name):
    api.push_image(repo_name, "v1", [b"layer-a"])
    other = repo_name + "-other"
    api.push_image(other, "v1", [b"layer-b"])
    t = token(registry, admin(registry), f"repository:{repo_name}:pull")
    c = claims(t)
    assert c["access"] == [{"type": "repository", "name": repo_name, "actions": ["pull"]}]
    assert c["sub"] == "admin" and c["aud"] == "berth" and c["iss"] == "berth"
    assert 0 < c["exp"] - c["iat"] <= 3600
    r = requests.get(f"{registry.url}/v2/{repo_name}/manifests/v1", headers=bearer(t), timeout=30)
    assert r.status_code == 200
    # the same token on another repository, or for a push, is not enough: 403 with a challenge
    r = requests.get(f"{registry.url}/v2/{other}/manifests/v1", headers=bearer(t), timeout=30)
    assert r.status_code == 403 and error_code(r) == "DENIED"
    assert challenge(r)["scope"] == f"repository:{other}:pull" and challenge(r)["error"] == "insufficient_scope"
    r = requests.post(f"{registry.url}/v2/{repo_name}/blobs/uploads/", headers=bearer(t), timeout=30)
    assert r.status_code == 403 and challenge(r)["scope"] == f"repository:{repo_name}:pull,push"
    # a token with no access still passes the version check
    assert requests.get(f"{registry.url}/v2/", headers=bearer(token(registry, admin(registry))), timeout=30).ok


@pytest.mark.edge_only
def test_tampered_foreign_and_unsigned_tokens_are_refused(registry, api, repo_name):
    api.push_image(repo_name, "v1", [b"layer"])
    t = token(registry, admin(registry), f"repository:{repo_name}:pull")
    header, payload, sig = t.split(".")
    url = f"{registry.url}/v2/{repo_name}/manifests/v1"
    # a payload widened to another repository, signature kept
    c = claims(t)
    c["access"][0]["name"] = repo_name + "-x"
    forged = f"{header}.{b64(c)}.{sig}"
    # alg: none with no signature
    none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    # HS256 "signed" with the public nothing
    hs = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.{sig}"
    for bad in [forged, none, hs, t[:-4] + "AAAA", "not-a-token", ""]:
        r = requests.get(url, headers=bearer(bad), timeout=30)
        assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED", (bad[:40], r.text)
        assert challenge(r)["error"] == "invalid_token"
        assert bad[:20] not in r.text or not bad, "the error must not echo the token"


@pytest.mark.edge_only
def test_tokens_expire(registry_factory, repo_name):
    reg = registry_factory(env={"BERTH_TOKEN_LIFETIME_SECONDS": "1"})
    t = token(reg, reg.credentials, "repository:e2e/x:pull")
    c = claims(t)
    assert c["exp"] - c["iat"] == 1
    assert requests.get(f"{reg.url}/v2/", headers=bearer(t), timeout=30).status_code == 200
    time.sleep(7)  # lifetime plus the 5 s clock-skew leeway
    r = requests.get(f"{reg.url}/v2/", headers=bearer(t), timeout=30)
    assert r.status_code == 401 and "expired" in r.text


@pytest.mark.edge_only
def test_lifetimes_above_twelve_hours_are_refused_at_start(tmp_path):
    from conftest import BERTH_BIN, free_port
    env = {**os.environ, "BERTH_TOKEN_LIFETIME_SECONDS": str(12 * 3600 + 1)}
    p = subprocess.run([str(BERTH_BIN), "serve", "--data-dir", str(tmp_path / "d"), "--listen",
                        f"127.0.0.1:{free_port()}"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "BERTH_TOKEN_LIFETIME_SECONDS" in p.stderr and "12 hours" in p.stderr, p.stderr


def test_revoked_and_rotated_keys_get_no_token(registry):
    key, secret = make_user(registry, "service-viewer")
    user = claims(token(registry, (key, secret)))["sub"]
    r = requests.post(f"{registry.url}/api/v1/users/{user}/keys/{key}/rotate", auth=admin(registry), timeout=30)
    assert r.status_code == 200 and r.json()["access_key"] == key
    new_secret = r.json()["secret_key"]
    assert new_secret != secret
    token(registry, (key, secret), status=401)
    token(registry, (key, new_secret))
    r = requests.delete(f"{registry.url}/api/v1/users/{user}/keys/{key}", auth=admin(registry), timeout=30)
    assert r.status_code == 204
    token(registry, (key, new_secret), status=401)
    assert requests.get(f"{registry.url}/v2/", auth=(key, new_secret), timeout=30).status_code == 401


@pytest.mark.edge_only
def test_failed_logins_are_rate_limited(registry):
    key, secret = make_user(registry, "service-viewer")
    other = make_user(registry, "service-viewer")
    for _ in range(10):
        token(registry, (key, "wrong-secret-000000000000"), status=401)
    r = token(registry, (key, secret), status=429)
    assert error_code(r) == "TOOMANYREQUESTS" and int(r.headers["Retry-After"]) >= 1
    # the address is limited too, whatever the key
    r = token(registry, other, status=429)
    assert error_code(r) == "TOOMANYREQUESTS"
    # but a secret this server has verified before is not checked again, so it still gets in
    token(registry, admin(registry), status=200)


@pytest.mark.edge_only
def test_at_most_five_keys_per_user(registry):
    key, _ = make_user(registry, "service-viewer")
    user = claims(token(registry, (key, _)))["sub"]
    for _i in range(4):
        r = requests.post(f"{registry.url}/api/v1/users/{user}/keys", auth=admin(registry), timeout=30)
        assert r.status_code == 201
    r = requests.post(f"{registry.url}/api/v1/users/{user}/keys", auth=admin(registry), timeout=30)
    assert r.status_code == 409 and error_code(r) == "CONFLICT" and "5" in r.text
    r = requests.get(f"{registry.url}/api/v1/users/{user}/keys", auth=admin(registry), timeout=30)
    keys = r.json()["items"]
    assert len(keys) == 5 and all("secret_key" not in k and "secret_hash" not in k for k in keys)


# --- registries ------------------------------------------------------------------------------------

@pytest.mark.edge_only
def test_pushing_into_a_missing_registry_names_it(registry, api):
    r = api.post("/v2/nosuchregistry/app/blobs/uploads/")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    assert "nosuchregistry" in r.json()["errors"][0]["detail"]


@pytest.mark.edge_only
def test_public_access_off_refuses_outside_addresses(registry, api, repo_name):
    name = f"priv{uuid.uuid4().hex[:6]}"
    r = requests.post(f"{registry.url}/api/v1/registries", auth=admin(registry), timeout=30,
                      json={"name": name, "public_access": False, "private_networks": ["10.0.0.0/8"]})
    assert r.status_code == 201 and r.json()["public_access"] is False
    r = api.post(f"/v2/{name}/app/blobs/uploads/")
    assert r.status_code == 403 and error_code(r) == "DENIED" and "127.0.0.1" in r.text
    assert api.get(f"/v2/{name}/app/tags/list").status_code == 403
    # 127.0.0.0/8 becomes a private network: now the same client is inside
    r = requests.patch(f"{registry.url}/api/v1/registries/{name}", auth=admin(registry), timeout=30,
                       json={"private_networks": ["10.0.0.0/8", "127.0.0.0/8"]})
    assert r.status_code == 200 and r.json()["private_networks"] == ["10.0.0.0/8", "127.0.0.0/8"]
    api.push_image(f"{name}/app", "v1", [b"inside"])
    assert api.get_manifest(f"{name}/app", "v1").status_code == 200


# --- roles with real clients --------------------------------------------------------------------

@pytest.mark.edge_only
def test_image_uploader_pushes_with_docker_skopeo_and_oras_but_cannot_pull(registry, api, tmp_path, repo_name,
                                                                           docker_images):
    require_tool("docker")
    require_tool("skopeo")
    uploader = make_user(registry, "image-uploader", ["e2e"])
    host = registry.host

    # docker
    ref = f"{host}/{repo_name}:v1"
    docker_images.append(ref)
    build_image(tmp_path, ref)
    push = docker_as(tmp_path, uploader, host, "push", ref)
    assert "digest: sha256:" in push.stdout
    assert api.get_manifest(repo_name, "v1").status_code == 200  # the admin sees it
    run(["docker", "rmi", ref], timeout=120)
    pull = docker_as(tmp_path, uploader, host, "pull", ref, check=False)
    assert pull.returncode != 0 and "denied" in (pull.stderr + pull.stdout).lower(), pull.stderr

    # skopeo, from an OCI layout
    src = OciLayout(tmp_path / "oci")
    desc = src.add_image([("application/vnd.oci.image.layer.v1.tar+gzip", tar_gz({"f": random_bytes(5000)}))])
    src.set_ref(desc, "v1")
    creds = f"{uploader[0]}:{uploader[1]}"
    run(["skopeo", "copy", "--dest-tls-verify=false", f"--dest-creds={creds}", f"oci:{src.root}:v1",
         f"docker://{host}/{repo_name}-skopeo:v1"], timeout=300)
    assert api.get_manifest(f"{repo_name}-skopeo", "v1").headers["Docker-Content-Digest"] == desc["digest"]
    p = run(["skopeo", "copy", "--src-tls-verify=false", f"--src-creds={creds}",
             f"docker://{host}/{repo_name}-skopeo:v1", f"oci:{tmp_path / 'back'}:v1"], check=False, timeout=300)
    assert p.returncode != 0 and ("denied" in p.stderr.lower() or "unauthorized" in p.stderr.lower()), p.stderr

    # oras
    f = tmp_path / "artifact.txt"
    f.write_bytes(b"uploaded by the uploader")
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.login(username=uploader[0], password=uploader[1], hostname=host, tls_verify=False)
    resp = client.push(files=[f"{f}:text/plain"], target=f"{host}/{repo_name}-oras:v1", disable_path_validation=True)
    assert resp.status_code == 201, resp.text
    with pytest.raises(Exception):
        client.pull(target=f"{host}/{repo_name}-oras:v1", outdir=str(tmp_path / "pulled"))
    assert not (tmp_path / "pulled" / "artifact.txt").exists()

    # raw API with the uploader's Basic key: existence checks yes, content no
    mdigest = desc["digest"]
    layer = json.loads(api.get_manifest(f"{repo_name}-skopeo", "v1").content)["layers"][0]["digest"]
    for method, path, want in [
        ("HEAD", f"/v2/{repo_name}-skopeo/manifests/v1", 200),
        ("HEAD", f"/v2/{repo_name}-skopeo/blobs/{layer}", 200),
        ("GET", f"/v2/{repo_name}-skopeo/tags/list", 200),
        ("GET", f"/v2/{repo_name}-skopeo/manifests/{mdigest}", 403),
        ("GET", f"/v2/{repo_name}-skopeo/blobs/{layer}", 403),
        ("DELETE", f"/v2/{repo_name}-skopeo/manifests/{mdigest}", 403),
        ("POST", "/v2/charts/app/blobs/uploads/", 403),  # outside its registries
    ]:
        r = requests.request(method, f"{registry.url}{path}", auth=uploader, timeout=30, allow_redirects=False)
        assert r.status_code == want, (method, path, r.status_code, r.text)


@pytest.mark.edge_only
def test_service_viewer_pulls_but_cannot_push_or_delete(registry, api, tmp_path, repo_name, docker_images):
    require_tool("docker")
    viewer = make_user(registry, "service-viewer")
    host = registry.host
    ref = f"{host}/{repo_name}:v1"
    docker_images.append(ref)
    build_image(tmp_path, ref)
    docker_as(tmp_path, admin(registry), host, "push", ref)
    run(["docker", "rmi", ref], timeout=120)
    docker_as(tmp_path, viewer, host, "pull", ref)
    run(["docker", "tag", ref, f"{host}/{repo_name}:v2"])
    docker_images.append(f"{host}/{repo_name}:v2")
    p = docker_as(tmp_path, viewer, host, "push", f"{host}/{repo_name}:v2", check=False)
    assert p.returncode != 0 and "denied" in (p.stderr + p.stdout).lower(), p.stderr
    d = api.get_manifest(repo_name, "v1").headers["Docker-Content-Digest"]
    r = requests.delete(f"{registry.url}/v2/{repo_name}/manifests/{d}", auth=viewer, timeout=30)
    assert r.status_code == 403 and error_code(r) == "DENIED"
    r = requests.delete(f"{registry.url}/api/v1/images/{repo_name}/artifacts/{d}", auth=viewer, timeout=30)
    assert r.status_code == 403 and "service-viewer" in r.text
    assert api.get_manifest(repo_name, "v1").status_code == 200


@pytest.mark.edge_only
def test_secrets_never_appear_in_logs_or_listings(registry):
    key, secret = make_user(registry, "project-member")
    user = claims(token(registry, (key, secret)))["sub"]
    token(registry, (key, "a-wrong-secret-00000000000"), status=401)
    r = requests.get(f"{registry.url}/api/v1/users/{user}", auth=admin(registry), timeout=30)
    assert secret not in r.text and "argon2" not in r.text
    r = requests.get(f"{registry.url}/api/v1/users/{user}/keys", auth=(key, secret), timeout=30)
    assert r.status_code == 200 and secret not in r.text and "argon2" not in r.text
    log = registry.log_path.read_text(errors="replace")
    assert secret not in log and registry.credentials[1] not in log and "a-wrong-secret" not in log


@pytest.mark.edge_only
def test_openapi_document_is_valid_and_covers_the_management_routes(registry):
    from openapi_spec_validator import validate

    r = requests.get(f"{registry.url}/api/v1/openapi.json", timeout=30)  # public: no credentials
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    doc = r.json()
    validate(doc)
    routes = json.loads(run([str(__import__("conftest").BERTH_BIN), "routes", "--output", "json"]).stdout)
    api = [x for x in routes if x["prefix"].startswith("/api/v1")]
    assert len(doc["paths"]) == len(api) == 44
    for route in api:
        path = f"{route['prefix']}/{{image}}{route['suffix']}" if route["has_repository"] else route["prefix"] + route["suffix"]
        assert sorted(doc["paths"][path]) == sorted(m.lower() for m in route["methods"]), path
