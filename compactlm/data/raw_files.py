"""The raw rows of a file source: each file read and checked on its own, with a cache of parsed files.

Checking each file for the task's columns names the one at fault: in a union of files, a file with
other columns would otherwise only show up as rows with blank values. Column names that differ from the
schema's only in case or surrounding spaces are matched per file (``LABEL`` -> ``label``), before the
files are joined. The cache keeps parsed files by content fingerprint, so an incremental ingest parses
only new or changed files; what reading a file said (warnings, matched columns) is cached with it, so the
report says the same whether a file was parsed or came from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.schemas import SCHEMAS, check_required, fold_columns, map_columns
from compactlm.data.sources import SourceFile, SourceKind, list_files, read_columns, read_file, source_kind

log = logging.getLogger(__name__)


@dataclass
class ReadNotes:
    """What reading a source said beyond its rows, for the ingest report."""

    warnings: list[str] = field(default_factory=list)  # one line each, naming the file (and line)
    columns_mapped: dict[str, str] = field(default_factory=dict)  # the source's column -> the schema's name

    def add(self, other: ReadNotes) -> None:
        """Append ``other``'s warnings and matched columns to these."""
        self.warnings += [w for w in other.warnings if w not in self.warnings]
        self.columns_mapped.update(other.columns_mapped)

    def to_attrs(self) -> dict[str, str]:
        """As a frame's ``attrs`` (kept in the Parquet file of the cache)."""
        return {"compactlm_read_notes": json.dumps({"warnings": self.warnings, "columns_mapped": self.columns_mapped})}

    @classmethod
    def from_attrs(cls, attrs: dict) -> ReadNotes:
        """The notes ``to_attrs`` stored, or none."""
        values = json.loads(attrs.get("compactlm_read_notes", "{}"))
        return cls(list(values.get("warnings", [])), dict(values.get("columns_mapped", {})))


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


def read_checked_file(file: SourceFile, config: DataConfig, notes: ReadNotes | None = None) -> pd.DataFrame:
    """Parse one source file, match its column names to the schema's, and check it has the required ones.

    Args:
        file: a file listed by ``compactlm.data.sources.list_files``.
        config: the data section (task, column mapping, S3 endpoint).
        notes: when given, the file's warnings and matched columns are added to it.

    Returns:
        The file's rows as read, with columns differing only in case or spaces renamed to the schema's
        names (``data.columns`` is applied later, to the whole source).

    Raises:
        DataError: the file is unreadable, or lacks a required column (one line naming the file).
    """
    warnings: list[str] = []
    frame = read_file(file, config.s3_endpoint_url, warnings)
    frame, mapped = _match_columns(frame, config, file.uri)
    if notes is not None:
        notes.add(ReadNotes(warnings, mapped))
    return frame


class RawCache:
    """Parsed source files, keyed by content fingerprint (a cache: a failed write only costs a re-read).

    Args:
        folder: where the Parquet files go (``DataLayout.raw_cache_dir``); created on the first write.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, fingerprint: str) -> Path:
        return self.folder / f"{hashlib.sha256(fingerprint.encode()).hexdigest()[:32]}.parquet"

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
        """Drop cached files no longer in the source (the cache never outgrows the source)."""
        wanted = {self._path(f).name for f in fingerprints}
        for path in self.folder.glob("*.parquet") if self.folder.is_dir() else []:
            if path.name not in wanted:
                path.unlink(missing_ok=True)


def read_files(files: list[SourceFile], config: DataConfig, cache: RawCache | None = None,
               stats: dict[str, int] | None = None, notes: ReadNotes | None = None) -> pd.DataFrame:
    """All files' rows in one frame, in the order of ``files``; files found in ``cache`` are not parsed again.

    Args:
        files: the source's files (``compactlm.data.sources.list_files``); at least one.
        config: the data section.
        cache: parsed files by fingerprint; None parses every file.
        stats: when given, counts ``read`` (parsed) and ``cached`` files into it.
        notes: when given, every file's warnings and matched columns are added to it (cached ones too).

    Raises:
        DataError: a file is unreadable or lacks a required column (see ``read_checked_file``).
    """
    frames = []
    notes = notes if notes is not None else ReadNotes()
    for file in files:
        hit = cache.get(file.fingerprint) if cache is not None else None
        if hit is None:
            file_notes = ReadNotes()
            frame = read_checked_file(file, config, file_notes)
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
