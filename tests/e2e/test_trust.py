"""Image trust (issue 17): signatures made exactly as cosign makes them (simple-signing payloads
signed with OpenSSL's ECDSA P-256 and Ed25519, the cosign v2 `.sig` tag, cosign's OCI 1.1
referrer, the cosign v3 Sigstore bundle), detected and verified at push time, shown in listings
and the CLI, and the registry's trust mode refusing unsigned pulls by docker and skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from e2e_util import OCI_MANIFEST, assert_error, descriptor, digest, image_config as image_config_bytes, require_tool, run, tar_gz
from test_auth import make_user
from test_docker import _docker_login, docker_images  # noqa: F401 (a fixture)

pytestmark = pytest.mark.berth_only

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


# --- signing as cosign does, with OpenSSL -----------------------------------------------------------

def run_bytes(cmd: list[str]) -> bytes:
    """A command's binary stdout; a failure shows its stderr."""
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode(errors='replace')}"
    return p.stdout


class Key:
    """A signing key made by OpenSSL: `p256` (what `cosign generate-key-pair` makes) or `ed25519`."""

    def __init__(self, directory: Path, kind: str = "p256"):
        require_tool("openssl")
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.kind = directory, kind
        self.private = directory / "cosign.key"
        self.public = directory / "cosign.pub"
        if kind == "p256":
            run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(self.private)])
            run(["openssl", "ec", "-in", str(self.private), "-pubout", "-out", str(self.public)])
        else:
            run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(self.private)])
            run(["openssl", "pkey", "-in", str(self.private), "-pubout", "-out", str(self.public)])
        der = run_bytes(["openssl", "pkey", "-pubin", "-in", str(self.public), "-outform", "DER"])
        self.id = "sha256:" + hashlib.sha256(der).hexdigest()
        self.pem = self.public.read_text()

    def sign(self, message: bytes) -> bytes:
        """The signature cosign writes: ECDSA P-256 over SHA-256 in ASN.1 DER, or Ed25519."""
        name = self.dir / f"msg-{uuid.uuid4().hex[:8]}"
        name.write_bytes(message)
        if self.kind == "p256":
            cmd = ["openssl", "dgst", "-sha256", "-sign", str(self.private), str(name)]
        else:
            cmd = ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(self.private), "-in", str(name)]
        return run_bytes(cmd)

    def openssl_verifies(self, message: bytes, signature: bytes) -> bool:
        """An independent check of a signature with OpenSSL."""
        m, s = self.dir / "check-msg", self.dir / "check-sig"
        m.write_bytes(message)
        s.write_bytes(signature)
        if self.kind == "p256":
            cmd = ["openssl", "dgst", "-sha256", "-verify", str(self.public), "-signature", str(s), str(m)]
        else:
            cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(self.public), "-rawin", "-in", str(m),
                   "-sigfile", str(s)]
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0


def payload(reference: str, subject: str) -> bytes:
    """cosign's simple-signing payload for `subject` (cosign writes it compact, in this key order)."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": subject},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def signature_manifest(api, repo: str, layers: list[tuple[bytes, str]], subject: dict | None = None) -> bytes:
    """A cosign signature image: one simple-signing layer per (payload, base64 signature), with the
    config cosign writes; as an OCI 1.1 referrer when `subject` is given."""
    for body, _ in layers:
        api.push_blob(repo, body)
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [digest(b) for b, _ in layers]},
                         "config": {}}, separators=(",", ":")).encode()
    config_type = OCI_CONFIG if subject is None else "application/vnd.dev.cosign.artifact.sig.v1+json"
    if subject is not None:
        config = b"{}"
    api.push_blob(repo, config)
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config_type, config),
         "layers": [descriptor(SIMPLE_SIGNING, b, annotations={SIGNATURE_ANNOTATION: sig}) for b, sig in layers]}
    if subject is not None:
        m["subject"] = subject
    return json.dumps(m).encode()


def sign_v2(api, key: Key, repo: str, subject: str, signed_digest: str | None = None,
            tamper: bool = False) -> requests.Response:
    """`cosign sign --key` (v2): the signature at tag `sha256-<hex>.sig`. `signed_digest` signs
    another digest's payload; `tamper` changes the payload after signing."""
    body = payload(f"berth.test/{repo}", signed_digest or subject)
    sig = key.sign(body)
    assert key.openssl_verifies(body, sig), "OpenSSL verifies the signature it made"
    if tamper:
        body = body.replace(b"cosign container image signature", b"cosign container image signaturE")
        assert not key.openssl_verifies(body, sig)
    manifest = signature_manifest(api, repo, [(body, base64.b64encode(sig).decode())])
    return api.put_manifest(repo, f"sha256-{subject.split(':')[1]}.sig", manifest, OCI_MANIFEST)


