"""GET /ui without a browser: the page, its static files, the security headers, and CORS for ui_peers."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from compactlm.config import ServeConfig
from compactlm.errors import ConfigError
from compactlm.serving.http.app import create_app
from compactlm.serving.http.ui import UI_DIR

PEER = "http://127.0.0.1:8001"


@pytest.fixture(scope="module")
def client():
    """An app with API keys and one peer, no model and no lifespan: /ui needs neither."""
    return TestClient(create_app(ServeConfig(ui_peers=[PEER + "/"]), api_keys=["k1"]))


def test_the_page_is_served_without_a_key_with_a_strict_policy(client):
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/v1/models").status_code == 401  # the API still needs the key
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == f"'self' {PEER}" and csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    head = client.head("/ui")  # curl -I, load-balancer probes
    assert head.status_code == 200
    assert head.headers["content-security-policy"] == page.headers["content-security-policy"]


def test_the_page_has_no_inline_script_style_or_handlers(client):
    html = client.get("/ui").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert scripts == [(' src="/ui/app.js" defer', "")]
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I)  # no onclick= and the like
    assert "<style" not in html.lower() and "style=" not in html.lower()
    assert re.findall(r'(?:src|href)="([^"]*)"', html) == ["/ui/style.css", "/ui/app.js"]  # no CDN


@pytest.mark.parametrize(("path", "media_type"), [("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")])
def test_static_files_are_served_with_the_same_headers(client, path, media_type):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (UI_DIR / path.removeprefix("/ui/")).read_bytes()
    assert client.get("/ui/__init__.py").status_code == 404  # only the page's own files


def test_the_script_renders_text_only():
    script = (UI_DIR / "app.js").read_text()
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert unsafe not in script
    assert "textContent" in script and "sessionStorage" in script


def test_a_peer_origin_may_call_the_api_and_others_may_not(client):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = client.options("/v1/chat/completions", headers={"Origin": PEER, **ask})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == PEER
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = client.options("/v1/chat/completions", headers={"Origin": "http://evil.example", **ask})
    assert "access-control-allow-origin" not in refused.headers
    unauthorized = client.get("/v1/models", headers={"Origin": PEER})  # the 401 is readable, so the page asks
    assert unauthorized.status_code == 401 and unauthorized.headers["access-control-allow-origin"] == PEER
    assert unauthorized.headers["access-control-expose-headers"].lower() == "x-request-id"


def test_without_peers_the_page_talks_to_its_own_server_only():
    page = TestClient(create_app(ServeConfig())).get("/ui", headers={"Origin": PEER})
    assert "connect-src 'self';" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in page.headers


def test_a_peer_must_be_an_origin():
    with pytest.raises(ConfigError, match="serve.ui_peers"):
        ServeConfig(ui_peers=["http://127.0.0.1:8001/v1"])
