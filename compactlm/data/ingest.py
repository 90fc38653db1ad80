"""From a source (the bundled generator or a file) to canonical, cleaned, split instruction data."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.prepare import SPLITS, clean_rows, split_rows, to_canonical
from compactlm.data.sources import read_table


@dataclass
class IngestResult:
    """Splits ready to version, the quarantined rows, and the counts for the report."""

    splits: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    counts: dict[str, int]
    source: str

    def files(self) -> dict[str, pd.DataFrame]:
        """The files of one dataset version: one Parquet file per split, plus the quarantine."""
        return {**{f"{name}.parquet": frame for name, frame in self.splits.items()},
                "quarantine.parquet": self.quarantine}

    def to_markdown(self) -> str:
        lines = [f"# Ingest: `{self.source}`", "", "| count | rows |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in self.counts.items()]
        lines += ["", "| split | rows | intents |", "|---|---|---|"]
        lines += [f"| {name} | {len(frame)} | {frame['intent'].nunique()} |" for name, frame in self.splits.items()]
        return "\n".join(lines)


def load_source(config: DataConfig) -> tuple[pd.DataFrame, str]:
    """Raw rows from ``config.source`` and a description of where they came from."""
    if config.source == "generator":
        from compactlm.data.generator import generate_support_dataset

        frame = generate_support_dataset(n_rows=config.n_rows, seed=config.seed, bias=config.bias)
        return frame, f"generator(n_rows={config.n_rows}, seed={config.seed}, bias={config.bias})"
    return read_table(config.source), config.source


def prepare_dataset(config: DataConfig) -> IngestResult:
    """Load, map to the canonical schema, clean (quarantining rejects) and split, all seeded.

    Raises:
        DataError: unreadable source, missing columns, or too few usable rows to split.
    """
    raw, source = load_source(config)
    canonical = to_canonical(raw, source)
    cleaned = clean_rows(canonical, config.min_chars, config.max_chars)
    splits = split_rows(cleaned.rows, config.val_fraction, config.test_fraction, config.seed)
    counts = dict(cleaned.counts)
    counts.update({f"split {name}": len(splits[name]) for name in SPLITS})
    return IngestResult(splits=splits, quarantine=cleaned.quarantine, counts=counts, source=source)


def allowed_intents(config: DataConfig, frame: pd.DataFrame) -> list[str]:
    """The label set the quality suite enforces: configured, else the generator's, else what is present."""
    if config.allowed_intents:
        return list(config.allowed_intents)
    if config.source == "generator":
        from compactlm.data.generator import INTENTS

        return sorted(INTENTS)
    return sorted(frame["intent"].dropna().astype(str).unique())


def combined_splits(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All splits in one frame with a ``split`` column (what the quality suite validates)."""
    return pd.concat([frame.assign(split=name) for name, frame in splits.items()], ignore_index=True)
