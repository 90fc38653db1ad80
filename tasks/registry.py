"""Tracking and registry tasks: the flow's MLflow run, lineage, registration, approval and promotion."""

from __future__ import annotations

import json
import warnings
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from compactlm.config import PipelineConfig
from compactlm.data.schemas import SCHEMAS
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation.gate import GateReport
from compactlm.evaluation.runner import EvalResult
from compactlm.fileio import atomic_write_text
from compactlm.quality.bias import BiasReport
from compactlm.quality.expectations import ValidationReport
from compactlm.registry import registry, review
from compactlm.registry.model_card import build_model_card
from compactlm.registry.pyfunc import log_chat_model, write_task_file
from compactlm.registry.smoke import SmokeResult, smoke_test
from compactlm.state import state_paths
from compactlm.training.trainer import TrainSummary
from tasks.common import IO_RETRIES, mlflow_run, publish_report


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

    with mlflow_run(run_id):
        mlflow.set_tags({"data_version": version.md5, "data_remote": version.remote, "dataset": version.name})
        _log_splits(version)


@task(name="champion-lookup", **IO_RETRIES)
def find_champion(model_name: str) -> str | None:
    """The registry version currently aliased ``champion``, if any."""
    return registry.alias_version(model_name, registry.CHAMPION)


@task(name="register", **IO_RETRIES)
def register_candidate(model_dir: str, config: PipelineConfig, version: DatasetVersion, quality: ValidationReport,
                       bias: BiasReport, gate: GateReport, candidate: EvalResult, training: dict[str, TrainSummary],
                       run_id: str, flow_run_id: str) -> str:
    """Log the model (pyfunc flavor) with its data lineage, register it with lineage tags and a model card.

    No alias moves here: ``challenger`` is set only after the smoke test passes.
    """
    import mlflow

    model_name = config.registry.model_name
    tags = registry.lineage_tags(data_version=version.md5, data_remote=version.remote,
                                 config_hash=config.config_hash(), quality=quality, bias=bias, gate=gate,
                                 metrics=candidate.metrics,
                                 extra={"prefect_flow_run_id": flow_run_id, "mlflow_run_id": run_id})
    schema = SCHEMAS[config.data.task]
    write_task_file(model_dir, config.data.task, schema.prompt if config.data.task == "summarization" else None)
    with mlflow_run(run_id):
        info = log_chat_model(model_dir)
        _log_splits(version, info.model_id)
    registered = registry.register_version(info.model_uri, model_name, tags, description=gate.to_markdown())
    card = build_model_card(
        model_name=model_name, version=registered, config=config,
        data={"dataset": version.name, "DVC version": version.md5, "remote": version.remote,
              **{f"{split} rows": len(read_split(version.path, split)) for split in ("train", "val", "test")}},
        training={stage: summary.to_dict() for stage, summary in training.items()},
        metrics=candidate.metrics, dataset_bias=bias.to_dict(), gate_markdown=gate.to_markdown(), lineage=tags)
    with mlflow_run(run_id):
        mlflow.log_text(card, "model_card.md")
    registry.tag_version(model_name, registered, {"model_card": f"runs:/{run_id}/model_card.md"})
    create_markdown_artifact(key="model-card", description=f"Model card of {model_name} v{registered}", markdown=card)
    return registered


def _log_splits(version: DatasetVersion, model_id: str | None = None) -> None:
    """Log each DVC-versioned split as an MLflow dataset input of the active run, linked to the logged model
    ``model_id`` when given (MLflow 3 model inputs: lineage on the registered version)."""
    import mlflow
    from mlflow.entities import LoggedModelInput

    with warnings.catch_warnings():
        # MLflow guesses a source type from the URI and warns about integer columns; neither matters here.
        warnings.simplefilter("ignore", UserWarning)
        for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
            dataset = mlflow.data.from_pandas(read_split(version.path, split),
                                              source=f"{version.remote}#{version.md5}",
                                              name=f"{version.name}-{split}", digest=version.md5[:36])
            mlflow.log_input(dataset, context=context,
                             model=LoggedModelInput(model_id=model_id) if model_id else None)


