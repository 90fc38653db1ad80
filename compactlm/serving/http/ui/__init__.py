"""The chat UI: ``GET /ui`` (a static page), ``/ui/app.js`` and ``/ui/style.css``, served by the API's own app.

The page holds no data, so it is served without an API key; the API calls it makes carry the key the user
types when the API answers 401 (kept in the tab's sessionStorage). Its Content-Security-Policy allows only
its own script and stylesheet (no inline script, no CDN) and API calls to this origin plus ``serve.ui_peers``
(other CompactLM servers to compare answers with; each peer lists this server too, which allows the
cross-origin calls with CORS, see ``add_cors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

UI_DIR = Path(__file__).parent
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def content_security_policy(peers: Sequence[str] = ()) -> str:
    """The page's CSP: own script and style only, API calls to this origin and the ``peers`` origins."""
    connect = " ".join(["'self'", *peers])
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def add_ui_routes(app: FastAPI, peers: Sequence[str] = ()) -> None:
    """Register ``GET /ui`` and its two static files (read once, here), left out of the OpenAPI document."""
    headers = {"Content-Security-Policy": content_security_policy(peers), "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
    page = (UI_DIR / "index.html").read_bytes()

    @app.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: what curl -I and probes send
    async def ui_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    def static(body: bytes, media_type: str):
        async def asset() -> Response:
            return Response(body, media_type=media_type, headers=headers)
        return asset

    for name, media_type in _ASSETS.items():
        app.add_api_route(f"/ui/{name}", static((UI_DIR / name).read_bytes(), media_type), methods=["GET"],
                          include_in_schema=False)


def add_cors(app: FastAPI, peers: Sequence[str]) -> None:
    """Let the chat UI of each peer origin call this API from the browser (none: same-origin only)."""
    if not peers:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(CORSMiddleware, allow_origins=list(peers), allow_methods=["GET", "POST"],
                       allow_headers=["authorization", "content-type", "x-request-id"],
                       expose_headers=["x-request-id"], max_age=600)
