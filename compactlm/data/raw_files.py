"""The raw rows of a file source: each file read and checked on its own, with a cache of parsed files.

Checking each file for the task's columns names the one at fault: in a union of files, a file with
other columns would otherwise only show up as rows with blank values. The cache keeps parsed files by
content fingerprint, so an incremental ingest parses only new or changed files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.schemas import SCHEMAS, check_required, map_columns
from compactlm.data.sources import SourceFile, read_file

log = logging.getLogger(__name__)


def read_checked_file(file: SourceFile, config: DataConfig) -> pd.DataFrame:
    """Parse one source file and check it has the task's required columns (after ``data.columns``).

    Args:
        file: a file listed by ``compactlm.data.sources.list_files``.
        config: the data section (task, column mapping, S3 endpoint).

    Returns:
        The file's rows as read (columns not yet mapped: the whole source is mapped at once later).

    Raises:
        DataError: the file is unreadable, or lacks a required column (one line naming the file).
    """
    frame = read_file(file, config.s3_endpoint_url)
    check_required(map_columns(frame, config.columns, file.uri), SCHEMAS[config.task], file.uri)
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

    def get(self, fingerprint: str) -> pd.DataFrame | None:
        """The parsed rows of the file with this fingerprint, or None when they were never cached."""
        path = self._path(fingerprint)
        return pd.read_parquet(path) if path.is_file() else None

    def put(self, fingerprint: str, frame: pd.DataFrame) -> None:
        """Cache ``frame`` under ``fingerprint`` (temp file, then rename); a frame Parquet cannot hold is skipped.

        Args:
            fingerprint: the file's ``SourceFile.fingerprint``.
            frame: its parsed rows.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(handle)
        try:
            frame.to_parquet(tmp, index=False)
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
               stats: dict[str, int] | None = None) -> pd.DataFrame:
    """All files' rows in one frame, in the order of ``files``; files found in ``cache`` are not parsed again.

    Args:
        files: the source's files (``compactlm.data.sources.list_files``); at least one.
        config: the data section.
        cache: parsed files by fingerprint; None parses every file.
        stats: when given, counts ``read`` (parsed) and ``cached`` files into it.

    Raises:
        DataError: a file is unreadable or lacks a required column (see ``read_checked_file``).
    """
    frames = []
    for file in files:
        frame = cache.get(file.fingerprint) if cache is not None else None
        if frame is None:
            frame = read_checked_file(file, config)
            if cache is not None:
                cache.put(file.fingerprint, frame)
            if stats is not None:
                stats["read"] = stats.get("read", 0) + 1
        elif stats is not None:
            stats["cached"] = stats.get("cached", 0) + 1
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
