"""Evaluation tasks: score the candidate, re-score the champion on the same data, decide the gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import task

from compactlm.config import ClassifierConfig, EvalConfig, GateConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation.baselines import BaselineRun, fit_and_score
from compactlm.evaluation.gate import GateReport, run_gate
from compactlm.evaluation.metrics import model_size_mb
from compactlm.evaluation.runner import EvalResult, evaluate_version
from compactlm.models.loading import detect_kind, load_base, load_model_config, load_trained, resolve_model_ref
from compactlm.registry.pyfunc import load_chat_model_with_dir
from compactlm.registry.tracking import log_baseline, log_evaluation, reopen_run
from compactlm.shapes import get_shape
from tasks.common import IO_RETRIES, publish_report


def _publish(result: EvalResult, run_id: str, name: str, title: str, metric_prefix: str) -> None:
    """Metrics and files on the MLflow run; the report and each section's report as artifacts."""
    log_evaluation(result, run_id, name, metric_prefix)
    publish_report(run_id, name, result.to_markdown(title), result.to_dict(), title)
    for section, markdown in result.reports.items():
        publish_report(run_id, f"{name}-{section}", markdown, None, f"{title}: {section}")


@task(name="evaluate-candidate")
def evaluate_candidate(model_dir: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                       run_id: str, task: str = "instruction") -> EvalResult:
    """Every metric of the trained model for its task shape (test split; MCQ and probes for chat models)."""
    model, tokenizer = load_trained(model_dir, task)
    result = evaluate_version(model, tokenizer, version, config, max_length, Path(model_dir).parent / "evaluation",
                              model_size_mb(model_dir), task)
    _publish(result, run_id, "evaluation", "Candidate evaluation", "test_")
    return result


@task(name="rescore-champion", **IO_RETRIES)
def rescore_champion(model_uri: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                     run_id: str, work_dir: str, task: str = "instruction") -> EvalResult:
    """Load the champion through MLflow and score it now on exactly the candidate's data and probes."""

    model, tokenizer, model_dir = load_chat_model_with_dir(model_uri)
    result = evaluate_version(model, tokenizer, version, config, max_length, Path(work_dir) / "champion-evaluation",
                              model_size_mb(model_dir), task)
    _publish(result, run_id, "champion-rescore", f"Champion {model_uri} re-scored", "champion_")
    return result


@task(name="score-base", **IO_RETRIES)
def score_base(base: str, version: DatasetVersion, config: EvalConfig, max_length: int, run_id: str,
               work_dir: str, task: str = "instruction") -> EvalResult:
    """Score the pretrained base zero-shot (no fine-tuning) on exactly the candidate's test split and MCQ set.

    The behavioural probes are left out: the gate compares a base on quality metrics (``beat_base``), and
    on a 135M model on a CPU the probes would double the time this costs.
    """
    source = resolve_model_ref(base)  # a registry version is downloaded (a GGUF converted) once, here
    model, tokenizer = load_base(source, detect_kind(load_model_config(source)))
    config = dataclasses.replace(config, counterfactual_samples=0, robustness_samples=0, safety_samples=0)
    result = evaluate_version(model, tokenizer, version, config, max_length, Path(work_dir) / "base-evaluation",
                              model_size_mb(source), task)
    _publish(result, run_id, "base-evaluation", f"Base {base} zero-shot", "base_")
    return result


@task(name="gate")
def decide_gate(candidate: EvalResult, champion: EvalResult | None, champion_version: str | None,
                config: GateConfig, run_id: str, baseline: BaselineRun | None = None,
                base: EvalResult | None = None, base_name: str | None = None) -> GateReport:
    """Apply the gate and publish its report (Prefect artifact + MLflow)."""
    import mlflow

    report = run_gate(candidate.metrics, config, champion.metrics if champion else None, champion_version,
                      baseline.metrics if baseline else None, baseline.description if baseline else None,
                      base.metrics if base else None, base_name)
    with reopen_run(run_id):
        mlflow.set_tag("gate_verdict", report.verdict)
    publish_report(run_id, "gate", report.to_markdown(), report.to_dict(), f"Gate verdict: {report.verdict}")
    return report


@task(name="baseline")
def score_baseline(version: DatasetVersion, task: str, run_id: str, classifier: ClassifierConfig,
                   evaluation: EvalConfig) -> BaselineRun | None:
    """Train the shape's baseline on the train split, score it on the test split, log it (None: the shape has none)."""
    name = get_shape(task).baseline
    if name is None:
        return None
    baseline, result = fit_and_score(name, read_split(version.path, "train"), read_split(version.path, "test"),
                                     read_split(version.path, "val"), classifier.oos_label,
                                     classifier.oos_max_accuracy_loss,
                                     sample=(evaluation.max_generate_samples, evaluation.seed))
    model_uri = log_baseline(baseline, result, run_id)
    title = f"Baseline: {baseline.description}"
    publish_report(run_id, "baseline", result.to_markdown(title), result.to_dict(), title)
    return BaselineRun(baseline.name, baseline.description, result.metrics, model_uri)
