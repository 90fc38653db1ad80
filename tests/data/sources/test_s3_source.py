"""compactlm.data.sources.s3: S3 prefixes through boto3 against a moto server on loopback."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
from helpers import one_line_error as one_line

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.prepare import prepare_dataset
from compactlm.data.sources.s3 import list_s3_files
from compactlm.data.versioning import checkout_version, list_versions, read_split
from compactlm.errors import DataError


def put(s3, key: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    if key.endswith(".parquet"):
        frame.to_parquet(buffer, index=False)
    elif key.endswith(".jsonl"):
        buffer.write(frame.to_json(orient="records", lines=True).encode())
    else:
        buffer.write(frame.to_csv(index=False).encode())
    s3.put_object(Bucket="compactlm-data", Key=key, Body=buffer.getvalue())


def test_an_s3_prefix_is_ingested_incrementally_and_versioned_on_an_s3_remote(s3, tmp_path, tiny_frame):
    put(s3, "raw/support/part-1.csv", tiny_frame.iloc[:300])
    put(s3, "raw/support/part-2.jsonl", tiny_frame.iloc[300:450])
    s3.put_object(Bucket="compactlm-data", Key="raw/support/_SUCCESS.log", Body=b"")
    s3.put_object(Bucket="compactlm-data", Key="raw/other/part-9.csv", Body=b"not under the prefix")
    config = DataConfig(source="s3://compactlm-data/raw/support")
    root, remote = tmp_path / "repo", "s3://compactlm-data/dvc"

    first = ingest_version(config, root, remote)
    assert (first.files_total, first.files_read) == (2, 2) and first.ignored == ["_SUCCESS.log"]
    assert first.result.counts["rows_in"] == 450
    remote_keys = {o["Key"] for o in s3.list_objects_v2(Bucket="compactlm-data", Prefix="dvc/")["Contents"]}
    assert f"dvc/files/md5/{first.version.md5[:2]}/{first.version.md5[2:]}.dir" in remote_keys

    again = ingest_version(config, root, remote)  # ETags unchanged: nothing downloaded, no new version
    assert again.reused and again.version.md5 == first.version.md5 and again.files_read == 0

    put(s3, "raw/support/part-3.parquet", tiny_frame.iloc[450:])
    third = ingest_version(config, root, remote)
    assert not third.reused and (third.files_read, third.files_cached) == (1, 2)
    assert third.result.counts["rows_in"] == 600
    original = {p.name: p.read_bytes() for p in (root / "datasets" / config.dataset_name).iterdir()}

    shutil.rmtree(root / ".dvc" / "cache")  # restores must come from S3
    checkout_version(root, config.dataset_name, first.version.md5[:8], remote)
    assert len(read_split(first.version.path, "train")) < len(pd.read_parquet(io.BytesIO(original["train.parquet"])))
    restored = checkout_version(root, config.dataset_name, third.version.md5, remote)
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == original
    assert list_versions(root, config.dataset_name) == [first.version.md5, third.version.md5]


def test_a_single_s3_object_and_the_endpoint_setting(s3, monkeypatch, tiny_frame):
    endpoint = s3.meta.endpoint_url
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the config says where the store is
    put(s3, "one/support.csv", tiny_frame.iloc[:200])
    config = DataConfig(source="s3://compactlm-data/one/support.csv", s3_endpoint_url=endpoint)
    files, _ = list_s3_files(config.source, endpoint)
    assert [(f.uri, f.key) for f in files] == [("s3://compactlm-data/one/support.csv", "support.csv")]
    assert prepare_dataset(config).counts["rows_in"] == 200


def test_s3_errors_are_one_line_and_name_the_address(s3, tiny_frame):
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source="s3://no-such-bucket/raw"))
    one_line(excinfo, "s3://no-such-bucket/raw", "bucket does not exist")
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source="s3://compactlm-data/empty/"))
    one_line(excinfo, "s3://compactlm-data/empty/", "no data object")
    s3.put_object(Bucket="compactlm-data", Key="bad/rows.jsonl", Body=b'{"instruction": "a"}\nnot json\n')
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source="s3://compactlm-data/bad"))
    one_line(excinfo, "s3://compactlm-data/bad/rows.jsonl line 2", "not valid JSON")


def test_an_unreachable_endpoint_fails_with_one_line(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(key, value)
    config = DataConfig(source="s3://bucket/raw", s3_endpoint_url="http://127.0.0.1:9")  # nothing listens on 9
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(config)
    one_line(excinfo, "s3://bucket/raw", "cannot reach the S3 endpoint")
