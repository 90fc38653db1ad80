"""DVC dataset versions on an S3 remote: a real S3 API (moto server on loopback) spoken over HTTP."""

from __future__ import annotations

import shutil

import pandas as pd

from compactlm.data.versioning import checkout_version, version_dataset


def test_push_to_s3_and_restore_byte_for_byte_from_it(tmp_path, s3):
    root, remote = tmp_path / "repo", "s3://compactlm-data/datasets"
    first = version_dataset(root, "support", {"train.parquet": pd.DataFrame({"a": [1, 2, 3]})}, remote)
    original = (root / "datasets" / "support" / "train.parquet").read_bytes()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="compactlm-data")["Contents"]]
    assert f"datasets/files/md5/{first.md5[:2]}/{first.md5[2:]}.dir" in keys, keys
    second = version_dataset(root, "support", {"train.parquet": pd.DataFrame({"a": [9]})}, remote)
    assert second.md5 != first.md5
    shutil.rmtree(root / ".dvc" / "cache")  # force the restore to come from S3
    restored = checkout_version(root, "support", first.md5[:10], remote)
    assert (restored / "train.parquet").read_bytes() == original
