"""One monitor run: find the serving version, read its training prompts and the served window, compare them.

The serving version is ``models:/<registry.model_name>@<monitor.model_alias>``; its lineage tags
(``data_name``, ``data_version``, set at registration) name the DVC version it trained on, whose train
split (augmented rows excluded) is the reference. The served window comes from the traffic store the
service writes (``monitor.traffic_db``, the same values as ``serve.traffic_db``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compactlm.config import PipelineConfig
from compactlm.errors import CompactLMError
from compactlm.fileio import atomic_open
from compactlm.monitoring.drift import DriftReport, compare_traffic
from compactlm.shapes import get_shape
from compactlm.state import StatePaths


class MonitorError(CompactLMError):
    """Nothing can be monitored: no serving version, no lineage on it, or the traffic store is off."""


@dataclass(frozen=True)
class ServingVersion:
    """The registered version behind the monitored alias, and the dataset version it trained on."""

    model_name: str
    version: str
    alias: str
    data_name: str | None
    data_version: str
    registered_at: datetime  # UTC


def serving_version(model_name: str, alias: str) -> ServingVersion:
    """The version ``alias`` points at, with its training-data lineage.

    Raises:
        MonitorError: the model or the alias does not exist, or the version has no ``data_version`` tag.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        found = MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        raise MonitorError(f"registered model '{model_name}' has no alias '{alias}': no served version to monitor "
                           "(check registry.model_name and monitor.model_alias, or promote a version first)") from None
    tags = dict(found.tags or {})
    if not tags.get("data_version"):
        raise MonitorError(f"{model_name} version {found.version} has no data_version tag: its training data is "
                           "unknown, so drift cannot be measured")
    return ServingVersion(model_name, str(found.version), alias, tags.get("data_name"), tags["data_version"],
                          datetime.fromtimestamp(found.creation_timestamp / 1000, tz=UTC))


def reference_prompts(paths: StatePaths, config: PipelineConfig, serving: ServingVersion,
                      seed: int = 0) -> tuple[list[str], list[str] | None]:
    """The serving version's training prompts (and labels), at most ``monitor.max_reference_rows``.

    Returns:
        ``(texts, labels)``: the task's first text column (``instruction``, ``text``, ``document``) of
        the train split without augmented rows, a seeded sample when larger; the label column's values
        (``intent``, ``label``...) or None when the task has none.

    Raises:
        DataError: the version or its train split cannot be read (see ``read_version_split``).
    """
    from compactlm.data.versioning import read_version_split

    frame = read_version_split(paths.data_repo, serving.data_name or config.data.dataset_name, serving.data_version,
                               "train", paths.dvc_remote(config.data.dvc_remote))
    if "augmented" in frame.columns:
        frame = frame[~frame["augmented"].fillna(False).astype(bool)]
    if len(frame) > config.monitor.max_reference_rows:
        frame = frame.sample(n=config.monitor.max_reference_rows, random_state=seed)
    schema = get_shape(config.data.task).schema
    text_column = next((c for c in schema.text_columns if c in frame.columns), None)
    if text_column is None:
        raise MonitorError(f"the training data of {serving.model_name} v{serving.version} has none of the prompt "
                           f"columns {', '.join(schema.text_columns)} (is data.task={config.data.task} right?)")
    labels = None
    if schema.label and schema.label in frame.columns:
        labels = frame[schema.label].astype(str).tolist()
    return frame[text_column].astype(str).tolist(), labels


def traffic_store_url(paths: StatePaths, config: PipelineConfig) -> str:
    """The traffic store's URL (``COMPACTLM_TRAFFIC_DB`` wins over ``monitor.traffic_db``).

    Raises:
        MonitorError: the store is turned off.
    """
    from compactlm.serving.traffic.store import resolve_traffic_url

    url = resolve_traffic_url(config.monitor.traffic_db, paths.traffic_db)
    if url is None:
        raise MonitorError("monitor.traffic_db is off: there is no served traffic to monitor "
                           "(use the service's serve.traffic_db)")
    return url


def monitor_traffic(paths: StatePaths, config: PipelineConfig, now: datetime | None = None,
                    run_id: str | None = None) -> DriftReport:
    """Compare the last ``monitor.window_hours`` of served traffic with the serving version's training data.

    The report's checks are also stored in the traffic store (``monitor_check``), where the service's
    ``GET /metrics`` reads the latest ones.

    Args:
        paths: the state home; config: the pipeline config (``registry.model_name``, ``data``, ``monitor``).
        now: the window's end (default: now, UTC).
        run_id: the id recorded with the stored checks (default: a timestamp).

    Raises:
        MonitorError: no serving version or no traffic store; DataError: the training data is unreadable;
        TrafficStoreError: the store is unreachable.
    """
    from compactlm.serving.traffic.store import TrafficStore

    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(hours=config.monitor.window_hours)
    serving = serving_version(config.registry.model_name, config.monitor.model_alias)
    store = TrafficStore.open(traffic_store_url(paths, config))
    try:
        n_served, prompts = store.served_window(start, end, serving.model_name, serving.version)
        texts, labels = reference_prompts(paths, config, serving)
        window_feedback = store.feedback_counts(start, end, serving.version)
        corrected = store.feedback_counts(serving.registered_at, None)["corrected"]
        report = compare_traffic(texts, labels, prompts, n_served=n_served, feedback_up=window_feedback["up"],
                                 feedback_down=window_feedback["down"], corrected_answers=corrected,
                                 config=config.monitor, model_name=serving.model_name,
                                 model_version=serving.version, data_version=serving.data_version,
                                 window=(start, end))
        store.write_monitor_checks([
            {"run_id": run_id or end.strftime("%Y%m%dT%H%M%S"), "created_at": end, "model_name": serving.model_name,
             "model_version": serving.version, "check": c.name, "statistic": c.statistic,
             "threshold": c.applied_threshold,
             "drifted": c.drifted} for c in report.checks])
    finally:
        store.close()
    return report


def retrain_request_file(home: str | Path, model_name: str) -> Path:
    """Where the monitor remembers its last retrain request for ``model_name`` (``<home>/monitor/``)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in model_name)
    return Path(home) / "monitor" / f"retrain-{safe}.json"


def recent_retrain_request(path: str | Path, model_version: str | None, cooldown_hours: float,
                           now: datetime | None = None) -> dict | None:
    """The last retrain request for this serving version if it is younger than ``cooldown_hours``, else None.

    A drifted version stays drifted until a retrained one is promoted (after its review): without a
    cool-down every monitor run would start another retrain of the same data.
    """
    try:
        last = json.loads(Path(path).read_text(encoding="utf-8"))
        at = datetime.fromisoformat(last["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if last.get("model_version") == str(model_version) and now - at < timedelta(hours=cooldown_hours):
        return last
    return None


def record_retrain_request(path: str | Path, model_version: str | None, event_id: str | None,
                           reasons: list[str], now: datetime | None = None) -> None:
    """Remember a retrain request (written to a temporary file, then renamed)."""
    with atomic_open(path) as out:
        json.dump({"model_version": str(model_version), "event_id": event_id, "reasons": reasons,
                   "at": (now or datetime.now(UTC)).astimezone(UTC).isoformat()}, out)
