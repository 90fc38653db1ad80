"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can run several).

Exposed at ``GET /metrics``. Names follow Prometheus conventions (``_total`` counters, ``_seconds``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128)


class ServiceMetrics:
    """Request, token, queue and model metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # version: the model version that answered ("" for routes that decode nothing, or a folder model)
        self.requests = Counter("compactlm_requests", "HTTP requests by route, status code and model version.",
                                ["route", "method", "status", "version"], registry=r)
        self.latency = Histogram("compactlm_request_latency_seconds", "Request latency (to the last byte).",
                                 ["route", "version"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("compactlm_time_to_first_token_seconds",
                                     "Time from queueing a sequence to its first generated token.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.tokens_in = Counter("compactlm_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.tokens_out = Counter("compactlm_completion_tokens", "Tokens generated.", registry=r)
        self.finished = Counter("compactlm_sequences_finished", "Sequences finished, by reason.", ["reason"],
                                registry=r)
        self.rejected = Counter("compactlm_requests_rejected", "Requests refused before decoding, by reason.",
                                ["reason"], registry=r)
        self.queue_depth = Gauge("compactlm_queue_depth", "Sequences waiting for a KV-cache row.", registry=r)
        self.in_flight = Gauge("compactlm_sequences_in_flight", "Sequences holding a KV-cache row.", registry=r)
        self.batch_size = Histogram("compactlm_decode_batch_size", "Sequences per engine step.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.model_info = Gauge("compactlm_model_info", "The served model (value 1).",
                                ["model", "version", "quantization"], registry=r)
        self.reloads = Counter("compactlm_model_reloads", "Model loads and reloads, by outcome.", ["outcome"],
                               registry=r)
        self.ready = Gauge("compactlm_ready", "1 when a model is loaded and requests are served.", registry=r)
        self.feedback = Counter("compactlm_feedback", "Feedback stored, by rating (up, down) and the model version "
                                "that gave the rated answer.", ["rating", "version"], registry=r)
        self.traffic_dropped = Counter("compactlm_traffic_dropped", "Served-request records not stored, by reason "
                                       "(queue_full: the store is too slow; write_error).", ["reason"], registry=r)
        self.traffic_pending = Gauge("compactlm_traffic_pending", "Served-request records waiting to be stored.",
                                     registry=r)

    def watch_queue(self, depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read queue depth and in-flight count at scrape time (always current, no bookkeeping)."""
        self.queue_depth.set_function(depth)
        self.in_flight.set_function(in_flight)

    def watch_drift(self, latest: Callable[[], list[dict]], cache_s: float = 30.0) -> None:
        """Expose the newest monitor run's checks (``TrafficStore.latest_monitor_checks``) at scrape time.

        Gauges ``compactlm_drift_statistic``, ``compactlm_drift_threshold`` and ``compactlm_drift_detected``
        (1/0), labelled by check and model version; ``compactlm_drift_checked_timestamp_seconds`` says when
        the monitor ran. The store is read at most every ``cache_s`` seconds; an unreachable store leaves
        the drift metrics out of that scrape (the rest still answers).
        """
        self.registry.register(_DriftCollector(latest, cache_s))

    def watch_traffic(self, pending: Callable[[], float]) -> None:
        """Read the traffic writer's backlog at scrape time."""
        self.traffic_pending.set_function(pending)

    def set_model(self, model: str, version: str | None, quantization: str) -> None:
        """Label ``compactlm_model_info`` with the served model (the previous labels are dropped)."""
        self.model_info.clear()
        self.model_info.labels(model=model, version=version or "", quantization=quantization).set(1)

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (the ``GET /metrics`` body)."""
        return generate_latest(self.registry)


logger = logging.getLogger("compactlm.serving")


class _DriftCollector(Collector):
    """The drift gauges, read from the traffic store's newest monitor run (cached ``cache_s`` seconds)."""

    def __init__(self, latest: Callable[[], list[dict]], cache_s: float):
        self.latest, self.cache_s = latest, cache_s
        self._rows: list[dict] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def describe(self):
        return []  # nothing is read at registration: the store is only asked at scrape time

    def _current(self) -> list[dict]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.cache_s:
                try:
                    self._rows = self.latest()
                except Exception as exc:  # a scrape must not fail because the store is down
                    logger.warning("drift metrics not read", extra={"event": "drift_metrics_failed",
                                                                    "error": f"{type(exc).__name__}"})
                    self._rows = []
                self._read_at = time.monotonic()
            return self._rows

    def collect(self):
        rows = self._current()
        labels = ["check", "version"]
        statistic = GaugeMetricFamily("compactlm_drift_statistic", "The newest monitor run's drift statistic, by "
                                      "check (NaN: not computed).", labels=labels)
        threshold = GaugeMetricFamily("compactlm_drift_threshold", "The threshold each drift check applied (for the "
                                      "Jensen-Shannon checks at least their no-drift 99th percentile).", labels=labels)
        detected = GaugeMetricFamily("compactlm_drift_detected", "1 when the check drifted in the newest monitor run.",
                                     labels=labels)
        checked = GaugeMetricFamily("compactlm_drift_checked_timestamp_seconds",
                                    "When the newest monitor run ended (Unix time).")
        for row in rows:
            values = [row["check"], row["model_version"] or ""]
            statistic.add_metric(values, float("nan") if row["statistic"] is None else row["statistic"])
            threshold.add_metric(values, row["threshold"])
            detected.add_metric(values, 1.0 if row["drifted"] else 0.0)
        if rows:
            checked.add_metric([], rows[0]["created_at"].timestamp())
        yield from (statistic, threshold, detected, checked)
