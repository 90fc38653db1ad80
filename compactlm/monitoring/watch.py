"""New data at a watched source: which files are new, changed or gone since the dataset's last ingest.

The ingest records each source file's content fingerprint in its manifest (``compactlm.data.ingest``);
the watcher lists the source the same way (hashing only files whose size or time changed, ETags on S3,
nothing downloaded) and compares. To announce each change once, the watcher keeps the fingerprint of
the last listing it announced (``<home>/monitor/watch-<dataset>.json``): an ingest still running on an
announced change is not started again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compactlm.config import DataConfig
from compactlm.data.ingest import _read_manifest
from compactlm.data.layout import DataLayout
from compactlm.data.sources import SourceFile, SourceKind, list_files, source_kind
from compactlm.errors import DataError
from compactlm.fileio import atomic_open


@dataclass(frozen=True)
class SourceChanges:
    """The files of ``source`` that the dataset's last ingest did not see (keys relative to the source root)."""

    source: str
    dataset: str
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    fingerprint: str = ""  # of the whole listing: equal listings, equal fingerprints
    last_version: str | None = None  # the dataset version of the last ingest of this source

    @property
    def any(self) -> bool:
        """True when a file was added, changed or removed."""
        return bool(self.new or self.changed or self.removed)

    def to_dict(self) -> dict:
        """The fields as plain values (the event payload)."""
        return {**asdict(self), "any": self.any}

    def summary(self) -> str:
        """One line: how many files are new, changed and removed."""
        if not self.any:
            return f"{self.source}: no new data since the last ingest"
        return (f"{self.source}: {len(self.new)} new, {len(self.changed)} changed, {len(self.removed)} removed "
                f"file(s) since the last ingest")


def check_watchable(source: str) -> SourceKind:
    """The kind of ``source`` when it can be watched: a local file or folder that exists, or an S3 prefix.

    Raises:
        DataError: the generator, a hub dataset, a feedback store or another scheme, or a missing local path.
    """
    kind = source_kind(source)
    if kind not in (SourceKind.LOCAL, SourceKind.S3):
        raise DataError(f"{source}: only a folder, a file or an s3:// prefix can be watched for new data")
    if kind is SourceKind.LOCAL and not Path(source).exists():
        raise DataError(f"{source}: no such file or folder to watch")
    return kind


def source_changes(config: DataConfig, root: str | Path, source: str | None = None) -> SourceChanges:
    """Compare the files at ``source`` (default ``data.source``) with the dataset's last ingest.

    Args:
        config: the data section (dataset name, S3 endpoint).
        root: the DVC repository folder (``StatePaths.data_repo``).
        source: a folder, file or ``s3://bucket/prefix``.

    Returns:
        The changes; every file is new when the dataset was never ingested from this source; none when
        a local folder is empty.

    Raises:
        DataError: the source is not a folder, file or S3 prefix (the generator and hub datasets have no
            files to watch), a local path does not exist, or it is unreadable (see ``list_files``).
    """
    source = source or config.source
    kind = check_watchable(source)
    manifest = _read_manifest(DataLayout(Path(root)), config.dataset_name)
    if kind is SourceKind.LOCAL and Path(source).is_dir() and not any(Path(source).iterdir()):
        return SourceChanges(source, config.dataset_name)  # nothing has landed yet: not an error for a watcher
    same_source = manifest.get("source") == source
    known = {k: SourceFile(**v) for k, v in manifest.get("files", {}).items()} if same_source else {}
    files, _ignored = list_files(source, config.s3_endpoint_url, known)
    current = {f.key: f.fingerprint for f in files}
    new = sorted(k for k in current if k not in known)
    changed = sorted(k for k in current if k in known and known[k].fingerprint != current[k])
    removed = sorted(k for k in known if k not in current)
    digest = hashlib.sha256(json.dumps(sorted(current.items())).encode()).hexdigest()
    return SourceChanges(source, config.dataset_name, new, changed, removed, digest,
                         manifest.get("version") if same_source else None)


def announced_file(home: str | Path, dataset: str) -> Path:
    """Where the watcher keeps the fingerprint of the last listing it announced for ``dataset``."""
    return Path(home) / "monitor" / f"watch-{dataset}.json"


def already_announced(path: str | Path, changes: SourceChanges) -> bool:
    """True when ``changes`` is the listing announced last (its ingest was already asked for)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("fingerprint") == changes.fingerprint
    except (OSError, json.JSONDecodeError):
        return False


def record_announced(path: str | Path, changes: SourceChanges) -> None:
    """Remember ``changes`` as announced (written to a temporary file, then renamed)."""
    with atomic_open(path) as out:
        json.dump({"source": changes.source, "fingerprint": changes.fingerprint}, out)
