"""Registry tasks: registration with lineage and a model card, smoke test, challenger, run summary."""

from __future__ import annotations

from typing import Any

import mlflow
from prefect import task
from prefect.artifacts import create_markdown_artifact

from compactlm.config import PipelineConfig
from compactlm.data.versioning import DatasetVersion
from compactlm.evaluation.baselines import BaselineRun
from compactlm.evaluation.gate import GateReport
from compactlm.evaluation.runner import EvalResult
from compactlm.quality.bias import BiasReport
from compactlm.quality.expectations import ValidationReport
from compactlm.registry import review, store
from compactlm.registry.lineage import run_summary, write_run_summary
from compactlm.registry.registration import register_candidate as register
from compactlm.registry.smoke import SmokeResult, smoke_test
from compactlm.registry.tracking import reopen_run
from compactlm.registry.uris import model_uri
from compactlm.training.runner import TrainSummary
from tasks.common import IO_RETRIES, publish_report


@task(name="champion-lookup", **IO_RETRIES)
def find_champion(model_name: str) -> str | None:
    """The registry version currently aliased ``champion``, if any."""
    return store.alias_version(model_name, store.CHAMPION)


@task(name="register", **IO_RETRIES)
def register_candidate(model_dir: str, config: PipelineConfig, version: DatasetVersion, quality: ValidationReport,
                       bias: BiasReport, gate: GateReport, candidate: EvalResult, training: dict[str, TrainSummary],
                       run_id: str, flow_run_id: str) -> str:
    """Log the model (pyfunc flavor) with its data lineage, register it with lineage tags and a model card."""
    registration = register(model_dir=model_dir, config=config, version=version, quality=quality, bias=bias,
                            gate=gate, metrics=candidate.metrics, training=training, run_id=run_id,
                            flow_run_id=flow_run_id)
    name = config.registry.model_name
    create_markdown_artifact(key="model-card", description=f"Model card of {name} v{registration.version}",
                             markdown=registration.model_card)
    return registration.version


@task(name="smoke-test", **IO_RETRIES)
def smoke_test_version(model_name: str, version: str, tracking_uri: str, run_id: str,
                       prompt: str = "Where is my order?") -> SmokeResult:
    """Load the registered version through MLflow in a fresh process, send it ``prompt``; tag the result."""
    uri = model_uri(model_name, version)
    result = smoke_test(uri, tracking_uri, prompt=prompt)
    store.tag_version(model_name, version, {"smoke_test": "passed" if result.passed else "failed",
                                            "smoke_test.seconds": f"{result.seconds:.1f}"})
    publish_report(run_id, "smoke-test", result.to_markdown(uri), result.to_dict(),
                   f"Smoke test {'passed' if result.passed else 'FAILED'}")
    return result


@task(name="mark-challenger", **IO_RETRIES)
def mark_challenger(model_name: str, version: str, timeout_s: int) -> None:
    """Alias a version that passed gate and smoke test ``challenger`` and open its review (``timeout_s`` to answer)."""
    store.set_alias(model_name, store.CHALLENGER, version)
    review.request_review(model_name, version, timeout_s)


@task(name="summarize")
def summarize_run(config: PipelineConfig, data_version: str, metrics: dict[str, float], gate: GateReport,
                  version: str | None, review: dict[str, Any], run_id: str,
                  baseline: BaselineRun | None = None) -> dict[str, Any]:
    """Build the run summary, write it atomically to ``<home>/last_run.json`` and log it to the run."""
    summary = run_summary(config=config, data_version=data_version, metrics=metrics, gate=gate, version=version,
                          review=review, run_id=run_id, baseline=baseline.to_dict() if baseline else None)
    text = write_run_summary(summary)
    with reopen_run(run_id):
        mlflow.log_text(text, "reports/summary.json")
    return summary
