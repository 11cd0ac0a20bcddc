"""The web console (/console/) in a real browser: Debian's headless Chromium driven through its
chromedriver by Selenium, against `berth serve`.

An administrator walks registry -> image -> artifact -> tags, creates and deletes a tag and docker
pulls follow it; a cleanup test run is started and its history read; a viewer sees no buttons
for changes and the API refuses the change when forced from the same browser session; names
that carry markup render as text; the session lives in sessionStorage only and ends when its
key is revoked. Every page visited is saved as a PNG under CONSOLE_SCREENSHOT_DIR
(default target/console-screenshots; CI keeps them as artifacts, they are not committed).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from e2e_util import random_bytes, require_tool, run
from test_auth import make_user
from test_docker import _docker_login

pytestmark = [pytest.mark.berth_only, pytest.mark.edge_only]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
SHOT_DIR = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR", str(REPO_ROOT / "target" / "console-screenshots")))
WAIT = 20
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
# markup an attacker would hide in any string the console shows
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def new_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    for tool in (CHROMIUM, CHROMEDRIVER):
        assert tool.is_file(), f"{tool} is missing (apt-get install chromium chromium-driver; tests/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--password-store=basic"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


class Console:
    """One browser on the console of one registry."""

    def __init__(self, driver, registry, test_name: str):
        from selenium.webdriver.support.ui import WebDriverWait
        self.d = driver
        self.registry = registry
        self.wait = WebDriverWait(driver, WAIT)
        self.prefix = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:50]
        self.shots = 0

    # --- navigation ---------------------------------------------------------------------
    def open(self, fragment: str = "#/") -> None:
        self.d.get(f"{self.registry.url}/console/{fragment}")
        self.wait.until(lambda d: d.execute_script("return document.readyState") == "complete")

    def go(self, fragment: str) -> None:
        self.d.execute_script("location.hash = arguments[0]", fragment)

    def login(self, access_key: str, secret: str) -> None:
        from selenium.webdriver.common.by import By
        self.open("#/")
        self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#login input[name=access_key]"))
        for name, value in (("access_key", access_key), ("secret_key", secret)):
            field = self.d.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        self.d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    def logged_in_as(self, user: str) -> None:
        from selenium.webdriver.common.by import By
        self.wait.until(lambda d: user in d.find_element(By.ID, "who-name").text)

    # --- reading ------------------------------------------------------------------------
    # read in one script call: the page redraws while a test waits, and an element found in
    # one call may be gone by the next
    def _text(self, selector: str) -> str:
        return self.d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText.replace(/\t/g, ' ').trim() : '';", selector)

    def heading(self) -> str:
        return self._text("main h1")

    def main_text(self) -> str:
        return self._text("#main")

    def alert_text(self) -> str:
        return self._text("#alert")

    def until(self, check, what: str) -> None:
        """Waits for `check`; a timeout reports what the page shows instead."""
        from selenium.common.exceptions import TimeoutException
        try:
            self.wait.until(lambda d: check())
        except TimeoutException:
            raise AssertionError(f"waited {WAIT}s for {what}; the page shows:\nalert: {self.alert_text()!r}\n"
                                 f"{self.main_text()[:3000]}") from None

    def wait_heading(self, text: str) -> None:
        self.until(lambda: self.heading() == text, f"heading {text!r}")

    def wait_main(self, text: str) -> None:
        self.until(lambda: text in self.main_text(), f"{text!r} on the page")

    def wait_alert(self, text: str) -> None:
        self.until(lambda: text in self.alert_text(), f"alert {text!r}")

    def click_link(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        self.wait.until(lambda d: d.find_elements(By.LINK_TEXT, text), f"link {text!r}")
        self.d.find_element(By.LINK_TEXT, text).click()

    def button(self, text: str):
        from selenium.webdriver.common.by import By
        self.wait.until(lambda d: [b for b in d.find_elements(By.TAG_NAME, "button") if b.text == text],
                        f"button {text!r}")
        return [b for b in self.d.find_elements(By.TAG_NAME, "button") if b.text == text][0]

    def confirm(self) -> None:
        from selenium.webdriver.support import expected_conditions as EC
        self.wait.until(EC.alert_is_present())
        self.d.switch_to.alert.accept()

    def fill_form(self, title: str, values: dict, submit: str) -> None:
        from selenium.webdriver.common.by import By
        self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"form[aria-label='{title}']"), f"form {title}")
        form = self.d.find_element(By.CSS_SELECTOR, f"form[aria-label='{title}']")
        for name, value in values.items():
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        [b for b in form.find_elements(By.TAG_NAME, "button") if b.text == submit][0].click()

    def session_storage(self) -> dict:
        return self.d.execute_script(
            "const o = {}; for (let i = 0; i < sessionStorage.length; i++) { const k = sessionStorage.key(i);"
            " o[k] = sessionStorage.getItem(k); } return o;")

    def fetch(self, method: str, path: str, body=None) -> tuple[int, dict]:
        """A request from the page itself with the console's own session token: what a user
        could force from the browser's developer tools."""
        return tuple(self.d.execute_async_script("""
            const [method, path, body, done] = arguments;
            const s = JSON.parse(sessionStorage.getItem('berth.session'));
            const init = { method, headers: { Authorization: 'Bearer ' + s.token } };
            if (body !== null) { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
            fetch(path, init).then(async (r) => done([r.status, await r.json().catch(() => ({}))]));
        """, method, path, body))

    def shot(self, name: str) -> Path:
        SHOT_DIR.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:60]
        path = SHOT_DIR / f"{self.prefix}-{self.shots:02d}-{name}.png"
        assert self.d.save_screenshot(str(path)), f"screenshot {path}"
        assert path.stat().st_size > 1000
        return path

    def console_errors(self) -> list[str]:
        """Script errors and CSP violations the browser logged (API answers such as 403 are
        logged as failed loads and are not script errors)."""
        return [e["message"] for e in self.d.get_log("browser")
                if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


@pytest.fixture
def browser():
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(browser, registry, request):
    return Console(browser, registry, request.node.name)


def api_as(registry, creds):
    s = requests.Session()
    s.auth = creds
    return lambda method, path, **kw: s.request(method, f"{registry.url}/api/v1{path}", timeout=60, **kw)


def build_and_push(registry, tmp_path: Path, ref: str, content: bytes) -> tuple[str, str]:
    """A one-file image from scratch, pushed with docker: (manifest digest, image id)."""
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "data.bin").write_bytes(content)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY data.bin /data.bin\n")
    run(["docker", "build", "-q", "-t", ref, str(ctx)], env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    push = run(["docker", "push", ref], timeout=300)
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", push.stdout)
    assert m, push.stdout
    image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref]).stdout.strip()
    return m.group(1), image_id


