"""Tracking and registry tasks: the flow's MLflow run, lineage, registration, approval and promotion."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from compactlm.config import PipelineConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation.gate import GateReport
from compactlm.quality.bias import BiasReport
from compactlm.quality.expectations import ValidationReport
from compactlm.registry import registry
from compactlm.registry.model import log_chat_model
from compactlm.state import state_paths
from tasks.common import IO_RETRIES, mlflow_run


@task(name="start-tracking", **IO_RETRIES)
def start_tracking(config: PipelineConfig, flow_run_id: str, flow_name: str) -> str:
    """Create the flow's MLflow run (params = the whole config) and return its id."""
    import mlflow

    paths = state_paths(config.home)
    experiment_id = registry.setup_tracking(paths, config.registry.experiment)
    flat = {f"{section}.{key}": value for section, values in config.to_dict().items() if isinstance(values, dict)
            for key, value in values.items()}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{flow_name}-{flow_run_id[:8]}") as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
        mlflow.set_tags({"prefect.flow_run_id": flow_run_id, "prefect.flow_name": flow_name,
                         "config_hash": config.config_hash(), "git_commit": registry.git_commit()})
        run_id = run.info.run_id
    tracking = paths.tracking_uri()
    if tracking.startswith("http"):
        create_link_artifact(key="mlflow-run",
                             link=f"{tracking.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
                             description="This flow run's MLflow run")
    return run_id


@task(name="end-tracking", **IO_RETRIES)
def end_tracking(run_id: str, status: str) -> None:
    """Close the flow's MLflow run as FINISHED or FAILED."""
    from mlflow import MlflowClient

    MlflowClient().set_terminated(run_id, status=status)


@task(name="log-dataset", **IO_RETRIES)
def log_dataset(version: DatasetVersion, run_id: str) -> None:
    """Record the DVC version on the run: a tag, and each split as an MLflow dataset input."""
    import mlflow

    with mlflow_run(run_id), warnings.catch_warnings():
        # MLflow guesses a source type from the URI and warns about integer columns; neither matters here.
        warnings.simplefilter("ignore", UserWarning)
        mlflow.set_tags({"data_version": version.md5, "data_remote": version.remote, "dataset": version.name})
        for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
            frame = read_split(version.path, split)
            dataset = mlflow.data.from_pandas(frame, source=f"{version.remote}#{version.md5}",
                                              name=f"{version.name}-{split}",
                                              digest=version.md5[:36])
            mlflow.log_input(dataset, context=context)


@task(name="champion-lookup", **IO_RETRIES)
def find_champion(model_name: str) -> str | None:
    """The registry version currently aliased ``champion``, if any."""
    return registry.alias_version(model_name, registry.CHAMPION)


@task(name="register", **IO_RETRIES)
def register_candidate(model_dir: str, config: PipelineConfig, version: DatasetVersion, quality: ValidationReport,
                       bias: BiasReport, gate: GateReport, metrics: dict[str, float], run_id: str,
                       flow_run_id: str) -> str:
    """Log the model (pyfunc flavor) on the run, register it with lineage tags, alias it ``challenger``."""
    model_name = config.registry.model_name
    tags = registry.lineage_tags(data_version=version.md5, data_remote=version.remote,
                                 config_hash=config.config_hash(), quality=quality, bias=bias, gate=gate,
                                 metrics=metrics, extra={"prefect_flow_run_id": flow_run_id, "mlflow_run_id": run_id})
    with mlflow_run(run_id):
        model_uri = log_chat_model(model_dir)
    registered = registry.register_version(model_uri, model_name, tags, description=gate.to_markdown())
    registry.set_alias(model_name, registry.CHALLENGER, registered)
    create_markdown_artifact(key="registered-version", description=f"{model_name} v{registered}",
                             markdown=f"# Registered `{model_name}` version {registered}\n\nAlias `challenger`.\n\n"
                             + "\n".join(f"- **{k}**: `{v}`" for k, v in tags.items()))
    return registered


@task(name="apply-decision", **IO_RETRIES)
def apply_decision(model_name: str, version: str, approved: bool, reviewer: str, comment: str) -> str | None:
    """Record the reviewer's decision on the version; move ``champion`` only when approved."""
    registry.record_decision(model_name, version, approved, reviewer, comment)
    previous = registry.promote(model_name, version) if approved else None
    verdict = (f"approved by {reviewer}; `champion` moved to v{version}" if approved
               else f"rejected by {reviewer}; `champion` unchanged")
    create_markdown_artifact(key="review-decision", description=verdict,
                             markdown=f"# Review of `{model_name}` v{version}\n\n{verdict}.\n\n"
                                      f"> {comment or '(no comment)'}")
    return previous


@task(name="summarize")
def summarize_run(config: PipelineConfig, data_version: str, metrics: dict[str, float], gate: GateReport,
                  version: str | None, review: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Build the run summary, write it atomically to ``<home>/last_run.json`` and log it to the run."""
    import mlflow

    name = config.registry.model_name
    aliases = next((v.aliases for v in registry.list_versions(name) if v.version == version), []) if version else []
    paths = state_paths(config.home)
    summary = {
        "registered_model": name,
        "version": version,
        "aliases": aliases,
        "champion": registry.alias_version(name, registry.CHAMPION),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "gate": {"verdict": gate.verdict, "champion_version": gate.champion_version, "notes": gate.notes,
                 "checks": [{"name": c.name, "metric": c.metric, "value": c.value, "baseline": c.baseline,
                             "threshold": c.threshold, "status": c.status, "passed": c.passed, "reason": c.reason}
                            for c in gate.checks]},
        "review": review,
        "data_version": data_version,
        "mlflow_run_id": run_id,
        "tracking_uri": paths.tracking_uri(),
        "config_hash": config.config_hash(),
        "summary_path": str(paths.last_run),
    }
    text = json.dumps(summary, indent=2, default=str)
    paths.home.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=paths.home, prefix=".last_run-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    Path(tmp).replace(paths.last_run)
    with mlflow_run(run_id):
        mlflow.log_text(text, "reports/summary.json")
    return summary
