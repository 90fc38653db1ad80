"""From a source to the splits of one dataset version: canonical, cleaned, split, augmented, reweighed.

``prepare_dataset`` is the whole preparation of one source, without versioning: ``compactlm.data.ingest``
runs it and versions the result. Every step is seeded (``data.seed``), so the same source and
configuration always give the same splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.augment import augment_rows
from compactlm.data.chat import add_instruction_format, prepare_chat
from compactlm.data.cleaning import CleanedRows, CleanOptions, clean_rows, to_canonical
from compactlm.data.corpus import prepare_corpus, split_corpus
from compactlm.data.layout import split_file_name
from compactlm.data.raw_files import ReadNotes, read_files
from compactlm.data.report import class_coverage_warnings, ingest_summary
from compactlm.data.schemas import SCHEMAS, fold_columns
from compactlm.data.sources import SourceKind, list_files, source_kind
from compactlm.data.sources.feedback import read_feedback
from compactlm.data.sources.generator import INTENTS
from compactlm.data.sources.generator_shapes import generate_task_dataset
from compactlm.data.sources.hf import read_hf_dataset
from compactlm.data.splits import SPLITS, given_splits, split_rows
from compactlm.data.text import near_duplicate_keys
from compactlm.errors import DataError
from compactlm.quality.bias import reweighing_weights


@dataclass
class PreparedDataset:
    """Splits ready to version, the quarantined rows, and the counts for the report."""

    splits: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    counts: dict[str, int]
    source: str
    task: str = "instruction"
    cleaning: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what was read or kept in an unexpected way
    columns_mapped: dict[str, str] = field(default_factory=dict)  # a source column -> the schema's name

    def files(self) -> dict[str, pd.DataFrame]:
        """The files of one dataset version: one Parquet file per split, plus the quarantine."""
        return {**{split_file_name(name): frame for name, frame in self.splits.items()},
                split_file_name("quarantine"): _parquet_safe(self.quarantine)}

    def label_counts(self) -> dict[str, int]:
        """Rows per label over all splits (augmented rows excluded): the version's label distribution."""
        label = SCHEMAS[self.task].label
        frames = [f[~f["augmented"].astype(bool)] if "augmented" in f.columns else f for f in self.splits.values()]
        if label is None or not frames or label not in frames[0].columns:
            return {}
        values = pd.concat([f[label] for f in frames]).dropna().astype(str)
        return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}

    def metadata(self) -> dict:
        """What the version records about its making: source, task, rows per split, labels, counts, warnings."""
        return {"source": self.source, "task": self.task, "rows": {n: len(f) for n, f in self.splits.items()},
                "quarantined": len(self.quarantine), "labels": self.label_counts(),
                "counts": {**self.counts, **self.cleaning}, "notes": self.notes, "warnings": self.warnings,
                "columns_mapped": self.columns_mapped}

    def summary(self) -> dict:
        """Rows read, kept per split, quarantined per reason, columns matched, warnings (``ingest_summary``)."""
        return ingest_summary(self.metadata())

    def to_markdown(self) -> str:
        """The ingest report: counts (cleaning, quarantine reasons, splits), split sizes and notes."""
        label = SCHEMAS[self.task].label
        lines = [f"# Ingest: `{self.source}` ({self.task})", "", "| count | rows |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in {**self.counts, **self.cleaning}.items()]
        lines += ["", f"| split | rows | {label or 'documents'} |", "|---|---|---|"]
        for name, frame in self.splits.items():
            distinct = frame[label].nunique() if label and label in frame.columns else \
                frame["doc_id"].nunique() if "doc_id" in frame.columns else ""
            lines.append(f"| {name} | {len(frame)} | {distinct} |")
        if len(self.quarantine):
            lines += ["", "Quarantined rows (with their reason) are in `quarantine.parquet` of the version."]
        lines += [f"- {note}" for note in self.notes]
        if self.columns_mapped:
            lines += ["", "Columns matched regardless of case and spaces: "
                      + ", ".join(f"`{old}` -> `{new}`" for old, new in self.columns_mapped.items())]
        if self.warnings:
            lines += ["", "## Warnings", "", *[f"- {warning}" for warning in self.warnings]]
        return "\n".join(lines)


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (lists of messages, numbers and text) become text Parquet can store."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: v if v is None or isinstance(v, str) else
                                          json.dumps(v, default=str, ensure_ascii=False)).astype("string")
    return out


