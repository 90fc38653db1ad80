"""Evaluation tasks: score the candidate, re-score the champion on the same split, decide the gate."""

from __future__ import annotations

from prefect import task

from compactlm.config import EvalConfig, GateConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation.gate import GateReport, run_gate
from compactlm.evaluation.metrics import EvalResult, evaluate_model
from tasks.common import IO_RETRIES, mlflow_run, publish_report


def _examples_markdown(title: str, result: EvalResult) -> str:
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result.metrics.items()]
    lines += ["", f"Perplexity over {result.n_rows} test rows; generation metrics over {result.n_generated}.", "",
              "| instruction | reference | generated |", "|---|---|---|"]
    for ex in result.examples:
        cells = [ex[k].replace("|", "\\|").replace("\n", " ")[:200] for k in ("instruction", "reference", "generated")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@task(name="evaluate-candidate")
def evaluate_candidate(model_dir: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                       run_id: str) -> EvalResult:
    """Perplexity, ROUGE-L and BLEU of the fine-tuned model on the frozen test split."""
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = evaluate_model(model, tokenizer, read_split(version.path, "test"), config, max_length)
    with mlflow_run(run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items()})
    publish_report(run_id, "evaluation", _examples_markdown("Candidate evaluation (test split)", result),
                   result.to_dict(), "Candidate metrics on the frozen test split")
    return result


@task(name="rescore-champion", **IO_RETRIES)
def rescore_champion(model_uri: str, version: DatasetVersion, config: EvalConfig, max_length: int,
                     run_id: str) -> EvalResult:
    """Load the champion through MLflow and score it now on the same test split as the candidate."""
    import mlflow

    from compactlm.registry.model import load_chat_model

    model, tokenizer = load_chat_model(model_uri)
    result = evaluate_model(model, tokenizer, read_split(version.path, "test"), config, max_length)
    with mlflow_run(run_id):
        mlflow.log_metrics({f"champion_{k}": v for k, v in result.metrics.items()})
    publish_report(run_id, "champion-rescore", _examples_markdown(f"Champion {model_uri} re-scored", result),
                   result.to_dict(), "The champion re-scored on this run's test split")
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
