#!/usr/bin/env python3
"""Web console benchmark for Berth (issue 18): the artifact list of an image with 1,000 artifacts.

    cargo build --release -p berth --bin berth
    .venv/bin/python tests/bench/console.py                      # print the table
    .venv/bin/python tests/bench/console.py --out tests/bench/results/console.md
    BERTH_BIN=target/debug/berth .venv/bin/python tests/bench/console.py --loads 2   # quick; debug figures!

One `berth serve` on embedded storage holding one image with 1,000 artifacts (each its own
manifest and tag), and headless Chromium (Debian's, through chromedriver) logged in to the
console as the administrator. For the image's page (#/images/<image>: the first 50 artifacts):

A. Page weight: bytes the browser transferred and decoded for the page (HTML, script, style) and
   for the API answers it fetched, on a cold load (empty browser cache) and a warm one (the
   files revalidated: 304), from the browser's Resource Timing entries.
B. Time to interactive: from navigation start to the User Timing mark the console sets when the
   list is on screen (its script has run, the API answered, the table is drawn and its buttons
   work); cold and warm, median of --loads; then the time from a click on "Next page" to the
   next 50 drawn, through all 20 pages.
C. The API call behind it, without a browser: GET /api/v1/images/<image>/artifacts?n=50 (the
   console's page) and ?n=1000, median of 20. The CNCF distribution registry has no console; its
   only listing of the same 1,000 tags (`GET /v2/<image>/tags/list`) is the reference.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import (  # noqa: E402
    BENCH_ACCESS_KEY, BENCH_SECRET_KEY, BenchError, Server, loadavg, log, machine_line, release_bench_main,
    write_table,
)
from scan import AUTH, LAYER, Client as ScanClient  # noqa: E402

REPO = "bench/console-app"
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")


def push_artifacts(port: int, auth, count: int) -> None:
    """`count` image manifests sharing one config and one layer, each with its own annotation
    and tag (what 1,000 builds of an image look like to the list)."""
    c = ScanClient(port, auth)
    config = c.blob(REPO, json.dumps({"architecture": "amd64", "os": "linux",
                                      "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = c.blob(REPO, os.urandom(2048))
    for i in range(count):
        c.manifest(REPO, f"v{i:04d}", config, [(LAYER, layer)],
                   annotations={"org.opencontainers.image.revision": f"build-{i:04d}"})


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run"):
        o.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


MEASURE = """
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const ready = performance.getEntriesByName('berth:list-rendered');
const kind = (r) => r.name.includes('/api/') || r.name.includes('/auth/') ? 'api' : 'files';
const sum = (list, f) => list.reduce((a, r) => a + (r[f] || 0), 0);
const files = [nav, ...res.filter((r) => kind(r) === 'files')];
const api = res.filter((r) => kind(r) === 'api');
return { ready: ready.length ? ready[0].startTime : null,
         files_transfer: sum(files, 'transferSize'), files_decoded: sum(files, 'decodedBodySize'),
         api_transfer: sum(api, 'transferSize'), api_decoded: sum(api, 'decodedBodySize'),
         requests: 1 + res.length, heap: performance.memory ? performance.memory.usedJSHeapSize : null,
         rows: document.querySelectorAll('main tbody tr').length };