def bundle_referrer(api, key: Key, repo: str, subject: dict, predicate="https://sigstore.dev/cosign/sign/v1") -> str:
    """`cosign sign` (v3): a Sigstore bundle holding a DSSE envelope of an in-toto statement,
    pushed as a referrer of `subject`. Returns the referrer's digest."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"digest": {"sha256": subject["digest"].split(":")[1]}}],
                            "predicateType": predicate, "predicate": {}}).encode()
    ptype = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(statement), statement)
    sig = key.sign(pae)
    assert key.openssl_verifies(pae, sig)
    bundle = json.dumps({"mediaType": BUNDLE,
                         "verificationMaterial": {"publicKey": {"hint": key.id}},
                         "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": ptype,
                                          "signatures": [{"sig": base64.b64encode(sig).decode()}]}}).encode()
    api.push_blob(repo, bundle)
    api.push_blob(repo, b"{}")
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
                    "config": descriptor(EMPTY, b"{}"), "layers": [descriptor(BUNDLE, bundle)], "subject": subject,
                    "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                                    "dev.sigstore.bundle.predicateType": predicate}}).encode()
    r = api.put_manifest(repo, digest(m), m, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers.get("OCI-Subject") == subject["digest"]
    return digest(m)


# --- API helpers ------------------------------------------------------------------------------------

def trust_path(registry_name: str = "e2e") -> str:
    return f"/api/v1/registries/{registry_name}/trust"


def signature_of(api, repo: str, d: str) -> dict:
    r = api.get(f"/api/v1/images/{repo}/artifacts/{d}")
    assert r.status_code == 200, r.text
    return r.json()["signature"]


def wait_signature(api, repo: str, d: str, want, timeout: float = 60) -> dict:
    """Waits for the re-verification job a key change queues."""
    deadline = time.time() + timeout
    while True:
        sig = signature_of(api, repo, d)
        if want(sig):
            return sig
        assert time.time() < deadline, f"signature status stayed {sig}"
        time.sleep(0.2)


def subject_of(image: dict) -> dict:
    return {"mediaType": OCI_MANIFEST, "digest": image["digest"], "size": len(image["manifest"])}


def as_user(registry, creds, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{registry.url}{path}", auth=creds, timeout=30, **kw)


# --- tests ------------------------------------------------------------------------------------------

def test_cosign_v2_signatures_gate_docker_and_skopeo_pulls_by_mode(registry, api, proxy, tmp_path, docker_images):
    """A docker-pushed image, unsigned: any-signature refuses a viewer's docker pull and skopeo
    copy (a pusher, a HEAD and the admin are not gated); a `.sig` signature lets them through;
    trusted-keys refuses again until the signing key is registered (re-verified by a job); a
    viewer reads the signature itself (cosign verify's path); removing the key closes the gate at
    once; deleting the signature does too."""
    require_tool("docker")
    require_tool("skopeo")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text(f"trust {uuid.uuid4()}\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    repo = f"e2e/signed-{uuid.uuid4().hex[:8]}"
    ref = f"{proxy.host}/{repo}:v1"
    _docker_login(registry, proxy.host)
    docker_images.append(ref)
    run(["docker", "build", "-t", ref, str(ctx)], env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    push = run(["docker", "push", ref], timeout=300)
    subject = next(w for w in push.stdout.split() if w.startswith("sha256:"))
    sig = signature_of(api, repo, subject)
    assert {k: sig[k] for k in ("signed", "verified", "signatures", "shapes", "verified_keys", "signed_indexes")} == \
        {"signed": False, "verified": False, "signatures": 0, "shapes": [], "verified_keys": [], "signed_indexes": []}, sig
    assert isinstance(sig["checked_at"], int), "looked at when it was pushed"

    viewer = make_user(registry, "service-viewer")
    uploader = make_user(registry, "image-uploader")
    r = api.put(trust_path(), json={"mode": "any-signature"})
    assert r.status_code == 200 and r.json() == {"registry": "e2e", "mode": "any-signature", "keys": []}, r.text

    def viewer_docker_pull():
        run(["docker", "rmi", "-f", ref], check=False, timeout=120)
        login = subprocess.run(["docker", "login", proxy.host, "-u", viewer[0], "--password-stdin"], input=viewer[1],
                               capture_output=True, text=True, timeout=60)
        assert login.returncode == 0, login.stderr
        try:
            return run(["docker", "pull", ref], check=False, timeout=300)
        finally:
            _docker_login(registry, proxy.host)

    def viewer_skopeo(dest: Path):
        return run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", f"{viewer[0]}:{viewer[1]}",
                    f"docker://{proxy.host}/{repo}:v1", f"dir:{dest}"], check=False, timeout=300)

    pulled = viewer_docker_pull()
    assert pulled.returncode != 0 and "is not signed" in pulled.stderr and "any-signature" in pulled.stderr, \
        pulled.stderr
    copied = viewer_skopeo(tmp_path / "refused")
    assert copied.returncode != 0 and "is not signed" in copied.stderr, copied.stderr
    refused = as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1")
    assert_error(refused, 403, "DENIED")
    assert as_user(registry, viewer, "HEAD", f"/v2/{repo}/manifests/v1").status_code == 200, "HEAD is not gated"
    assert api.get_manifest(repo, "v1").status_code == 200, "an administrator may push: not gated"
    # the uploader may push (and so sign) but never pull: the role refuses before the gate
    assert as_user(registry, uploader, "GET", f"/v2/{repo}/manifests/v1").status_code == 403

    key = Key(tmp_path / "key")
    r = sign_v2(api, key, repo, subject)
    assert r.status_code == 201, r.text
    sig = signature_of(api, repo, subject)
    assert (sig["signed"], sig["verified"], sig["signatures"], sig["shapes"]) == (True, False, 1, ["cosign-tag"]), sig
    pulled = viewer_docker_pull()
    assert pulled.returncode == 0, pulled.stderr
    copied = viewer_skopeo(tmp_path / "signed")
    assert copied.returncode == 0, copied.stderr
    assert digest((tmp_path / "signed" / "manifest.json").read_bytes()) == subject, "skopeo got the exact manifest"

    # trusted-keys: the signature exists but no key verifies it yet
    assert api.put(trust_path(), json={"mode": "trusted-keys"}).status_code == 200
    refused = as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1")
    assert_error(refused, 403, "DENIED")
    assert "verifies under the registry's trusted keys" in refused.text
    r = api.post(f"{trust_path()}/keys", json={"pem": key.pem, "name": "release"})
    assert r.status_code == 201, r.text
    assert (r.json()["id"], r.json()["algorithm"], r.json()["name"]) == (key.id, "ecdsa-p256", "release")
    sig = wait_signature(api, repo, subject, lambda s: s["verified"])
    assert sig["verified_keys"] == [key.id]
    pulled = viewer_docker_pull()
    assert pulled.returncode == 0, pulled.stderr
    copied = viewer_skopeo(tmp_path / "verified")
    assert copied.returncode == 0, copied.stderr

    # cosign verify's reads: the signature manifest by its tag and its payload blob, as the viewer
    sig_tag = f"sha256-{subject.split(':')[1]}.sig"
    r = as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{sig_tag}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200, r.text
    layer = r.json()["layers"][0]
    blob = as_user(registry, viewer, "GET", f"/v2/{repo}/blobs/{layer['digest']}")
    assert blob.status_code == 200 and digest(blob.content) == layer["digest"]
    assert key.openssl_verifies(blob.content, base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]))

    # a removed key verifies nothing, at once
    r = api.delete(f"{trust_path()}/keys/{key.id}")
    assert r.status_code == 204, r.text
    assert_error(as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1"), 403, "DENIED")
    assert signature_of(api, repo, subject)["verified"] is False
    assert_error(api.delete(f"{trust_path()}/keys/{key.id}"), 404, "NOT_FOUND")

    # back to any-signature; deleting the signature tag leaves the image unsigned again
    assert api.put(trust_path(), json={"mode": "any-signature"}).status_code == 200
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1").status_code == 200
    assert api.delete(f"/v2/{repo}/manifests/{sig_tag}").status_code == 202
    assert signature_of(api, repo, subject)["signed"] is False
    assert_error(as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1"), 403, "DENIED")
    assert api.put(trust_path(), json={"mode": "off"}).status_code == 200
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/v1").status_code == 200


def test_forged_signatures_are_signed_but_never_verified(registry, api, tmp_path):
    """A signature by another key, a payload modified after signing, and a valid signature of
    another image: each makes its image "signed" (any-signature lets it through) but none
    "verified" (trusted-keys refuses), while the genuine one verifies."""
    key, stranger = Key(tmp_path / "key"), Key(tmp_path / "stranger")
    assert api.post(f"{trust_path()}/keys", json={"pem": key.pem}).status_code == 201
    repo = f"e2e/forged-{uuid.uuid4().hex[:8]}"
    images = {name: api.push_image(repo, name, [tar_gz({"f": name.encode()})])
              for name in ["genuine", "stranger", "tampered", "other", "unsigned"]}
    assert sign_v2(api, key, repo, images["genuine"]["digest"]).status_code == 201
    assert sign_v2(api, stranger, repo, images["stranger"]["digest"]).status_code == 201
    assert sign_v2(api, key, repo, images["tampered"]["digest"], tamper=True).status_code == 201
    assert sign_v2(api, key, repo, images["other"]["digest"],
                   signed_digest=images["genuine"]["digest"]).status_code == 201
    viewer = make_user(registry, "service-viewer")
    expect = {"genuine": (True, True), "stranger": (True, False), "tampered": (True, False), "other": (True, False),
              "unsigned": (False, False)}
    for name, (signed, verified) in expect.items():
        sig = signature_of(api, repo, images[name]["digest"])
        assert (sig["signed"], sig["verified"]) == (signed, verified), (name, sig)
    for mode, passing in [("any-signature", {"genuine", "stranger", "tampered", "other"}),
                          ("trusted-keys", {"genuine"})]:
        assert api.put(trust_path(), json={"mode": mode}).status_code == 200
        for name, image in images.items():
            r = as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{name}")
            assert r.status_code == (200 if name in passing else 403), (mode, name, r.status_code, r.text)
            if r.status_code == 200:
                assert digest(r.content) == image["digest"]
    # the artifact listing shows the same column for every artifact
    listed = api.get(f"/api/v1/images/{repo}/artifacts?n=100").json()["items"]
    verified = {a["tags"][0] for a in listed if a["signature"]["verified"]}
    assert verified == {"genuine"}


def test_referrer_shapes_bundles_ed25519_and_index_children(registry, api, tmp_path):
    """cosign's OCI 1.1 referrer (P-256) and the cosign v3 Sigstore bundle (Ed25519) verify; an
    attestation bundle is no signature; a notation signature is signed, not verified; the
    children of a signed index pass the gate with it."""
    p256, ed = Key(tmp_path / "p256"), Key(tmp_path / "ed", "ed25519")
    for k in (p256, ed):
        r = api.post(f"{trust_path()}/keys", json={"pem": k.pem})
        assert r.status_code == 201 and r.json()["algorithm"] == ("ecdsa-p256" if k is p256 else "ed25519"), r.text
    assert api.put(trust_path(), json={"mode": "trusted-keys"}).status_code == 200
    repo = f"e2e/shapes-{uuid.uuid4().hex[:8]}"
    viewer = make_user(registry, "service-viewer")

    a = api.push_image(repo, "a", [tar_gz({"a": b"1"})])
    body = payload(f"berth.test/{repo}", a["digest"])
    m = signature_manifest(api, repo, [(body, base64.b64encode(p256.sign(body)).decode())], subject=subject_of(a))
    r = api.put_manifest(repo, digest(m), m, OCI_MANIFEST)
    assert r.status_code == 201 and r.headers.get("OCI-Subject") == a["digest"], r.text
    sig = signature_of(api, repo, a["digest"])
    assert (sig["shapes"], sig["verified_keys"]) == (["cosign-referrer"], [p256.id]), sig

    b = api.push_image(repo, "b", [tar_gz({"b": b"2"})])
    bundle_referrer(api, ed, repo, subject_of(b), predicate="https://slsa.dev/provenance/v1")
    assert signature_of(api, repo, b["digest"])["signed"] is False, "an attestation is no signature"
    assert_error(as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/b"), 403, "DENIED")
    sig_digest = bundle_referrer(api, ed, repo, subject_of(b))
    sig = signature_of(api, repo, b["digest"])
    assert (sig["shapes"], sig["verified_keys"]) == (["sigstore-bundle"], [ed.id]), sig
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/b").status_code == 200
    # the referrers API and the signature itself are not gated
    refs = as_user(registry, viewer, "GET", f"/v2/{repo}/referrers/{b['digest']}")
    assert refs.status_code == 200 and sig_digest in {d["digest"] for d in refs.json()["manifests"]}
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{sig_digest}").status_code == 200

    c = api.push_image(repo, "c", [tar_gz({"c": b"3"})])
    api.push_blob(repo, b"{}")
    notation = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "artifactType": "application/vnd.cncf.notary.signature",
                           "config": descriptor(EMPTY, b"{}"), "layers": [descriptor(EMPTY, b"{}")],
                           "subject": subject_of(c)}).encode()
    assert api.put_manifest(repo, digest(notation), notation, OCI_MANIFEST).status_code == 201
    sig = signature_of(api, repo, c["digest"])
    assert (sig["signed"], sig["verified"], sig["shapes"]) == (True, False, ["notation"]), sig

    # an index signed at its own digest: its child passes with it, by digest
    child = api.push_image(repo, "child-only", [tar_gz({"d": b"4"})])
    api.delete(f"/v2/{repo}/manifests/child-only")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child["digest"],
                                       "size": len(child["manifest"]),
                                       "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    assert api.put_manifest(repo, "multi", index, "application/vnd.oci.image.index.v1+json").status_code == 201
    assert_error(as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{child['digest']}"), 403, "DENIED")
    assert sign_v2(api, p256, repo, digest(index)).status_code == 201
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/multi").status_code == 200
    r = as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{child['digest']}")
    assert r.status_code == 200 and digest(r.content) == child["digest"]
    assert signature_of(api, repo, child["digest"])["signed_indexes"] == [digest(index)]
    # 33 unsigned indexes listing the same child change nothing (the signed one is kept on it)
    for i in range(33):
        other = json.loads(index)
        other["annotations"] = {"n": str(i)}
        body = json.dumps(other).encode()
        assert api.put_manifest(repo, digest(body), body, "application/vnd.oci.image.index.v1+json").status_code == 201
    assert as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{child['digest']}").status_code == 200
    # deleting the signed index takes its signature away from the child
    assert api.delete(f"/api/v1/images/{repo}/artifacts/{digest(index)}").status_code == 204
    assert signature_of(api, repo, child["digest"])["signed_indexes"] == []
    assert_error(as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{child['digest']}"), 403, "DENIED")


def test_signatures_follow_their_subject_and_protection_never_blocks_signing(registry, api, tmp_path):
    """A protection rule over every tag does not stop a `.sig` push; cleanup keeps signatures
    while it keeps their image and counts no `.sig` as an image; deleting the image deletes its
    `.sig` signature and its referrer signatures."""
    key = Key(tmp_path / "key")
    repo = f"e2e/follow-{uuid.uuid4().hex[:8]}"
    image = api.push_image(repo, "v1", [tar_gz({"f": b"x"})])
    rule = api.post("/api/v1/registries/e2e/protection/rules", json={"image": "**", "tag": "**"})
    assert rule.status_code == 201, rule.text
    try:
        assert sign_v2(api, key, repo, image["digest"]).status_code == 201, "signing is never protected"
        assert sign_v2(api, key, repo, image["digest"]).status_code == 201, "signing again is not either"
    finally:
        assert api.delete(f"/api/v1/registries/e2e/protection/rules/{rule.json()['id']}").status_code == 204
    body = payload(f"berth.test/{repo}", image["digest"])
    m = signature_manifest(api, repo, [(body, base64.b64encode(key.sign(body)).decode())],
                           subject=subject_of(image))
    assert api.put_manifest(repo, digest(m), m, OCI_MANIFEST).status_code == 201
    assert signature_of(api, repo, image["digest"])["signatures"] == 2

    # cleanup keeping one image per repository keeps v1 and its signatures: the `.sig` is no image
    # (the first `.sig` manifest, untagged since the second signing replaced it, is garbage)
    from test_policies import wait_run
    sig_tag = f"sha256-{image['digest'].split(':')[1]}.sig"
    current_sig = digest(api.get_manifest(repo, sig_tag).content)
    r = api.post("/api/v1/registries/e2e/cleanup/rules",
                 json={"image": repo.split("/", 1)[1], "tag": "**", "keep": "latest-pushed:1"})
    assert r.status_code == 201, r.text
    time.sleep(1.1)
    r = api.post("/api/v1/registries/e2e/cleanup/runs", json={"dry_run": False})
    assert r.status_code == 202, r.text
    status = wait_run(api, f"/api/v1/registries/e2e/cleanup/runs/{r.json()['id']}")
    assert status["status"] == "succeeded" and (status["total"], status["deleted"]) == (2, 1), status
    decided = {d["digest"]: d["action"] for d in status["decisions"]}
    assert decided[image["digest"]] == "retain" and current_sig not in decided, decided
    assert digest(api.get_manifest(repo, sig_tag).content) == current_sig
    assert signature_of(api, repo, image["digest"])["signatures"] == 2

    r = api.delete(f"/api/v1/images/{repo}/artifacts/{image['digest']}")
    assert r.status_code in (200, 204), r.text
    assert api.get_manifest(repo, sig_tag).status_code == 404, "the .sig went with its image"
    assert api.get_manifest(repo, digest(m)).status_code == 404, "the referrer signature too"


def test_trust_settings_roles_bad_input_races_and_caches(registry, api, tmp_path):
    """A viewer reads trust settings but changes nothing; bad modes, keys and names are 400 with
    a reason; an unknown registry or key 404; eight keys added at once all land; an image cache
    takes no trust mode and no signature."""
    viewer = make_user(registry, "service-viewer")
    key = Key(tmp_path / "key")
    assert as_user(registry, viewer, "GET", trust_path()).status_code == 200
    assert as_user(registry, viewer, "GET", f"{trust_path()}/keys").status_code == 200
    for method, path, body in [("PUT", trust_path(), {"mode": "any-signature"}),
                               ("POST", f"{trust_path()}/keys", {"pem": key.pem}),
                               ("DELETE", f"{trust_path()}/keys/{key.id}", None)]:
        r = as_user(registry, viewer, method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
    assert api.get(trust_path()).json() == {"registry": "e2e", "mode": "off", "keys": []}

    rsa = tmp_path / "rsa.pem"
    run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(rsa)])
    rsa_pub = run(["openssl", "pkey", "-in", str(rsa), "-pubout"]).stdout
    for body in [{"mode": "on"}, {"mode": "off", "extra": 1}, {}]:
        assert_error(api.put(trust_path(), json=body), 400, "INVALID_REQUEST")
    for body in [{"pem": "not a key"}, {"pem": rsa_pub}, {"pem": key.pem, "name": "bad\nname"},
                 {"pem": key.pem, "name": "x" * 129}, {"pem": "A" * 5000}]:
        r = api.post(f"{trust_path()}/keys", json=body)
        assert_error(r, 400, "INVALID_REQUEST")
        assert r.json()["errors"][0]["message"], r.text
    assert_error(api.put(trust_path("no-such-registry"), json={"mode": "off"}), 404, "NOT_FOUND")
    assert_error(api.get(f"{trust_path()}/keys/sha256:{'0' * 64}"), 404, "NOT_FOUND")

    keys = [Key(tmp_path / f"k{i}") for i in range(8)]
    results = []

    def add(k):
        results.append(requests.post(f"{registry.url}{trust_path()}/keys", json={"pem": k.pem, "name": k.dir.name},
                                     auth=registry.credentials, timeout=60).status_code)

    threads = [threading.Thread(target=add, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 8, results
    listed = api.get(f"{trust_path()}/keys").json()["items"]
    assert sorted(k["id"] for k in listed) == sorted(k.id for k in keys)
    again = api.post(f"{trust_path()}/keys", json={"pem": keys[0].pem, "name": "renamed"})
    assert again.status_code == 201 and again.json()["name"] == "renamed"
    assert len(api.get(f"{trust_path()}/keys").json()["items"]) == 8, "the same key is not added twice"

    # an image cache: no trust mode, no signature pushes
    cache_name = f"cache{uuid.uuid4().hex[:6]}"
    r = api.post("/api/v1/caches", json={"name": cache_name, "type": "docker-hub", "url": "https://hub.docker.com"})
    assert r.status_code == 201, r.text
    r = api.post("/api/v1/registries", json={"name": cache_name, "cache": cache_name})
    assert r.status_code == 201, r.text
    assert_error(api.put(trust_path(cache_name), json={"mode": "any-signature"}), 400, "INVALID_REQUEST")
    manifest = signature_manifest(api, "e2e/scratch", [(b"{}", "c2ln")])
    r = api.put_manifest(f"{cache_name}/library/alpine", f"sha256-{'a' * 64}.sig", manifest, OCI_MANIFEST)
    assert_error(r, 403, "DENIED")
    assert "signed" in r.text


def test_cli_sets_trust_and_lists_signed_artifacts(registry, api, tmp_path):
    """`berth trust set|show`, `berth trust key add|ls|rm`, and `artifact ls`'s SIGNED column."""
    from test_cli import Cli
    key = Key(tmp_path / "key")
    repo = f"e2e/cli-{uuid.uuid4().hex[:8]}"
    image = api.push_image(repo, "v1", [tar_gz({"f": b"cli"})])
    api.push_image(repo, "v2", [tar_gz({"f": b"cli2"})])
    assert sign_v2(api, key, repo, image["digest"]).status_code == 201
    cli = Cli(registry, tmp_path / "home")
    cli.login(*registry.credentials)
    assert cli.ok("trust", "set", "e2e", "trusted-keys") == {"registry": "e2e", "mode": "trusted-keys", "keys": []}
    added = cli.ok("trust", "key", "add", "e2e", str(key.public), "--name", "ci")
    assert (added["id"], added["name"]) == (key.id, "ci")
    assert cli.ok("trust", "show", "e2e")["keys"] == [key.id]
    assert [k["id"] for k in cli.ok("trust", "key", "ls", "e2e")] == [key.id]
    wait_signature(api, repo, image["digest"], lambda s: s["verified"])
    table = cli.text("artifact", "ls", repo)
    header, *rows = table.strip().splitlines()
    assert "SIGNED" in header
    marks = {row.split()[1]: row for row in rows if "sha256-" not in row.split()[1]}
    assert "verified" in marks["v1"] and "verified" not in marks["v2"] and " - " in marks["v2"], table
    bad = cli.run("trust", "set", "e2e", "sometimes")
    assert bad.returncode != 0 and "off, any-signature or trusted-keys" in bad.stderr
    assert cli.ok("trust", "key", "rm", "e2e", key.id) == {"deleted": key.id}
    assert cli.ok("trust", "key", "ls", "e2e") == []
    assert cli.ok("trust", "set", "e2e", "off")["mode"] == "off"


def test_pushers_tricks_neither_open_the_gate_nor_hide_a_valid_signature(registry, api, tmp_path):
    """What a review found, each sent as the request it took: an image carrying a `subject`, an
    unsigned image tagged like a signature (`sha256-<hex>.att`, its own `.sig` tag), and a
    signature layer whose descriptor lies about its size stay gated; 64 SBOM referrers and junk
    signature referrers pushed after a valid signature do not un-verify it."""
    key = Key(tmp_path / "key")
    assert api.post(f"{trust_path()}/keys", json={"pem": key.pem}).status_code == 201
    assert api.put(trust_path(), json={"mode": "trusted-keys"}).status_code == 200
    viewer = make_user(registry, "service-viewer")
    repo = f"e2e/tricks-{uuid.uuid4().hex[:8]}"

    def viewer_get(ref: str) -> int:
        return as_user(registry, viewer, "GET", f"/v2/{repo}/manifests/{ref}").status_code

    # a runnable image naming a subject (even one that does not exist) is still an image
    config, layer = image_config_bytes(), tar_gz({"bin/sh": b"#!"})
    api.push_blob(repo, config)
    api.push_blob(repo, layer)
    evil = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                       "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
                       "subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 2}}).encode()
    assert api.put_manifest(repo, "evil", evil, OCI_MANIFEST).status_code == 201
    assert viewer_get("evil") == 403 and viewer_get(digest(evil)) == 403

    # keys other clients read as `layers` are refused at push (docker reads `Layers` as layers)
    for trick in [{"Layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)]},
                  {"layers": [], "Layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}]:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                           **trick}).encode()
        r = api.put_manifest(repo, "tricky", body, OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
        assert "same field to other clients" in r.text or "must be spelt" in r.text, r.text

    # a tar layer labelled as a signature payload or an empty blob is still something to run
    for i, media_type in enumerate([SIMPLE_SIGNING, EMPTY, "application/vnd.dsse.envelope.v1+json"]):
        disguised = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": descriptor(OCI_CONFIG, config),
                                "layers": [descriptor(media_type, layer)]}).encode()
        assert api.put_manifest(repo, f"disguised-{i}", disguised, OCI_MANIFEST).status_code == 201
        assert viewer_get(digest(disguised)) == 403, media_type

    # an OCI artifact manifest carries its content in `blobs`: gated like an image
    artifact = json.dumps({"mediaType": "application/vnd.oci.artifact.manifest.v1+json",
                           "artifactType": "application/x-tool",
                           "blobs": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}).encode()
    r = api.put_manifest(repo, "artifact", artifact, "application/vnd.oci.artifact.manifest.v1+json")
    assert r.status_code == 201, r.text
    assert viewer_get("artifact") == 403

    # an unsigned image under accessory-looking tags
    x = api.push_image(repo, "x", [tar_gz({"x": b"unsigned"})])
    for tag in [f"sha256-{'1' * 64}.att", f"sha256-{x['digest'].split(':')[1]}.sig", f"sha256-{'2' * 64}"]:
        assert api.put_manifest(repo, tag, x["manifest"], OCI_MANIFEST).status_code == 201
        assert viewer_get(tag) == 403, tag
    assert viewer_get("x") == 403 and viewer_get(x["digest"]) == 403
    assert signature_of(api, repo, x["digest"])["verified"] is False

    # a genuine signature whose layer descriptor lies about its size verifies nothing
    y = api.push_image(repo, "y", [tar_gz({"y": b"1"})])
    body = payload(f"berth.test/{repo}", y["digest"])
    api.push_blob(repo, body)
    lying = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(EMPTY, b"{}"),
                        "layers": [{"mediaType": SIMPLE_SIGNING, "digest": digest(body), "size": len(body) + 5,
                                    "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(key.sign(body)).decode()}}]
                        }).encode()
    api.push_blob(repo, b"{}")
    assert api.put_manifest(repo, f"sha256-{y['digest'].split(':')[1]}.sig", lying, OCI_MANIFEST).status_code == 201
    sig = signature_of(api, repo, y["digest"])
    assert (sig["signed"], sig["verified"]) == (True, False), sig

    # a verified image keeps its status through 64 SBOMs and 4 junk signature referrers
    z = api.push_image(repo, "z", [tar_gz({"z": b"signed"})])
    assert sign_v2(api, key, repo, z["digest"]).status_code == 201
    bundle_referrer(api, key, repo, subject_of(z))
    assert signature_of(api, repo, z["digest"])["verified"] is True
    api.push_blob(repo, b"{}")
    for i in range(64):
        sbom = json.dumps({"bomFormat": "CycloneDX", "serialNumber": f"urn:uuid:{uuid.uuid4()}"}).encode()
        api.push_blob(repo, sbom)
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cyclonedx+json",
                        "config": descriptor(EMPTY, b"{}"), "layers": [descriptor("application/vnd.cyclonedx+json", sbom)],
                        "subject": subject_of(z)}).encode()
        assert api.put_manifest(repo, digest(m), m, OCI_MANIFEST).status_code == 201
    for i in range(4):
        junk = [(b'{"junk": %d, "layer": %d}' % (i, j), base64.b64encode(b"not a signature").decode())
                for j in range(16)]
        m = signature_manifest(api, repo, junk, subject=subject_of(z))
        assert api.put_manifest(repo, digest(m), m, OCI_MANIFEST).status_code == 201
    sig = signature_of(api, repo, z["digest"])
    assert (sig["signed"], sig["verified"], sig["signatures"]) == (True, True, 6), sig
    assert viewer_get("z") == 200
