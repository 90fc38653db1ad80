"""The model a service is running: initial load, alias polling, and atomic swaps on reload.

The current ``(model, scheduler)`` pair is replaced as one object, so a request always submits to the
scheduler of the model it read. A reload builds and warms the new engine off the event loop, swaps the
pair, then lets the old scheduler finish what it already accepted before its thread stops.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from compactlm.config import ServeConfig
from compactlm.registry.uris import parse_model_uri
from compactlm.serving.engine.loading import LoadedModel, load_model, resolve_version
from compactlm.serving.engine.scheduler import Scheduler
from compactlm.serving.http.metrics import ServiceMetrics

logger = logging.getLogger("compactlm.serving")

RETRY_LOAD_S = 5.0  # first load failed (registry unreachable...): try again this often


@dataclass(frozen=True)
class Serving:
    """A loaded model and the scheduler that drives its engine."""

    model: LoadedModel
    scheduler: Scheduler


class ModelServer:
    """Owns what the app serves. ``current`` is None until the first load succeeds (``/ready`` says 503)."""

    def __init__(self, config: ServeConfig, metrics: ServiceMetrics):
        self.config = config
        self.metrics = metrics
        self.current: Serving | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        metrics.watch_queue(lambda: self.current.scheduler.queue_depth if self.current else 0,
                            lambda: self.current.scheduler.in_flight if self.current else 0)

    @property
    def follows_alias(self) -> bool:
        """True when the configured source is a ``models:/<name>@<alias>`` URI (polled for moves)."""
        parsed = parse_model_uri(self.config.model_uri or "") if self.config.model_dir is None else None
        return parsed is not None and parsed[1] is not None

    def _load_blocking(self) -> LoadedModel:
        cfg = self.config
        return load_model(cfg.model_uri, cfg.model_dir, cfg.quantization, cfg.max_batch_size,
                          cfg.max_seq_len or None, cfg.speculative_tokens, cfg.kv_cache_mb, cfg.kv_cache_dtype)

    async def load(self) -> LoadedModel:
        """Load the configured model (off the event loop) and make it current."""
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(self._load_blocking)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.reloads.labels(outcome="error").inc()
                raise
            self.install(loaded)
            return loaded

    def install(self, loaded: LoadedModel) -> None:
        """Make ``loaded`` current and retire the previous scheduler (it drains on its own thread)."""
        scheduler = Scheduler(loaded.engine, self.config.max_queue, on_step=self.metrics.batch_size.observe).start()
        previous, self.current = self.current, Serving(loaded, scheduler)
        self.last_error = None
        self.metrics.set_model(loaded.model_id, loaded.version, loaded.quantization)
        self.metrics.reloads.labels(outcome="loaded").inc()
        self.metrics.ready.set(1)
        logger.info("model loaded", extra={"event": "model_loaded", **loaded.describe()})
        logger.info(loaded.engine.decoder.cache.summary(), extra={"event": "kv_cache"})
        if previous is not None:
            asyncio.get_running_loop().run_in_executor(None, previous.scheduler.close, True)

    async def maintain(self) -> None:
        """Load at start-up (retrying), then poll the alias every ``reload_interval_s`` and reload on a move."""
        interval = self.config.reload_interval_s
        while True:
            try:
                if self.current is None:
                    await self.load()
                elif self.follows_alias:
                    version = await asyncio.to_thread(resolve_version, self.config.model_uri)
                    if version != self.current.model.version:
                        logger.info("alias moved", extra={"event": "alias_moved", "uri": self.config.model_uri,
                                                          "from_version": self.current.model.version,
                                                          "to_version": version})
                        await self.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving the current model; say why on /ready and in the logs
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("model load failed", extra={"event": "model_load_failed", "error": self.last_error})
            if self.current is not None and (interval <= 0 or not self.follows_alias):
                return
            await asyncio.sleep(interval if self.current is not None and interval > 0 else RETRY_LOAD_S)

    def close(self) -> None:
        """Stop serving: cancel what is queued or running and stop the engine thread (at most 10 s)."""
        if self.current is not None:
            self.current.scheduler.close(drain=False, timeout=10)
            self.metrics.ready.set(0)
