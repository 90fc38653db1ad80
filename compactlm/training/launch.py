"""The training entry point for one process or many (torchrun / accelerate launch, DDP).

    python -m compactlm.training.launch --config configs/ci.yaml --data DATA_DIR --output OUT_DIR
    torchrun --nproc_per_node 2 -m compactlm.training.launch --config configs/ci.yaml --data DATA_DIR --output OUT

``DATA_DIR`` holds ``train.parquet`` and ``val.parquet`` (a dataset version folder). The stages follow
``data.task`` (see ``compactlm.training.stages``). Under torchrun every process runs this same code:
the HF Trainer wraps the model in DDP (NCCL on GPUs, gloo on CPUs), ``train.batch_size`` is per
process, and only the main process saves models, writes ``--summary`` and logs to MLflow. With
``--mlflow`` the run named by ``MLFLOW_RUN_ID`` receives step and system metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from compactlm.errors import CompactLMError
from compactlm.state import set_offline_defaults


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m compactlm.training.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="a YAML config (configs/); the embedded defaults when omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    parser.add_argument("--data", required=True, help="folder with train.parquet and val.parquet")
    parser.add_argument("--output", required=True, help="stage outputs: OUTPUT/base, OUTPUT/finetuned")
    parser.add_argument("--base", help="a base model already trained: skip the base stage")
    parser.add_argument("--base-only", action="store_true", help="run only the base stage (shared by sweep trials)")
    parser.add_argument("--summary", help="write {stage: summary} as JSON here (main process only)")
    parser.add_argument("--mlflow", action="store_true", help="log to the MLflow run MLFLOW_RUN_ID")
    return parser.parse_args(argv)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: list[str] | None = None) -> int:
    """Run the configured stages; 0 on success, 2 on a user error (one line on stderr)."""
    args = _parse(argv)
    set_offline_defaults()
    try:
        # Imported after the offline defaults: transformers and datasets read them at import time.
        from compactlm.config import load_config
        from compactlm.data.versioning import read_split
        from compactlm.training.stages import run_stages

        config = load_config(args.config, args.overrides)
        train, val = read_split(args.data, "train"), read_split(args.data, "val")
        # Taken out of the environment: the HF callback would otherwise try to start that run a second time.
        run_id = os.environ.pop("MLFLOW_RUN_ID", None)
        if args.mlflow and run_id and _is_main_process():
            import mlflow

            with mlflow.start_run(run_id=run_id):
                summaries = run_stages(config, train, val, args.output, args.base, True, args.base_only)
        else:
            summaries = run_stages(config, train, val, args.output, args.base, False, args.base_only)
    except CompactLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.summary and _is_main_process():
        Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary).write_text(json.dumps({k: v.to_dict() for k, v in summaries.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
