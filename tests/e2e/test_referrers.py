"""Referrers API (OCI distribution spec v1.1): subject, OCI-Subject, artifactType filtering."""

from __future__ import annotations

import json

import pytest

from e2e_util import (OCI_EMPTY, OCI_EMPTY_DIGEST, OCI_INDEX, OCI_MANIFEST, descriptor, digest,
                      random_bytes, tar_gz)

SBOM = "application/vnd.example.sbom.v1"
SIG_CONFIG = "application/vnd.example.signature.config.v1+json"

pytestmark = pytest.mark.berth_only  # distribution 2.8 has no referrers API


def _referrers(api, repo, d, **params):
    r = api.get(f"/v2/{repo}/referrers/{d}", params=params or None)
    assert r.status_code == 200, f"GET referrers {d} {params} -> {r.status_code} {r.text}"
    assert r.headers.get("Content-Type") == OCI_INDEX
    body = r.json()
    assert body.get("schemaVersion") == 2
    assert body.get("mediaType") == OCI_INDEX
    assert isinstance(body.get("manifests"), list)
    return r, body["manifests"]


def _push_artifact(api, repo, subject: dict, artifact_type, config_desc, annotations):
    payload = json.dumps({"spdxVersion": "SPDX-2.3", "name": random_bytes(8).hex()}).encode()
    api.push_blob(repo, payload)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        m["artifactType"] = artifact_type
    m.update({"config": config_desc,
              "layers": [descriptor("application/spdx+json", payload)],
              "subject": subject, "annotations": annotations})
    body = json.dumps(m, indent=2).encode()
    d = digest(body)
    r = api.put_manifest(repo, d, body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == d
    assert r.headers.get("OCI-Subject") == subject["digest"], dict(r.headers)
    return body, d


def test_referrers(api, repo_name):
    img = api.push_image(repo_name, "v1", [tar_gz({"a": random_bytes(500)})])
    subject = {"mediaType": OCI_MANIFEST, "digest": img["digest"], "size": len(img["manifest"])}
    assert api.push_blob(repo_name, b"{}") == OCI_EMPTY_DIGEST
    empty = {"mediaType": OCI_EMPTY, "digest": OCI_EMPTY_DIGEST, "size": 2}
    ann = {"org.opencontainers.image.created": "2026-11-24T00:00:00Z",
           "org.example.format": "spdx"}
    sbom_body, sbom_d = _push_artifact(api, repo_name, subject, SBOM, empty, ann)

    # no artifactType: the config media type stands in for it
    sig_cfg = b'{"kind":"signature"}'
    api.push_blob(repo_name, sig_cfg)
    sig_body, sig_d = _push_artifact(api, repo_name, subject, None,
                                     descriptor(SIG_CONFIG, sig_cfg), {"org.example.sig": "1"})

    r, manifests = _referrers(api, repo_name, img["digest"])
    by_digest = {m["digest"]: m for m in manifests}
    assert set(by_digest) == {sbom_d, sig_d}, manifests
    e = by_digest[sbom_d]
    assert e["mediaType"] == OCI_MANIFEST
    assert e["size"] == len(sbom_body)
    assert e["artifactType"] == SBOM
    assert e["annotations"] == ann
    e = by_digest[sig_d]
    assert e["size"] == len(sig_body)
    assert e["artifactType"] == SIG_CONFIG
    assert e["annotations"] == {"org.example.sig": "1"}

    r, manifests = _referrers(api, repo_name, img["digest"], artifactType=SBOM)
    assert [m["digest"] for m in manifests] == [sbom_d]
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"

    r, manifests = _referrers(api, repo_name, img["digest"],
                              artifactType="application/vnd.example.other")
    assert manifests == []

    # unknown subject: empty index, not 404
    _, manifests = _referrers(api, repo_name, digest(b"never pushed"))
    assert manifests == []

    # the referrer itself is an ordinary manifest
    g = api.get_manifest(repo_name, sbom_d)
    assert g.status_code == 200 and g.content == sbom_body

    # deleting a referrer removes it from the list
    assert api.delete(f"/v2/{repo_name}/manifests/{sig_d}").status_code == 202
    _, manifests = _referrers(api, repo_name, img["digest"])
    assert [m["digest"] for m in manifests] == [sbom_d]


def test_referrer_pushed_before_its_subject(api, repo_name):
    """Registries MUST accept a manifest whose subject does not exist (yet)."""
    assert api.push_blob(repo_name, b"{}") == OCI_EMPTY_DIGEST
    empty = {"mediaType": OCI_EMPTY, "digest": OCI_EMPTY_DIGEST, "size": 2}
    missing = {"mediaType": OCI_MANIFEST, "digest": digest(b"later"), "size": 5}
    _, d = _push_artifact(api, repo_name, missing, SBOM, empty, {"k": "v"})
    _, manifests = _referrers(api, repo_name, missing["digest"])
    assert [m["digest"] for m in manifests] == [d]
