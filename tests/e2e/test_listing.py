"""Tags list and _catalog: lexical order, n/last pagination, Link headers."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from e2e_util import OCI_CONFIG, OCI_MANIFEST, descriptor, image_config

LINK = re.compile(r'^<([^>]+)>;\s*rel="next"$')


def _push_tiny_manifest(api, repo, tag):
    cfg = image_config()
    api.push_blob(repo, cfg)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": descriptor(OCI_CONFIG, cfg), "layers": []}).encode()
    r = api.put_manifest(repo, tag, body, OCI_MANIFEST)
    assert r.status_code == 201, f"{r.status_code} {r.text}"


def _walk(api, first_path, key, n):
    """Follow Link rel=next from first_path; return (items, pages, link urls)."""
    items, pages, links = [], [], []
    path = first_path
    for _ in range(50):
        r = api.get(path)
        assert r.status_code == 200, f"GET {path} -> {r.status_code} {r.text}"
        page = r.json().get(key) or []
        assert len(page) <= n, f"page larger than n={n}: {page}"
        pages.append(page)
        items += page
        link = r.headers.get("Link")
        if not link:
            return items, pages, links
        m = LINK.match(link.strip())
        assert m, f"malformed Link header: {link!r}"
        links.append(m.group(1))
        q = parse_qs(urlparse(m.group(1)).query)
        assert q.get("n") == [str(n)], f"Link lost n: {link}"
        assert q.get("last") == [page[-1]], f"Link 'last' is not the page's last entry: {link}"
        path = m.group(1)
    raise AssertionError("pagination does not end")


TAGS = ["v1.0", "latest", "a-1", "Z_upper", "v1.10", "v1.2", "0.1.0"]


def test_tags_list(api, repo_name):
    for t in TAGS:
        _push_tiny_manifest(api, repo_name, t)
    r = api.get(f"/v2/{repo_name}/tags/list")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == repo_name
    assert sorted(body["tags"]) == sorted(TAGS)


@pytest.mark.berth_only  # distribution 2.8 neither sorts tags nor paginates them
def test_tags_list_pagination(api, repo_name):
    tags = TAGS
    for t in tags:
        _push_tiny_manifest(api, repo_name, t)
    r = api.get(f"/v2/{repo_name}/tags/list")
    assert r.status_code == 200
    body = r.json()
    assert body["tags"] == sorted(tags), "tags must be in lexical (byte) order"

    items, pages, _ = _walk(api, f"/v2/{repo_name}/tags/list?n=3", "tags", 3)
    assert items == sorted(tags)
    assert [len(p) for p in pages][:3] == [3, 3, 1]

    # explicit last: strictly after it
    r = api.get(f"/v2/{repo_name}/tags/list", params={"n": 2, "last": "a-1"})
    assert r.status_code == 200
    assert r.json()["tags"] == sorted(tags)[sorted(tags).index("a-1") + 1:][:2]


def test_tags_list_unknown_repo(api):
    r = api.get("/v2/e2e/never-pushed/tags/list")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_catalog_pagination(api, repo_name):
    repos = sorted(f"{repo_name}/r{i}" for i in range(5))
    for r_ in repos:
        _push_tiny_manifest(api, r_, "t")
    r = api.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.json()["repositories"] == repos

    items, pages, _ = _walk(api, "/v2/_catalog?n=2", "repositories", 2)
    assert items == repos
    assert [len(p) for p in pages][:3] == [2, 2, 1]
