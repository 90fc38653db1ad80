"""Dataset versions with DVC: write the splits atomically, ``dvc add``, push to the remote, record in an index.

The DVC repository lives in the state folder (``<home>/data``, initialised without git so that deleting
the state folder starts over cleanly). The remote is a local folder by default, or ``s3://...`` with
the usual AWS_* variables (AWS_ENDPOINT_URL for S3-compatible stores). Each version's ``.dvc`` file is
kept under ``versions/<name>/`` so any version can be restored byte for byte, and
``versions/<name>/index.json`` lists the versions in the order they were first recorded (with their
row counts and label distribution), independent of file times.

A version is recorded only once it is pushed: if ``dvc add`` or the push fails, the previous folder
and ``.dvc`` file are put back and the index is untouched, so a failed run never leaves a partial version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from compactlm.data.layout import DataLayout, split_file_name
from compactlm.errors import DataError
from compactlm.fileio import atomic_open

REMOTE_NAME = "storage"


@dataclass(frozen=True)
class DatasetVersion:
    """One DVC-tracked version of a dataset folder."""

    name: str
    md5: str  # the DVC directory hash, without the ".dir" suffix
    path: str  # the local folder holding the split files
    remote: str
    nfiles: int
    size: int
    reused: bool = False  # True when an ingest found nothing changed and kept this existing version

    def to_dict(self) -> dict:
        """The fields as a plain dict (for reports and MLflow)."""
        return asdict(self)

    def cache_key(self) -> DatasetVersion:
        """This version as a cache input: whether it was just written or reused changes no check of it."""
        return replace(self, reused=False)


def _open_repo(root: Path, remote_url: str):
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo  # ~0.3 s of imports: only versioning pays for it, not every data import

    if not (root / ".dvc").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        Repo.init(str(root), no_scm=True)
    ignore, ignored = root / ".dvcignore", DataLayout(root).dvc_ignored
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    if not set(ignored) <= set(lines):
        ignore.write_text("\n".join([*lines, *(p for p in ignored if p not in lines)]) + "\n")
    repo = Repo(str(root))
    remote: dict[str, str] = {"url": remote_url}
    if remote_url.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        remote["endpointurl"] = os.environ["AWS_ENDPOINT_URL"]
    with repo.config.edit() as conf:
        if conf["remote"].get(REMOTE_NAME) != remote:
            conf["remote"][REMOTE_NAME] = remote
        conf["core"]["remote"] = REMOTE_NAME
    if "://" not in remote_url:
        try:
            Path(remote_url).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"the DVC remote folder {remote_url} cannot be created ({exc.strerror})") from None
    return Repo(str(root))


def _stage(folder: Path, files: dict[str, pd.DataFrame]) -> Path:
    """Write every file into a fresh temp folder beside ``folder`` (same filesystem: renames are atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for filename, frame in files.items():
            frame.to_parquet(staging / filename, index=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _write_json(path: Path, payload: Any) -> None:
    with atomic_open(path) as out:
        json.dump(payload, out, indent=2, default=str)


def dataset_names(root: str | Path) -> list[str]:
    """The names of the datasets with recorded versions in the DVC repository ``root``, sorted."""
    folder = DataLayout(Path(root)).versions_dir("x").parent
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.dvc"))) if folder.is_dir() else []


def version_records(root: str | Path, name: str) -> list[dict[str, Any]]:
    """Every recorded version of ``name``, oldest first: md5, created, nfiles, size and ingest metadata.

    Args:
        root: the DVC repository folder (``DataLayout.repo``).
        name: the dataset name.

    Returns:
        The index's records; for a state folder from before the index, md5 and creation time of each
        kept ``.dvc`` file in file-time order. Empty when nothing was recorded.
    """
    layout = DataLayout(Path(root))
    index = layout.index_file(name)
    if index.is_file():
        return json.loads(index.read_text(encoding="utf-8"))["versions"]
    folder = layout.versions_dir(name)  # a state folder from before the index: file times are all there is
    files = sorted(folder.glob("*.dvc"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [{"md5": p.stem, "created": datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat()} for p in files]


def _record(root: Path, name: str, version: DatasetVersion, metadata: dict[str, Any]) -> None:
    """Append ``version`` to the index (the same content again keeps its first place in history)."""
    index = DataLayout(root).index_file(name)
    records = version_records(root, name)  # without an index yet: the older versions, by file time
    if any(r["md5"] == version.md5 for r in records) and index.is_file():
        return
    if not any(r["md5"] == version.md5 for r in records):
        records.append({"md5": version.md5, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                        "nfiles": version.nfiles, "size": version.size, **metadata})
    _write_json(index, {"name": name, "versions": records})


def _dvc_out(dvc_file: Path) -> dict[str, Any]:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]


def version_dataset(root: str | Path, name: str, files: dict[str, pd.DataFrame], remote_url: str,
                    metadata: dict[str, Any] | None = None) -> DatasetVersion:
    """Write ``files`` as ``<root>/datasets/<name>/``, track the folder with DVC, push it, record it.

    Args:
        root: the DVC repository folder (created on first use).
        name: dataset name; the folder and the ``.dvc`` file are named after it.
        files: file name -> frame, written as Parquet.
        remote_url: a local folder or an ``s3://bucket/prefix`` URL.
        metadata: stored with the version in the index (source, task, rows per split, labels...).

    Returns:
        The version, whose ``md5`` is the DVC directory hash recorded on every run and model.

    Raises:
        DataError: the push failed; the previous version is left in place and nothing is recorded.
    """
    root = Path(root).resolve()
    layout = DataLayout(root)
    repo = _open_repo(root, remote_url)
    folder, dvc_file = layout.dataset_dir(name), layout.dvc_file(name)
    staging = _stage(folder, files)
    backup = folder.with_name(f".{name}-previous")
    previous_dvc = dvc_file.read_bytes() if dvc_file.exists() else None
    shutil.rmtree(backup, ignore_errors=True)
    try:
        if folder.exists():
            folder.rename(backup)
        staging.rename(folder)
        repo.add(str(folder))
        out = _dvc_out(dvc_file)
        md5 = out["md5"].removesuffix(".dir")
        try:
            repo.push(targets=[str(dvc_file)])
        except Exception as exc:  # network/credential problems surface as DVC errors
            raise DataError(f"pushing dataset {name} to the DVC remote {remote_url} failed: "
                            f"{str(exc).splitlines()[0]}") from None
    except BaseException:
        # Put the previous version back exactly as it was.
        shutil.rmtree(staging, ignore_errors=True)
        if backup.exists():
            shutil.rmtree(folder, ignore_errors=True)
            backup.rename(folder)
        elif folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        if previous_dvc is None:
            dvc_file.unlink(missing_ok=True)
        else:
            dvc_file.write_bytes(previous_dvc)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    version = DatasetVersion(name=name, md5=md5, path=str(folder), remote=remote_url,
                             nfiles=int(out.get("nfiles", len(files))), size=int(out.get("size", 0)))
    _record(root, name, version, metadata or {})
    kept = layout.version_dvc_file(name, md5)
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dvc_file, kept)
    return version


def list_versions(root: str | Path, name: str) -> list[str]:
    """The md5 hashes of every recorded version of ``name``, oldest first (in recording order).

    Args:
        root: the DVC repository folder.
        name: the dataset name.
    """
    return [r["md5"] for r in version_records(root, name)]


def current_md5(root: str | Path, name: str) -> str | None:
    """The version the dataset folder holds now (per its ``.dvc`` file), if any.

    Args:
        root: the DVC repository folder.
        name: the dataset name.
    """
    dvc_file = DataLayout(Path(root)).dvc_file(name)
    return _dvc_out(dvc_file)["md5"].removesuffix(".dir") if dvc_file.is_file() else None


def resolve_version(root: str | Path, name: str, md5: str) -> str:
    """The full md5 of the one recorded version starting with ``md5``.

    Args:
        root: the DVC repository folder.
        name: the dataset name.
        md5: a full hash or a prefix of one (as ``compactlm data versions`` shows: 12 characters).

    Raises:
        DataError: no version, or several, start with it (the message lists the known ones).
    """
    known = list_versions(root, name)
    matches = [v for v in known if v.startswith(md5)] if md5 else []
    if len(matches) != 1:
        listed = ", ".join(v[:12] for v in known) or "none"
        raise DataError(f"dataset {name} has no unique version {md5!r} (known: {listed})")
    return matches[0]


def load_version(root: str | Path, name: str, md5: str, remote_url: str, restore: bool = False) -> DatasetVersion:
    """The ``DatasetVersion`` of a recorded version, checked out first when ``restore`` is set.

    Args:
        root: the DVC repository folder.
        name: the dataset name.
        md5: the full hash of a recorded version.
        remote_url: the DVC remote (restores pull from it).
        restore: check the version out into the dataset folder first.

    Raises:
        DataError: (with ``restore``) no such version was recorded.
    """
    root = Path(root).resolve()
    if restore:
        checkout_version(root, name, md5, remote_url)
    layout = DataLayout(root)
    out = _dvc_out(layout.version_dvc_file(name, md5))
    return DatasetVersion(name=name, md5=md5, path=str(layout.dataset_dir(name)), remote=remote_url,
                          nfiles=int(out.get("nfiles", 0)), size=int(out.get("size", 0)))


def checkout_version(root: str | Path, name: str, md5: str, remote_url: str) -> Path:
    """Restore version ``md5`` of dataset ``name`` into its folder (pulling from the remote if needed).

    Args:
        root: the DVC repository folder.
        name: the dataset name.
        md5: a full hash or a unique prefix of one.
        remote_url: the DVC remote.

    Returns:
        The dataset folder, now holding exactly that version's files.

    Raises:
        DataError: no such version was ever recorded here.
    """
    root = Path(root).resolve()
    full = resolve_version(root, name, md5)
    layout = DataLayout(root)
    repo = _open_repo(root, remote_url)
    dvc_file = layout.dvc_file(name)
    shutil.copyfile(layout.version_dvc_file(name, full), dvc_file)
    repo.pull(targets=[str(dvc_file)], force=True)
    return layout.dataset_dir(name)


def read_split(version_path: str | Path, split: str) -> pd.DataFrame:
    """Read one split file of a versioned dataset folder.

    Args:
        version_path: the dataset folder (``DatasetVersion.path``).
        split: ``train``, ``val``, ``test`` or ``quarantine``.

    Raises:
        DataError: the split file does not exist (naming it).
    """
    path = Path(version_path) / split_file_name(split)
    if not path.is_file():
        raise DataError(f"dataset split {path} does not exist (was the dataset ingested?)")
    return pd.read_parquet(path)


def read_version_split(root: str | Path, name: str, md5: str, split: str,
                       remote_url: str | None = None) -> pd.DataFrame:
    """Read one split of any recorded version, without checking it out (the dataset folder is left alone).

    The current version is read from the dataset folder; an older one from DVC's cache, through the
    version's directory object (``<md5>.dir``, the list of ``{relpath, md5}`` of its files), fetched
    from the remote first when the cache lacks it and ``remote_url`` is given.

    Args:
        root: the DVC repository folder; name: the dataset name.
        md5: a full hash or a unique prefix of one.
        split: ``train``, ``val``, ``test`` or ``quarantine``.
        remote_url: the DVC remote to fetch a missing version from (None: the local cache only).

    Raises:
        DataError: no such version, the split is not part of it, or its files are in no cache or remote.
    """
    root = Path(root).resolve()
    full = resolve_version(root, name, md5)
    layout = DataLayout(root)
    if current_md5(root, name) == full:
        return read_split(layout.dataset_dir(name), split)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    repo = _open_repo(root, remote_url) if remote_url else Repo(str(root))
    odb = repo.cache.local
    wanted = split_file_name(split)

    def object_path(oid: str) -> Path:
        return Path(odb.oid_to_path(oid))

    tree_path = object_path(f"{full}.dir")
    if not tree_path.is_file() and remote_url:
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.transfer import transfer

        remote_odb = repo.cloud.get_remote_odb(REMOTE_NAME)
        transfer(remote_odb, odb, {HashInfo("md5", f"{full}.dir")})
    if not tree_path.is_file():
        raise DataError(f"dataset {name} version {full[:12]} is not in the DVC cache {odb.path} "
                        f"(restore it with `compactlm data checkout {full[:12]}`)")
    entries = json.loads(tree_path.read_text(encoding="utf-8"))
    entry = next((e for e in entries if e.get("relpath") == wanted), None)
    if entry is None:
        raise DataError(f"dataset {name} version {full[:12]} has no {wanted}")
    file_path = object_path(entry["md5"])
    if not file_path.is_file() and remote_url:
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.transfer import transfer

        transfer(repo.cloud.get_remote_odb(REMOTE_NAME), odb, {HashInfo("md5", entry["md5"])})
    if not file_path.is_file():
        raise DataError(f"dataset {name} version {full[:12]}: {wanted} is not in the DVC cache {odb.path}")
    return pd.read_parquet(file_path)
