"""Serving CompactLM models: a fast decoding engine, quantization and an OpenAI-compatible FastAPI service.

* ``engine/`` — weights extraction, quantization, the fast decoder, sampling, speculative decoding, the
  generation engine and its scheduler thread, engine folders on disk, and loading a model to serve.
* ``http/`` — the HTTP service: app, protocol, OpenAI format, security, middleware, metrics, logs and
  the model server that reloads when the registry alias moves.
* ``traffic/`` — served requests and feedback in a SQLAlchemy database (SQLite or PostgreSQL), written off
  the request path, and corrected answers exported as instruction/response rows.
* ``batch_predict`` — JSONL batch inference (``compactlm predict``).
* ``quantization_tradeoff`` / ``quantize_and_register`` — the size/speed/quality table of each scheme and
  the ``compactlm quantize`` workflow that logs it and registers quantized versions.

The MLflow pyfunc flavour of engine folders is in ``compactlm.registry.pyfunc``. This package never
imports Prefect; torch is imported by the modules that need it, not here (the config imports ``SCHEMES``).
"""

SCHEMES = ("fp32", "int8", "int4")
