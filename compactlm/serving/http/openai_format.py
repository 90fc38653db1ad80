"""OpenAI wire-format helpers: response bodies, SSE chunks, error bodies and the app's error handlers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from compactlm.registry.uris import parse_model_uri
from compactlm.serving.engine.generation import Completion
from compactlm.serving.engine.loading import LoadedModel
from compactlm.serving.engine.scheduler import RequestHandle
from compactlm.serving.http.protocol import (
    AssistantMessage,
    BatchItem,
    BatchResponse,
    BatchResult,
    ChatChoice,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    ErrorResponse,
    ModelCard,
    Usage,
)

logger = logging.getLogger("compactlm.serving")


class ApiError(Exception):
    """An HTTP error with OpenAI's error body."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


def error_response(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON answer with OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``.

    Args:
        status: the HTTP status code.
        message: what went wrong (lone surrogates escaped so the body stays valid UTF-8).
        type_: OpenAI's error type (``invalid_request_error``, ``rate_limit_error``, ``server_error``).
        param: the request field at fault.
        code: a machine-readable reason (``model_not_found``, ``queue_full``...).
        headers: extra response headers (``Retry-After``).
    """
    # backslashreplace: a lone surrogate echoed from the request must not break the UTF-8 response.
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = {"error": {"message": safe, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def responses(stream: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers (and of the SSE answer of streaming routes)."""
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": text} for code, text in (
            (400, "Invalid request (the message names the field)."), (401, "Missing or wrong API key."),
            (404, "Unknown model."), (429, "Rate limit reached (see Retry-After)."),
            (503, "Not ready, or the request queue is full (see Retry-After)."))}
    if stream:
        documented[200] = {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream=true."}
    return documented


def model_matches(requested: str, model: LoadedModel) -> bool:
    """Accept the model id, the configured source, or any ``models:/<id>...`` URI of the same name."""
    if requested in (model.model_id, model.source):
        return True
    parsed = parse_model_uri(requested)
    return parsed is not None and parsed[0] == model.model_id


def model_card(model: LoadedModel) -> ModelCard:
    """The ``/v1/models`` entry of the served model (``created``: its load time, Unix seconds)."""
    return ModelCard(id=model.model_id, created=int(model.loaded_at))


def _usage(done: list[Completion]) -> Usage:
    prompt = sum(c.prompt_tokens for c in done)
    completion = sum(c.completion_tokens for c in done)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _reason(completion: Completion) -> str:
    return "length" if completion.finish_reason == "length" else "stop"


def completion_response(rid: str, model_id: str, done: list[Completion]) -> CompletionResponse:
    """The body of a non-streamed ``/v1/completions`` answer: one choice per prompt, summed usage."""
    choices = [CompletionChoice(index=i, text=c.text, finish_reason=_reason(c)) for i, c in enumerate(done)]
    return CompletionResponse(id=rid, created=int(time.time()), model=model_id, choices=choices, usage=_usage(done))


def chat_response(rid: str, model_id: str, done: Completion) -> ChatCompletionResponse:
    """The body of a non-streamed ``/v1/chat/completions`` answer."""
    choice = ChatChoice(index=0, message=AssistantMessage(content=done.text), finish_reason=_reason(done))
    return ChatCompletionResponse(id=rid, created=int(time.time()), model=model_id, choices=[choice],
                                  usage=_usage([done]))


def batch_response(model_id: str, items: list[BatchItem], done: list[Completion]) -> BatchResponse:
    """The body of a ``/v1/completions/batch`` answer: results in input order, ids echoed, usage per item."""
    data = [BatchResult(index=i, id=item.id, text=c.text, finish_reason=_reason(c), usage=_usage([c]))
            for i, (item, c) in enumerate(zip(items, done))]
    return BatchResponse(model=model_id, data=data, usage=_usage(done))


def wants_usage(body) -> bool:
    """True when a streaming request asked for a usage chunk (``stream_options.include_usage``)."""
    return bool(body.stream_options and body.stream_options.include_usage)


def stream_response(handle: RequestHandle, rid: str, model_id: str, chat: bool, include_usage: bool,
                    on_done: Callable[[Completion], None]) -> EventSourceResponse:
    """Server-sent events as OpenAI streams them: one chunk per text delta, a final chunk with the finish
    reason, an optional usage chunk, then ``[DONE]``. A client that disconnects cancels the sequence."""
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"id": rid, "object": kind, "created": created, "model": model_id, "choices": choices}
        if usage is not None:
            body["usage"] = usage.model_dump()
        return {"data": json.dumps(body, ensure_ascii=False, separators=(",", ":"))}

    def choice(text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    async def events():
        finished = False
        try:
            if chat:
                yield chunk([choice("", None, role=True)])
            async for delta in handle.stream():
                yield chunk([choice(delta, None)])
            completion = await handle.result()
            finished = True
            on_done(completion)
            yield chunk([choice(None if chat else "", _reason(completion))])
            if include_usage:
                yield chunk([], _usage([completion]))
            yield {"data": "[DONE]"}
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            logger.exception("stream failed")
            yield {"data": json.dumps({"error": {"message": str(exc), "type": "server_error", "param": None,
                                                 "code": None}})}
        finally:
            if not finished:
                handle.cancel()

    return EventSourceResponse(events(), ping=15, sep="\n")


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """``field: problem`` for the first (at most two) pydantic errors; field paths without the ``body`` root."""
    parts, param = [], None
    for error in errors[:2]:
        loc = [str(x) for x in error.get("loc", ()) if x != "body"]
        # Drop union-member tags such as "str" or "list[constrained-str]" that pydantic adds to the path.
        loc = [x for x in loc if not any(c in x for c in "[]-") and x not in ("str", "int", "float", "bool")]
        field = ".".join(loc) or "body"
        param = param or field
        detail = error.get("msg", "invalid")
        ctx = error.get("ctx") or {}
        if error.get("type") == "json_invalid" and ctx.get("error"):
            detail += f" ({ctx['error']})"
        elif isinstance(error.get("input"), int | float | bool) or error.get("input") is None:
            detail += f" (got {error.get('input')!r})"
        parts.append(f"{field}: {detail}")
    return "; ".join(parts) or "invalid request", param


def install_error_handlers(app: FastAPI, mapping: dict[type[Exception], tuple], validation_error: type,
                           http_error: type) -> None:
    """Answer every error with OpenAI's body: mapped library errors, validation, HTTP and unexpected ones."""

    def answer(request: Request, status: int, message: str, type_: str, param: str | None = None,
               code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
        log = getattr(request.state, "log", None)
        if isinstance(log, dict):  # the access log line says why
            log["error"] = message[:500]
        return error_response(status, message, type_, param, code, headers)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return answer(request, exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)

    for exc_type, (status, type_, code, headers) in mapping.items():
        def handler(request: Request, exc: Exception, status=status, type_=type_, code=code, headers=headers):
            return answer(request, status, str(exc), type_, getattr(exc, "param", None), code, headers)

        app.add_exception_handler(exc_type, handler)

    @app.exception_handler(validation_error)
    async def _validation(request: Request, exc):
        message, param = _validation_message(exc.errors())
        return answer(request, 400, message, "invalid_request_error", param)

    @app.exception_handler(http_error)
    async def _http(request: Request, exc):
        return answer(request, exc.status_code, str(exc.detail), "invalid_request_error",
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.error("unhandled error", exc_info=exc, extra={"request_id": getattr(request.state, "request_id", "")})
        return error_response(500, "internal server error", "server_error")
