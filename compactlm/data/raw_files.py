"""The raw rows of a file source: each file read and checked on its own, with a cache of parsed files.

Checking each file for the task's columns names the one at fault: in a union of files, a file with
other columns would otherwise only show up as rows with blank values. Column names that differ from the
schema's only in case or surrounding spaces are matched per file (``LABEL`` -> ``label``), before the
files are joined. The cache keeps parsed files by content fingerprint, so an incremental ingest parses
only new or changed files; what reading a file said (warnings, matched columns) is cached with it, so the
report says the same whether a file was parsed or came from the cache.

Personal data does not linger in the cache: a file is cut to the columns the run uses, and with
``data.scrub_pii`` its text columns are scrubbed (e-mails, phone and card numbers) as soon as it is read,
before it is cached (the cleaning scrubs again after HTML stripping; both counts go to the report). The
cache is keyed by the file's content and by what decides the cut (task, columns, scrubbing), keeps only
the current source's files, and ``compactlm data purge`` deletes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.schemas import SCHEMAS, check_required, fold_columns, map_columns
from compactlm.data.sources import SourceFile, SourceKind, list_files, read_columns, read_file, source_kind
from compactlm.data.text import normalize_characters, scrub_pii

log = logging.getLogger(__name__)


@dataclass
class ReadNotes:
    """What reading a source said beyond its rows, for the ingest report."""

    warnings: list[str] = field(default_factory=list)  # one line each, naming the file (and line)
    columns_mapped: dict[str, str] = field(default_factory=dict)  # the source's column -> the schema's name
    pii: dict[str, int] = field(default_factory=dict)  # replacements when the files were read, per kind

    def add(self, other: ReadNotes) -> None:
        """Append ``other``'s warnings and matched columns to these, and add its PII counts."""
        self.warnings += [w for w in other.warnings if w not in self.warnings]
        self.columns_mapped.update(other.columns_mapped)
        for kind, n in other.pii.items():
            self.pii[kind] = self.pii.get(kind, 0) + n

    def to_attrs(self) -> dict[str, str]:
        """As a frame's ``attrs`` (kept in the Parquet file of the cache)."""
        return {"compactlm_read_notes": json.dumps({"warnings": self.warnings, "columns_mapped": self.columns_mapped,
                                                    "pii": self.pii})}

    @classmethod
    def from_attrs(cls, attrs: dict) -> ReadNotes:
        """The notes ``to_attrs`` stored, or none."""
        values = json.loads(attrs.get("compactlm_read_notes", "{}"))
        return cls(list(values.get("warnings", [])), dict(values.get("columns_mapped", {})),
                   dict(values.get("pii", {})))


def _match_columns(frame: pd.DataFrame, config: DataConfig, uri: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Match the column names to the schema's (``fold_columns``) and check the required ones are there."""
    schema = SCHEMAS[config.task]
    keep = tuple(config.extra_columns) + ((config.split_column,) if config.split_column else ())
    frame, mapped = fold_columns(frame, schema, config.columns, keep)
    check_required(map_columns(frame, config.columns, uri), schema, uri)
    return frame, mapped


def check_source_columns(config: DataConfig) -> int:
    """Check a local source before a run starts: it exists, its files are of supported types, and each file's
    header has the task's required columns. Reads headers only (JSON files whole), so it takes about a second.

    Args:
        config: the data section (source, task, ``data.columns``).

    Returns:
        How many files were checked (0 for sources that are not local files: generator, S3, Hugging Face).

    Raises:
        DataError: the first problem ``read_checked_file`` would meet, with the same one-line message.
    """
    if source_kind(config.source) is not SourceKind.LOCAL:
        return 0
    files, _ = list_files(config.source)
    for file in files:
        columns = read_columns(file.uri)
        if columns is not None:
            _match_columns(pd.DataFrame(columns=columns), config, file.uri)
    return len(files)


def _used_columns(config: DataConfig, keep: tuple[str, ...]) -> set[str]:
    """The source columns a run can use: the schema's, those ``data.columns`` names, and ``keep``."""
    return {*SCHEMAS[config.task].input_columns, *config.columns.values(), *config.extra_columns, *keep,
            *((config.split_column,) if config.split_column else ())}


def _scrub_value(value: Any, counts: dict[str, int]) -> Any:
    """``scrub_pii`` on a text, or on every text inside a list or object (chat messages); others unchanged."""
    if isinstance(value, str):
        normalized = normalize_characters(value)
        scrubbed = scrub_pii(normalized, counts)
        return scrubbed if scrubbed != normalized else value  # a text without PII stays as it was
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: _scrub_value(item, counts) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(item, counts) for item in value]
    return value


def scrub_text_columns(frame: pd.DataFrame, config: DataConfig, counts: dict[str, int]) -> pd.DataFrame:
    """Scrub PII from the source columns that become the task's texts (``messages`` for chats).

    Characters are normalised first (``normalize_characters``: a no-break space inside a phone number
    must not hide it); ``normalize_text`` in the cleaning gives the same text with or without this step.

    Args:
        frame: one file's rows, column names matched (``read_checked_file``).
        config: the data section (task, ``data.columns``).
        counts: ``{"email", "phone", "card"}`` -> replacements; added to.
    """
    schema = SCHEMAS[config.task]
    out = frame.copy()
    for canonical in dict.fromkeys([*schema.text_columns, *(("messages",) if config.task == "chat" else ())]):
        column = config.columns.get(canonical, canonical)
        if column in out.columns:
            out[column] = out[column].map(lambda value: _scrub_value(value, counts), na_action="ignore")
    return out


