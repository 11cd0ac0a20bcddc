#!/usr/bin/env python3
"""Cold-start (init) time of every Lambda function, measured locally (standard library only).

Each function's x86_64 `bootstrap` runs against a tiny Lambda Runtime API emulator written here.
Init time = process start -> the first `GET /2018-06-01/runtime/invocation/next`: what Lambda
bills as the Init phase (runtime start, tracing, SDK configuration and clients). The emulator
never answers that poll; the process is then stopped. The environment points the AWS SDK at a
moto server on 127.0.0.1 with test/test credentials, so nothing leaves the machine.

    tests/bench/coldstart.py                 # all functions, 5 runs each
    tests/bench/coldstart.py --runs 9 blob-get upload-patch
    tests/bench/coldstart.py --build         # `cargo build --release` the functions first
    tests/bench/coldstart.py --build --profile lambda-zip   # the zips' size profile (slow: fat LTO)

Prints a Markdown table: median/min/max init ms per function, the x86_64 binary size and the
arm64 `target/lambda/<name>/bootstrap.zip` size when present (from
`cargo lambda build --profile lambda-zip --arm64 --output-format zip`). Figures from a shared machine are
relative: compare functions with each other, not with AWS.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
ZIP_BUDGET = 5 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeApi(http.server.ThreadingHTTPServer):
    """The Lambda Runtime API, as far as init goes: records when `/next` is first polled."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeApiHandler)
        self.first_next: float | None = None
        self.init_error: str | None = None
        self.polled = threading.Event()
        self.stop = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class RuntimeApiHandler(http.server.BaseHTTPRequestHandler):
    server: RuntimeApi

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path == NEXT:
            if self.server.first_next is None:
                self.server.first_next = time.monotonic()
            self.server.polled.set()
            # Hold the poll open (no invocation): the function sits where Lambda would freeze it.
            self.server.stop.wait(60)
            return
        self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        if self.path == INIT_ERROR:
            self.server.init_error = body
            self.server.polled.set()
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_moto(venv: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(os.environ.get("BERTH_MOTO_SERVER", venv / "bin" / "moto_server"))
    if not binary.exists():
        sys.exit(f"coldstart: {binary} not found (pip install 'moto[server]' into {venv})")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("coldstart: moto_server did not start within 30 s")


def function_env(name: str, runtime_api: str, moto: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        {
            # what the Lambda service sets (lambda_runtime requires these)
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": f"berth-{name}",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/berth-{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/24/[$LATEST]coldstart",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_ENDPOINT_URL": moto,
            # what Terraform sets (infra/main.tf berth_environment)
            "BERTH_BUCKET": "berth-coldstart",
            "BERTH_TABLE": "berth-coldstart",
            "BERTH_QUEUE_URL": f"{moto}/123456789012/berth-jobs",
            "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH": "true",
            "RUST_LOG": "warn",
        }
    )
    return env


def measure_once(binary: Path, name: str, moto: str) -> tuple[float | None, str]:
    """Init ms of one cold start, or None and the reason."""
    api = RuntimeApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(binary)],
            env=function_env(name, api.address, moto),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = start + 20
        while not api.polled.wait(0.01):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        first = api.first_next
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
        if first is not None:
            return (first - start) * 1000, ""
        if api.init_error is not None:
            return None, f"init error: {api.init_error[:300]}"
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        return None, f"exited {proc.returncode} before polling: {' | '.join(tail)}"
    finally:
        api.stop.set()
        api.shutdown()
        api.server_close()


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024 / 1024:.2f}"


def main() -> int:
    functions_dir = REPO / "functions"
    all_functions = sorted(p.name for p in functions_dir.iterdir() if (p / "Cargo.toml").is_file())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("functions", nargs="*", help="function names (default: every functions/<name>)")
    parser.add_argument("--runs", type=int, default=5, help="cold starts per function (median reported)")
    parser.add_argument("--profile", default="release",
                        help="cargo profile of the x86_64 binaries (`lambda` is what the zips are built with)")
    parser.add_argument("--bin-dir", type=Path, default=None, help="x86_64 binaries (default target/<profile>)")
    parser.add_argument("--zip-dir", type=Path, default=REPO / "target" / "lambda", help="cargo lambda output")
    parser.add_argument("--build", action="store_true", help="cargo build --release the functions first")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="venv holding moto_server")
    args = parser.parse_args()
    if args.bin_dir is None:
        args.bin_dir = REPO / "target" / args.profile
    names = args.functions or all_functions
    unknown = sorted(set(names) - set(all_functions))
    if unknown:
        parser.error(f"not functions: {', '.join(unknown)}")

    missing = [n for n in names if not (args.bin_dir / n).is_file()]
    if args.build or missing:
        cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
        cmd = [cargo, "build", "--profile", args.profile, "--target-dir", str(args.bin_dir.parent)]
        for n in names:
            cmd += ["-p", n]
        print(f"[coldstart] {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, cwd=REPO, check=True)

    moto_proc, moto = start_moto(args.venv)
    rows = []
    failures = 0
    try:
        for name in names:
            times: list[float] = []
            reason = ""
            for _ in range(args.runs):
                ms, why = measure_once(args.bin_dir / name, name, moto)
                if ms is None:
                    reason = why
                    break
                times.append(ms)
            binary = args.bin_dir / name
            zip_path = args.zip_dir / name / "bootstrap.zip"
            zip_size = zip_path.stat().st_size if zip_path.is_file() else None
            if reason:
                failures += 1
            rows.append((name, times, binary.stat().st_size, zip_size, reason))
            print(f"[coldstart] {name}: {', '.join(f'{t:.1f}' for t in times) or reason}", file=sys.stderr)
    finally:
        moto_proc.terminate()
        moto_proc.wait(timeout=10)

    print(f"\nCold start (init = process start -> first /next poll), {args.runs} runs, "
          f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs\n")
    print("| function | median init ms | min | max | x86_64 binary MiB | arm64 zip MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, times, bin_size, zip_size, reason in rows:
        if reason:
            print(f"| {name} | failed: {reason[:80]} | | | {mib(bin_size)} | {mib(zip_size)} |")
            continue
        over = " (over 5 MiB)" if zip_size is not None and zip_size >= ZIP_BUDGET else ""
        print(
            f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} "
            f"| {mib(bin_size)} | {mib(zip_size)}{over} |"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