@task(name="smoke-test", **IO_RETRIES)
def smoke_test_version(model_name: str, version: str, tracking_uri: str, run_id: str) -> SmokeResult:
    """Load the registered version through MLflow in a fresh process and ask it a question; tag the result."""
    uri = f"models:/{model_name}/{version}"
    result = smoke_test(uri, tracking_uri)
    registry.tag_version(model_name, version, {"smoke_test": "passed" if result.passed else "failed",
                                               "smoke_test.seconds": f"{result.seconds:.1f}"})
    publish_report(run_id, "smoke-test", result.to_markdown(uri), result.to_dict(),
                   f"Smoke test {'passed' if result.passed else 'FAILED'}")
    return result


@task(name="mark-challenger", **IO_RETRIES)
def mark_challenger(model_name: str, version: str) -> None:
    """Alias a version that passed gate and smoke test ``challenger`` and open its review."""
    registry.set_alias(model_name, registry.CHALLENGER, version)
    review.request_review(model_name, version)


@task(name="apply-decision", **IO_RETRIES)
def apply_decision(model_name: str, version: str, approved: bool, reviewer: str, comment: str,
                   source: str) -> dict[str, object]:
    """Record the reviewer's decision on the version; ``champion`` moves only for an approved, promotable version."""
    decision = review.apply_decision(model_name, version, approved, reviewer, comment, source)
    verdict = {"approved": f"approved by {reviewer}; `champion` moved to v{version}",
               "rejected": f"rejected by {reviewer}; `champion` unchanged",
               "refused": f"approved by {reviewer} but refused: {comment}"}[decision.status]
    create_markdown_artifact(key="review-decision", description=verdict,
                             markdown=f"# Review of `{model_name}` v{version}\n\n{verdict}.\n\n"
                                      f"> {comment or '(no comment)'}\n\nSource: {source}.")
    return decision.to_dict()


@task(name="honour-mlflow-decision", **IO_RETRIES)
def honour_mlflow_decision(model_name: str, version: str) -> dict[str, object] | None:
    """Apply a decision a reviewer set as a tag in the MLflow UI (None when there is none)."""
    decision = review.honour_tag_decision(model_name, version)
    return decision.to_dict() if decision else None


@task(name="sweep-reviews", **IO_RETRIES)
def sweep_reviews(model_name: str, timeout_s: int) -> list[dict[str, object]]:
    """Apply MLflow-tag decisions and reject reviews that waited longer than the timeout."""
    decisions = [d.to_dict() for d in review.sweep(model_name, timeout_s)]
    if decisions:
        rows = "\n".join(f"| {d['version']} | {d['status']} | {d['reviewer']} | {d['source']} |" for d in decisions)
        create_markdown_artifact(key="review-sweep", description=f"{len(decisions)} decision(s) applied",
                                 markdown="| version | status | reviewer | source |\n|---|---|---|---|\n" + rows)
    return decisions


@task(name="trigger-review", **IO_RETRIES)
def trigger_review_deployment(deployment: str, model_name: str, version: str, timeout_s: int) -> str | None:
    """Start the review deployment for a version without waiting; None when the deployment does not exist."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        # Not a subflow: a subflow cannot suspend, and the review must outlive this run.
        run = run_deployment(deployment, timeout=0, as_subflow=False, parameters={
            "model_name": model_name, "version": version, "approval": "suspend", "timeout_s": timeout_s})
    except ObjectNotFound:
        return None
    return str(run.id)


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
        "gate": gate.to_dict(),
        "review": review,
        "data_version": data_version,
        "mlflow_run_id": run_id,
        "tracking_uri": paths.tracking_uri(),
        "config_hash": config.config_hash(),
        "summary_path": str(paths.last_run),
    }
    text = json.dumps(summary, indent=2, default=str)
    atomic_write_text(paths.last_run, text)
    with mlflow_run(run_id):
        mlflow.log_text(text, "reports/summary.json")
    return summary
