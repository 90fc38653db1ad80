"""Monitoring of served traffic: drift against the serving version's training data, and new data at the source.

* ``drift`` — the statistics (Kolmogorov-Smirnov, Jensen-Shannon, black-box label shift, nearest-neighbour
  novelty, negative-feedback rate); ``report`` — ``CheckResult`` and ``DriftReport``.
* ``monitor`` — the serving version, its training prompts and the traffic window, put together.
* ``plots`` — the report's figures (matplotlib).
* ``watch`` — new or changed files in a watched source since its last ingest.

Plain library code: the Prefect flow (``flows/monitor.py``) emits the events that start ``retrain`` and ``ingest``.
"""

from compactlm.monitoring.drift import CheckResult, DriftReport, compare_traffic
from compactlm.monitoring.monitor import MonitorError, ServingVersion, monitor_traffic, serving_version
from compactlm.monitoring.watch import SourceChanges, source_changes

__all__ = ["CheckResult", "DriftReport", "MonitorError", "ServingVersion", "SourceChanges", "compare_traffic",
           "monitor_traffic", "serving_version", "source_changes"]
