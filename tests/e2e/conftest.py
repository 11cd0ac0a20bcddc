"""Fixtures for Berth's end-to-end tests.

Every test gets its own registry process (``registry``) on a free port with a fresh data dir.
By default that is ``berth serve`` (binary from ``BERTH_BIN``, default
``<repo>/target/debug/berth``); with ``E2E_PEER=distribution`` it is the CNCF distribution
registry (Debian's ``docker-registry``), used to validate the client-behaviour tests against a
reference implementation.

Credentials: Berth starts with a known administrator key (``BERTH_ADMIN_ACCESS_KEY`` /
``BERTH_ADMIN_SECRET_KEY``) and the registries the tests push into (``E2E_REGISTRIES``) are
created through the management API once it is up. ``Registry.credentials`` holds that
``(access key, secret key)`` pair; ``Api`` sends it as Basic credentials, docker, skopeo, oras and
helm log in with it (the Bearer token flow). The distribution peer runs without auth.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

from e2e_util import Api, random_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER = os.environ.get("E2E_PEER", "berth").strip() or "berth"
if PEER not in ("berth", "distribution"):
    raise RuntimeError(f"E2E_PEER must be 'berth' or 'distribution', not {PEER!r}")

BERTH_BIN = Path(os.environ.get("BERTH_BIN", str(REPO_ROOT / "target" / "debug" / "berth")))

# E2E_BACKEND=aws runs Berth as `berth serve --backend aws` on S3, DynamoDB and SQS served by moto
# (BERTH_TEST_MOTO_URL, started by tests/run), with a fresh bucket, table and queue per server.
BACKEND = os.environ.get("E2E_BACKEND", "embedded").strip() or "embedded"
if BACKEND not in ("embedded", "aws"):
    raise RuntimeError(f"E2E_BACKEND must be 'embedded' or 'aws', not {BACKEND!r}")
MOTO_URL = os.environ.get("BERTH_TEST_MOTO_URL", "")
if BACKEND == "aws" and not MOTO_URL:
    raise RuntimeError("E2E_BACKEND=aws needs BERTH_TEST_MOTO_URL (tests/run starts moto and sets it)")
# The administrator every e2e client logs in as, and the registries tests push into.
ADMIN_ACCESS_KEY = "BKE2EADMIN0000000001"
ADMIN_SECRET_KEY = "e2e-admin-secret-not-for-production"
E2E_REGISTRIES = ("e2e", "charts")
DISTRIBUTION_BIN = Path(os.environ.get("DISTRIBUTION_BIN", "/usr/bin/docker-registry"))

# A fixed secret lets distribution's signed upload URLs (_state=...) survive a restart, like
# Berth's upload sessions do.
_DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: {log_level}
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: berth-e2e-not-a-secret
  headers:
    X-Content-Type-Options: [nosniff]
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerDied(AssertionError):
    pass


class Registry:
    """One registry server process: start, stop (SIGTERM), kill (SIGKILL), restart on the same
    data dir and port. The recorded pid is the server's own (Popen of the binary, no shell)."""

    def __init__(self, kind: str, data_dir: Path, port: int, log_path: Path, workdir: Path,
                 extra_args: Optional[list[str]] = None):
        self.kind = kind
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.workdir = workdir
        self.extra_args = list(extra_args or [])
        self.proc: Optional[subprocess.Popen] = None
        self.credentials: Optional[tuple[str, str]] = (
            (ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY) if kind == "berth" else None)
        self.registries = E2E_REGISTRIES if kind == "berth" else ()
        self.expected_exit = False
        self.starts = 0
        # AWS backend: one bucket/table/queue per server, kept across restarts
        self.aws_name = f"e2e-{uuid.uuid4().hex[:20]}"
        self.extra_env: dict[str, str] = {}

    def is_aws(self) -> bool:
        return self.kind == "berth" and BACKEND == "aws"

    def environment(self) -> dict:
        env = dict(os.environ)
        if self.kind == "berth":
            env.update(BERTH_ADMIN_ACCESS_KEY=ADMIN_ACCESS_KEY, BERTH_ADMIN_SECRET_KEY=ADMIN_SECRET_KEY)
        env.update(self.extra_env)
        if self.is_aws():
            env.update(AWS_ENDPOINT_URL=MOTO_URL, AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
                       AWS_SECRET_ACCESS_KEY="test", BERTH_BUCKET=self.aws_name, BERTH_TABLE=self.aws_name,
                       BERTH_QUEUE_NAME=self.aws_name)
        return env

    def s3(self):
        import boto3
        return boto3.client("s3", endpoint_url=MOTO_URL, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    # --- addresses -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def is_berth(self) -> bool:
        return self.kind == "berth"

    # --- lifecycle -------------------------------------------------------------------------
    def command(self, extra_args: list[str]) -> list[str]:
        if self.kind == "berth":
            if self.is_aws():
                return [str(BERTH_BIN), "serve", "--backend", "aws", "--create-resources",
                        "--listen", self.host, *extra_args]
            return [str(BERTH_BIN), "serve", "--data-dir", str(self.data_dir),
                    "--listen", self.host, *extra_args]
        cfg = self.workdir / "distribution-config.yml"
        cfg.write_text(_DISTRIBUTION_CONFIG.format(
            root=self.data_dir, addr=self.host,
            log_level=os.environ.get("E2E_PEER_LOG_LEVEL", "info")))
        return [str(DISTRIBUTION_BIN), "serve", str(cfg)]

    def start(self, extra_args: Optional[list[str]] = None, timeout: float = 30.0) -> "Registry":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if extra_args is not None:
            self.extra_args = list(extra_args)
        binary = BERTH_BIN if self.kind == "berth" else DISTRIBUTION_BIN
        assert binary.is_file() and os.access(binary, os.X_OK), (
            f"{self.kind} binary not found or not executable: {binary}"
            + (" (build it with `cargo build --workspace`, or set BERTH_BIN)" if self.kind == "berth" else
               " (apt-get install docker-registry)"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1}: {self.command(self.extra_args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(self.extra_args), cwd=self.workdir, stdin=subprocess.DEVNULL, env=self.environment(),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self.expected_exit = False
        self.wait_ready(timeout)
        self.create_registries()
        return self

    def create_registries(self) -> None:
        """Creates the test registries (once; a restart finds them kept)."""
        for name in self.registries:
            r = requests.post(f"{self.url}/api/v1/registries", json={"name": name}, auth=self.credentials,
                              timeout=30)
            assert r.status_code in (201, 409), f"creating registry {name}: {r.status_code} {r.text}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerDied(f"{self.kind} exited with {self.proc.returncode} during start-up\n"
                                 + self.log_tail())
            try:
                r = requests.get(f"{self.url}/v2/", timeout=2, auth=self.credentials)
                if r.status_code == 200:
                    return
                last = f"GET /v2/ -> {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise ServerDied(f"{self.kind} not ready after {timeout}s (last: {last})\n" + self.log_tail())

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (SIGKILL after `timeout`, which fails the caller)."""
        assert self.proc is not None
        self.expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"{self.kind} ignored SIGTERM for {timeout}s; killed\n"
                                     + self.log_tail())
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9, as a crash would."""
        assert self.proc is not None
        self.expected_exit = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def restart(self, extra_args: Optional[list[str]] = None, timeout: float = 30.0) -> "Registry":
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        return self.start(extra_args, timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return f"--- last {n} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    # --- on-disk state -----------------------------------------------------------------------
    def staging_files(self) -> list[Path]:
        """Staging files of open upload sessions (Berth: DIR/uploads/*; distribution:
        .../repositories/<name>/_uploads/<id>/data; it leaves hashstates/ behind on cancel)."""
        if self.is_aws():
            # one entry per upload with staged objects or an open multipart upload in S3
            s3, ids = self.s3(), set()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.aws_name, Prefix="uploads/"):
                ids.update(o["Key"].split("/")[1] for o in page.get("Contents", []))
            for u in s3.list_multipart_uploads(Bucket=self.aws_name, Prefix="uploads/").get("Uploads", []):
                ids.add(u["Key"].split("/")[1])
            return sorted(Path(i) for i in ids)
        if self.kind == "berth":
            d = self.data_dir / "uploads"
            return sorted(d.iterdir()) if d.is_dir() else []
        root = self.data_dir / "docker" / "registry" / "v2" / "repositories"
        return sorted(root.glob("**/_uploads/*/data")) if root.is_dir() else []

    def blob_file(self, digest: str) -> Path:
        alg, hexpart = digest.split(":", 1)
        if self.kind == "berth":
            return self.data_dir / "blobs" / alg / hexpart[:2] / hexpart
        return (self.data_dir / "docker" / "registry" / "v2" / "blobs" / alg / hexpart[:2]
                / hexpart / "data")


# --- pytest plumbing -----------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def pytest_report_header(config):
    return [f"e2e peer: {PEER} ({BERTH_BIN if PEER == 'berth' else DISTRIBUTION_BIN})"]


@pytest.fixture(scope="session")
def peer() -> str:
    return PEER


@pytest.fixture
def registry_factory(tmp_path_factory, request) -> Iterator:
    """Start registries: factory(extra_args=[...]) -> started Registry. Stopped by pid at teardown;
    a server that died on its own during the test fails the test."""
    started: list[Registry] = []

    def make(extra_args: Optional[list[str]] = None, port: Optional[int] = None,
             env: Optional[dict] = None, share_with: Optional[Registry] = None) -> Registry:
        """env: extra environment for the server; share_with: use that server's storage (its
        data dir, or its bucket/table/queue), as an API process and an upload gateway do."""
        base = tmp_path_factory.mktemp(f"{PEER}-srv")
        data_dir = share_with.data_dir if share_with else base / "data"
        reg = Registry(PEER, data_dir, port or free_port(), base / "server.log", base,
                       extra_args)
        reg.extra_env = dict(env or {})
        if share_with:
            reg.aws_name = share_with.aws_name
        started.append(reg)
        reg.start()
        return reg

    yield make

    problems = []
    for reg in started:
        if reg.proc is None:
            continue
        if reg.proc.poll() is not None and not reg.expected_exit:
            problems.append(f"{reg.kind} (pid {reg.pid}) died during the test with exit code "
                            f"{reg.proc.returncode}\n{reg.log_tail()}")
        elif reg.proc.poll() is None:
            try:
                reg.stop()
            except AssertionError as e:
                problems.append(str(e))
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for reg in started:
            print(f"\n{reg.log_tail(40)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def registry(registry_factory) -> Registry:
    """A fresh registry server on a free port with an empty data dir."""
    return registry_factory()


@pytest.fixture
def api(registry) -> Api:
    return Api(registry)


@pytest.fixture
def proxy(registry, request, tmp_path):
    """A recording reverse proxy in front of `registry` (see recording_proxy.py). Clients that
    go through it leave a trace: tmp_path/trace.jsonl, and E2E_TRACE_DIR/<test>.txt if set."""
    from recording_proxy import RecordingProxy
    p = RecordingProxy(registry.port)
    yield p
    p.close()
    p.dump(tmp_path / "trace.jsonl")
    trace_dir = os.environ.get("E2E_TRACE_DIR")
    if trace_dir:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_[]" else "_" for c in request.node.name)
        (Path(trace_dir) / f"{PEER}-{name}.txt").write_text(p.summary() + "\n")
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n--- client requests seen by the proxy (last 40) ---\n"
              + "\n".join(p.summary().splitlines()[-40:]))


@pytest.fixture
def repo_name(request) -> str:
    """Unique repository name for this test (lower case, OCI-valid)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40]
    return f"e2e/{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def big_gzip_layer(tmp_path_factory):
    """A > 100 MiB gzip layer of random bytes (stored blocks, so generation costs ~no CPU),
    written once per session in chunks. Returns (path, digest, size)."""
    import gzip
    path = tmp_path_factory.mktemp("big") / "big-layer.tar.gz"
    total = 101 * 1024 * 1024 + 12345
    chunk = 8 * 1024 * 1024
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=0, mtime=0) as gz:
            left = total
            while left:
                n = min(chunk, left)
                gz.write(random_bytes(n))
                left -= n
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return path, "sha256:" + h.hexdigest(), path.stat().st_size

