"""Per-request plumbing as plain ASGI middleware: request ids, metrics, and one JSON log line per request.

Plain ASGI rather than ``BaseHTTPMiddleware``: it adds no task or queue per request and sees the last
byte of a streamed response, so latency and logs cover the whole stream.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from compactlm.serving.http.metrics import ServiceMetrics

logger = logging.getLogger("compactlm.serving.access")

REQUEST_ID_HEADER = b"x-request-id"  # ASGI header names are lower-case bytes
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = {"/health", "/ready", "/metrics"}  # probes and scrapes: counted, logged at debug only


class RequestContextMiddleware:
    """Assigns a request id (the client's ``X-Request-ID`` if sane), times, counts and logs each request.

    Handlers add fields to ``request.state.log`` (token counts, finish reason, text unless redacted);
    they are merged into the log line. ``on_finish(request_id, path, status, elapsed_s, state)``, when
    given, is called after the last byte (it must not block: the app queues a traffic record there).
    """

    def __init__(self, app, metrics: ServiceMetrics, known_paths: set[str],
                 on_finish: Callable[[str, str, int, float, dict], None] | None = None):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths
        self.on_finish = on_finish

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        supplied = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == REQUEST_ID_HEADER), "")
        request_id = supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["log"] = {}
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            path = scope.get("path", "")
            # Unknown paths share one label, so a scanner cannot blow up the metric's cardinality.
            route = path if path in self.known_paths else "other"
            version = str(state.get("log", {}).get("model_version") or "")  # set by handlers that decoded
            self.metrics.requests.labels(route=route, method=scope.get("method", ""), status=str(status),
                                         version=version).inc()
            self.metrics.latency.labels(route=route, version=version).observe(elapsed)
            client = scope.get("client") or ("", 0)
            record = {"event": "request", "request_id": request_id, "method": scope.get("method"), "path": path,
                      "status": status, "latency_ms": round(elapsed * 1000, 2), "client": client[0],
                      **state.get("log", {})}
            logger.log(logging.DEBUG if path in _QUIET_PATHS else logging.INFO, "request", extra=record)
            if self.on_finish is not None:
                try:
                    self.on_finish(request_id, path, status, elapsed, state)
                except Exception:  # recording must never break a response
                    logger.exception("request hook failed", extra={"request_id": request_id})
