"""The ``serve`` section: defaults of ``compactlm serve`` (address, model, quantization, batching, limits)."""

from __future__ import annotations

import dataclasses
import re

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, check
from compactlm.serving import SCHEMES


@dataclass(config=SECTION)
class ServeConfig:
    """Serving defaults (see ``compactlm serve``). API keys come from COMPACTLM_API_KEYS, never from here.

    ``quantization`` is lower-cased, and ``none`` means ``fp32``.

    Raises:
        ConfigError: a port outside [1, 65535], an unknown quantization scheme or KV-cache dtype, a limit out
            of range, or a blank ``model_uri``.
    """

    host: str = "127.0.0.1"  # loopback; any other address needs API keys or allow_unauthenticated
    port: int = 8000
    max_new_tokens: int = 128  # max_tokens of a request that sets none
    model_uri: str | None = None  # None: models:/<registry.model_name>@champion
    model_dir: str | None = None  # a saved model folder instead of the registry
    quantization: str = "fp32"  # fp32 | int8 | int4, applied at load
    max_batch_size: int = 32  # sequences decoded together (KV-cache rows)
    max_seq_len: int = 0  # serving context (prompt + max_tokens), tokens; 0: the model's context
    kv_cache_mb: float = 1024.0  # KV-cache budget in MiB, allocated as used; fuller requests wait; 0: no bound
    kv_cache_dtype: str = "float32"  # float32 | bfloat16 (half the cache's memory, attention in bf16)
    max_queue: int = 256  # sequences waiting for a row; more get 503
    speculative_tokens: int = 8  # drafted tokens checked per step for greedy requests (same output); 0: off
    max_prompt_chars: int = 16_000
    threads: int = 1  # torch threads; 1 leaves the second core to HTTP and avoids OpenMP stalls on busy hosts
    rate_limit: float = 0.0  # requests per second per API key (or client address); 0: off
    rate_burst: int = 20
    reload_interval_s: float = 30.0  # how often the model alias is checked; 0: never
    redact_prompts: bool = True  # keep prompt and completion text out of the request logs
    allow_unauthenticated: bool = False  # serve without API keys on a non-loopback host (explicit opt-in)
    # Served requests and feedback: "default" = SQLite <home>/traffic.db; none = off; a path or a SQLAlchemy URL
    # (postgresql://...). COMPACTLM_TRAFFIC_DB overrides it (put passwords there, not in a config file).
    traffic_db: str | None = "default"
    traffic_queue: int = 10_000  # served requests waiting to be written; more are dropped (counted), never waited for
    # Origins (http://host:port) of other CompactLM servers the chat UI (/ui) compares answers with; each may also
    # call this API from its own /ui (CORS). List each server in the other's ui_peers.
    ui_peers: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "serve.port", self.port, "in [1, 65535]")
        check(self.max_new_tokens >= 1, "serve.max_new_tokens", self.max_new_tokens, ">= 1")
        self.quantization = "fp32" if self.quantization.lower() == "none" else self.quantization.lower()
        check(self.quantization in SCHEMES, "serve.quantization", self.quantization, f"one of {', '.join(SCHEMES)}")
        check(1 <= self.max_batch_size <= 1024, "serve.max_batch_size", self.max_batch_size, "in [1, 1024]")
        check(self.max_seq_len >= 0, "serve.max_seq_len", self.max_seq_len, ">= 0 (0: the model's context)")
        check(self.kv_cache_mb >= 0, "serve.kv_cache_mb", self.kv_cache_mb, ">= 0 (MiB; 0: no bound)")
        self.kv_cache_dtype = {"fp32": "float32", "bf16": "bfloat16"}.get(self.kv_cache_dtype.lower(),
                                                                          self.kv_cache_dtype.lower())
        check(self.kv_cache_dtype in ("float32", "bfloat16"), "serve.kv_cache_dtype", self.kv_cache_dtype,
              "float32 or bfloat16")
        check(self.max_queue >= 0, "serve.max_queue", self.max_queue, ">= 0")
        check(0 <= self.speculative_tokens <= 64, "serve.speculative_tokens", self.speculative_tokens, "in [0, 64]")
        check(self.max_prompt_chars >= 1, "serve.max_prompt_chars", self.max_prompt_chars, ">= 1")
        check(self.threads >= 0, "serve.threads", self.threads, ">= 0 (0: torch's default)")
        check(self.rate_limit >= 0, "serve.rate_limit", self.rate_limit, ">= 0 (0: off)")
        check(self.rate_burst >= 1, "serve.rate_burst", self.rate_burst, ">= 1")
        check(self.reload_interval_s >= 0, "serve.reload_interval_s", self.reload_interval_s, ">= 0 (0: never)")
        check(self.traffic_queue >= 1, "serve.traffic_queue", self.traffic_queue, ">= 1")
        check(self.traffic_db is None or self.traffic_db.strip() != "", "serve.traffic_db", self.traffic_db,
              "default, none, a file path or a SQLAlchemy URL")
        self.ui_peers = [peer.strip().rstrip("/") for peer in self.ui_peers]
        for peer in self.ui_peers:
            check(re.fullmatch(r"https?://[^/\s'\";]+", peer) is not None, "serve.ui_peers", peer,
                  "origins such as http://127.0.0.1:8001 (scheme, host and port; no path)")
        check(self.model_uri is None or self.model_uri.strip() != "", "serve.model_uri", self.model_uri,
              "a model URI such as models:/<name>@champion")