def test_console_files_are_served_with_a_strict_policy(registry, api):
    for path in ("/console", "/console/", "/console/index.html"):
        r = requests.get(registry.url + path, timeout=30)
        assert r.status_code == 200, path
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<title>Berth console</title>" in r.text
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "set-cookie" not in {k.lower() for k in r.headers}
        # no inline script or style: the policy would block them
        assert re.search(r"<script(?![^>]*\bsrc=)", r.text) is None and "style=" not in r.text
    js = requests.get(f"{registry.url}/console/console.js", timeout=30)
    assert js.status_code == 200 and js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    # the script writes the page with text nodes only
    assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text and "eval(" not in js.text
    assert "localStorage." not in js.text and "document.cookie" not in js.text
    again = requests.get(f"{registry.url}/console/console.js", headers={"If-None-Match": js.headers["ETag"]}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    head = requests.head(f"{registry.url}/console/console.css", timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 100
    # nothing else is served under /console, however the path is spelled
    for raw in ("/console/missing.js", "/console/%2e%2e/Cargo.toml", "/console/../Cargo.toml", "/console/console.js/",
                "/consolex", "/console/index.html%00"):
        status, headers, body = api.raw("GET", raw)
        assert status == 404, (raw, status, body[:200])
        assert json.loads(body)["errors"][0]["code"] in ("NOT_FOUND", "NAME_UNKNOWN"), raw
    status, _, body = api.raw("POST", "/console/")
    assert status == 405 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    # the password grant the console logs in with gets no Basic challenge (a browser would show
    # its own login dialog over the console's); docker's GET keeps it
    bad = requests.post(f"{registry.url}/auth/token", data={"grant_type": "password", "username": "BKNOPE0000000000000",
                                                            "password": "wrong", "scope": "registry:management:*"}, timeout=30)
    assert bad.status_code == 401 and "WWW-Authenticate" not in bad.headers
    assert bad.json()["errors"][0]["code"] == "UNAUTHORIZED"
    get = requests.get(f"{registry.url}/auth/token", auth=("BKNOPE0000000000000", "wrong"), timeout=30)
    assert get.status_code == 401 and get.headers["WWW-Authenticate"].startswith("Basic ")


def test_admin_walks_registry_image_artifact_and_docker_follows_the_tags(registry, console, tmp_path):
    require_tool("docker")
    _docker_login(registry, registry.host)
    image = f"e2e/web-{uuid.uuid4().hex[:6]}"
    v1, v2, stable = (f"{registry.host}/{image}:{t}" for t in ("v1", "v2", "stable"))
    try:
        d1, id1 = build_and_push(registry, tmp_path, v1, random_bytes(3000))
        d2, id2 = build_and_push(registry, tmp_path, v2, random_bytes(5000))
        assert d1 != d2 and id1 != id2

        console.login(*registry.credentials)
        console.logged_in_as("admin")
        console.wait_heading("Registries")
        console.wait_main("charts")
        console.shot("registries")
        assert console.console_errors() == []

        console.click_link("e2e")
        console.wait_heading("Registry e2e")
        console.click_link(image)
        console.wait_heading(f"Image {image}")
        console.wait_main("Page 1, 2 shown (last page)")
        text = console.main_text()
        assert f"docker pull {registry.host}/{image}:latest" in text
        for digest, tag in ((d1, "v1"), (d2, "v2")):
            assert f"{digest[:19]}… {tag} image linux/amd64" in text, text
        console.shot("image")
        # the image's artifacts searched by tag, server-side
        console.fill_form("Search artifacts", {"q": "v2"}, "Search")
        console.wait_main("Page 1, 1 shown (last page)")
        assert f"{d2[:19]}… v2" in console.main_text() and f"{d1[:19]}…" not in console.main_text()
        console.fill_form("Search artifacts", {"q": ""}, "Search")
        console.wait_main("Page 1, 2 shown (last page)")

        console.click_link(f"{d1[:19]}…")
        console.wait_heading(f"Artifact {d1[:19]}…")
        console.wait_main(f"docker pull {registry.host}/{image}@{d1}")
        text = console.main_text()
        assert f"digest\n{d1}" in text
        assert f"cosign verify --key cosign.pub {registry.host}/{image}@{d1}" in text
        assert f"oras pull {registry.host}/{image}@{d1}" in text
        console.shot("artifact")

        # create a tag in the console: docker pulls exactly that artifact by it
        console.fill_form("Tag this artifact", {"tag": "stable"}, "Create tag")
        console.wait_alert("Tag stable now points at this artifact.")
        console.wait_main("stable")
        run(["docker", "rmi", "-f", v1, v2], check=False)
        run(["docker", "pull", stable], timeout=300)
        assert run(["docker", "image", "inspect", "--format", "{{.Id}}", stable]).stdout.strip() == id1
        run(["docker", "rmi", "-f", stable], check=False)

        # search the tags: only the matches are listed
        console.fill_form("Search tags", {"q": "stab"}, "Search")
        console.wait_main("Page 1, 1 shown (last page)")
        assert "stable" in console.main_text() and "v2" not in console.main_text().split("Tags", 1)[1]
        console.shot("tags-search")

        # delete it in the console: the registry no longer serves it
        console.button("Delete").click()  # the only row of the search result
        console.confirm()
        console.wait_alert("Tag stable deleted.")
        pulled = run(["docker", "pull", stable], check=False, timeout=300)
        assert pulled.returncode != 0 and "not found" in (pulled.stderr + pulled.stdout).lower()
        tags = api_as(registry, registry.credentials)("GET", f"/images/{image}/tags").json()["items"]
        assert sorted(t["name"] for t in tags) == ["v1", "v2"]

        # delete the other artifact from the image page
        console.go(f"#/images/{quote(image, safe='')}")
        console.wait_main("Page 1, 2 shown (last page)")
        row = [r for r in console.d.find_elements("css selector", "tbody tr") if "v2" in r.text][0]
        row.find_element("css selector", "button.danger").click()
        console.confirm()
        console.wait_alert("Artifact deleted.")
        console.wait_main("Page 1, 1 shown (last page)")
        assert requests.get(f"{registry.url}/v2/{image}/manifests/{d2}", auth=registry.credentials,
                            timeout=30).status_code == 404
        assert console.console_errors() == []
    finally:
        run(["docker", "rmi", "-f", v1, v2, stable], check=False)


def test_cleanup_test_run_and_history_in_the_console(registry, api, console):
    image = f"e2e/old-{uuid.uuid4().hex[:6]}"
    digests = []
    for i in range(3):
        digests.append(api.push_image(image, f"t{i}", [random_bytes(500 + i)])["digest"])
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    console.go("#/registries/e2e/cleanup")
    console.wait_heading("Registry e2e")
    name = image.split("/", 1)[1]
    console.fill_form("Add a cleanup rule", {"image": name, "tag": "**", "keep": "latest-pushed:1"}, "Add rule")
    console.wait_alert("Rule added.")
    console.wait_main("latest-pushed:1")
    console.button("Test run").click()
    console.wait_alert("Test run queued")
    # the history polls until the run is done
    console.wait.until(lambda d: re.search(r"test run\s+succeeded", console.main_text()), "the test run to succeed")
    console.shot("cleanup-history")
    runs = api.get("/api/v1/registries/e2e/cleanup/runs").json()["items"]
    assert len(runs) == 1 and runs[0]["dry_run"] is True and runs[0]["status"] == "succeeded"
    # the history row says what the run record says: 3 artifacts, 2 not kept, 1 kept
    assert (runs[0]["total"], runs[0]["deleted"], runs[0]["retained"]) == (3, 2, 1)
    assert "1 images, 3 total, 2 deleted, 1 retained, 0 protected, 0 failed" in console.main_text()
    console.click_link(runs[0]["id"])
    console.wait_heading(f"Cleanup run {runs[0]['id']}")
    console.wait_main("Decisions")
    text = console.main_text()
    assert "dry run\nyes" in text and "status\nsucceeded" in text
    listed = [d for d in digests if d[:19] in text]
    assert len(listed) >= 2, text
    console.shot("cleanup-run")
    # a test run deletes nothing
    for i, d in enumerate(digests):
        assert api.get(f"/v2/{image}/manifests/t{i}").status_code == 200


def test_viewer_sees_no_change_buttons_and_a_forced_change_is_refused(registry_factory, browser, request):
    from e2e_util import Api
    # the webhook's receiver is on loopback, which only an operator's allow-list admits
    registry = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"})
    api = Api(registry)
    console = Console(browser, registry, request.node.name)
    image = f"e2e/view-{uuid.uuid4().hex[:6]}"
    digest = api.push_image(image, "v1", [random_bytes(700)])["digest"]
    # one of everything a page lists with per-row buttons for those who may change it
    assert api.post("/api/v1/registries/e2e/cleanup/rules", json={"image": "**", "tag": "**", "keep": "always"}).status_code == 201
    assert api.post("/api/v1/registries/e2e/protection/rules", json={"image": "**", "tag": "v*"}).status_code == 201
    assert api.post("/api/v1/registries/e2e/cleanup/runs", json={"dry_run": True}).status_code == 202
    hook = api.post("/api/v1/registries/e2e/webhooks", json={"name": "ci", "url": "http://127.0.0.1:9/hook"})
    assert hook.status_code == 201, hook.text
    assert api.post(f"/api/v1/registries/e2e/webhooks/{hook.json()['id']}/test").status_code in (200, 202)
    key, secret = make_user(registry, "service-viewer")
    console.login(key, secret)
    console.logged_in_as("service-viewer-")
    console.wait_main("e2e")
    art = f"#/images/{quote(image, safe='')}/artifacts/{quote(digest, safe='')}"
    pages = [("#/", "Registries", "e2e"), ("#/registries/e2e", "Registry e2e", image),
             (f"#/images/{quote(image, safe='')}", f"Image {image}", "Page 1, 1 shown"),
             (art, f"Artifact {digest[:19]}…", "this artifact"),
             ("#/registries/e2e/cleanup", "Registry e2e", "succeeded"), ("#/registries/e2e/protection", "Registry e2e", "v*"),
             ("#/registries/e2e/trust", "Registry e2e", "Pulls need"), ("#/registries/e2e/scan", "Registry e2e", "scan on push"),
             ("#/registries/e2e/access", "Registry e2e", "public access"),
             ("#/registries/e2e/webhooks", "Registry e2e", "http://127.0.0.1:9/hook"),
             (f"#/registries/e2e/webhooks/{hook.json()['id']}", f"Webhook {hook.json()['id']}", "PING"),
             ("#/registries/e2e/replication", "Registry e2e", "Replication policies"),
             ("#/caches", "Image caches", "Nothing here yet")]
    # what a viewer may press: paging, copying a command, searching tags
    harmless = {"Previous page", "Next page", "Copy", "Search"}
    for fragment, heading, text in pages:
        console.go(fragment)
        console.wait_heading(heading)
        console.wait_main(text)
        buttons = {b.text for b in console.d.find_elements("css selector", "main button")}
        assert buttons <= harmless, (fragment, buttons - harmless)
        forms = [f.get_attribute("aria-label") for f in console.d.find_elements("css selector", "main form, main details")]
        assert all(f in ("Search tags", "Search artifacts") for f in forms), (fragment, forms)
        console.shot(fragment.strip("#/") or "registries")
    # the administrator-only sections are not offered
    shown = {a.text for a in console.d.find_elements("css selector", "#nav a") if a.is_displayed()}
    assert not shown & {"Users", "Garbage collection", "Audit log"}, shown
    # a viewer may pull: the artifact page offers pull commands, not cosign sign (a push)
    console.go(f"#/images/{quote(image, safe='')}/artifacts/{quote(digest, safe='')}")
    console.wait_main("docker pull")
    assert "cosign sign" not in console.main_text()
    # forced from the same browser session, the API refuses each change
    status, body = console.fetch("DELETE", f"/api/v1/images/{image}/tags/v1")
    assert status == 403 and body["errors"][0]["code"] == "DENIED", body
    status, body = console.fetch("DELETE", f"/api/v1/images/{image}/artifacts/{digest}")
    assert status == 403 and body["errors"][0]["code"] == "DENIED", body
    status, body = console.fetch("POST", "/api/v1/registries/e2e/cleanup/runs", {"dry_run": False})
    assert status == 403 and body["errors"][0]["code"] == "DENIED", body
    status, body = console.fetch("POST", "/api/v1/users", {"name": "mallory", "role": "project-admin"})
    assert status == 403 and body["errors"][0]["code"] == "DENIED", body
    assert api.get(f"/v2/{image}/manifests/v1").status_code == 200
    assert api.get("/api/v1/users/mallory").status_code == 404


def test_registry_controlled_strings_render_as_text(registry, api, console):
    # a name carrying markup is no image name: the registry refuses the push...
    r = api.post(f"/v2/e2e/{quote('<script>alert(1)</script>', safe='')}/blobs/uploads/")
    assert r.status_code in (400, 404) and r.json()["errors"][0]["code"] in ("NAME_INVALID", "NAME_UNKNOWN"), r.text
    # ...and a console URL carrying one shows it as text, with the API's refusal
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    added = api.post("/api/v1/registries/e2e/trust/keys", json={"name": PAYLOAD, "pem": pem})
    assert added.status_code == 201, added.text
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    console.go(f"#/images/{quote('e2e/' + PAYLOAD, safe='')}")
    console.wait_heading("Not found")
    console.wait_main(f'"e2e/{PAYLOAD}" is not an image name.')
    console.shot("markup-image-name")
    # a stored key name with markup (names are stored as given) is shown as the same text
    console.go("#/registries/e2e/trust")
    console.wait_main(PAYLOAD)
    console.shot("markup-key-name")
    assert console.d.execute_script("return window.__pwned") is None
    assert not console.d.find_elements("css selector", "main img, main script")
    cells = [c.text for c in console.d.find_elements("css selector", "main td")]
    assert PAYLOAD in cells
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        console.d.switch_to.alert.text


def test_login_session_storage_logout_and_revoked_key(registry, console):
    user = f"dev-{uuid.uuid4().hex[:6]}"
    key, secret = make_user(registry, "project-member", ["e2e"], name=user)
    # a wrong secret: the API's error, no session, no browser dialog (the page stays usable)
    console.login(key, "not-the-secret")
    console.wait_alert("UNAUTHORIZED")
    assert console.session_storage() == {}
    console.shot("login-failed")
    console.login(key, secret)
    console.logged_in_as(user)
    console.wait_heading("Registries")
    stored = console.session_storage()
    assert list(stored) == ["berth.session"]
    session = json.loads(stored["berth.session"])
    assert session["user"] == user and session["role"] == "project-member" and session["registries"] == ["e2e"]
    assert secret not in json.dumps(stored) and secret not in console.d.current_url
    assert console.d.execute_script("return localStorage.length") == 0
    assert console.d.execute_script("return document.cookie") == ""
    assert console.d.get_cookies() == []
    # a project member of e2e sees e2e only, with its change buttons
    console.wait_main("e2e")
    assert "charts" not in console.main_text()
    # the key is revoked elsewhere: the next page the console loads ends the session
    admin = api_as(registry, registry.credentials)
    assert admin("DELETE", f"/users/{user}/keys/{key}").status_code == 204
    console.go("#/registries/e2e")
    console.wait.until(lambda d: d.find_elements("css selector", "#login"), "the login form")
    assert "session has ended" in console.alert_text()
    assert console.session_storage() == {}
    console.shot("revoked")
    # log in again as the administrator, then log out: nothing is left behind
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    console.button("Log out").click()
    console.wait.until(lambda d: d.find_elements("css selector", "#login"), "the login form")
    assert console.session_storage() == {}
    console.go("#/registries/e2e")
    console.wait.until(lambda d: d.find_elements("css selector", "#login"))
    assert "Registry e2e" not in console.main_text()
    assert console.console_errors() == []


def test_every_page_renders_for_an_administrator(registry_factory, browser, request):
    """A tour of every page with something on it: each renders, calls the API without an error
    and logs no script error or policy violation; each is kept as a screenshot."""
    from e2e_util import Api
    # the webhook's receiver is on loopback, which only an operator's allow-list admits
    registry = registry_factory(env={"BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"})
    api = Api(registry)
    console = Console(browser, registry, request.node.name)
    image = f"e2e/tour-{uuid.uuid4().hex[:6]}"
    pushed = api.push_image(image, "v1", [random_bytes(900)])
    assert api.post("/api/v1/registries/e2e/protection/rules", json={"image": "**", "tag": "release-*"}).status_code == 201
    assert api.put("/api/v1/registries/e2e/cleanup/schedule", json={"cron": "0 3 * * *"}).status_code == 200
    hook = api.post("/api/v1/registries/e2e/webhooks", json={"name": "ci", "url": "http://127.0.0.1:9/berth"})
    assert hook.status_code == 201, hook.text
    assert api.post("/api/v1/gc/runs", json={"dry_run": True}).status_code == 202
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    enc = lambda s: quote(s, safe="")  # noqa: E731
    tour = [
        ("#/", "Registries", "charts"),
        ("#/registries/e2e", "Registry e2e", image),
        ("#/registries/e2e/cleanup", "Registry e2e", "Runs on 0 3 * * * (UTC)"),
        ("#/registries/e2e/protection", "Registry e2e", "release-*"),
        ("#/registries/e2e/webhooks", "Registry e2e", "http://127.0.0.1:9/berth"),
        (f"#/registries/e2e/webhooks/{enc(hook.json()['id'])}", f"Webhook {hook.json()['id']}", "Deliveries"),
        ("#/registries/e2e/replication", "Registry e2e", "Replication policies"),
        ("#/registries/e2e/scan", "Registry e2e", "scan on push"),
        ("#/registries/e2e/trust", "Registry e2e", "Pulls need: off"),
        ("#/registries/e2e/access", "Registry e2e", "public access"),
        (f"#/images/{enc(image)}", f"Image {image}", "Page 1, 1 shown (last page)"),
        (f"#/images/{enc(image)}/artifacts/{enc(pushed['digest'])}", f"Artifact {pushed['digest'][:19]}…", "Status: not scanned"),
        ("#/caches", "Image caches", "Create an image cache"),
        ("#/users", "Users", "bootstrap"),
        ("#/users/admin", "My access keys", registry.credentials[0]),
        ("#/gc", "Garbage collection", "succeeded"),
        ("#/audit", "Audit log", "api-webhooks"),
    ]
    for fragment, heading, text in tour:
        console.go(fragment)
        console.wait_heading(heading)
        console.wait_main(text)
        assert console.alert_text() == "", (fragment, console.alert_text())
        console.shot(fragment.strip("#/") or "registries")
    # the create forms built from the OpenAPI document's request schemas
    console.go("#/registries/e2e/webhooks")
    console.wait_main("Create a webhook")
    console.d.find_element("css selector", "details.json-form summary").click()
    console.wait.until(lambda d: d.find_elements("css selector", "details.json-form textarea"))
    area = console.d.find_element("css selector", "details.json-form textarea")
    template = json.loads(area.get_attribute("value"))
    assert "url" in template, template
    console.shot("webhook-form")
    area.clear()
    area.send_keys(json.dumps({"name": "from-console", "url": "http://127.0.0.1:9/console"}))
    console.button("Create a webhook").click()
    console.wait_main("shown only this once")
    shown = console.d.find_element("css selector", ".secret pre").text
    assert len(shown) >= 16
    listed = api.get("/api/v1/registries/e2e/webhooks").json()["items"]
    assert "from-console" in [w["name"] for w in listed] and shown not in json.dumps(listed)
    assert console.console_errors() == []


def test_rotating_the_sessions_own_key_logs_in_again(registry, console):
    user = f"ops-{uuid.uuid4().hex[:6]}"
    key, secret = make_user(registry, "project-member", ["e2e"], name=user)
    console.login(key, secret)
    console.logged_in_as(user)
    before = json.loads(console.session_storage()["berth.session"])
    assert before["key"] == key
    console.d.find_element("id", "me-link").click()
    console.wait_heading("My access keys")
    console.wait_main("(this session)")
    console.button("Rotate").click()
    console.confirm()
    console.wait_main("shown only this once")
    shown = [p.text for p in console.d.find_elements("css selector", ".secret pre")]
    assert shown[0] == key and len(shown[1]) >= 20 and shown[1] != secret
    console.shot("rotated")
    # the console logged in again with the new secret: the session goes on, on a new token
    after = json.loads(console.session_storage()["berth.session"])
    assert after["token"] != before["token"] and after["key"] == key
    console.go("#/registries/e2e")
    console.wait_heading("Registry e2e")
    assert not console.d.find_elements("css selector", "#login")
    # the old secret is dead, the new one (and only it) logs in
    form = {"grant_type": "password", "username": key, "scope": "registry:management:*"}
    assert requests.post(f"{registry.url}/auth/token", data={**form, "password": secret}, timeout=30).status_code == 401
    assert requests.post(f"{registry.url}/auth/token", data={**form, "password": shown[1]}, timeout=30).status_code == 200
    # the pre-rotation token is refused by the API
    r = requests.get(f"{registry.url}/api/v1/registries/e2e", headers={"Authorization": f"Bearer {before['token']}"}, timeout=30)
    assert r.status_code == 401
    assert console.console_errors() == []


def test_crafted_console_links_cannot_aim_actions_at_other_routes(registry, api, console):
    """The console builds API paths from its URL: `..` in a name would make fetch() resolve the
    path elsewhere (an "image" ../users/victim whose Delete button deletes the user)."""
    make_user(registry, "service-viewer", name="victim")
    assert api.post("/api/v1/registries/e2e/protection/rules", json={"image": "**", "tag": "v*"}).status_code == 201
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    crafted = ["#/images/..%2Fusers%2Fvictim", "#/images/e2e%2Fapp%2F..%2F..%2Fusers%2Fvictim",
               "#/images/e2e%2Fapp%2F..%2F..%2F..%2Fregistries%2Fe2e%2Fprotection%2Frules%2Fp1",
               "#/images/e2e%2F%2e%2e%2Fusers%2Fvictim", "#/registries/..", "#/users/..",
               "#/images/e2e%2Fapp/artifacts/..%2F..%2F..%2Fusers%2Fvictim",
               "#/images/e2e%2Fapp%20%20%20%3B%20curl%20evil%20%7C%20sh"]
    for fragment in crafted:
        console.go("#/")
        console.wait_heading("Registries")
        console.go(fragment)
        console.wait_heading("Not found")
        assert not console.d.find_elements("css selector", "main button"), fragment
        assert not console.d.find_elements("css selector", "main pre"), fragment
    console.shot("crafted-link")
    assert api.get("/api/v1/users/victim").status_code == 200
    assert [r["id"] for r in api.get("/api/v1/registries/e2e/protection/rules").json()["items"]] == ["p1"]
    # an image that does not exist offers no delete
    console.go("#/images/e2e%2Fnothing-here")
    console.wait_heading("Image e2e/nothing-here")
    console.wait.until(lambda d: console.alert_text())
    assert not console.d.find_elements("id", "delete-image")


def test_an_image_named_like_a_tag_route_is_deleted_as_itself(registry, api, console):
    """`team/app/tags/v1` is a valid image name, and DELETE /api/v1/images/team/app/tags/v1 is
    the tag route: the console sends image names as one escaped segment, so deleting that image
    deletes it and not tag v1 of team/app (an uploader may plant such an image; deleting tags
    needs more)."""
    base = f"e2e/app-{uuid.uuid4().hex[:6]}"
    planted = f"{base}/tags/v1"
    api.push_image(base, "v1", [random_bytes(300)])
    api.push_image(planted, "latest", [random_bytes(301)])
    console.login(*registry.credentials)
    console.logged_in_as("admin")
    console.go(f"#/images/{quote(planted, safe='')}")
    console.wait_heading(f"Image {planted}")
    console.wait_main("Page 1, 1 shown (last page)")
    console.d.find_element("id", "delete-image").click()
    console.confirm()
    console.wait_alert(f"Image {planted} deleted.")
    assert api.get(f"/v2/{planted}/manifests/latest").status_code == 404
    assert api.get(f"/v2/{base}/manifests/v1").status_code == 200
    tags = api.get(f"/api/v1/images/{base}/tags").json()["items"]
    assert [t["name"] for t in tags] == ["v1"]


def test_artifact_search_pages_through_the_matches(registry, api):
    """`GET /api/v1/images/<image>/artifacts?q=` (the console's artifact search): artifacts whose
    digest or a tag contains the text, in digest order, paged like the whole list."""
    image = f"e2e/search-{uuid.uuid4().hex[:6]}"
    pushed = {}
    for i in range(7):
        tag = f"rc-{i}" if i % 3 else f"release-{i}"
        pushed[tag] = api.push_image(image, tag, [random_bytes(200 + i)])["digest"]
    want = sorted(d for t, d in pushed.items() if "rc" in t)
    assert len(want) == 4
    got, last, pages_seen = [], None, 0
    while True:
        params = {"q": "rc", "n": 3, **({"last": last} if last else {})}
        r = api.get(f"/api/v1/images/{image}/artifacts", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages_seen += 1
        got += [a["digest"] for a in body["items"]]
        assert all(any("rc" in t for t in a["tags"]) for a in body["items"])
        last = body["next"]
        if not last:
            break
        assert 'rel="next"' in r.headers["Link"]
    assert got == want and pages_seen == 2
    # a digest fragment finds its artifact; text nothing contains finds nothing
    one = pushed["release-0"]
    r = api.get(f"/api/v1/images/{image}/artifacts", params={"q": one[7:30]})
    assert [a["digest"] for a in r.json()["items"]] == [one]
    r = api.get(f"/api/v1/images/{image}/artifacts", params={"q": "no-such-text"})
    assert r.status_code == 200 and r.json() == {"items": [], "next": None}
