"""The OpenAI-compatible HTTP service around the engine (FastAPI). Modules:

* ``protocol`` — request and response bodies (pydantic), strict as OpenAI's API.
* ``openai_format`` — response bodies, SSE chunks, error bodies and the error handlers.
* ``security`` — API keys and per-client token-bucket rate limits.
* ``metrics`` — Prometheus metrics; ``logs`` — JSON log lines; ``middleware`` — request ids, timing, access log.
* ``model_server`` — the served model: first load, alias polling, atomic swaps.
* ``traffic`` — served requests queued for the traffic store, and ``POST /v1/feedback``.
* ``app`` — ``create_app(config)``: the routes.
"""
