"""What the service records: each served completion/chat request in the traffic store, and ``POST /v1/feedback``.

A handler notes what it served (``note_served``: model, version, tokens, text when allowed) in the
request's state; when the response has ended (the last byte of a stream included), the middleware's
hook builds the ``RequestRecord`` with status and latency (``served_record``) and the app queues it on
the ``TrafficWriter``: nothing is written on the request path.

Feedback is accepted for a request id the store knows (or that this process queued moments ago): an
unknown id is a 404, so ratings cannot pile up for answers nobody served. It is written before the 201
answer (in a worker thread, not on the event loop), so the returned id is the stored row's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from compactlm.serving.http.metrics import ServiceMetrics
from compactlm.serving.http.openai_format import ApiError, responses
from compactlm.serving.traffic import FeedbackRecord, RequestRecord, TrafficStore, TrafficWriter

logger = logging.getLogger("compactlm.serving")

RESPONSE_ID_PREFIXES = ("chatcmpl-", "cmpl-")  # response ids are <prefix><request id>
_RATINGS = {"up": 1, "down": -1, 1: 1, -1: -1}


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a rating of one served answer, optionally corrected."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=160, description=(
        "The answer's request id (the X-Request-ID response header) or its response id (chatcmpl-..., cmpl-...)."))
    rating: Literal["up", "down", 1, -1] = Field(description="'up' or 1 (good answer), 'down' or -1 (bad).")
    corrected_answer: str | None = Field(None, max_length=16_000, description="What the answer should have been.")
    reason: str | None = Field(None, max_length=2_000, description="Free-text reason.")
    prompt: str | None = Field(None, max_length=16_000, description=(
        "The question answered (the last user message). Needed to turn a correction into a training row "
        "when the server keeps no prompt text (serve.redact_prompts: true, the default)."))
    source: str = Field("api", pattern=r"^[a-z0-9_-]{1,32}$", description="Where the feedback came from: api, ui...")

    @field_validator("rating", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 in Python; a rating must be said explicitly
            raise ValueError("expected 'up', 'down', 1 or -1")
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def score(self) -> int:
        """The rating as +1 or -1."""
        return _RATINGS[self.rating]


class FeedbackCreated(BaseModel):
    """The stored feedback (201)."""

    id: int
    object: Literal["feedback"] = "feedback"
    request_id: str
    rating: int
    created: int  # Unix seconds, as OpenAI objects carry


def note_served(request: Request, model, version: str | None, first_token_s: float | None, prompt_tokens: int,
                completion_tokens: int, finish_reason: str, n_choices: int, stream: bool,
                prompt_text: str | None, completion_text: str | None) -> None:
    """Note in the request's state what was served; ``served_record`` completes it once the response ends.

    Args:
        model: the served ``LoadedModel`` (its id names the model).
        version: its registry version (None for a folder).
        first_token_s: queueing to the first generated token, in seconds (None if none was generated).
        prompt_text, completion_text: the texts, or None when prompts are redacted.
    """
    request.state.traffic = {
        "model_name": model.model_id, "model_version": version, "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "finish_reason": finish_reason, "n_choices": n_choices,
        "stream": stream, "prompt_text": prompt_text, "completion_text": completion_text,
        "ttft_ms": None if first_token_s is None else round(first_token_s * 1000, 3)}


def served_record(request_id: str, path: str, status: int, elapsed_s: float, state: dict) -> RequestRecord | None:
    """The ``RequestRecord`` of a finished request, or None when its handler served nothing (``note_served``).

    Args:
        request_id: the request id (X-Request-ID).
        path: the route.
        status: the HTTP status sent.
        elapsed_s: seconds from the request's arrival to its last byte.
        state: the request's state (``traffic`` from ``note_served``, ``log.client_id`` from the auth check).
    """
    served = state.get("traffic")
    if not served:
        return None
    return RequestRecord(request_id=request_id, created_at=datetime.now(UTC), route=path, status=status,
                         latency_ms=round(elapsed_s * 1000, 3), client_id=state.get("log", {}).get("client_id"),
                         **served)


def add_feedback_route(app: FastAPI, guard: Callable, store: TrafficStore | None, writer: TrafficWriter | None,
                       metrics: ServiceMetrics) -> None:
    """Register ``POST /v1/feedback`` (same API-key check and rate limit as the other ``/v1`` routes).

    Answers 201 with the stored id; 400 naming the field for a bad body; 404 when the store does not know
    the request id; 503 when the store is unreachable. Without a store the route answers 404 saying feedback
    is off, and is left out of the OpenAPI document (which then tells the truth).
    """

    async def known_id(request_id: str) -> str | None:
        candidates = [request_id, *(request_id.removeprefix(p) for p in RESPONSE_ID_PREFIXES
                                    if request_id.startswith(p))]
        for candidate in candidates:
            if writer is not None and writer.recently_submitted(candidate):
                return candidate
            if await asyncio.to_thread(store.has_request, candidate):
                return candidate
        return None

    if store is None:
        @app.post("/v1/feedback", dependencies=[Depends(guard)], include_in_schema=False)
        async def feedback_off() -> None:
            raise ApiError(404, "Feedback is off: this server runs without a traffic store (serve.traffic_db: "
                                "none).", "invalid_request_error", code="feedback_disabled")
        return

    @app.post("/v1/feedback", status_code=201, response_model=FeedbackCreated, dependencies=[Depends(guard)],
              responses={**responses(), 404: {"description": "The request id is unknown to the traffic store."},
                         503: {"description": "The traffic store is unavailable (see Retry-After)."}},
              tags=["feedback"])
    async def post_feedback(body: FeedbackRequest, request: Request) -> FeedbackCreated:
        """Rate a served answer (thumbs up/down), optionally with a corrected answer, a reason and the prompt."""
        try:
            request_id = await known_id(body.request_id)
            if request_id is None:
                raise ApiError(404, f"No served request with id {body.request_id!r} is known to the traffic store.",
                               "invalid_request_error", param="request_id", code="request_not_found")
            record = FeedbackRecord(request_id=request_id, rating=body.score, corrected_answer=body.corrected_answer,
                                    reason=body.reason, prompt=body.prompt, source=body.source,
                                    client_id=request.state.log.get("client_id"))
            stored = await asyncio.to_thread(store.add_feedback, record)
        except ApiError:
            raise
        except Exception as exc:  # the driver's error: say the store is down, log why (URL masked)
            logger.error("feedback not stored", extra={"event": "feedback_failed", "store": store.display_url,
                                                       "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
            raise ApiError(503, "The traffic store is unavailable; the feedback was not stored.", "server_error",
                           code="store_unavailable", headers={"Retry-After": "5"}) from None
        version = writer.recent_version(request_id) if writer is not None else None
        if version is None:
            version = ((await asyncio.to_thread(store.request, request_id)) or {}).get("model_version")
        metrics.feedback.labels(rating="up" if body.score > 0 else "down", version=version or "").inc()
        request.state.log.update(feedback_id=stored, feedback_for=request_id)
        return FeedbackCreated(id=stored, request_id=request_id, rating=body.score, created=int(time.time()))
