"""Distillation: a student at 10 % of the teacher's parameters against the teacher; the last line is JSON.

    COMPACTLM_HOME=<home of the SmolLM2 run> python benchmarks/distill_bench.py \\
        [--teacher models:/compactlm-smollm2-support@champion] [--preset decoder-distil] [--epochs 4]

The design goal of CompactLM is "about 80 % of the performance of a larger model with 10 % of its
parameters". This measures it on the support data: the teacher (default: the champion of the SmolLM2
run, ``configs/smollm2-support.yaml``) is read once over the training pairs in its own chat template and
its top-k next-token distribution at every response token is cached
(``compactlm.training.distill_supervised.teacher_targets``); a decoder preset that shares the teacher's
tokenizer is trained from scratch against those targets (``alpha * T^2 * KL_k + (1 - alpha) * CE``), and
the same preset is trained again with the same data order and steps on the cross-entropy alone (the
no-teacher control). The three models are scored by ``evaluate_model`` on the same frozen test split with
the config's ``eval`` sizes (the behavioural probes are left out: they are not in the table):

* ``rouge_l`` of greedy answers and ``mcq_accuracy``: ratios student / teacher (higher is better);
* ``word_perplexity`` of the reference answers: ratio teacher / student (higher is better; 1 = as good);
* ``parameters`` (ratio student / teacher), weight files in MB, ``generation_tokens_per_second`` of the
  batched engine, training and teacher-target seconds.

Target: every quality ratio >= 0.8 at a parameter ratio <= 0.1. The splits are the teacher's own: the
dataset version its registry entry names (``data_version`` tag) when the home holds it checked out, else
the config's data prepared again (same source, seed and split fractions: the same rows). Everything is
logged to one MLflow run (experiment ``--experiment``) of the current tracking store (the home's, or
``MLFLOW_TRACKING_URI``): parameters, metrics and the table as ``distillation.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smollm2-support.yaml"
TEACHER = "models:/compactlm-smollm2-support@champion"
TARGET_QUALITY, TARGET_PARAMS = 0.8, 0.1
ROWS = (("teacher", "teacher"), ("distilled", "distilled student"), ("control", "student, no teacher"))


def ratios(teacher: dict, student: dict) -> dict[str, float]:
    """Student against teacher, each ratio oriented so that higher is better and 1 is the teacher's level.

    Args:
        teacher, student: ``parameters``, ``rouge_l``, ``mcq_accuracy``, ``word_perplexity`` (and any more).

    Returns:
        ``params_ratio`` (student / teacher, lower is smaller), ``rouge_l_ratio`` and ``mcq_ratio``
        (student / teacher), ``word_perplexity_ratio`` (teacher / student: perplexity is lower-is-better).
    """
    def share(num: float, den: float) -> float:
        return num / den if den else float("nan")

    return {"params_ratio": share(student["parameters"], teacher["parameters"]),
            "rouge_l_ratio": share(student["rouge_l"], teacher["rouge_l"]),
            "mcq_ratio": share(student["mcq_accuracy"], teacher["mcq_accuracy"]),
            "word_perplexity_ratio": share(teacher["word_perplexity"], student["word_perplexity"])}


def verdict(ratio: dict[str, float]) -> dict[str, bool]:
    """Whether a student meets the target: every quality ratio >= 0.8 at a parameter ratio <= 0.1."""
    quality = [ratio["rouge_l_ratio"], ratio["mcq_ratio"], ratio["word_perplexity_ratio"]]
    return {"params_le_0_1": ratio["params_ratio"] <= TARGET_PARAMS,
            "quality_ge_0_8": all(q >= TARGET_QUALITY for q in quality),
            "met": ratio["params_ratio"] <= TARGET_PARAMS and all(q >= TARGET_QUALITY for q in quality)}


def _seconds(value: float | None) -> str:
    return f"{value:.0f}" if value else "—"  # the teacher is not trained here


def markdown_table(models: dict[str, dict]) -> str:
    """The comparison as a markdown table: one row per model (``teacher``, ``distilled``, ``control``)."""
    teacher = models["teacher"]
    lines = ["| model | parameters | × teacher | ROUGE-L | × teacher | MCQ accuracy | × teacher | word PPL | "
             "teacher ÷ student | gen tokens/s | train s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in ROWS:
        m = models[key]
        r = ratios(teacher, m)
        lines.append(f"| {label} | {m['parameters'] / 1e6:.1f}M | {r['params_ratio']:.3f} | {m['rouge_l']:.3f} | "
                     f"{r['rouge_l_ratio']:.2f} | {m['mcq_accuracy']:.3f} | {r['mcq_ratio']:.2f} | "
                     f"{m['word_perplexity']:.2f} | {r['word_perplexity_ratio']:.2f} | "
                     f"{m['generation_tokens_per_second']:.0f} | {_seconds(m.get('train_seconds'))} |")
    return "\n".join(lines)


def teacher_splits(teacher_ref: str, config) -> tuple[dict, str]:
    """The train/val/test splits the teacher was trained and evaluated on, and where they came from.

    Returns:
        ``({split: frame}, origin)``: origin is ``dvc:<md5>`` (the registered version's dataset, checked out
        in the home) or ``prepared`` (the config's data prepared again: same rows, seeds and fractions).
    """
    from compactlm.data.layout import DataLayout
    from compactlm.data.prepare import prepare_dataset
    from compactlm.data.versioning import current_md5, read_split
    from compactlm.state import state_paths

    md5 = None
    if teacher_ref.startswith("models:/"):
        from mlflow import MlflowClient

        name, _, rest = teacher_ref[len("models:/"):].partition("@")
        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(name, rest) if rest else \
                client.get_model_version(*name.rsplit("/", 1))
            md5 = version.tags.get("data_version")
        except Exception:  # noqa: BLE001 - a URI resolve_model_ref accepted; no tag just means "prepare again"
            md5 = None
    root = DataLayout.for_home(state_paths().home).repo
    name = config.data.dataset_name
    if md5 and root.is_dir() and current_md5(root, name) == md5:
        folder = DataLayout(root).dataset_dir(name)
        return {s: read_split(folder, s) for s in ("train", "val", "test")}, f"dvc:{md5}"
    return dict(prepare_dataset(config.data, config.bias).splits), "prepared"


def _evaluate(model, tokenizer, test, eval_cfg, max_length, folder: Path, task: str) -> dict:
    from compactlm.evaluation.runner import evaluate_model

    result = evaluate_model(model, tokenizer, test, eval_cfg, max_length, folder, task=task)
    keep = ("rouge_l", "mcq_accuracy", "word_perplexity", "perplexity", "generation_tokens_per_second",
            "latency_ms_per_answer", "exact_match")
    return {k: float(result.metrics[k]) for k in keep if k in result.metrics} | {"eval_seconds": result.seconds}


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=TEACHER, help="a model folder, models:/ URI or GGUF file")
    parser.add_argument("--config", default=str(CONFIG), help="data, model.max_seq_len and eval sizes")
    parser.add_argument("--preset", default="decoder-distil", help="the student's decoder preset")
    parser.add_argument("--epochs", type=float, default=4.0, help="passes over the training pairs (each student)")
    parser.add_argument("--train-rows", type=int, default=0, help="first N training rows only (0: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the soft (KL) term")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=32, help="teacher tokens cached per response position")
    parser.add_argument("--experiment", default="compactlm-distillation", help="MLflow experiment")
    parser.add_argument("--output-dir", default=None, help="keep the students here (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="config override, e.g. eval.mcq_max_questions=8 for a smoke run")
    args = parser.parse_args()

    import mlflow
    import torch

    from compactlm.config import load_run_config
    from compactlm.evaluation.metrics import model_size_mb
    from compactlm.models.loading import load_base, resolve_model_ref
    from compactlm.registry.store import setup_tracking
    from compactlm.state import configure_environment
    from compactlm.training.distill_supervised import distill_supervised, teacher_targets

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = configure_environment()
    experiment = setup_tracking(paths, args.experiment)
    config = load_run_config(args.config, args.set)
    max_length, task = config.model.max_seq_len, config.data.task
    eval_cfg = dataclasses.replace(config.eval, counterfactual_samples=0, robustness_samples=0, safety_samples=0)
    train_cfg = dataclasses.replace(config.train, epochs=args.epochs, max_steps=-1, batch_size=args.batch_size,
                                    learning_rate=args.learning_rate, lr_scheduler="cosine", warmup_ratio=0.05,
                                    device="cpu", system_metrics_interval=0, logging_steps=10)
    start = time.perf_counter()
    teacher_dir = resolve_model_ref(args.teacher, "--teacher")
    teacher, tokenizer = load_base(teacher_dir, "causal", max_seq_len=max_length, field="--teacher",
                                   dtype=torch.float32)
    splits, origin = teacher_splits(args.teacher, config)
    train = splits["train"].head(args.train_rows) if args.train_rows else splits["train"]
    work = Path(args.output_dir or tempfile.mkdtemp(prefix="distill-bench-"))
    models: dict[str, dict] = {}
    with mlflow.start_run(experiment_id=experiment, run_name=f"distill-{args.preset}") as run:
        mlflow.log_params({"teacher": args.teacher, "teacher_dir": teacher_dir, "preset": args.preset,
                           "epochs": args.epochs, "train_rows": len(train), "batch_size": args.batch_size,
                           "learning_rate": args.learning_rate, "alpha": args.alpha, "temperature": args.temperature,
                           "top_k": args.top_k, "data": origin, "test_rows": len(splits["test"]),
                           "max_seq_len": max_length, "eval_generate_samples": eval_cfg.max_generate_samples,
                           "eval_max_new_tokens": eval_cfg.max_new_tokens,
                           "eval_mcq_questions": eval_cfg.mcq_max_questions, "threads": torch.get_num_threads()})
        print(f"teacher {args.teacher} ({teacher_dir}); data {origin}: {len(train)} train / "
              f"{len(splits['test'])} test rows", file=sys.stderr)
        models["teacher"] = _evaluate(teacher, tokenizer, splits["test"], eval_cfg, max_length, work / "teacher", task)
        models["teacher"] |= {"parameters": sum(p.numel() for p in teacher.parameters()),
                              "size_mb": model_size_mb(teacher_dir), "train_seconds": 0.0}
        targets = teacher_targets(teacher, tokenizer, train, max_length, args.top_k, args.temperature)
        print(f"teacher targets: {targets.positions} positions in {targets.seconds:.0f} s "
              f"({1000 * targets.seconds / targets.tokens:.1f} ms/token)", file=sys.stderr)
        del teacher
        for key, source, alpha in (("distilled", targets, args.alpha), ("control", train, 0.0)):
            summary = distill_supervised(source, tokenizer, work / key, args.preset, train_cfg, max_length,
                                         alpha=alpha, temperature=args.temperature, val=splits["val"],
                                         run_name=key)
            student, _ = load_base(str(work / key), "causal", max_seq_len=max_length, dtype=torch.float32)
            models[key] = _evaluate(student, tokenizer, splits["test"], eval_cfg, max_length, work / f"{key}-eval",
                                    task)
            models[key] |= {"parameters": summary.parameters, "size_mb": model_size_mb(work / key),
                            "train_seconds": summary.seconds, "train_loss": summary.train_loss,
                            "val_ce": summary.eval_loss or float("nan"), "steps": summary.steps}
            print(f"{key}: {summary.steps} steps in {summary.seconds:.0f} s, val CE {summary.eval_loss}",
                  file=sys.stderr)
        table = markdown_table(models)
        result: dict = {"benchmark": "distill", "teacher_ref": args.teacher, "preset": args.preset, "data": origin,
                        "temperature": args.temperature, "alpha": args.alpha, "top_k": args.top_k,
                        "epochs": args.epochs, "train_rows": len(train),
                        "teacher_target_seconds": round(targets.seconds, 1),
                        "teacher_target_positions": targets.positions,
                        "teacher_tail_mass_mean": round(sum(math.exp(t) for row in targets.tail for t in row)
                                                        / max(targets.positions, 1), 4)}
        for key, _ in ROWS:
            result[key] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in models[key].items()}
            for metric, value in models[key].items():
                if isinstance(value, (int, float)):
                    mlflow.log_metric(f"{key}_{metric}", float(value))
        for key in ("distilled", "control"):
            ratio = ratios(models["teacher"], models[key])
            result[f"{key}_ratios"] = {k: round(v, 4) for k, v in ratio.items()}
            result[f"{key}_target"] = verdict(ratio)
            mlflow.log_metrics({f"{key}_{k}": v for k, v in ratio.items()})
        result["target_met"] = result["distilled_target"]["met"]
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        result["mlflow_run_id"] = run.info.run_id
        mlflow.log_metric("teacher_target_seconds", targets.seconds)
        mlflow.log_metric("total_seconds", result["total_seconds"])
        note = ("Ratios: ROUGE-L and MCQ student / teacher; word perplexity teacher / student (higher is better "
                f"for every ratio). Target: quality ratios >= {TARGET_QUALITY} at <= {TARGET_PARAMS} of the "
                f"parameters: {'met' if result['target_met'] else 'not met'} by the distilled student.")
        mlflow.log_text(f"# Distillation\n\n{table}\n\n{note}\n", "distillation.md")
        mlflow.log_dict(result, "distillation.json")
    print(table)
    print(note)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
