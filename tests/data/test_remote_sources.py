"""Remote sources: S3 prefixes through boto3 against a moto server on loopback, and Hugging Face datasets."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
from helpers import one_line_error as one_line

from compactlm.config import DataConfig
from compactlm.data.incremental import ingest_version
from compactlm.data.ingest import prepare_dataset
from compactlm.data.remote import list_s3_files, read_hf_dataset
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


# ---------------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_datasets(tiny_frame, tmp_path_factory):
    import datasets

    folder = tmp_path_factory.mktemp("hf")
    rows = tiny_frame[["instruction", "response", "intent"]]
    datasets.Dataset.from_pandas(rows.iloc[:300], preserve_index=False).save_to_disk(str(folder / "single"))
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(rows.iloc[:400], preserve_index=False),
                          "test": datasets.Dataset.from_pandas(rows.iloc[400:], preserve_index=False)}
                         ).save_to_disk(str(folder / "dict"))
    (folder / "files").mkdir()
    rows.iloc[:250].to_json(folder / "files" / "train.jsonl", orient="records", lines=True)
    return folder


def test_a_saved_hugging_face_dataset_is_read_from_disk(saved_datasets):
    assert len(read_hf_dataset(f"hf:{saved_datasets / 'single'}")) == 300
    assert len(read_hf_dataset(f"hf:{saved_datasets / 'dict'}")) == 600  # every split
    assert len(read_hf_dataset(f"hf:{saved_datasets / 'dict'}", split="test")) == 200
    with pytest.raises(DataError) as excinfo:
        read_hf_dataset(f"hf:{saved_datasets / 'dict'}", split="validation")
    one_line(excinfo, "no split 'validation'", "test, train", "data.hf_split")


def test_a_folder_of_files_loads_through_load_dataset_and_ingests(saved_datasets, tmp_path):
    result = prepare_dataset(DataConfig(source=f"hf:{saved_datasets / 'files'}"))
    assert result.counts["rows_in"] == 250
    root, remote = tmp_path / "repo", str(tmp_path / "remote")
    config = DataConfig(source=f"hf:{saved_datasets / 'single'}")
    first = ingest_version(config, root, remote)
    assert not first.reused and first.result.counts["rows_in"] == 300
    assert ingest_version(config, root, remote).reused  # the saved files did not change


def test_a_hub_name_offline_fails_with_one_line_naming_the_dataset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source="hf:bitext/Bitext-customer-support-llm-chatbot-training-dataset"))
    one_line(excinfo, "'bitext/Bitext-customer-support-llm-chatbot-training-dataset'", "hub is unreachable",
             "HF_HUB_OFFLINE=1")
