"""The OpenAI-compatible service: ``create_app(config)`` returns a FastAPI app to run with uvicorn.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with SSE streaming),
``POST /v1/completions/batch``, ``GET /v1/models``, ``POST /v1/feedback`` (ratings and corrected answers, with
a traffic store), ``GET /health`` (liveness), ``GET /ready`` (503 until a model is loaded), ``GET /metrics``
(Prometheus), ``GET /ui`` (the chat page). Errors use OpenAI's body
(``{"error": {"message", "type", "param", "code"}}``) so the official client raises its usual exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import Iterable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from compactlm.config import ServeConfig
from compactlm.errors import EngineUnavailableError, InvalidRequestError, QueueFullError
from compactlm.serving.engine.generation import Completion, Sequence
from compactlm.serving.engine.loading import LoadedModel
from compactlm.serving.engine.sampling import SamplingParams
from compactlm.serving.engine.scheduler import EngineFailure
from compactlm.serving.http import openai_format as fmt
from compactlm.serving.http.metrics import ServiceMetrics
from compactlm.serving.http.middleware import RequestContextMiddleware
from compactlm.serving.http.model_server import ModelServer, Serving
from compactlm.serving.http.protocol import (
    BatchRequest,
    BatchResponse,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from compactlm.serving.http.security import ApiKeys, RateLimiter, key_fingerprint, retry_after_header
from compactlm.serving.http.traffic import add_feedback_route, note_served, served_record
from compactlm.serving.http.ui import add_cors, add_ui_routes
from compactlm.serving.traffic import TrafficStore, TrafficWriter

logger = logging.getLogger("compactlm.serving")

_bearer = HTTPBearer(auto_error=False, description="An API key, when the server has keys configured.")


def create_app(config: ServeConfig, api_keys: Iterable[str] = (), preloaded: LoadedModel | None = None,
               traffic: TrafficStore | None = None) -> FastAPI:
    """Build the service.

    Args:
        config: serving settings (model source, limits, quantization, rate limit...).
        api_keys: accepted keys; none means no authentication.
        preloaded: a model loaded by the caller (served at once, no load at start-up); an alias in
            ``config.model_uri`` is still followed.
        traffic: where served requests and feedback are stored (see ``compactlm.serving.traffic``); None
            records nothing and ``POST /v1/feedback`` answers 404 (``feedback_disabled``). The app writes through
            a background thread it starts and stops in its lifespan, and closes the store on shutdown.

    Returns:
        The FastAPI app; the model loads (and an alias is followed) in its lifespan, not here.

    Raises:
        ApiError, InvalidRequestError, QueueFullError, EngineUnavailableError, EngineFailure: never while
            building; only inside request handlers, where they are answered in OpenAI's error body: 401
            (API key), 429 (rate limit, with Retry-After), 404 (another model), 400 (e.g. a prompt over
            ``serve.max_prompt_chars`` characters), 503 (no model yet, queue full, engine unavailable),
            500 (engine failure).
    """
    metrics = ServiceMetrics()
    server = ModelServer(config, metrics)
    keys = ApiKeys(api_keys)
    limiter = RateLimiter(config.rate_limit, config.rate_burst)
    writer = None if traffic is None else TrafficWriter(
        traffic, config.traffic_queue, on_drop=lambda reason, n: metrics.traffic_dropped.labels(reason=reason).inc(n))
    if writer is not None:
        metrics.watch_traffic(lambda: writer.pending)
        metrics.watch_drift(traffic.latest_monitor_checks)
        logger.info("recording served requests", extra={"event": "traffic_store", "store": traffic.display_url,
                                                        "prompt_text": not config.redact_prompts})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if writer is not None:
            writer.start()
        if preloaded is not None:
            server.install(preloaded)
        task = asyncio.create_task(server.maintain()) if (preloaded is None or server.follows_alias) else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(server.close)
        if writer is not None:  # what finished before shutdown is written, then the store closes
            await asyncio.to_thread(writer.close)
            traffic.close()

    app = FastAPI(title="CompactLM", version="1", lifespan=lifespan,
                  description="OpenAI-compatible completions and chat completions for CompactLM models.")
    app.state.server, app.state.metrics = server, metrics

    def authorize(request: Request, presented: str | None) -> None:
        """API-key check, then the caller's rate limit (per key, or per address without keys)."""
        if keys.enabled:
            if not keys.check(presented):
                metrics.rejected.labels(reason="auth").inc()
                raise fmt.ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'.",
                                   "invalid_request_error", code="invalid_api_key")
            client = key_fingerprint(presented or "")
        else:
            client = request.client.host if request.client else "unknown"
        request.state.log["client_id"] = client
        wait = limiter.acquire(client)
        if wait > 0:
            metrics.rejected.labels(reason="rate_limit").inc()
            raise fmt.ApiError(429, f"Rate limit reached for {client}: {config.rate_limit:g} requests/s "
                               f"(burst {config.rate_burst}); retry in {wait:.2f} s.", "rate_limit_error",
                               code="rate_limit_exceeded", headers={"Retry-After": retry_after_header(wait)})

    # The OpenAPI document declares bearer auth only when keys are configured, so it tells the truth.
    if keys.enabled:
        async def guard(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)):
            authorize(request, credentials.credentials if credentials is not None else None)
    else:
        async def guard(request: Request):
            authorize(request, None)

    def serving(requested_model: str | None = None) -> Serving:
        current = server.current
        if current is None:
            raise fmt.ApiError(503, "The model is not loaded yet; see GET /ready.", "server_error",
                               code="model_not_ready", headers={"Retry-After": "5"})
        if requested_model is not None and not fmt.model_matches(requested_model, current.model):
            raise fmt.ApiError(404, f"The model {requested_model!r} is not served here; this server serves "
                               f"{current.model.model_id!r} (see GET /v1/models).", "invalid_request_error",
                               param="model", code="model_not_found")
        return current

    def new_sequence(current: Serving, prompt: str, body, max_tokens: int | None, param: str,
                     stream: bool = False) -> Sequence:
        if len(prompt) > config.max_prompt_chars:
            raise InvalidRequestError(f"{param} is {len(prompt)} characters; the limit is {config.max_prompt_chars}",
                                      param)
        engine = current.model.engine
        ids = engine.encode(prompt)
        room = engine.max_sequence_tokens - len(ids)  # the context, or less under the KV-cache budget
        default = max(1, min(config.max_new_tokens, room))
        params = SamplingParams(max_tokens=max_tokens or default,
                                temperature=1.0 if body.temperature is None else body.temperature,
                                top_p=1.0 if body.top_p is None else body.top_p, stop=body.stop_list(),
                                min_tokens=body.min_tokens or 0, seed=body.seed)
        return engine.sequence(ids, params, stream)

    def submit(current: Serving, seqs: list[Sequence]):
        try:
            return current.scheduler.submit_many(seqs)
        except QueueFullError:
            metrics.rejected.labels(reason="queue_full").inc()
            raise

    def record(request: Request, seqs: list[Sequence], done: list[Completion], prompts: list[str],
               served: Serving, question: str | None = None, stream: bool = False, stored: bool = True) -> None:
        """Metrics and the log line (with the version that answered); with ``stored`` (completion and chat
        routes), the traffic store's record too (``question``: the stored prompt, a chat's last user message)."""
        for seq, completion in zip(seqs, done):
            metrics.tokens_in.inc(completion.prompt_tokens)
            metrics.tokens_out.inc(completion.completion_tokens)
            metrics.finished.labels(reason=completion.finish_reason).inc()
            if seq.first_token_at is not None:
                metrics.first_token.observe(seq.first_token_at - seq.created)
        log = request.state.log
        log.update(prompt_tokens=sum(c.prompt_tokens for c in done),
                   completion_tokens=sum(c.completion_tokens for c in done),
                   finish_reason=",".join(c.finish_reason for c in done), model_version=served.model.version)
        if not config.redact_prompts:
            log.update(prompt=prompts if len(prompts) > 1 else prompts[0],
                       completion=[c.text for c in done] if len(done) > 1 else done[0].text)
        if stored and writer is not None:
            texts = not config.redact_prompts
            first = seqs[0].first_token_at
            note_served(request, served.model, served.model.version,
                        None if first is None else first - seqs[0].created, log["prompt_tokens"],
                        log["completion_tokens"], log["finish_reason"], len(done), stream,
                        (question or (prompts[0] if len(prompts) == 1 else json.dumps(prompts))) if texts else None,
                        (done[0].text if len(done) == 1 else json.dumps([c.text for c in done])) if texts else None)

    @app.post("/v1/completions", response_model=CompletionResponse, dependencies=[Depends(guard)],
              responses=fmt.responses(stream=True), tags=["openai"])
    async def completions(body: CompletionRequest, request: Request):
        """Complete raw prompts (OpenAI ``completions``); ``stream: true`` answers with server-sent events."""
        current = serving(body.model)
        prompts = body.prompts()
        if body.stream and len(prompts) > 1:
            raise InvalidRequestError("stream=true takes a single prompt", "prompt")
        seqs = [new_sequence(current, p, body, body.max_tokens, "prompt", bool(body.stream)) for p in prompts]
        handles = submit(current, seqs)
        rid, model_id = f"cmpl-{request.state.request_id}", current.model.model_id
        if body.stream:
            return fmt.stream_response(handles[0], rid, model_id, chat=False, include_usage=fmt.wants_usage(body),
                                       on_done=lambda c: record(request, seqs, [c], prompts, current, stream=True))
        done = await asyncio.gather(*(h.result() for h in handles))
        record(request, seqs, done, prompts, current)
        return fmt.completion_response(rid, model_id, done)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse, dependencies=[Depends(guard)],
              responses=fmt.responses(stream=True), tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        """Answer a conversation (OpenAI ``chat.completions``), rendered with the model's chat template."""
        current = serving(body.model)
        prompt = current.model.engine.chat_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
        question = next((m.text() for m in reversed(body.messages) if m.role == "user"), None)
        seq = new_sequence(current, prompt, body, body.token_budget(), "messages", bool(body.stream))
        (handle,) = submit(current, [seq])
        rid, model_id = f"chatcmpl-{request.state.request_id}", current.model.model_id
        if body.stream:
            return fmt.stream_response(handle, rid, model_id, chat=True, include_usage=fmt.wants_usage(body),
                                       on_done=lambda c: record(request, [seq], [c], [prompt], current, question, True))
        completion = await handle.result()
        record(request, [seq], [completion], [prompt], current, question)
        return fmt.chat_response(rid, model_id, completion)

    @app.post("/v1/completions/batch", response_model=BatchResponse, dependencies=[Depends(guard)],
              responses=fmt.responses(), tags=["batch"])
    async def batch_completions(body: BatchRequest, request: Request) -> BatchResponse:
        """Many prompts, each with its own parameters, in one call (all validated before any is queued)."""
        current = serving(body.model)
        seqs = [new_sequence(current, item.prompt, item, item.max_tokens, f"inputs[{i}].prompt")
                for i, item in enumerate(body.inputs)]
        handles = submit(current, seqs)
        done = await asyncio.gather(*(h.result() for h in handles))
        record(request, seqs, done, [item.prompt for item in body.inputs], current, stored=False)
        return fmt.batch_response(current.model.model_id, body.inputs, done)

    @app.get("/v1/models", response_model=ModelList, dependencies=[Depends(guard)], responses=fmt.responses(),
             tags=["openai"])
    async def list_models() -> ModelList:
        """The served model (one)."""
        return ModelList(data=[fmt.model_card(serving().model)])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, dependencies=[Depends(guard)],
             responses=fmt.responses(), tags=["openai"])
    async def get_model(model_id: str) -> ModelCard:
        return fmt.model_card(serving(model_id).model)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"description": "No model loaded yet (or loading failed)."}})
    async def ready():
        """Readiness: 200 with the model once one is loaded, 503 before (with the last load error, if any)."""
        current = server.current
        if current is None:
            return JSONResponse({"status": "loading", "error": server.last_error}, status_code=503,
                                headers={"Retry-After": "5"})
        stats = current.model.engine.stats
        return {"status": "ready", "model": current.model.describe(), "queue_depth": current.scheduler.queue_depth,
                "in_flight": current.scheduler.in_flight, "uptime_s": round(time.time() - current.model.loaded_at, 1),
                "speculation": {**stats, "acceptance": round(stats["accepted"] / max(stats["drafted"], 1), 3)}}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    add_feedback_route(app, guard, traffic, writer, metrics)
    add_ui_routes(app, config.ui_peers)  # GET /ui: a static page, no key needed (its API calls need one)

    def store_served(request_id: str, path: str, status: int, elapsed_s: float, state: dict) -> None:
        served = served_record(request_id, path, status, elapsed_s, state)
        if served is not None:
            writer.submit(served)

    fmt.install_error_handlers(app, {
        InvalidRequestError: (400, "invalid_request_error", None, None),
        QueueFullError: (503, "server_error", "queue_full", {"Retry-After": "1"}),
        EngineUnavailableError: (503, "server_error", "engine_unavailable", {"Retry-After": "1"}),
        EngineFailure: (500, "server_error", "engine_failure", None),
    }, RequestValidationError, StarletteHTTPException)
    generic_openapi = app.openapi

    def openapi() -> dict:
        """The schema, with ``model`` narrowed to the served id once a model is loaded (clients and fuzzers
        then know the one value that reaches the engine; anything else is a documented 404)."""
        schema = copy.deepcopy(generic_openapi())
        if server.current is not None:
            for name in ("CompletionRequest", "ChatCompletionRequest", "BatchRequest"):
                schema["components"]["schemas"][name]["properties"]["model"]["enum"] = [
                    server.current.model.model_id]
        return schema

    app.openapi = openapi
    known = {route.path for route in app.routes if "{" not in getattr(route, "path", "{")}
    app.add_middleware(RequestContextMiddleware, metrics=metrics, known_paths=known,
                       on_finish=store_served if writer is not None else None)
    add_cors(app, config.ui_peers)  # outermost: preflight requests are answered before anything else
    return app
