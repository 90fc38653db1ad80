"""Dataset versions with DVC: write the splits atomically, ``dvc add``, push to the remote.

The DVC repository lives in the state folder (``<home>/data``, initialised without git so that deleting
the state folder starts over cleanly). The remote is a local folder by default, or ``s3://...`` with
the usual AWS_* variables (AWS_ENDPOINT_URL for S3-compatible stores). Each version's ``.dvc`` file is
kept under ``versions/`` so any version can be restored byte for byte.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import yaml

from compactlm.errors import DataError

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

    def to_dict(self) -> dict:
        return asdict(self)


def _open_repo(root: Path, remote_url: str):
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        Repo.init(str(root), no_scm=True)
    repo = Repo(str(root))
    remote: dict[str, str] = {"url": remote_url}
    if remote_url.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        remote["endpointurl"] = os.environ["AWS_ENDPOINT_URL"]
    with repo.config.edit() as conf:
        if conf["remote"].get(REMOTE_NAME) != remote:
            conf["remote"][REMOTE_NAME] = remote
        conf["core"]["remote"] = REMOTE_NAME
    if "://" not in remote_url:
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    return Repo(str(root))


def _write_atomically(folder: Path, files: dict[str, pd.DataFrame]) -> None:
    """Write every file into a temp folder beside ``folder``, then swap it in with renames."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for filename, frame in files.items():
            frame.to_parquet(staging / filename, index=False)
        old = folder.with_name(f".{folder.name}-old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def version_dataset(root: str | Path, name: str, files: dict[str, pd.DataFrame], remote_url: str) -> DatasetVersion:
    """Write ``files`` as ``<root>/datasets/<name>/``, track the folder with DVC and push it.

    Args:
        root: the DVC repository folder (created on first use).
        name: dataset name; the folder and the ``.dvc`` file are named after it.
        files: file name -> frame, written as Parquet.
        remote_url: a local folder or an ``s3://bucket/prefix`` URL.

    Returns:
        The version, whose ``md5`` is the DVC directory hash recorded on every run and model.
    """
    root = Path(root).resolve()
    repo = _open_repo(root, remote_url)
    folder = root / "datasets" / name
    _write_atomically(folder, files)
    repo.add(str(folder))
    dvc_file = folder.with_name(f"{name}.dvc")
    out = yaml.safe_load(dvc_file.read_text())["outs"][0]
    md5 = out["md5"].removesuffix(".dir")
    try:
        repo.push(targets=[str(dvc_file)])
    except Exception as exc:  # network/credential problems surface as DVC errors
        raise DataError(f"pushing dataset {name} to the DVC remote {remote_url} failed: "
                        f"{str(exc).splitlines()[0]}") from None
    versions = root / "versions" / name
    versions.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dvc_file, versions / f"{md5}.dvc")
    return DatasetVersion(name=name, md5=md5, path=str(folder), remote=remote_url,
                          nfiles=int(out.get("nfiles", len(files))), size=int(out.get("size", 0)))


def list_versions(root: str | Path, name: str) -> list[str]:
    """The md5 hashes of every recorded version of ``name``, oldest first."""
    versions = Path(root) / "versions" / name
    files = sorted(versions.glob("*.dvc"), key=lambda p: p.stat().st_mtime) if versions.is_dir() else []
    return [p.stem for p in files]


def checkout_version(root: str | Path, name: str, md5: str, remote_url: str) -> Path:
    """Restore version ``md5`` of dataset ``name`` into its folder (pulling from the remote if needed).

    Raises:
        DataError: no such version was ever recorded here.
    """
    root = Path(root).resolve()
    matches = [v for v in list_versions(root, name) if v.startswith(md5)] if md5 else []
    if len(matches) != 1:
        known = ", ".join(v[:12] for v in list_versions(root, name)) or "none"
        raise DataError(f"dataset {name} has no unique version {md5!r} (known: {known})")
    repo = _open_repo(root, remote_url)
    dvc_file = root / "datasets" / f"{name}.dvc"
    shutil.copyfile(root / "versions" / name / f"{matches[0]}.dvc", dvc_file)
    repo.pull(targets=[str(dvc_file)], force=True)
    return root / "datasets" / name


def read_split(version_path: str | Path, split: str) -> pd.DataFrame:
    """Read one split file of a versioned dataset folder."""
    path = Path(version_path) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(f"dataset split {path} does not exist (was the dataset ingested?)")
    return pd.read_parquet(path)
