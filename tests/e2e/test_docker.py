"""The Docker engine (legacy builder and legacy image store) pushes to and pulls from the registry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import uuid

import pytest

from e2e_util import (DOCKER_MANIFEST, ALL_MANIFEST_TYPES, digest, random_bytes, require_tool,
                      run)


@pytest.fixture
def docker_images():
    """Image references created by the test; removed afterwards (also on failure)."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        run(["docker", "rmi", "-f", ref], check=False, timeout=120)


def _docker_login(registry, host):
    if registry.credentials:
        user, password = registry.credentials
        p = subprocess.run(["docker", "login", host, "-u", user, "--password-stdin"],
                           input=password, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr


def test_docker_build_push_pull(registry, api, proxy, tmp_path, docker_images):
    require_tool("docker")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    sizes = [0, 1, 4096, 300_000, 3 * 1024 * 1024 + 17]
    lines = ["FROM scratch"]
    files = {}
    for i, n in enumerate(sizes):
        name = f"file{i}.bin"
        files[name] = random_bytes(n)
        (ctx / name).write_bytes(files[name])
        lines.append(f"COPY {name} /data/{name}")
    lines.append('LABEL org.example.e2e="berth"')
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")

    repo = f"e2e/app-{uuid.uuid4().hex[:8]}"
    # through the recording proxy (127.0.0.0/8 is an insecure registry range for the daemon)
    host = proxy.host
    ref = f"{host}/{repo}:v1"
    _docker_login(registry, host)
    docker_images.append(ref)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run(["docker", "build", "-t", ref, str(ctx)], env=env, timeout=300)

    push = run(["docker", "push", ref], timeout=300)
    m = re.search(r"v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", push.stdout)
    assert m, f"no digest in docker push output:\n{push.stdout}"
    pushed_digest, pushed_size = m.group(1), int(m.group(2))
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref]).stdout.strip()

    # what the registry holds
    r = api.get_manifest(repo, "v1", accept=ALL_MANIFEST_TYPES)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    assert r.headers["Docker-Content-Digest"] == pushed_digest
    assert digest(r.content) == pushed_digest and len(r.content) == pushed_size
    manifest = json.loads(r.content)
    assert manifest["config"]["digest"] == image_id, "config digest is not the image id"
    assert len(manifest["layers"]) == len(sizes)
    for desc in [manifest["config"], *manifest["layers"]]:
        h = api.head(f"/v2/{repo}/blobs/{desc['digest']}")
        assert h.status_code == 200 and int(h.headers["Content-Length"]) == desc["size"]
        body = api.get_blob(repo, desc["digest"])
        assert digest(body) == desc["digest"] and len(body) == desc["size"]

    # round trip through the local store
    run(["docker", "rmi", ref], timeout=120)
    gone = run(["docker", "image", "inspect", ref], check=False)
    assert gone.returncode != 0
    run(["docker", "pull", ref], timeout=300)
    info = json.loads(run(["docker", "image", "inspect", ref]).stdout)[0]
    assert f"{host}/{repo}@{pushed_digest}" in info["RepoDigests"], info["RepoDigests"]
    assert info["Id"] == image_id
    assert info["Config"]["Labels"] == {"org.example.e2e": "berth"}

    # pull by digest as well
    by_digest = f"{host}/{repo}@{pushed_digest}"
    docker_images.append(by_digest)
    run(["docker", "pull", by_digest], timeout=300)

    # the files inside are byte-equal: export the image and read its layers
    run(["docker", "save", "-o", str(tmp_path / "img.tar"), ref], timeout=300)
    seen = {}
    with tarfile.open(tmp_path / "img.tar") as outer:
        for member in outer.getmembers():
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                f = outer.extractfile(member)
                if f is None:
                    continue
                try:
                    with tarfile.open(fileobj=f) as layer:
                        for lm in layer.getmembers():
                            if lm.isfile():
                                seen[lm.name] = layer.extractfile(lm).read()
                except tarfile.ReadError:
                    pass
    for name, content in files.items():
        assert seen.get(f"data/{name}") == content, f"{name} differs after the round trip"
