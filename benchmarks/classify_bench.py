"""Classification on real intent data: the shipped pipeline config against the TF-IDF baseline, one run.

    python benchmarks/classify_bench.py [--data ../shared/data/clinc150] [--config configs/classification.yaml]

Runs the documented command (``compactlm pipeline run --config configs/classification.yaml``) on CLINC150
(Larson et al. 2019, "An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction",
CC BY 3.0: 150 intents plus out-of-scope queries, its own train/val/test split kept through
``data.split_column``, the ``oos`` rows abstained to through ``classifier.oos_label``). The pipeline
trains the TF-IDF + linear SVM baseline on the same split in the same run; both are scored on the same
test split. Prints a table and ends with one JSON line: in-scope accuracy, macro-F1, out-of-scope recall
and precision, parameters and train seconds for both, whether the candidate beats the baseline and stays
within 11M parameters, and the pipeline's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMETERS = 11_000_000


def _write_source(data: Path, out: Path) -> dict[str, int]:
    """CLINC150's three files as one CSV with a ``split`` column; returns the rows per split."""
    frames = [pd.read_csv(data / f"{split}.csv").assign(split=split) for split in ("train", "val", "test")]
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(out, index=False)
    return {split: int((frame["split"] == split).sum()) for split in ("train", "val", "test")}


def _stage_metrics(summary: dict) -> dict[str, float]:
    """The classifier stage's train seconds and parameters, from its nested MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    stage = next(c for c in children if c.info.run_name == "finetune-classifier")
    return {"train_seconds": stage.data.metrics["train_seconds"],
            "trainable_parameters": stage.data.metrics["trainable_parameters"]}


def _parameters(model_dir: Path) -> int:
    """Parameters in the saved model's safetensors files (read from the headers, no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), framework="np") as handle:
            for name in handle.keys():
                total += int(pd.Series(handle.get_slice(name).get_shape()).prod())
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "clinc150")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "classification.yaml")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    args = parser.parse_args(argv)
    if not (args.data / "train.csv").is_file():
        print(f"error: no CLINC150 files in {args.data} (train.csv, val.csv, test.csv)", file=sys.stderr)
        return 2
    home = args.home or Path(tempfile.mkdtemp(prefix="classify-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    source = home / "clinc150.csv"
    rows = _write_source(args.data, source)
    command = [sys.executable, "-m", "compactlm.cli", "pipeline", "run", "--config", str(args.config),
               "--source", str(source), "--auto-approve",
               "--set", "data.split_column=split", "--set", "classifier.oos_label=oos",
               "--set", "data.dataset_name=clinc150", "--set", "registry.model_name=clinc150-intents",
               *[arg for item in args.overrides for arg in ("--set", item)]]
    env = {**os.environ, "COMPACTLM_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"error: the pipeline failed (exit {done.returncode}); see the output above", file=sys.stderr)
        return done.returncode
    summary = json.loads((home / "last_run.json").read_text())
    candidate, baseline = summary["metrics"], summary["baseline"]["metrics"]
    stage = _stage_metrics(summary)
    merged = home / "runs" / summary["mlflow_run_id"] / "finetuned" / "merged"
    parameters = _parameters(merged)
    keys = ("accuracy", "macro_f1", "oos_recall", "oos_precision")
    result = {
        "dataset": "clinc150", "rows": rows, "config": str(args.config.relative_to(REPO)),
        "candidate": {**{k: candidate.get(k) for k in keys}, "parameters": parameters,
                      "train_seconds": round(stage["train_seconds"], 1)},
        "baseline": {**{k: baseline.get(k) for k in keys}, "parameters": int(baseline["parameters"]),
                     "train_seconds": round(baseline["train_seconds"], 1)},
        "beats_baseline": candidate["accuracy"] > baseline["accuracy"],
        "within_11m_parameters": parameters <= MAX_PARAMETERS,
        "gate": summary["gate"]["verdict"], "version": summary["version"],
        "pipeline_seconds": round(seconds, 1), "cpu_count": os.cpu_count(),
    }
    print("\n| model | in-scope accuracy | macro-F1 | OOS recall | OOS precision | parameters | train s |")
    print("|---|---|---|---|---|---|---|")
    for name in ("candidate", "baseline"):
        row = result[name]
        cells = [f"{row[k]:.4f}" if row.get(k) is not None else "—" for k in keys]
        print(f"| {name} | {' | '.join(cells)} | {row['parameters']:,} | {row['train_seconds']} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
