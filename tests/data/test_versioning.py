"""DVC dataset versions in a temporary repository with a local-folder remote (real DVC, no mocks)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import one_line_error

from compactlm.config import DataConfig
from compactlm.data.prepare import prepare_dataset
from compactlm.data.versioning import checkout_version, list_versions, read_split, version_dataset
from compactlm.errors import DataError

NAME = "support-instructions"


@pytest.fixture
def dvc(tmp_path, monkeypatch):
    """(repository root, remote folder), both absolute, with DVC's site cache kept inside tmp_path."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    return (tmp_path / "repo").resolve(), str((tmp_path / "remote").resolve())


@pytest.fixture(scope="module")
def files_a() -> dict[str, pd.DataFrame]:
    return prepare_dataset(DataConfig(n_rows=200, seed=0)).files()


@pytest.fixture(scope="module")
def files_b() -> dict[str, pd.DataFrame]:
    return prepare_dataset(DataConfig(n_rows=200, seed=1)).files()


def folder_bytes(folder: str | Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def remote_object(remote: str, md5: str, suffix: str = "") -> Path:
    return Path(remote) / "files" / "md5" / md5[:2] / f"{md5[2:]}{suffix}"


def test_version_dataset_tracks_and_pushes_the_folder(dvc, files_a):
    root, remote = dvc
    version = version_dataset(root, NAME, files_a, remote)

    assert re.fullmatch(r"[0-9a-f]{32}", version.md5)
    assert version.name == NAME and version.remote == remote
    assert Path(version.path) == root / "datasets" / NAME
    assert version.nfiles == 4
    written = folder_bytes(version.path)
    assert set(written) == set(files_a) == {"train.parquet", "val.parquet", "test.parquet", "quarantine.parquet"}
    assert version.size == sum(len(b) for b in written.values())
    assert (root / "datasets" / f"{NAME}.dvc").is_file()
    assert (root / "versions" / NAME / f"{version.md5}.dvc").is_file()
    # The remote holds the directory manifest and every file, content-addressed by md5.
    assert remote_object(remote, version.md5, ".dir").is_file()
    for filename, data in written.items():
        assert remote_object(remote, hashlib.md5(data).hexdigest()).read_bytes() == data, filename
    # No staging folders left beside the dataset.
    assert sorted(p.name for p in (root / "datasets").iterdir()) == [NAME, f"{NAME}.dvc"]
    pd.testing.assert_frame_equal(read_split(version.path, "train"), files_a["train.parquet"], check_dtype=False)


def test_same_content_gives_the_same_version(dvc, files_a):
    root, remote = dvc
    first = version_dataset(root, NAME, files_a, remote)
    again = version_dataset(root, NAME, {k: v.copy() for k, v in files_a.items()}, remote)
    assert again.md5 == first.md5
    assert list_versions(root, NAME) == [first.md5]


def test_changed_content_gives_a_new_version_and_both_are_listed(dvc, files_a, files_b):
    root, remote = dvc
    first = version_dataset(root, NAME, files_a, remote)
    second = version_dataset(root, NAME, files_b, remote)
    assert second.md5 != first.md5
    assert list_versions(root, NAME) == [first.md5, second.md5]
    assert remote_object(remote, first.md5, ".dir").is_file()
    assert remote_object(remote, second.md5, ".dir").is_file()


def test_checkout_restores_an_old_version_byte_for_byte_from_the_remote(dvc, files_a, files_b):
    root, remote = dvc
    first = version_dataset(root, NAME, files_a, remote)
    original = folder_bytes(first.path)
    second = version_dataset(root, NAME, files_b, remote)
    assert folder_bytes(second.path) != original

    shutil.rmtree(root / ".dvc" / "cache")  # the restore must come from the remote
    restored = checkout_version(root, NAME, first.md5, remote)

    assert restored == root / "datasets" / NAME
    after = folder_bytes(restored)
    assert set(after) == set(original)
    for filename, data in original.items():
        assert after[filename] == data, filename
    pd.testing.assert_frame_equal(read_split(restored, "test"), files_a["test.parquet"], check_dtype=False)


def test_checkout_by_prefix_removes_files_the_version_did_not_have(dvc, files_a):
    root, remote = dvc
    first = version_dataset(root, NAME, files_a, remote)
    original = folder_bytes(first.path)
    version_dataset(root, NAME, {**files_a, "extra.parquet": pd.DataFrame({"x": [1]})}, remote)
    restored = checkout_version(root, NAME, first.md5[:8], remote)
    assert folder_bytes(restored) == original


def test_unknown_version_names_the_known_ones(dvc, files_a, files_b):
    root, remote = dvc
    first = version_dataset(root, NAME, files_a, remote)
    second = version_dataset(root, NAME, files_b, remote)
    with pytest.raises(DataError) as excinfo:
        checkout_version(root, NAME, "0123456789abcdef", remote)
    one_line_error(excinfo, NAME, "0123456789abcdef", first.md5[:12], second.md5[:12])


def test_unknown_dataset_says_no_versions_are_known(dvc):
    root, remote = dvc
    with pytest.raises(DataError) as excinfo:
        checkout_version(root, "never-ingested", "abc", remote)
    one_line_error(excinfo, "never-ingested", "known: none")
    assert list_versions(root, "never-ingested") == []


def test_read_split_of_a_missing_split_names_the_file(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(folder / "train.parquet")
    assert read_split(folder, "train")["a"].tolist() == [1]
    with pytest.raises(DataError) as excinfo:
        read_split(folder, "test")
    one_line_error(excinfo, str(folder / "test.parquet"))