"""


def load_page(d, url: str, cold: bool) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait
    if cold:
        d.execute_cdp_cmd("Network.clearBrowserCache", {})
    d.get("about:blank")
    d.get(url)
    WebDriverWait(d, 60).until(lambda x: x.execute_script(
        "return performance.getEntriesByName('berth:list-rendered').length > 0"))
    m = d.execute_script(MEASURE)
    if m["rows"] != 50:
        raise BenchError(f"the page shows {m['rows']} rows, not 50")
    return m


def next_pages(d, expected: int) -> list[float]:
    """Clicks "Next page" through the list: ms from the click to the next page drawn."""
    from selenium.webdriver.support.ui import WebDriverWait
    times = []
    page = 1
    while True:
        buttons = [b for b in d.find_elements("css selector", "main button") if b.text == "Next page"]
        if not buttons or not buttons[0].is_enabled():
            break
        before = d.execute_script("return performance.getEntriesByName('berth:list-rendered').length")
        t0 = d.execute_script("return performance.now()")
        buttons[0].click()
        WebDriverWait(d, 60).until(lambda x: x.execute_script(
            "return performance.getEntriesByName('berth:list-rendered').length") > before)
        t1 = d.execute_script("return performance.getEntriesByName('berth:list-rendered').at(-1).startTime")
        times.append(t1 - t0)
        page += 1
    if page != expected:
        raise BenchError(f"paged through {page} pages, not {expected}")
    return times


def api_ms(url: str, auth, n: int = 20) -> tuple[float, int]:
    s = requests.Session()
    s.auth = auth
    s.get(url, timeout=60)
    times, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        r = s.get(url, timeout=60)
        times.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise BenchError(f"{url}: {r.status_code}")
        size = len(r.content)
    return statistics.median(times), size


def kib(n) -> str:
    return f"{n / 1024:.1f}"


def run(a) -> int:
    work = Path(a.work or tempfile.mkdtemp(prefix="berth-bench-console-"))
    load_start = loadavg()
    berth = Server("berth", "berth", work, a.berth_bin).start("berth")
    peer = Server("distribution", "distribution", work, None).start("distribution")
    d = None
    try:
        base, peer_base = f"http://127.0.0.1:{berth.port}", f"http://127.0.0.1:{peer.port}"
        log(f"pushing {a.artifacts} artifacts into each registry")
        push_artifacts(berth.port, AUTH, a.artifacts)
        push_artifacts(peer.port, None, a.artifacts)
        d = driver()
        d.get(f"{base}/console/")
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(d, 30).until(lambda x: x.find_elements("css selector", "#login input[name=access_key]"))
        d.find_element("name", "access_key").send_keys(BENCH_ACCESS_KEY)
        d.find_element("name", "secret_key").send_keys(BENCH_SECRET_KEY)
        d.find_element("css selector", "#login button[type=submit]").click()
        WebDriverWait(d, 30).until(lambda x: "admin" in x.find_element("id", "who-name").text)
        url = f"{base}/console/#/images/{quote(REPO, safe='')}"
        log(f"{a.loads} cold and {a.loads} warm loads of the image page")
        cold = [load_page(d, url, True) for _ in range(a.loads)]
        warm = [load_page(d, url, False) for _ in range(a.loads)]
        pages = next_pages(d, -(-a.artifacts // 50))
        page_api, page_bytes = api_ms(f"{base}/api/v1/images/{REPO}/artifacts?n=50", AUTH)
        all_api, all_bytes = api_ms(f"{base}/api/v1/images/{REPO}/artifacts?n=1000", AUTH, 5)
        ref_api, ref_bytes = api_ms(f"{peer_base}/v2/{REPO}/tags/list", None)
        files = {n: len(requests.get(f"{base}/console/{n}", timeout=30).content) for n in ("index.html", "console.js", "console.css")}
        load_end = loadavg()
    finally:
        if d is not None:
            d.quit()
        berth.stop()
        peer.stop()

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    lines = [
        f"Console benchmark ({machine_line(load_start, load_end)}); berth `{a.berth_bin}`; "
        f"Chromium headless; one image with {a.artifacts} artifacts",
        "",
        f"A/B. The image page (#/images/{REPO}: the first 50 artifacts), median of {a.loads} loads",
        "",
        "| load | files transferred (KiB) | files decoded (KiB) | API transferred (KiB) | API decoded (KiB) | requests | time to interactive (ms) | JS heap (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rows in (("cold (empty cache)", cold), ("warm (files revalidated, 304)", warm)):
        heap = med(rows, "heap") if all(r["heap"] for r in rows) else 0
        lines.append(
            f"| {label} | {kib(med(rows, 'files_transfer'))} | {kib(med(rows, 'files_decoded'))} | "
            f"{kib(med(rows, 'api_transfer'))} | {kib(med(rows, 'api_decoded'))} | {med(rows, 'requests'):.0f} | "
            f"{med(rows, 'ready'):.0f} | {heap / 1048576:.1f} |")
    lines += [
        "",
        f"Next page, 50 more artifacts each, through all {len(pages) + 1} pages: median {statistics.median(pages):.0f} ms, "
        f"slowest {max(pages):.0f} ms.",
        f"The console's files: index.html {files['index.html']:,} B, console.js {files['console.js']:,} B, "
        f"console.css {files['console.css']:,} B (uncompressed; no framework, no build step).",
        "",
        "C. The listing without a browser (median of 20; 5 for n=1000)",
        "",
        "| request | ms | bytes |",
        "| --- | ---: | ---: |",
        f"| Berth `GET /api/v1/images/{REPO}/artifacts?n=50` (the page's call) | {page_api:.1f} | {page_bytes:,} |",
        f"| Berth `GET /api/v1/images/{REPO}/artifacts?n=1000` | {all_api:.1f} | {all_bytes:,} |",
        f"| distribution `GET /v2/{REPO}/tags/list` (reference: its only listing, {a.artifacts:,} tag names) | {ref_api:.1f} | {ref_bytes:,} |",
    ]
    return write_table(lines, a.out)


def add_arguments(p, repo_root: str) -> None:
    p.add_argument("--artifacts", type=int, default=1000)
    p.add_argument("--loads", type=int, default=7)


if __name__ == "__main__":
    sys.exit(release_bench_main(__doc__, run, add_arguments))
