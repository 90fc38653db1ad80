"""Served traffic and feedback, stored in a real database through SQLAlchemy (no Prefect, no torch).

* ``schema`` — the tables: ``served_request`` (one row per completed completion or chat request) and
  ``feedback`` (ratings, corrected answers and reasons, linked by request id).
* ``store`` — ``TrafficStore``: open (schema created), write, look up and query; URLs resolved from
  ``serve.traffic_db`` / ``COMPACTLM_TRAFFIC_DB`` and logged with the password masked.
* ``writer`` — ``TrafficWriter``: a bounded queue drained by a background thread in batches, so a slow
  database never slows a request or the decoder (overflow is counted, never waited for).
* ``export`` — corrected answers as instruction/response rows with their provenance
  (``compactlm feedback export`` and the ``feedback:`` data source).

SQLite file by default (``<COMPACTLM_HOME>/traffic.db``), PostgreSQL (or any SQLAlchemy URL) by URL.
"""

from compactlm.serving.traffic.store import (
    FeedbackRecord,
    RequestRecord,
    TrafficStore,
    TrafficStoreError,
    masked_url,
    resolve_traffic_url,
)
from compactlm.serving.traffic.writer import TrafficWriter

__all__ = ["FeedbackRecord", "RequestRecord", "TrafficStore", "TrafficStoreError", "TrafficWriter", "masked_url",
           "resolve_traffic_url"]
