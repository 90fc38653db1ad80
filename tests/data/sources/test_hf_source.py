"""compactlm.data.sources.hf: Hugging Face datasets saved on disk, folders of files, and hub names offline."""

from __future__ import annotations

import pytest
from helpers import one_line_error as one_line

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.prepare import prepare_dataset
from compactlm.data.sources.hf import read_hf_dataset
from compactlm.errors import DataError


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
