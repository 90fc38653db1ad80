"""Ingesting a source into a DVC dataset version, incrementally: the entry point of the data pipeline.

Each run lists the source's files with a content fingerprint (sha256 locally, re-hashed only when size
or modification time changed; ETag + size on S3, without downloading). The run's fingerprint combines
the files', the data and bias configuration and the data code. When it equals the manifest's, nothing
changed: the previous dataset version is reused (no file read, no new DVC version). Otherwise only new
or changed files are parsed (unchanged ones come from the parsed-file cache), and the new version holds
all current files. The manifest is written (temp file, then rename) only after the version is pushed.

State, under the DVC repository folder (see ``compactlm.data.layout``): ``manifests/<dataset>.json``
and ``cache/raw/<hash>.parquet`` (used columns only, PII scrubbed). The preparation itself (clean,
split, augment, reweigh) is ``compactlm.data.prepare``; reading and caching the files is
``compactlm.data.raw_files``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.layout import DataLayout
from compactlm.data.prepare import PreparedDataset, kept_columns, prepare_dataset
from compactlm.data.raw_files import RawCache, ReadNotes, read_files
from compactlm.data.report import ingest_summary, summary_lines
from compactlm.data.sources import SourceFile, SourceKind, list_files, source_kind
from compactlm.data.versioning import (
    DatasetVersion,
    current_md5,
    list_versions,
    load_version,
    version_dataset,
    version_records,
)
from compactlm.fileio import atomic_open, files_digest


@dataclass
class IngestOutcome:
    """What an ingest run did: the version, whether it was reused, and how many files were (re-)read."""

    version: DatasetVersion
    result: PreparedDataset | None  # None when the previous version was reused
    reused: bool
    files_total: int = 0
    files_read: int = 0
    files_cached: int = 0
    ignored: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # ``compactlm.data.report.ingest_summary`` of the version

    def to_markdown(self) -> str:
        """The ingest report (``PreparedDataset.to_markdown``, or a reuse note) plus the file counts."""
        head = self.result.to_markdown() if self.result is not None else \
            f"# Ingest: nothing changed\n\nNo source file changed since version `{self.version.md5}`: reused it." + \
            ("\n\n```\n" + self.summary_text() + "\n```" if self.summary else "")
        files = (f"\n\nSource files: {self.files_total} ({self.files_read} read, {self.files_cached} unchanged "
                 f"from the cache).") if self.files_total else ""
        ignored = f"\nIgnored (not a data file): {', '.join(self.ignored[:20])}." if self.ignored else ""
        verb = "reused (nothing changed)" if self.reused else f"pushed to `{self.version.remote}`"
        return head + files + ignored + f"\n\nDVC version `{self.version.md5}` {verb}."

    @property
    def description(self) -> str:
        """One line naming the dataset version (and whether it was reused)."""
        return f"Dataset {self.version.name} version {self.version.md5[:12]}" + (" (unchanged)" if self.reused else "")

    def to_dict(self) -> dict:
        """The version, its counts (none when reused), its summary and whether it was reused, as JSON-ready values."""
        counts = {**self.result.counts, **self.result.cleaning} if self.result else {}
        return {"counts": counts, "summary": self.summary, "reused": self.reused, **self.version.to_dict()}

    def summary_text(self) -> str:
        """The summary as printed lines (``compactlm.data.report.summary_lines``)."""
        return "\n".join(summary_lines(self.summary)) if self.summary else ""


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The data pipeline's own source (and the generator's templates): a code change must not reuse a version."""
    package = Path(__file__).resolve().parents[1]
    data_code = [*(package / "data").rglob("*.py"), *(package / "data").rglob("*.txt")]
    return files_digest([*data_code, package / "quality" / "bias.py"])


