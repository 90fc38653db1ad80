"""Incremental ingestion: a manifest of the source's files, a cache of parsed files, reuse of the last version.

Each run lists the source's files with a content fingerprint (sha256 locally, re-hashed only when size
or modification time changed; ETag + size on S3, without downloading). The run's fingerprint combines
the files', the data and bias configuration and the data code. When it equals the manifest's, nothing
changed: the previous dataset version is reused (no file read, no new DVC version). Otherwise only new
or changed files are parsed (unchanged ones come from the parsed-file cache), and the new version holds
all current files. The manifest is written (temp file, then rename) only after the version is pushed.

State, under the DVC repository folder: ``manifests/<dataset>.json`` and ``cache/raw/<hash>.parquet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.ingest import IngestResult, prepare_dataset
from compactlm.data.schemas import SCHEMAS, check_required, map_columns
from compactlm.data.sources import SourceFile, list_local_files, read_table
from compactlm.data.versioning import DatasetVersion, current_md5, list_versions, load_version, version_dataset
from compactlm.fileio import atomic_open

if TYPE_CHECKING:
    from compactlm.config import BiasConfig

log = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    """What an ingest run did: the version, whether it was reused, and how many files were (re-)read."""

    version: DatasetVersion
    result: IngestResult | None  # None when the previous version was reused
    reused: bool
    files_total: int = 0
    files_read: int = 0
    files_cached: int = 0
    ignored: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        head = self.result.to_markdown() if self.result is not None else \
            f"# Ingest: nothing changed\n\nNo source file changed since version `{self.version.md5}`: reused it."
        files = (f"\n\nSource files: {self.files_total} ({self.files_read} read, {self.files_cached} unchanged "
                 f"from the cache).") if self.files_total else ""
        ignored = f"\nIgnored (not a data file): {', '.join(self.ignored[:20])}." if self.ignored else ""
        return head + files + ignored


def list_files(config: DataConfig, known: dict[str, SourceFile] | None = None) -> tuple[list[SourceFile], list[str]]:
    """The data files of a file/folder/S3 source with fingerprints (and ignored non-data files)."""
    if config.source.startswith("s3://"):
        from compactlm.data.remote import list_s3_files

        return list_s3_files(config.source, config.s3_endpoint_url)
    if config.source.startswith("hf:"):
        return list_local_files(config.source.removeprefix("hf:"), known, suffixes=None)
    return list_local_files(config.source, known)


def read_file(file: SourceFile, config: DataConfig) -> pd.DataFrame:
    """Parse one source file (downloading it first when it is on S3) and check it has the task's columns.

    Checking each file on its own names the one at fault: in a union of files, a file with other
    columns would otherwise only show up as rows with blank values.
    """
    if file.uri.startswith("s3://"):
        from compactlm.data.remote import read_s3_file

        frame = read_s3_file(file, config.s3_endpoint_url)
    else:
        frame = read_table(file.uri)
    if file.key.lower().endswith(".txt"):
        frame["id"] = file.key  # a document's id is its name within the source, stable across machines
    check_required(map_columns(frame, config.columns, file.uri), SCHEMAS[config.task], file.uri)
    return frame


class RawCache:
    """Parsed source files, keyed by content fingerprint (a cache: a failed write only costs a re-read)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, fingerprint: str) -> Path:
        return self.folder / f"{hashlib.sha256(fingerprint.encode()).hexdigest()[:32]}.parquet"

    def get(self, fingerprint: str) -> pd.DataFrame | None:
        path = self._path(fingerprint)
        return pd.read_parquet(path) if path.is_file() else None

    def put(self, fingerprint: str, frame: pd.DataFrame) -> None:
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
    """All files' rows in one frame; files found in ``cache`` are not parsed again."""
    frames = []
    for file in files:
        frame = cache.get(file.fingerprint) if cache is not None else None
        if frame is None:
            frame = read_file(file, config)
            if cache is not None:
                cache.put(file.fingerprint, frame)
            if stats is not None:
                stats["read"] = stats.get("read", 0) + 1
        elif stats is not None:
            stats["cached"] = stats.get("cached", 0) + 1
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The data pipeline's own source: a change in cleaning code must not reuse an old version."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted([*(package / "data").glob("*.py"), package / "quality" / "bias.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_fingerprint(config: DataConfig, bias: BiasConfig | None, files: list[SourceFile]) -> str:
    """One hash of everything that decides the version's content."""
    payload = {"data": dataclasses.asdict(config), "bias": dataclasses.asdict(bias) if bias else None,
               "files": [(f.key, f.fingerprint) for f in files], "code": _code_digest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _manifest_path(root: Path, name: str) -> Path:
    return root / "manifests" / f"{name}.json"


def _read_manifest(root: Path, name: str) -> dict:
    path = _manifest_path(root, name)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs a full re-ingest


def _write_manifest(root: Path, name: str, manifest: dict) -> None:
    with atomic_open(_manifest_path(root, name)) as out:
        json.dump(manifest, out, indent=2)


def ingest_version(config: DataConfig, root: str | Path, remote_url: str, bias: BiasConfig | None = None,
                   incremental: bool | None = None) -> IngestOutcome:
    """Ingest ``config.source`` into a new DVC version, or reuse the last one when nothing changed.

    Args:
        config: the data section.
        root: the DVC repository folder.
        remote_url: the DVC remote (local folder or s3://).
        bias: the bias section (attributes kept, reweighing).
        incremental: override ``config.incremental``.
    """
    root = Path(root).resolve()
    incremental = config.incremental if incremental is None else incremental
    manifest = _read_manifest(root, config.dataset_name) if incremental else {}
    known = {k: SourceFile(**v) for k, v in manifest.get("files", {}).items()}
    hub = config.source.startswith("hf:") and not Path(config.source.removeprefix("hf:")).expanduser().exists()
    files, ignored = ([], []) if config.source == "generator" or hub else list_files(config, known)
    fingerprint = run_fingerprint(config, bias, files)
    if incremental and not hub and manifest.get("fingerprint") == fingerprint \
            and manifest.get("version") in list_versions(root, config.dataset_name):
        version = load_version(root, config.dataset_name, manifest["version"], remote_url,
                               restore=current_md5(root, config.dataset_name) != manifest["version"])
        return IngestOutcome(dataclasses.replace(version, reused=True), None, True, len(files), 0, len(files), ignored)
    stats: dict[str, int] = {}
    raw = None
    if files and not config.source.startswith("hf:"):
        cache = RawCache(root / "cache" / "raw") if incremental else None
        raw = (read_files(files, config, cache, stats), config.source)
    result = prepare_dataset(config, bias, raw)
    metadata = {"source": result.source, "task": result.task, "rows": {n: len(f) for n, f in result.splits.items()},
                "quarantined": len(result.quarantine), "labels": result.label_counts(),
                "counts": {**result.counts, **result.cleaning}, "notes": result.notes}
    version = version_dataset(root, config.dataset_name, result.files(), remote_url, metadata)
    if incremental:
        _write_manifest(root, config.dataset_name, {"fingerprint": fingerprint, "version": version.md5,
                                                    "source": config.source,
                                                    "files": {f.key: dataclasses.asdict(f) for f in files}})
        RawCache(root / "cache" / "raw").keep_only([f.fingerprint for f in files])
    return IngestOutcome(version, result, False, len(files), stats.get("read", 0), stats.get("cached", 0), ignored)
