"""Lineage of a registered version: where its code, data and config came from, and the run summary.

The tags a version carries (``lineage_tags``) let a reviewer in the MLflow UI trace it back to the git
commit, the DVC data version, the config hash and the reports that judged it; the run summary
(``write_run_summary``) is what ``compactlm pipeline run`` prints and ``<home>/last_run.json`` holds;
it names the GGUF file (path, SHA-256, quantization) a base or teacher was converted from (``gguf_sources``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from compactlm.fileio import atomic_write_text
from compactlm.registry.store import CHAMPION, alias_version, list_versions
from compactlm.state import state_paths


def git_commit(repo_dir: str | Path | None = None) -> str:
    """The checked-out commit of the code, with ``-dirty`` when it has uncommitted changes."""
    cwd = str(repo_dir or Path(__file__).resolve().parents[2])
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def lineage_tags(*, data_version: str, data_remote: str, config_hash: str, quality: Any, bias: Any, gate: Any,
                 metrics: dict[str, float], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags a registered version carries: where its data, code and config came from and how it was judged.

    ``quality``, ``bias`` and ``gate`` are the validation, bias and gate reports of the run.
    """
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    tags = {
        "data_version": data_version,
        "data_remote": data_remote,
        "git_commit": git_commit(),
        "config_hash": config_hash,
        "ge_result": quality.summary(),
        "ge_success": str(quality.success),
        "bias_audited": str(bias.audited),
        "bias_disparate_impact": fmt(bias.disparate_impact),
        "bias_statistical_parity_difference": fmt(bias.statistical_parity_difference),
        "bias_passed": str(bias.passed),
        "gate_verdict": gate.verdict,
        **{f"metric.{k}": fmt(v) for k, v in metrics.items()},
        # the champion as the gate scored it: re-scored on this run's test split (what the review must show)
        **{f"gate.champion.{k}": fmt(row["champion"]) for k, row in getattr(gate, "side_by_side", {}).items()
           if row.get("champion") is not None},
    }
    tags.update(extra or {})
    return tags


def run_summary(*, config: Any, data_version: str, metrics: dict[str, float], gate: Any, version: str | None,
                review: dict[str, Any], run_id: str, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of one retrain run: what was registered, its aliases, metrics, gate and review.

    Args:
        config: the run's ``PipelineConfig``.
        data_version: the DVC md5 of the dataset version it trained on.
        metrics: the candidate's evaluation metrics (rounded to 4 digits here).
        gate: the ``GateReport``.
        version: the registered version, or None when the gate failed.
        review: the review outcome (``request_review``'s dict).
        run_id: the flow's MLflow run.
        baseline: the run's baseline (``BaselineRun.to_dict()``: metrics and logged model), if one was trained.
    """
    name = config.registry.model_name
    aliases = next((v.aliases for v in list_versions(name) if v.version == version), []) if version else []
    paths = state_paths(config.home)
    return {
        "registered_model": name,
        "version": version,
        "aliases": aliases,
        "champion": alias_version(name, CHAMPION),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "baseline": baseline,
        "gguf_sources": gguf_sources(config),
        "gate": gate.to_dict(),
        "review": review,
        "data_version": data_version,
        "mlflow_run_id": run_id,
        "tracking_uri": paths.tracking_uri(),
        "config_hash": config.config_hash(),
        "summary_path": str(paths.last_run),
    }


def gguf_sources(config: Any) -> dict[str, dict[str, Any]]:
    """The GGUF files the run's ``model.base`` and ``distill.teacher`` were converted from, by field.

    Each value is the converted folder's ``gguf_source.json`` (``compactlm.models.gguf.provenance``):
    ``source`` file, ``sha256``, ``quantization`` (e.g. ``Q4_1``), parameter count and a note that the
    weights are dequantized. Empty when neither is a GGUF model; nothing is converted or downloaded here.
    """
    from compactlm.models.loading import gguf_provenance

    refs = {"model.base": config.model.base, "distill.teacher": getattr(config.distill, "teacher", None)}
    return {field: found for field, ref in refs.items() if (found := gguf_provenance(ref))}


def write_run_summary(summary: dict[str, Any]) -> str:
    """Write the summary atomically to its ``summary_path`` (``<home>/last_run.json``); returns the JSON text."""
    text = json.dumps(summary, indent=2, default=str)
    atomic_write_text(Path(summary["summary_path"]), text)
    return text