def run_fingerprint(config: DataConfig, bias: BiasConfig | None, files: list[SourceFile]) -> str:
    """One hash of everything that decides the version's content.

    Args:
        config: the data section (every field counts).
        bias: the bias section (its attributes and reweighing change the version), or None.
        files: the source's files with their content fingerprints (empty for the generator and the hub).

    Returns:
        The sha256 hex digest of the config, the files' keys and fingerprints, and the data code.
    """
    payload = {"data": dataclasses.asdict(config), "bias": dataclasses.asdict(bias) if bias else None,
               "files": [(f.key, f.fingerprint) for f in files], "code": _code_digest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(layout: DataLayout, name: str) -> dict:
    path = layout.manifest_file(name)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs a full re-ingest


def _write_manifest(layout: DataLayout, name: str, manifest: dict) -> None:
    with atomic_open(layout.manifest_file(name)) as out:
        json.dump(manifest, out, indent=2)


def ingest_version(config: DataConfig, root: str | Path, remote_url: str, bias: BiasConfig | None = None,
                   incremental: bool | None = None) -> IngestOutcome:
    """Ingest ``config.source`` into a new DVC version, or reuse the last one when nothing changed.

    Args:
        config: the data section.
        root: the DVC repository folder (``DataLayout.repo``).
        remote_url: the DVC remote (local folder or s3://).
        bias: the bias section (attributes kept, reweighing).
        incremental: override ``config.incremental``.

    Returns:
        What the run did: the version (``reused=True`` when nothing changed), the preparation result
        (None when reused) and how many source files were read or taken from the cache.

    Raises:
        DataError: the source is unreadable or unusable (see ``prepare_dataset``), or the push to the
            remote failed; the previous version and the manifest are then left as they were.
    """
    root = Path(root).resolve()
    layout = DataLayout(root)
    incremental = config.incremental if incremental is None else incremental
    manifest = _read_manifest(layout, config.dataset_name) if incremental else {}
    known = {k: SourceFile(**v) for k, v in manifest.get("files", {}).items()}
    kind = source_kind(config.source)
    files, ignored = list_files(config.source, config.s3_endpoint_url, known)
    fingerprint = run_fingerprint(config, bias, files)
    # A hub dataset can change without any file here changing: it is never reused.
    if incremental and kind is not SourceKind.HF_HUB and manifest.get("fingerprint") == fingerprint \
            and manifest.get("version") in list_versions(root, config.dataset_name):
        version = load_version(root, config.dataset_name, manifest["version"], remote_url,
                               restore=current_md5(root, config.dataset_name) != manifest["version"])
        record = next((r for r in version_records(root, config.dataset_name) if r["md5"] == version.md5), {})
        return IngestOutcome(dataclasses.replace(version, reused=True), None, True, len(files), 0, len(files), ignored,
                             ingest_summary(record))
    stats: dict[str, int] = {}
    raw = None
    notes = ReadNotes()
    if ignored and kind.reads_files:  # e.g. a spreadsheet in the folder: say so where the user looks
        shown = ", ".join(ignored[:10]) + (f" and {len(ignored) - 10} more" if len(ignored) > 10 else "")
        notes.warnings.append(f"{config.source}: {len(ignored)} file(s) ignored, not a data file type this reads "
                              f"(.csv, .tsv, .jsonl, .json, .parquet, .txt, compressed or not): {shown}")
    keep = kept_columns(config, bias)
    if files and kind.reads_files:
        cache = RawCache(layout.raw_cache_dir, config, keep) if incremental else None
        raw = (read_files(files, config, cache, stats, notes, keep), config.source)
    result = prepare_dataset(config, bias, raw, notes)
    version = version_dataset(root, config.dataset_name, result.files(), remote_url, result.metadata())
    if incremental:
        _write_manifest(layout, config.dataset_name, {"fingerprint": fingerprint, "version": version.md5,
                                                      "source": config.source,
                                                      "files": {f.key: dataclasses.asdict(f) for f in files}})
        RawCache(layout.raw_cache_dir, config, keep).keep_only([f.fingerprint for f in files])
    return IngestOutcome(version, result, False, len(files), stats.get("read", 0), stats.get("cached", 0), ignored,
                         result.summary())
