"""Helpers shared by the e2e tests: raw HTTP client, digests, OCI objects, OCI layouts."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Iterable, Optional, Union
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFEST_TYPES = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

_rng = random.Random(int.from_bytes(os.urandom(8), "big"))


def random_bytes(n: int) -> bytes:
    return _rng.randbytes(n)


def digest(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def file_digest(path: Union[str, Path], alg: str = "sha256") -> str:
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return f"{alg}:{h.hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    d = {"mediaType": media_type, "digest": digest(data), "size": len(data)}
    d.update(extra)
    return d


def weird_json(obj) -> bytes:
    """JSON that no serializer would produce by default: reversed key order, odd spacing,
    a trailing newline. A registry that re-serializes instead of keeping bytes is caught."""
    def rev(o):
        if isinstance(o, dict):
            return {k: rev(o[k]) for k in reversed(list(o.keys()))}
        if isinstance(o, list):
            return [rev(x) for x in o]
        return o
    return (json.dumps(rev(obj), indent=3, separators=(" ,", " :  ")) + "\n\n").encode()


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A deterministic gzip'd tar holding `files` (name -> content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1700000000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def image_config(arch: str = "amd64", os_: str = "linux", diff_ids: Iterable[str] = ()) -> bytes:
    return json.dumps({
        "architecture": arch, "os": os_,
        "config": {"Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created_by": "berth e2e"}],
    }, sort_keys=True).encode()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"required tool {name!r} is not installed (tests/run installs it)"
    return path


def run(cmd: list[str], timeout: float = 600, env: Optional[dict] = None, check: bool = True,
        cwd=None) -> subprocess.CompletedProcess:
    """Run a client command; on failure the assertion shows its whole output."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check:
        assert p.returncode == 0, (f"{' '.join(map(str, cmd))} exited {p.returncode}\n"
                                   f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


# --- raw HTTP -------------------------------------------------------------------------------------

class Api:
    """Raw HTTP against one registry (requests). Paths start with /v2/; absolute URLs
    (Location headers) are used as they are, relative ones are resolved against the registry."""

    def __init__(self, registry):
        self.registry = registry
        self.s = requests.Session()

    @property
    def base(self) -> str:
        return self.registry.url

    def url(self, path_or_location: str) -> str:
        return urljoin(self.base + "/", path_or_location)

    def req(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 300)
        kw.setdefault("allow_redirects", method in ("GET", "HEAD"))
        if self.registry.credentials:
            kw.setdefault("auth", self.registry.credentials)
        return self.s.request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def head(self, path, **kw):
        return self.req("HEAD", path, **kw)

    def put(self, path, **kw):
        return self.req("PUT", path, **kw)

    def post(self, path, **kw):
        return self.req("POST", path, **kw)

    def patch(self, path, **kw):
        return self.req("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def raw(self, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None):
        """A request whose path is sent exactly as given (no URL normalisation), via
        http.client. Returns (status, headers, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.registry.port, timeout=60)
        try:
            hdrs = {"Content-Length": str(len(body))} if method in ("POST", "PUT", "PATCH") else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=body or None, headers=hdrs)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    # --- blobs ----------------------------------------------------------------------------
    def start_upload(self, repo: str, **params) -> requests.Response:
        r = self.post(f"/v2/{repo}/blobs/uploads/", params=params or None,
                      headers={"Content-Length": "0"})
        return r

    def new_session(self, repo: str) -> str:
        r = self.start_upload(repo)
        assert r.status_code == 202, f"POST upload -> {r.status_code} {r.text}"
        loc = r.headers.get("Location")
        assert loc, "202 without Location"
        return self.url(loc)

    def push_blob(self, repo: str, data: bytes, alg: str = "sha256") -> str:
        """POST + PUT ?digest= (the monolithic flow every client supports). Returns the digest."""
        d = digest(data, alg)
        loc = self.new_session(repo)
        r = self.put(loc, params={"digest": d}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, f"PUT blob -> {r.status_code} {r.text}"
        assert r.headers.get("Docker-Content-Digest") == d, r.headers
        return d

    def blob_status(self, repo: str, d: str) -> int:
        return self.head(f"/v2/{repo}/blobs/{d}").status_code

    def get_blob(self, repo: str, d: str) -> bytes:
        r = self.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200, f"GET blob {d} -> {r.status_code} {r.text[:300]}"
        return r.content

    # --- manifests ------------------------------------------------------------------------
    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str,
                     **kw) -> requests.Response:
        return self.put(f"/v2/{repo}/manifests/{ref}", data=body,
                        headers={"Content-Type": media_type}, **kw)

    def get_manifest(self, repo: str, ref: str, accept: str = ALL_MANIFEST_TYPES,
                     method: str = "GET") -> requests.Response:
        return self.req(method, f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})

    def tags(self, repo: str) -> list[str]:
        r = self.get(f"/v2/{repo}/tags/list")
        if r.status_code == 404:
            return []
        assert r.status_code == 200, f"tags list -> {r.status_code} {r.text}"
        return r.json().get("tags") or []

    def push_image(self, repo: str, ref: str, layers: list[bytes],
                   config: Optional[bytes] = None, annotations: Optional[dict] = None) -> dict:
        """Push blobs + an OCI image manifest. Returns dict(manifest=bytes, digest, config,
        layers=[(digest, bytes)])."""
        config = config if config is not None else image_config()
        cd = self.push_blob(repo, config)
        lds = [self.push_blob(repo, layer) for layer in layers]
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": descriptor(OCI_CONFIG, config),
             "layers": [descriptor(OCI_LAYER_GZIP, layer) for layer in layers]}
        if annotations:
            m["annotations"] = annotations
        body = json.dumps(m).encode()
        r = self.put_manifest(repo, ref, body, OCI_MANIFEST)
        assert r.status_code == 201, f"PUT manifest -> {r.status_code} {r.text}"
        assert r.headers.get("Docker-Content-Digest") == digest(body)
        return {"manifest": body, "digest": digest(body), "config": (cd, config),
                "layers": list(zip(lds, layers))}


def error_codes(resp: requests.Response) -> list[str]:
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: status {resp.status_code}, "
                             f"body {resp.text[:300]!r}")
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], \
        f"error body lacks errors[]: {body}"
    for e in body["errors"]:
        assert "code" in e and "message" in e, f"error entry lacks code/message: {e}"
    return [e["code"] for e in body["errors"]]


def assert_error(resp: requests.Response, status: Union[int, tuple], codes: Union[str, tuple]):
    """Status is (one of) `status` and the first error code is (one of) `codes`."""
    statuses = status if isinstance(status, tuple) else (status,)
    codes = codes if isinstance(codes, tuple) else (codes,)
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.url}: expected {statuses}, got "
        f"{resp.status_code} {resp.text[:300]}")
    if resp.request.method == "HEAD":
        return
    got = error_codes(resp)
    assert got[0] in codes, (f"{resp.request.method} {resp.request.url}: expected error code "
                             f"{codes}, got {got} ({resp.text[:300]})")


# --- OCI image layout (skopeo's oci: transport) --------------------------------------------------

class OciLayout:
    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob_path(self, d: str) -> Path:
        alg, hexpart = d.split(":", 1)
        return self.root / "blobs" / alg / hexpart

    def add_bytes(self, media_type: str, data: bytes, **extra) -> dict:
        desc = descriptor(media_type, data, **extra)
        self.blob_path(desc["digest"]).write_bytes(data)
        return desc

    def add_file(self, media_type: str, path: Path, d: str, size: int) -> dict:
        dst = self.blob_path(d)
        if not dst.exists():
            try:
                os.link(path, dst)
            except OSError:
                shutil.copyfile(path, dst)
        return {"mediaType": media_type, "digest": d, "size": size}

    def add_image(self, layers: list[tuple[str, bytes]], arch="amd64", os_="linux") -> dict:
        """layers: (media_type, bytes). Returns the manifest's descriptor (with platform)."""
        ldescs = [self.add_bytes(mt, data) for mt, data in layers]
        cfg = self.add_bytes(OCI_CONFIG, image_config(arch, os_, [d["digest"] for d in ldescs]))
        m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": ldescs}
        return self.add_bytes(OCI_MANIFEST, json.dumps(m, indent=2).encode(),
                              platform={"architecture": arch, "os": os_})

    def set_ref(self, desc: dict, tag: str) -> None:
        entry = dict(desc)
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        (self.root / "index.json").write_text(json.dumps(index))

    def ref_descriptor(self, tag: str) -> dict:
        index = json.loads((self.root / "index.json").read_text())
        for m in index["manifests"]:
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
                return m
        raise AssertionError(f"tag {tag} not in {self.root}/index.json: {index}")

    def blob_digests(self) -> dict[str, int]:
        """digest -> size of every blob file, verifying each file hashes to its name."""
        out = {}
        for alg_dir in (self.root / "blobs").iterdir():
            for f in alg_dir.iterdir():
                d = f"{alg_dir.name}:{f.name}"
                assert file_digest(f, alg_dir.name) == d, f"{f} does not hash to its name"
                out[d] = f.stat().st_size
        return out


def skopeo_creds(registry, side: str) -> list[str]:
    """--src-creds/--dest-creds once the registry has credentials; plain HTTP always."""
    args = [f"--{side}-tls-verify=false"]
    if registry.credentials:
        args.append(f"--{side}-creds={registry.credentials[0]}:{registry.credentials[1]}")
    return args
