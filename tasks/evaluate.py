"""Evaluation tasks: score the candidate, re-score the champion on the same data, decide the gate."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from compactlm.config import EvalConfig, GateConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation.gate import GateReport, run_gate
from compactlm.evaluation.metrics import model_size_mb
from compactlm.evaluation.runner import EvalResult, evaluate_model
from compactlm.models.loading import load_trained
from tasks.common import IO_RETRIES, mlflow_run, publish_report


def _summary_markdown(title: str, result: EvalResult) -> str:
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(result.metrics.items())]
    lines += ["", f"Perplexity over {result.n_rows} test rows; generation metrics over {result.n_generated}; "
              f"{result.seconds:.1f} s.", "", "| instruction | reference | generated |", "|---|---|---|"]
    for ex in result.examples:
        cells = [ex[k].replace("|", "\\|").replace("\n", " ")[:200] for k in ("instruction", "reference", "generated")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _score(model, tokenizer, version: DatasetVersion, config: EvalConfig, max_length: int, output_dir: Path,
           size_mb: float, task: str) -> EvalResult:
    train = read_split(version.path, "train")
    texts = [str(v) for column in ("instruction", "response", "text", "document", "summary") if column in train
             for v in train[column]]
    return evaluate_model(model, tokenizer, read_split(version.path, "test"), config, max_length, output_dir,
                          training_texts=texts, model_size_mb=size_mb, task=task)


def _publish(result: EvalResult, run_id: str, prefix: str, title: str, metric_prefix: str) -> None:
    import mlflow

    with mlflow_run(run_id):
        mlflow.log_metrics({f"{metric_prefix}{k}": v for k, v in result.metrics.items()})
        for path in result.files.values():
            mlflow.log_artifact(path, artifact_path=f"evaluation/{prefix}")
    publish_report(run_id, prefix, _summary_markdown(title, result), result.to_dict(), title)
    for name, markdown in result.reports.items():
        publish_report(run_id, f"{prefix}-{name}", markdown, None, f"{title}: {name}")


@task(name="evaluate-candidate")
def evaluate_candidate(model_dir: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                       run_id: str, task: str = "instruction") -> EvalResult:
    """Every metric of the trained model for its task shape (test split; MCQ and probes for chat models)."""
    model, tokenizer = load_trained(model_dir, task)
    result = _score(model, tokenizer, version, config, max_length, Path(model_dir).parent / "evaluation",
                    model_size_mb(model_dir), task)
    _publish(result, run_id, "evaluation", "Candidate evaluation", "test_")
    return result


@task(name="rescore-champion", **IO_RETRIES)
def rescore_champion(model_uri: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                     run_id: str, work_dir: str, task: str = "instruction") -> EvalResult:
    """Load the champion through MLflow and score it now on exactly the candidate's data and probes."""
    from compactlm.registry.pyfunc import load_chat_model_with_dir

    model, tokenizer, model_dir = load_chat_model_with_dir(model_uri)
    result = _score(model, tokenizer, version, config, max_length, Path(work_dir) / "champion-evaluation",
                    model_size_mb(model_dir), task)
    _publish(result, run_id, "champion-rescore", f"Champion {model_uri} re-scored", "champion_")
    return result


@task(name="gate")
def decide_gate(candidate: EvalResult, champion: EvalResult | None, champion_version: str | None,
                config: GateConfig, run_id: str) -> GateReport:
    """Apply the gate and publish its report (Prefect artifact + MLflow)."""
    import mlflow

    report = run_gate(candidate.metrics, config, champion.metrics if champion else None, champion_version)
    with mlflow_run(run_id):
        mlflow.set_tag("gate_verdict", report.verdict)
    publish_report(run_id, "gate", report.to_markdown(), report.to_dict(), f"Gate verdict: {report.verdict}")
    return report
