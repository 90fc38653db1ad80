"""compactlm.data.sources: what kind a source spec is, and listing and reading any kind through one entry."""

from __future__ import annotations

import pytest
from helpers import one_line_error, write_csv

from compactlm.config import DataConfig
from compactlm.data.sources import SourceKind, list_files, read_file, source_kind
from compactlm.errors import ConfigError, DataError


def test_each_spec_has_one_kind(tmp_path):
    (tmp_path / "saved").mkdir()
    assert source_kind("generator") is SourceKind.GENERATOR
    assert source_kind("data/support.csv") is SourceKind.LOCAL
    assert source_kind(str(tmp_path)) is SourceKind.LOCAL
    assert source_kind("s3://bucket/raw/support") is SourceKind.S3
    assert source_kind(f"hf:{tmp_path / 'saved'}") is SourceKind.HF_LOCAL
    assert source_kind("hf:bitext/customer-support") is SourceKind.HF_HUB
    assert source_kind("gs://bucket/raw") is SourceKind.OTHER_URL
    assert [k for k in SourceKind if k.reads_files] == [SourceKind.LOCAL, SourceKind.S3, SourceKind.OTHER_URL]


def test_an_hf_path_under_the_home_folder_is_local(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "saved").mkdir()
    assert source_kind("hf:~/saved") is SourceKind.HF_LOCAL
    assert source_kind("hf:~/not-there") is SourceKind.HF_HUB


def test_the_generator_and_hub_datasets_have_no_files_to_list():
    assert list_files("generator") == ([], [])
    assert list_files("hf:bitext/customer-support") == ([], [])


def test_a_local_folder_lists_data_files_and_an_hf_folder_lists_every_file(tmp_path):
    write_csv(tmp_path / "a.csv", "instruction,response,intent", ["hi,hello,greet"])
    (tmp_path / "notes.md").write_text("not data", encoding="utf-8")
    (tmp_path / ".hidden.csv").write_text("skipped", encoding="utf-8")
    files, ignored = list_files(str(tmp_path))
    assert [f.key for f in files] == ["a.csv"] and ignored == ["notes.md"]
    files, ignored = list_files(f"hf:{tmp_path}")
    assert [f.key for f in files] == ["a.csv", "notes.md"] and ignored == []


def test_another_scheme_fails_as_a_path_that_does_not_exist():
    with pytest.raises(DataError) as excinfo:
        list_files("gs://bucket/raw")
    one_line_error(excinfo, "data path gs:", "bucket/raw does not exist")


def test_a_text_file_is_one_document_named_by_its_key(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "intro.txt").write_text("Hello there.\nA second line.", encoding="utf-8")
    files, _ = list_files(str(tmp_path))
    frame = read_file(files[0])
    assert frame["id"].tolist() == ["docs/intro.txt"] and frame["title"].tolist() == ["intro"]


def test_only_a_missing_local_path_fails_the_early_config_check(tmp_path):
    for spec in ("generator", "s3://bucket/raw", "hf:bitext/customer-support", "gs://bucket/raw", str(tmp_path)):
        DataConfig(source=spec).check_source()
    with pytest.raises(ConfigError) as excinfo:
        DataConfig(source=str(tmp_path / "missing.csv")).check_source()
    one_line_error(excinfo, "missing.csv", "does not exist")
