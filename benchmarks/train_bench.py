"""Training throughput: the project's training path against a plain PyTorch loop; the last line is JSON.

    python benchmarks/train_bench.py [--steps 30 --batch-size 8 --seq-len 256 --repeats 3]

Both train the same ``decoder-10m`` preset (same tokenizer, same initial weights, same packed blocks of
the bundled generator's data) for the same number of steps with the same optimizer recipe (fused
AdamW, decay on matrices only, cosine schedule with warmup, gradient clipping at 1.0), in one process:

* ``project``: ``compactlm.training.runner.fit_stage``, the HF Trainer path every stage runs
  (``pretrain_decoder`` = tokenizer + preset + packing + this), with the stage callbacks; it ends with
  one evaluation, kept to a few blocks here;
* ``plain``: a hand-written loop (DataLoader, forward, backward, clip, step, schedule);
* ``project_mlflow`` (unless ``--no-mlflow``): the project path logging step metrics every 10 steps and
  system metrics every 5 s to a throwaway MLflow run (SQLite), to show what tracking costs.

Each run records the wall time between consecutive optimizer steps (everything a step costs: data,
forward, backward, optimizer, logging). Runs alternate ``--repeats`` times; the headline uses the
median step time over every step after the first (the median ignores the seconds other jobs on a
shared machine steal), and the end-to-end time of the fastest run is reported beside it.
``ratio`` = project / plain tokens per second (target >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain_loop(model, dataset, steps: int, batch_size: int, lr: float, weight_decay: float, warmup: float,
               seed: int) -> list[float]:
    """Train ``steps`` steps with nothing but PyTorch; returns the time at the start and after each step."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    stamps = [time.perf_counter()]
    ids = torch.tensor(dataset["input_ids"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids), batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # norms (Llama has no biases)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)
    schedule = get_cosine_schedule_with_warmup(optimizer, math.ceil(warmup * steps), steps)
    model.train()
    while len(stamps) <= steps:
        for (batch,) in loader:
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            stamps.append(time.perf_counter())
            if len(stamps) > steps:
                break
    float(loss)
    return stamps


def _step_clock():
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """The time when training starts and after each optimizer step."""

        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.stamps = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

    return StepClock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="decoder-10m")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true", help="skip the runs that log to MLflow")
    args = parser.parse_args()

    import torch
    from transformers import set_seed

    from compactlm.config import TrainConfig
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.models.presets import build_decoder
    from compactlm.models.tokenizer import train_bpe_tokenizer
    from compactlm.training.encoding import corpus_texts, pack_documents
    from compactlm.training.runner import StageOptim, fit_stage

    frame = generate_support_dataset(n_rows=args.rows, seed=0)
    documents = corpus_texts(frame.iloc[:-8])
    tokenizer = train_bpe_tokenizer(documents, args.vocab_size, args.seq_len)
    train_ds = pack_documents(documents, tokenizer, args.seq_len)
    val_ds = pack_documents(corpus_texts(frame.iloc[-8:]), tokenizer, args.seq_len)  # the final evaluation: tiny
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, learning_rate=1e-3, warmup_ratio=0.1,
                      logging_steps=10, device="cpu", system_metrics_interval=5.0)
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))

    def fresh_model():
        set_seed(cfg.seed)
        return build_decoder(args.preset, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                             tokenizer.eos_token_id)

    def project(tracked: bool) -> list[float]:
        clock = _step_clock()

        def fit():
            fit_stage(fresh_model(), tokenizer, train_ds, val_ds, work / "checkpoints", StageOptim.from_train(cfg),
                      cfg, "cpu", "train-bench", tracked, extra_callbacks=[clock])

        if not tracked:
            fit()
            return clock.stamps
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        with mlflow.start_run(run_name="train-bench"):
            fit()
        return clock.stamps

    def plain() -> list[float]:
        return plain_loop(fresh_model(), train_ds, args.steps, args.batch_size, cfg.learning_rate,
                          cfg.weight_decay, cfg.warmup_ratio, cfg.seed)

    runs: dict[str, list[list[float]]] = {"project": [], "plain": [], "project_mlflow": []}
    for _ in range(args.repeats):
        runs["project"].append(project(tracked=False))
        runs["plain"].append(plain())
        if not args.no_mlflow:
            runs["project_mlflow"].append(project(tracked=True))
    tokens_per_step = args.batch_size * args.seq_len
    steady, end_to_end = {}, {}
    for name, stamp_lists in runs.items():
        if stamp_lists:
            intervals = [b - a for stamps in stamp_lists for a, b in zip(stamps[1:], stamps[2:])]  # after step 1
            steady[name] = tokens_per_step / statistics.median(intervals)
            end_to_end[name] = tokens_per_step * args.steps / min(s[-1] - s[0] for s in stamp_lists)

    print(f"\n{'path':<16}{'tokens/s (median step)':>24}{'tokens/s (best run)':>22}   run seconds")
    for name in steady:
        seconds = ", ".join(f"{s[-1] - s[0]:.1f}" for s in runs[name])
        print(f"{name:<16}{steady[name]:>24.0f}{end_to_end[name]:>22.0f}   {seconds}")
    params = sum(p.numel() for p in fresh_model().parameters())
    result = {
        "preset": args.preset, "parameters": params, "vocab": len(tokenizer), "steps": args.steps,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "repeats": args.repeats,
        "project_tokens_per_s": round(steady["project"], 1), "plain_tokens_per_s": round(steady["plain"], 1),
        "ratio": round(steady["project"] / steady["plain"], 4),
        "end_to_end_ratio": round(end_to_end["project"] / end_to_end["plain"], 4),
        **({"project_mlflow_tokens_per_s": round(steady["project_mlflow"], 1),
            "mlflow_ratio": round(steady["project_mlflow"] / steady["project"], 4)} if "project_mlflow" in steady
           else {}),
        "target_ratio": 0.95, "target_met": steady["project"] / steady["plain"] >= 0.95,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.machine(), "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