def read_checked_file(file: SourceFile, config: DataConfig, notes: ReadNotes | None = None,
                      keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Parse one source file, match its column names to the schema's, check it has the required ones, keep
    only the columns the run uses and, with ``data.scrub_pii``, scrub their texts.

    Args:
        file: a file listed by ``compactlm.data.sources.list_files``.
        config: the data section (task, column mapping, S3 endpoint, ``scrub_pii``).
        notes: when given, the file's warnings, matched columns and PII counts are added to it.
        keep: other source columns the run carries through (bias attributes).

    Returns:
        The file's rows: columns differing only in case or spaces renamed to the schema's names
        (``data.columns`` is applied later, to the whole source), unused columns dropped, PII scrubbed.

    Raises:
        DataError: the file is unreadable, or lacks a required column (one line naming the file).
    """
    warnings: list[str] = []
    frame = read_file(file, config.s3_endpoint_url, warnings)
    frame, mapped = _match_columns(frame, config, file.uri)
    used = _used_columns(config, keep)
    frame = frame[[c for c in frame.columns if c in used]]
    pii = {"email": 0, "phone": 0, "card": 0} if config.scrub_pii else {}
    if config.scrub_pii:
        frame = scrub_text_columns(frame, config, pii)
    if notes is not None:
        notes.add(ReadNotes(warnings, mapped, pii))
    return frame


class RawCache:
    """Parsed source files, keyed by content fingerprint (a cache: a failed write only costs a re-read).

    Args:
        folder: where the Parquet files go (``DataLayout.raw_cache_dir``); created on the first write.
        config: the data section the files are read for (``read_checked_file``): part of the key.
        keep: the other columns the run carries through: part of the key.
    """

    def __init__(self, folder: Path, config: DataConfig | None = None, keep: tuple[str, ...] = ()) -> None:
        self.folder = folder
        # What a cached file holds depends on the columns kept and on scrubbing, not only on the file.
        self.variant = json.dumps({"task": config.task, "columns": config.columns, "scrub_pii": config.scrub_pii,
                                   "used": sorted(_used_columns(config, keep))}, sort_keys=True) if config else ""

    def _path(self, fingerprint: str) -> Path:
        key = f"{fingerprint}\x00{self.variant}"
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.parquet"

    def get(self, fingerprint: str) -> tuple[pd.DataFrame, ReadNotes] | None:
        """The parsed rows of the file with this fingerprint and what reading it said, or None when never cached."""
        path = self._path(fingerprint)
        if not path.is_file():
            return None
        frame = pd.read_parquet(path)
        notes = ReadNotes.from_attrs(frame.attrs)
        frame.attrs = {}
        return frame, notes

    def put(self, fingerprint: str, frame: pd.DataFrame, notes: ReadNotes | None = None) -> None:
        """Cache ``frame`` under ``fingerprint`` (temp file, then rename); a frame Parquet cannot hold is skipped.

        Args:
            fingerprint: the file's ``SourceFile.fingerprint``.
            frame: its parsed rows.
            notes: what reading it said (stored in the file's metadata).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(handle)
        try:
            stored = frame.copy()
            stored.attrs = (notes or ReadNotes()).to_attrs()
            stored.to_parquet(tmp, index=False)
            Path(tmp).replace(self._path(fingerprint))
        except Exception as exc:  # e.g. a column mixing types that Parquet cannot hold
            Path(tmp).unlink(missing_ok=True)
            log.info("not caching a parsed file (%s): it will be parsed again next time", exc)

    def keep_only(self, fingerprints: list[str]) -> None:
        """Drop cached files no longer in the source, or read for another configuration (the cache never
        outgrows the source)."""
        wanted = {self._path(f).name for f in fingerprints}
        for path in self.folder.glob("*.parquet") if self.folder.is_dir() else []:
            if path.name not in wanted:
                path.unlink(missing_ok=True)


def read_files(files: list[SourceFile], config: DataConfig, cache: RawCache | None = None,
               stats: dict[str, int] | None = None, notes: ReadNotes | None = None,
               keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """All files' rows in one frame, in the order of ``files``; files found in ``cache`` are not parsed again.

    Args:
        files: the source's files (``compactlm.data.sources.list_files``); at least one.
        config: the data section.
        cache: parsed files by fingerprint; None parses every file.
        stats: when given, counts ``read`` (parsed) and ``cached`` files into it.
        notes: when given, every file's warnings, matched columns and PII counts are added to it (cached
            ones too).
        keep: other source columns the run carries through (see ``read_checked_file``).

    Raises:
        DataError: a file is unreadable or lacks a required column (see ``read_checked_file``).
    """
    frames = []
    notes = notes if notes is not None else ReadNotes()
    for file in files:
        hit = cache.get(file.fingerprint) if cache is not None else None
        if hit is None:
            file_notes = ReadNotes()
            frame = read_checked_file(file, config, file_notes, keep)
            if cache is not None:
                cache.put(file.fingerprint, frame, file_notes)
            if stats is not None:
                stats["read"] = stats.get("read", 0) + 1
        else:
            frame, file_notes = hit
            if stats is not None:
                stats["cached"] = stats.get("cached", 0) + 1
        notes.add(file_notes)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def purge_raw_cache(folder: Path) -> tuple[int, int]:
    """Delete every cached copy of source files (``DataLayout.raw_cache_dir``): the next ingest reads the
    changed files again; dataset versions are untouched.

    Returns:
        ``(files, bytes)`` deleted.
    """
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    size = sum(p.stat().st_size for p in files)
    for path in files:
        path.unlink(missing_ok=True)
    return len(files), size