def load_source(config: DataConfig, notes: ReadNotes | None = None,
                keep: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    """Raw rows of ``config.source`` (generator, file, folder, s3://, hf:, feedback:) and a description of it.

    Args:
        config: the data section (source, task, generator size/seed/bias, ``hf_split``, S3 endpoint).
        notes: when given, what reading the files said (warnings, matched columns) is added to it.
        keep: other source columns the run carries through (``kept_columns``).

    Returns:
        ``(rows, description)``: the rows as read (source column names), and the source spec, or for
        the generator ``generator(task=..., n_rows=..., seed=..., bias=...)``.

    Raises:
        DataError: the source is unreadable, empty, or a file lacks the task's required columns.
    """
    kind = source_kind(config.source)
    if kind is SourceKind.GENERATOR:
        frame = generate_task_dataset(config.task, n_rows=config.n_rows, seed=config.seed, bias=config.bias)
        return frame, f"generator(task={config.task}, n_rows={config.n_rows}, seed={config.seed}, bias={config.bias})"
    if kind in (SourceKind.HF_LOCAL, SourceKind.HF_HUB):
        return read_hf_dataset(config.source, config.hf_split), config.source
    if kind is SourceKind.FEEDBACK:
        return read_feedback(config.source), config.source
    files, _ = list_files(config.source, config.s3_endpoint_url)
    return read_files(files, config, notes=notes, keep=keep), config.source


def kept_columns(config: DataConfig, bias: BiasConfig | None) -> tuple[str, ...]:
    """The source columns carried through besides the schema's: extra, split and bias columns, and the
    provenance of ``feedback:`` rows (request id, model version, feedback id...)."""
    extra = list(config.extra_columns) + ([config.split_column] if config.split_column else [])
    if source_kind(config.source) is SourceKind.FEEDBACK:
        from compactlm.serving.traffic.export import PROVENANCE_COLUMNS

        extra += PROVENANCE_COLUMNS
    if bias is not None:
        extra += [*bias.attributes(), bias.label_column]
    return tuple(dict.fromkeys(extra))


def _clean(canonical: pd.DataFrame, config: DataConfig) -> CleanedRows:
    options = CleanOptions.from_config(config)
    if config.task == "chat":
        return prepare_chat(canonical, options)
    if config.task == "pretraining":
        return prepare_corpus(canonical, options, config.chunk_words)
    return clean_rows(canonical, config.min_chars, config.max_chars, options, config.task)


def _split(rows: pd.DataFrame, config: DataConfig) -> dict[str, pd.DataFrame]:
    if rows.empty:
        raise DataError("no usable rows left after cleaning (see the quarantine file for the reasons)")
    if config.split_column:
        return given_splits(rows, config.split_column)
    if config.task == "pretraining":
        return split_corpus(rows, config.val_fraction, config.test_fraction)
    schema = SCHEMAS[config.task]
    return split_rows(rows, config.val_fraction, config.test_fraction, config.seed, stratify=schema.label,
                      key_column=schema.key_column, exact_key=config.task == "chat")


def _augment(splits: dict[str, pd.DataFrame], config: DataConfig, counts: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Add tagged augmented rows to train only; validation and test texts are off limits."""
    column = SCHEMAS[config.task].augment_column
    held_out = pd.concat([splits["val"][column], splits["test"][column]])
    new, augment_counts = augment_rows(splits["train"], column, config.augment_ratio, config.augment_methods,
                                       config.augment_words, config.seed, set(near_duplicate_keys(held_out).dropna()))
    counts.update(augment_counts)
    out = {name: frame.assign(augmented=False) for name, frame in splits.items()}
    out["train"] = pd.concat([out["train"], new], ignore_index=True)
    return out


def prepare_dataset(config: DataConfig, bias: BiasConfig | None = None,
                    raw: tuple[pd.DataFrame, str] | None = None, notes: ReadNotes | None = None) -> PreparedDataset:
    """Load, map to the canonical schema, clean (quarantining rejects), split, augment, reweigh; all seeded.

    Args:
        config: the data section (source, task, columns, cleaning, split, augmentation).
        bias: the bias section; its attributes and label are carried through, and with
            ``bias.reweighing`` the train split gets AIF360 Reweighing ``sample_weight``s.
        raw: already loaded (rows, description), e.g. by the incremental loader; else ``config.source``.
        notes: what reading ``raw`` said (``read_files``): its warnings and matched columns go to the report.

    Raises:
        DataError: unreadable source, missing columns, or too few usable rows to split.
    """
    notes = notes if notes is not None else ReadNotes()
    keep = kept_columns(config, bias)
    frame, source = raw if raw is not None else load_source(config, notes, keep)
    frame, mapped = fold_columns(frame, SCHEMAS[config.task], config.columns, keep)
    notes.add(ReadNotes(columns_mapped=mapped))
    canonical = to_canonical(frame, source, config.task, config.columns, keep)
    prepared = _clean(canonical, config)
    for kind, n in notes.pii.items():  # scrubbed as the files were read (see compactlm.data.raw_files)
        prepared.cleaning[f"pii replaced: {kind}"] = prepared.cleaning.get(f"pii replaced: {kind}", 0) + n
    splits = _split(prepared.rows, config)
    counts = dict(prepared.counts)
    counts.update({f"split {name}": len(splits[name]) for name in SPLITS})
    if config.augment_ratio > 0:
        splits = _augment(splits, config, counts)
    if config.chat_format:
        splits = {name: add_instruction_format(split, config.task) for name, split in splits.items()}
    notes.warnings += class_coverage_warnings(splits, SCHEMAS[config.task].label)
    report_notes: list[str] = []
    if bias is not None and bias.reweighing:
        weights, note = reweighing_weights(splits["train"], bias)
        splits["train"] = splits["train"].assign(sample_weight=weights)
        report_notes.append(note)
    return PreparedDataset(splits=splits, quarantine=prepared.quarantine, counts=counts, source=source,
                           task=config.task, cleaning=prepared.cleaning, notes=report_notes,
                           warnings=list(notes.warnings), columns_mapped=dict(notes.columns_mapped))


def allowed_intents(config: DataConfig, frame: pd.DataFrame) -> list[str]:
    """The label set the quality suite enforces: configured, else the generator's, else what is present.

    Args:
        config: the data section (``allowed_intents``, source, task).
        frame: the dataset's rows (all splits), used when neither the config nor the generator decides.

    Returns:
        The labels, sorted unless configured; empty when the task has no label column.
    """
    if config.allowed_intents:
        return list(config.allowed_intents)
    if source_kind(config.source) is SourceKind.GENERATOR and config.task in ("instruction", "chat", "classification"):
        return sorted(INTENTS)
    label = SCHEMAS[config.task].label
    if label is None or label not in frame.columns:
        return []
    return sorted(frame[label].dropna().astype(str).unique())
