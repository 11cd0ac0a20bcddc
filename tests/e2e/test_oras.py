"""The oras Python SDK (oras 0.2.x) pushing and pulling file artifacts, monolithic and chunked,
and a Helm-chart-shaped artifact as helm 3 stores it."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

import oras.client
import oras.container
from e2e_util import OCI_MANIFEST, digest, random_bytes

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def oras_client(registry, host) -> oras.client.OrasClient:
    client = oras.client.OrasClient(hostname=host, insecure=True)
    if registry.credentials:
        client.login(username=registry.credentials[0], password=registry.credentials[1],
                     hostname=host, tls_verify=False)
    return client


def _files(tmp_path, sizes):
    out = {}
    d = tmp_path / "files"
    d.mkdir()
    for i, n in enumerate(sizes):
        p = d / f"artifact-{i}.bin"
        p.write_bytes(random_bytes(n))
        out[p] = p.read_bytes()
    return out


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_oras_push_pull(registry, api, proxy, tmp_path, repo_name, chunked):
    host = proxy.host
    client = oras_client(registry, host)
    # chunked: 1 MiB chunks -> 4 PATCHes with Content-Range for the 3.5 MiB file, one for the
    # tiny one, then PUT ?digest= with no body
    files = _files(tmp_path, [3 * 1024 * 1024 + 512 * 1024 + 3, 10, 2 * 1024 * 1024])
    target = f"{host}/{repo_name}:v1"
    kwargs = {"do_chunked": True, "chunk_size": 1024 * 1024} if chunked else {}
    resp = client.push(files=[f"{p}:application/vnd.example.file" for p in files],
                       target=target, disable_path_validation=True,
                       manifest_annotations={"org.example.kind": "e2e"}, **kwargs)
    assert resp.status_code == 201, f"{resp.status_code} {resp.text}"
    mdigest = resp.headers["Docker-Content-Digest"]
    patches = [r for r in proxy.records if r["method"] == "PATCH"]
    if chunked:  # ceil(size / 1 MiB) PATCHes per file, each with Content-Range
        assert len(patches) == 4 + 1 + 2, proxy.summary()
        assert all("content-range" in r["req"] for r in patches), proxy.summary()
    else:
        assert patches == [], proxy.summary()

    # what the registry holds: oras serialised the manifest with json.dumps defaults
    r = api.get_manifest(repo_name, "v1")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert digest(r.content) == mdigest
    manifest = json.loads(r.content)
    assert manifest["annotations"] == {"org.example.kind": "e2e"}
    assert [ly["annotations"]["org.opencontainers.image.title"] for ly in manifest["layers"]] \
        == [p.name for p in files]
    for layer, (p, data) in zip(manifest["layers"], files.items()):
        assert layer["digest"] == digest(data) and layer["size"] == len(data)
        assert layer["mediaType"] == "application/vnd.example.file"

    for ref in (target, f"{host}/{repo_name}@{mdigest}"):
        out = tmp_path / ("out-" + ref.rsplit("/", 1)[1].replace(":", "_").replace("@", "_"))
        pulled = client.pull(target=ref, outdir=str(out))
        assert sorted(os.path.basename(p) for p in pulled) == sorted(p.name for p in files)
        for p, data in files.items():
            assert (out / p.name).read_bytes() == data, f"{p.name} differs (pulled by {ref})"

    # a second push of the same files: oras HEADs each blob and skips it
    resp = client.push(files=[f"{p}:application/vnd.example.file" for p in files],
                       target=f"{host}/{repo_name}:v2", disable_path_validation=True,
                       manifest_annotations={"org.example.kind": "e2e"}, **kwargs)
    assert resp.status_code == 201
    assert resp.headers["Docker-Content-Digest"] == mdigest
    assert sorted(client.get_tags(f"{host}/{repo_name}")) == ["v1", "v2"]


def _make_chart(tmp_path) -> bytes:
    chart = tmp_path / "mychart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: mychart\ndescription: Berth e2e chart\ntype: application\n"
        "version: 0.1.0\nappVersion: \"1.16.0\"\n")
    (chart / "values.yaml").write_text("replicaCount: 1\nimage:\n  repository: nginx\n")
    (chart / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  replicas: {{ .Values.replicaCount }}\n")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(chart, arcname="mychart")
    return raw.getvalue()


def test_helm_chart_artifact(registry, api, proxy, tmp_path, repo_name):
    host = proxy.host
    client = oras_client(registry, host)
    chart = _make_chart(tmp_path)
    chart_path = tmp_path / "mychart-0.1.0.tgz"
    chart_path.write_bytes(chart)
    config = json.dumps({"name": "mychart", "version": "0.1.0", "apiVersion": "v2",
                         "description": "Berth e2e chart", "type": "application",
                         "appVersion": "1.16.0"}).encode()
    config_path = tmp_path / "config.json"
    config_path.write_bytes(config)
    container = oras.container.Container(f"{host}/charts/{repo_name}:0.1.0")
    cdesc = {"mediaType": HELM_CONFIG, "digest": digest(config), "size": len(config)}
    ldesc = {"mediaType": HELM_CHART, "digest": digest(chart), "size": len(chart)}
    for path, desc in ((config_path, cdesc), (chart_path, ldesc)):
        resp = client.upload_blob(str(path), container, desc)
        assert resp.status_code == 201, f"{resp.status_code} {resp.text}"

    # helm 3 style: no top-level mediaType, no artifactType; Content-Type says what it is
    body = json.dumps({"schemaVersion": 2, "config": cdesc, "layers": [ldesc],
                       "annotations": {"org.opencontainers.image.title": "mychart",
                                       "org.opencontainers.image.version": "0.1.0"}},
                      separators=(",", ":")).encode()
    repo = f"charts/{repo_name}"
    r = api.put_manifest(repo, "0.1.0", body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    mdigest = digest(body)
    assert r.headers["Docker-Content-Digest"] == mdigest

    for ref in ("0.1.0", mdigest):
        got = api.get_manifest(repo, ref, accept=OCI_MANIFEST)
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["Content-Type"] == OCI_MANIFEST
        m = client.get_manifest(f"{host}/{repo}" + (":" if ref[0] != "s" else "@") + ref)
        assert m["config"]["mediaType"] == HELM_CONFIG
        assert m["layers"][0]["mediaType"] == HELM_CHART
        assert "artifactType" not in m

    cfg_out = tmp_path / "config-out.json"
    client.download_blob(container, cdesc["digest"], str(cfg_out))
    assert cfg_out.read_bytes() == config
    assert json.loads(cfg_out.read_bytes())["name"] == "mychart"
    tgz_out = tmp_path / "chart-out.tgz"
    client.download_blob(container, ldesc["digest"], str(tgz_out))
    assert tgz_out.read_bytes() == chart
    with tarfile.open(tgz_out) as tar:
        names = set(tar.getnames())
        assert {"mychart/Chart.yaml", "mychart/values.yaml",
                "mychart/templates/deployment.yaml"} <= names
        chart_yaml = tar.extractfile("mychart/Chart.yaml").read().decode()
    assert "name: mychart" in chart_yaml and "version: 0.1.0" in chart_yaml
    assert api.tags(repo) == ["0.1.0"]
