"""DVC dataset versions on an S3 remote: a real S3 API (moto server on loopback) spoken over HTTP."""

from __future__ import annotations

import shutil

import boto3
import pandas as pd
import pytest

from compactlm.data.versioning import checkout_version, version_dataset


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="compactlm-data")
    yield client
    server.stop()


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
