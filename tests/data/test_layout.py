"""compactlm.data.layout: the dataset folder layout, and every writer and reader using it."""

from __future__ import annotations

from pathlib import Path

from compactlm.data.layout import DataLayout
from compactlm.state import state_paths

MD5 = "0123456789abcdef0123456789abcdef"


def test_the_layout_of_a_state_home(tmp_path):
    layout = DataLayout.for_home(tmp_path)
    assert layout.repo == tmp_path / "data" and layout.home == tmp_path
    assert layout.dataset_dir("d") == tmp_path / "data" / "datasets" / "d"
    assert layout.split_file("d", "test") == tmp_path / "data" / "datasets" / "d" / "test.parquet"
    assert layout.dvc_file("d") == tmp_path / "data" / "datasets" / "d.dvc"
    assert layout.version_dvc_file("d", MD5) == tmp_path / "data" / "versions" / "d" / f"{MD5}.dvc"
    assert layout.index_file("d") == tmp_path / "data" / "versions" / "d" / "index.json"
    assert layout.manifest_file("d") == tmp_path / "data" / "manifests" / "d.json"
    assert layout.raw_cache_dir == tmp_path / "data" / "cache" / "raw"
    assert layout.data_docs_dir("d", MD5) == tmp_path / "data-docs" / "d" / MD5[:12]
    assert layout.report_dir("d", MD5) == tmp_path / "reports" / "d" / MD5[:12]
    assert layout.dvc_ignored == ("/versions/", "/manifests/", "/cache/")


def test_a_version_folder_leads_back_to_its_layout_and_the_state_paths_agree(tmp_path):
    layout = DataLayout.for_home(tmp_path)
    assert DataLayout.of_version(layout.dataset_dir("d")) == layout
    assert DataLayout.of_version(str(layout.dataset_dir("d"))).home == tmp_path
    assert state_paths(tmp_path).data_repo == DataLayout.for_home(Path(tmp_path).resolve()).repo
