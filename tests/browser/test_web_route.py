"""The page's route without a browser: public (no API key), only files under web/static, every asset local."""

from __future__ import annotations

import re
import tomllib

import httpx

from gateway.api.routes import web
from tests.conftest import GatewayFactory
from vllm_launch.stack import ROOT


def test_the_page_needs_no_key_but_the_api_does(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(api_keys="k1")
    page = httpx.get(f"{gw.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="static/app.js">' in page.text
    script = httpx.get(f"{gw.url}/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{gw.url}/static/style.css").headers["content-type"].startswith("text/css")
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401


def test_only_files_under_static_are_served(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    for path in ("/static/%2e%2e/index.html", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/nope.js",
                 "/static/", "/static/..%2fREADME.md"):
        response = httpx.get(f"{gw.url}{path}")
        assert response.status_code == 404, path
        assert "message" in response.json()["error"], path


def test_every_asset_is_local_and_installed() -> None:
    root = web.web_dir()
    assert root == ROOT / "web"
    for source in [root / "index.html", *sorted((root / "static").glob("*"))]:
        text = source.read_text()
        # No CDN: no absolute URL in src/href/import/url(), nor a protocol-relative one.
        assert not re.search(r"""(src|href)=["'](https?:)?//|from\s+["'](https?:)?//|url\((https?:)?//""", text), source
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files == {"share/vchat/web": ["web/index.html"], "share/vchat/web/static": ["web/static/*"]}
    assert not [p for p in (root / "static").iterdir() if p.is_dir()], "pyproject's data-files copy no subfolders"
