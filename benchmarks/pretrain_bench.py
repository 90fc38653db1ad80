"""Pretraining through the retrain flow: the shipped config against nanoGPT's character-level CPU recipe.

    python benchmarks/pretrain_bench.py [--corpus FOLDER_OR_FILE] [--config configs/pretraining.yaml]

Both models are trained by the documented command (``compactlm pipeline run --config
configs/pretraining.yaml --source CORPUS``) on the same corpus, split the same way (the held-out tail),
and scored on the same test text in bits per character (tokenizer-independent,
``compactlm.evaluation.language_model``):

* ``reference`` — nanoGPT's CPU recipe for character-level Shakespeare (Karpathy, nanoGPT README,
  "I only have a macbook": 4 layers, 4 heads, width 128, context 64, batch 12, 2,000 iterations,
  learning rate 1e-3, no dropout), run through the same pipeline: a byte-level vocabulary (260 tokens: the
  256 bytes and 4 specials, i.e. characters for ASCII text) and the ``decoder-micro`` preset (width 128,
  4 layers, 4 heads; a SwiGLU feed-forward of 384 instead of nanoGPT's GELU 512).
* ``candidate`` — ``configs/pretraining.yaml`` as shipped.

Default corpus: the 23,700 queries of CLINC150 (Larson et al. 2019, CC BY 3.0, ``../shared/data/clinc150``),
shuffled with a fixed seed and written as documents of 50 lines (about 1 MB of real text no one here
wrote). ``--corpus`` takes any folder of ``.txt`` files or one ``.txt`` file instead. Prints a table
and ends with one JSON line: test bits per character, parameters, train seconds and tokens per second
of both, and whether the candidate reached a lower bits per character in less training time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from pipeline_runs import REPO, run_pipeline, stage_metrics

REFERENCE = ["model.preset=decoder-micro", "model.vocab_size=260", "model.max_seq_len=64", "model.dropout=0.0",
             "train.max_steps=2000", "train.batch_size=12", "train.learning_rate=0.001", "train.warmup_ratio=0.05",
             "train.weight_decay=0.1", "registry.model_name=pretrain-bench-reference"]


def _clinc_corpus(data: Path, out: Path, lines_per_document: int = 50) -> Path:
    """CLINC150's queries (all splits), shuffled (seed 0), as ``.txt`` documents of ``lines_per_document`` lines."""
    texts = pd.concat([pd.read_csv(data / f"{split}.csv")["text"] for split in ("train", "val", "test")])
    texts = texts.astype(str).sample(frac=1.0, random_state=0).tolist()
    out.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(texts), lines_per_document):
        (out / f"doc-{k // lines_per_document:04d}.txt").write_text("\n".join(texts[k:k + lines_per_document]) + "\n")
    return out


def _measure(summary: dict) -> dict:
    """Test bits per character (the run's evaluation) and the pretrain stage's time, speed and size."""
    stage = stage_metrics(summary, "pretrain")
    return {"bits_per_character": round(summary["metrics"]["bits_per_character"], 4),
            "train_seconds": round(stage["train_seconds"], 1),
            "tokens_per_second": round(stage["train_tokens_per_second"], 1),
            "parameters": int(stage["trainable_parameters"]), "gate": summary["gate"]["verdict"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="a folder of .txt files or one .txt file")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "clinc150")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pretraining.yaml")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a temporary one)")
    parser.add_argument("--skip-reference", action="store_true", help="run the candidate only")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value (candidate)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="pretrain-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    if args.corpus is None:
        if not (args.data / "train.csv").is_file():
            print(f"error: no CLINC150 files in {args.data} (train.csv, val.csv, test.csv); pass --corpus",
                  file=sys.stderr)
            return 2
        corpus = _clinc_corpus(args.data, home / "corpus")
    else:
        corpus = args.corpus
    config = args.config.resolve()
    result: dict = {"corpus": str(args.corpus or "clinc150-queries"),
                    "config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config)}
    runs = [("candidate", ["registry.model_name=pretrain-bench-candidate", *args.overrides])]
    if not args.skip_reference:
        runs.insert(0, ("reference", REFERENCE))
    for name, overrides in runs:
        summary, seconds = run_pipeline(args.config, corpus, home, overrides)
        if summary is None:
            return 1
        result[name] = {**_measure(summary), "pipeline_seconds": round(seconds, 1)}
    print("\n| model | test bits/char | parameters | train s | tokens/s |")
    print("|---|---|---|---|---|")
    for name, _ in runs:
        row = result[name]
        print(f"| {name} | {row['bits_per_character']:.4f} | {row['parameters']:,} | {row['train_seconds']} | "
              f"{row['tokens_per_second']} |")
    if "reference" in result:
        cand, ref = result["candidate"], result["reference"]
        result["candidate_better_and_faster"] = (cand["bits_per_character"] < ref["bits_per_character"]
                                                 and cand["train_seconds"] <= ref["train_seconds"])
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
