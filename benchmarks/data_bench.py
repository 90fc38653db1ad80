"""Data pipeline benchmark: generate, clean, split and validate N rows; the last line is JSON.

    python benchmarks/data_bench.py --rows 100000

Stages (seconds each): ``generate`` (the bundled generator), ``canonical`` (schema mapping),
``clean`` (normalisation, HTML, PII, exact/near duplicates, label conflicts, quarantine), ``split``
(near-duplicate groups, stratified 70/15/15), ``format`` (chat-template prompt/completion),
``validate`` (the Great Expectations suite with its derived columns) and, unless ``--no-docs``,
``data_docs`` (validation again, rendering the HTML site). ``clean_plus_validate`` adds canonical,
clean, split, format and validate: the figure the 60-second target on 2 CPU cores is about.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-docs", action="store_true", help="skip rendering the GE Data Docs site")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, force=True)

    from compactlm.config import DataConfig
    from compactlm.data.chat import add_instruction_format
    from compactlm.data.cleaning import CleanOptions, clean_rows, to_canonical
    from compactlm.data.prepare import allowed_intents
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.data.splits import combined_splits, split_rows
    from compactlm.quality.expectations import validate_frame
    from compactlm.quality.suites import suite_parameters

    config = DataConfig(n_rows=args.rows, seed=args.seed)
    seconds: dict[str, float] = {}

    def timed(stage: str, fn, *a, **kw):
        start = time.perf_counter()
        out = fn(*a, **kw)
        seconds[stage] = round(time.perf_counter() - start, 3)
        return out

    raw = timed("generate", generate_support_dataset, n_rows=args.rows, seed=args.seed)
    canonical = timed("canonical", to_canonical, raw, "generator")
    options = CleanOptions.from_config(config)
    cleaned = timed("clean", clean_rows, canonical, config.min_chars, config.max_chars, options)
    splits = timed("split", split_rows, cleaned.rows, config.val_fraction, config.test_fraction, config.seed)
    splits = timed("format", lambda: {n: add_instruction_format(f, "instruction") for n, f in splits.items()})
    frame = combined_splits(splits)
    parameters = suite_parameters(config, frame, None)
    report = timed("validate", validate_frame, frame, config.expectation_suite, parameters)
    if not args.no_docs:
        with tempfile.TemporaryDirectory() as docs:
            timed("data_docs", validate_frame, frame, config.expectation_suite, parameters, docs_dir=docs)
    total = sum(seconds[s] for s in ("canonical", "clean", "split", "format", "validate"))
    result = {
        "rows": args.rows, "rows_kept": len(cleaned.rows), "rows_quarantined": len(cleaned.quarantine),
        "splits": {n: len(f) for n, f in splits.items()}, "intents": len(allowed_intents(config, frame)),
        "validation": report.summary(), "seconds": seconds, "clean_plus_validate": round(total, 3),
        "target_seconds": 60, "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
