"""Thin Prefect tasks over the ``compactlm`` library: retries on I/O, code-aware caching, artifacts."""
