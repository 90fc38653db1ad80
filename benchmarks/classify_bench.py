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
import sys
import tempfile
from pathlib import Path

import pandas as pd
from pipeline_runs import parameters_in, run_pipeline, stage_metrics

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMETERS = 11_000_000


def _write_source(data: Path, out: Path) -> dict[str, int]:
    """CLINC150's three files as one CSV with a ``split`` column; returns the rows per split."""
    frames = [pd.read_csv(data / f"{split}.csv").assign(split=split) for split in ("train", "val", "test")]
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(out, index=False)
    return {split: int((frame["split"] == split).sum()) for split in ("train", "val", "test")}


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
    overrides = ["data.split_column=split", "classifier.oos_label=oos", "data.dataset_name=clinc150",
                 "registry.model_name=clinc150-intents", *args.overrides]
    summary, seconds = run_pipeline(args.config, source, home, overrides)
    if summary is None:
        return 1
    candidate, baseline = summary["metrics"], summary["baseline"]["metrics"]
    stage = stage_metrics(summary, "finetune-classifier")
    merged = home / "runs" / summary["mlflow_run_id"] / "finetuned" / "merged"
    parameters = parameters_in(merged)
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
