"""The data watcher: files the last ingest did not see, announced once."""

from __future__ import annotations

import pytest
from helpers import one_line_error, write_csv

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.errors import DataError
from compactlm.monitoring.watch import already_announced, record_announced, source_changes

HEADER = "instruction,response,intent"
ROWS = [f"where is my order number {i}?,It ships tomorrow.,track_order" for i in range(30)] + \
       [f"I want a refund for item {i},The refund is on its way.,get_refund" for i in range(30)]


def test_new_changed_and_removed_files_since_the_last_ingest(tmp_path):
    incoming, root = tmp_path / "incoming", tmp_path / "repo"
    config = DataConfig(source=str(incoming), min_rows=10)
    with pytest.raises(DataError) as excinfo:  # a typo in the path must not mean watching nothing forever
        source_changes(config, root)
    one_line_error(excinfo, str(incoming), "no such file or folder")
    incoming.mkdir()
    assert not source_changes(config, root).any  # nothing landed yet: quiet, not an error
    write_csv(incoming / "a.csv", HEADER, ROWS)
    first = source_changes(config, root)
    assert first.new == ["a.csv"] and first.any and first.last_version is None
    ingest_version(config, root, str(tmp_path / "remote"))
    assert not source_changes(config, root).any  # the ingest saw it
    write_csv(incoming / "b.csv", HEADER, ROWS[:20])
    write_csv(incoming / "a.csv", HEADER, ROWS[10:])
    later = source_changes(config, root)
    assert later.new == ["b.csv"] and later.changed == ["a.csv"] and later.last_version is not None
    assert "1 new, 1 changed, 0 removed" in later.summary()
    (incoming / "b.csv").unlink()
    (incoming / "a.csv").unlink()
    write_csv(incoming / "c.csv", HEADER, ROWS)
    assert source_changes(config, root).removed == ["a.csv"]

    marker = tmp_path / "announced.json"
    assert not already_announced(marker, later)
    record_announced(marker, later)
    assert already_announced(marker, later) and not already_announced(marker, source_changes(config, root))


def test_the_generator_cannot_be_watched(tmp_path):
    with pytest.raises(DataError) as excinfo:
        source_changes(DataConfig(), tmp_path)
    one_line_error(excinfo, "generator", "watched")


def test_an_s3_prefix_is_watched_by_etag_without_downloading(tmp_path, s3):
    body = "\n".join([HEADER, *ROWS]) + "\n"
    config = DataConfig(source="s3://compactlm-data/incoming/", min_rows=10)
    s3.put_object(Bucket="compactlm-data", Key="incoming/a.csv", Body=body.encode())
    first = source_changes(config, tmp_path / "repo")
    assert first.new == ["a.csv"] and first.source == "s3://compactlm-data/incoming/"
    ingest_version(config, tmp_path / "repo", str(tmp_path / "remote"))
    assert not source_changes(config, tmp_path / "repo").any
    changed = body + "late refund question,Sure.,get_refund\n"
    s3.put_object(Bucket="compactlm-data", Key="incoming/a.csv", Body=changed.encode())
    assert source_changes(config, tmp_path / "repo").changed == ["a.csv"]
