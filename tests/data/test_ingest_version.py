"""Incremental ingestion into DVC versions (real DVC, local remote): reuse, new files, the ordered index."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.versioning import (
    checkout_version,
    current_md5,
    list_versions,
    read_split,
    version_dataset,
    version_records,
)
from compactlm.errors import DataError


@pytest.fixture
def dvc(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    return (tmp_path / "repo").resolve(), str((tmp_path / "remote").resolve())


def write_part(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def parts(tiny_frame):
    return [tiny_frame.iloc[k * 150:(k + 1) * 150].reset_index(drop=True) for k in range(4)]


def test_a_folder_is_read_whole_and_an_unchanged_rerun_reuses_the_version(dvc, tmp_path, parts):
    root, remote = dvc
    folder = tmp_path / "incoming"
    write_part(folder, "a.csv", parts[0])
    write_part(folder, "b.jsonl", parts[1])
    (folder / "notes.md").write_text("ignored, but listed")
    config = DataConfig(source=str(folder))
    first = ingest_version(config, root, remote)
    assert not first.reused and (first.files_total, first.files_read, first.files_cached) == (2, 2, 0)
    assert first.ignored == ["notes.md"]
    assert first.result.counts["rows_in"] == 300
    before = {p.name: p.stat().st_mtime_ns for p in Path(first.version.path).iterdir()}

    again = ingest_version(config, root, remote)
    assert again.reused and again.result is None
    assert again.version.md5 == first.version.md5 and again.version.reused
    assert (again.files_read, again.files_cached) == (0, 2)
    assert list_versions(root, config.dataset_name) == [first.version.md5]
    assert {p.name: p.stat().st_mtime_ns for p in Path(again.version.path).iterdir()} == before  # untouched
    assert "nothing changed" in again.to_markdown()


def test_a_new_file_makes_a_new_version_holding_every_file_and_only_it_is_parsed(dvc, tmp_path, parts):
    root, remote = dvc
    folder = tmp_path / "incoming"
    write_part(folder, "a.csv", parts[0])
    write_part(folder, "b.parquet", parts[1])
    config = DataConfig(source=str(folder))
    first = ingest_version(config, root, remote)
    write_part(folder, "c.csv", parts[2])
    second = ingest_version(config, root, remote)
    assert not second.reused and second.version.md5 != first.version.md5
    assert (second.files_total, second.files_read, second.files_cached) == (3, 1, 2)
    assert second.result.counts["rows_in"] == 450
    assert list_versions(root, config.dataset_name) == [first.version.md5, second.version.md5]
    ids = set(pd.concat(read_split(second.version.path, s) for s in ("train", "val", "test", "quarantine"))["id"])
    assert ids == set(pd.concat(parts[:3])["id"])


def test_a_changed_file_or_a_changed_config_makes_a_new_version(dvc, tmp_path, parts):
    root, remote = dvc
    folder = tmp_path / "incoming"
    path = write_part(folder, "a.csv", parts[0])
    config = DataConfig(source=str(folder))
    first = ingest_version(config, root, remote)
    write_part(folder, "a.csv", parts[3])  # same name and size class, new content
    os.utime(path, ns=(1, 1))
    changed = ingest_version(config, root, remote)
    assert not changed.reused and changed.version.md5 != first.version.md5 and changed.files_read == 1
    stricter = ingest_version(DataConfig(source=str(folder), min_chars=30), root, remote)
    assert not stricter.reused and stricter.files_read == 0  # parsed files come from the cache
    assert stricter.result.quarantine["reason"].str.contains("shorter than 30").any()


def test_reuse_restores_the_latest_version_after_an_old_one_was_checked_out(dvc, tmp_path, parts):
    root, remote = dvc
    folder = tmp_path / "incoming"
    write_part(folder, "a.csv", parts[0])
    config = DataConfig(source=str(folder))
    first = ingest_version(config, root, remote)
    write_part(folder, "b.csv", parts[1])
    second = ingest_version(config, root, remote)
    checkout_version(root, config.dataset_name, first.version.md5, remote)
    assert current_md5(root, config.dataset_name) == first.version.md5
    again = ingest_version(config, root, remote)
    assert again.reused and again.version.md5 == second.version.md5
    assert current_md5(root, config.dataset_name) == second.version.md5
    assert len(read_split(again.version.path, "train")) == len(read_split(second.version.path, "train"))


def test_the_generator_is_reused_when_its_config_is_unchanged(dvc):
    root, remote = dvc
    first = ingest_version(DataConfig(n_rows=200), root, remote)
    again = ingest_version(DataConfig(n_rows=200), root, remote)
    assert again.reused and again.version.md5 == first.version.md5
    other = ingest_version(DataConfig(n_rows=200, seed=1), root, remote)
    assert not other.reused and other.version.md5 != first.version.md5
    forced = ingest_version(DataConfig(n_rows=200), root, remote, incremental=False)
    assert not forced.reused and forced.version.md5 == first.version.md5  # same content, same DVC hash


def test_the_index_keeps_recording_order_and_stats_when_old_content_returns(dvc, parts):
    root, remote = dvc
    a = {"train.parquet": parts[0]}
    b = {"train.parquet": parts[1]}
    first = version_dataset(root, "d", a, remote, {"rows": {"train": 150}})
    second = version_dataset(root, "d", b, remote)
    os.utime(root / "versions" / "d" / f"{second.md5}.dvc", ns=(1, 1))  # file times must not matter
    again = version_dataset(root, "d", a, remote)
    assert again.md5 == first.md5
    assert list_versions(root, "d") == [first.md5, second.md5]
    records = version_records(root, "d")
    assert records[0]["rows"] == {"train": 150} and records[0]["created"] <= records[1]["created"]
    assert json.loads((root / "versions" / "d" / "index.json").read_text())["name"] == "d"


def test_versions_record_rows_labels_and_counts(dvc):
    root, remote = dvc
    outcome = ingest_version(DataConfig(n_rows=300), root, remote, BiasConfig(reweighing=True))
    record = version_records(root, "support-instructions")[-1]
    assert record["md5"] == outcome.version.md5 and record["task"] == "instruction"
    assert record["rows"] == {n: len(f) for n, f in outcome.result.splits.items()}
    assert sum(record["labels"].values()) == sum(record["rows"].values())
    assert record["counts"]["rows_in"] == 300 and "pii replaced: email" in record["counts"]
    assert record["notes"][0].startswith("reweighed ")
    train = read_split(outcome.version.path, "train")
    assert train["sample_weight"].mean() == pytest.approx(1.0)
    assert "sample_weight" not in read_split(outcome.version.path, "test").columns


def test_a_failed_push_leaves_the_previous_version_in_place_and_records_nothing(dvc, tmp_path, parts):
    root, remote = dvc
    good = version_dataset(root, "d", {"train.parquet": parts[0]}, remote)
    before = {p.name: p.read_bytes() for p in Path(good.path).iterdir()}
    dvc_file = (root / "datasets" / "d.dvc").read_bytes()
    # A remote DVC cannot push to here (no dvc-gs): the failure happens after `dvc add`, at the push.
    with pytest.raises(DataError) as excinfo:
        version_dataset(root, "d", {"train.parquet": parts[1]}, "gs://bucket/datasets")
    assert "\n" not in str(excinfo.value) and "pushing dataset d to the DVC remote gs://bucket/datasets" in \
        str(excinfo.value)
    assert {p.name: p.read_bytes() for p in Path(good.path).iterdir()} == before
    assert (root / "datasets" / "d.dvc").read_bytes() == dvc_file
    assert list_versions(root, "d") == [good.md5]
    assert sorted(p.name for p in (root / "datasets").iterdir()) == ["d", "d.dvc"]
    restored = checkout_version(root, "d", good.md5, remote)  # the repository still works
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == before


# ---------------------------------------------------------------------------------------------------
# The ingest report says what happened (#13.4)
# ---------------------------------------------------------------------------------------------------


def test_the_summary_says_rows_read_kept_per_split_quarantined_per_reason_mapped_columns_and_warnings(dvc, tmp_path):
    root, remote = dvc
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima".split()
    lines = [f"my {w} order number {i} is {kind},{kind}," for i, w in enumerate(words) for kind in ("late", "lost")]
    lines += ["a lonely refund request,refund,", "another refund request,refund,", f"{words[0]} x,",
              "\u200f\u202e,lost,"]
    source = tmp_path / "tickets.csv"
    source.write_text(" Text ,LABEL\n" + "\n".join(lines) + "\n", encoding="utf-8")
    config = DataConfig(source=str(source), task="classification", min_rows=1)
    assert config.dataset_name == "classification"  # not "support-instructions"
    first = ingest_version(config, root, remote)
    summary = first.summary
    assert summary["rows_read"] == len(lines) == 28
    assert sum(summary["rows_kept"].values()) == 26 and all(summary["rows_kept"].values())
    assert summary["quarantined"] == {"blank or null label": 1, "text empty after cleaning": 1}
    assert summary["columns_mapped"] == {"Text": "text", "LABEL": "label"}
    warnings = summary["warnings"]
    assert any("line 2 has 3 fields, the header has 2" in w for w in warnings)
    assert any("absent from val and test" in w and "'refund' (2 row(s))" in w for w in warnings)
    text = first.summary_text()
    assert text.startswith("Read 28 rows; kept 26 rows (train ") and "quarantined 2" in text.splitlines()[0]
    assert "  quarantined, blank or null label: 1" in text and "warning: " in text
    assert "## Warnings" in first.to_markdown() and first.to_dict()["summary"] == summary
    record = version_records(root, "classification")[-1]
    assert record["warnings"] == warnings and record["columns_mapped"] == summary["columns_mapped"]
    again = ingest_version(config, root, remote)  # nothing changed: the reused version reports the same
    assert again.reused and again.summary == summary and again.summary_text() in again.to_markdown()


def test_an_explicit_dataset_name_is_kept_and_instruction_keeps_its_default():
    assert DataConfig(task="classification", dataset_name="reviews").dataset_name == "reviews"
    assert DataConfig().dataset_name == "support-instructions"
    assert DataConfig(task="chat").dataset_name == "chat"


# ---------------------------------------------------------------------------------------------------
# Personal data does not linger in the parsed-file cache (#13.5)
# ---------------------------------------------------------------------------------------------------

PII = ("jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "4111111111111111")


def _cached_text(root: Path) -> str:
    """Every value of every cached file, as text (read back with pandas: Parquet compresses its bytes)."""
    from compactlm.data.layout import DataLayout

    frames = [pd.read_parquet(p) for p in sorted(DataLayout(root).raw_cache_dir.glob("*.parquet"))]
    assert frames, "nothing was cached"
    return "\n".join(f.astype(str).to_csv(index=False) for f in frames) + " ".join(c for f in frames for c in f.columns)


def test_the_cache_holds_scrubbed_text_and_only_the_columns_the_run_uses(dvc, tmp_path, tiny_frame):
    from compactlm.data.layout import DataLayout
    from compactlm.data.raw_files import purge_raw_cache

    root, remote = dvc
    folder = tmp_path / "incoming"
    pii = tiny_frame.head(60).assign(
        instruction=lambda f: f["instruction"] + " - write to jane.doe@example.com or call +44\u00a020 7946 0958",
        response=lambda f: f["response"] + " Card 4111 1111 1111 1111 noted.",
        customer_email="jane.doe@example.com", id=lambda f: f["id"] + "-pii")
    write_part(folder, "pii.csv", pii)
    config = DataConfig(source=str(folder))
    first = ingest_version(config, root, remote)
    cached = _cached_text(root)
    assert not any(value in cached for value in PII), "PII left in the cache"
    assert "customer_email" not in cached and "{{Email}}" in cached
    counts = {k: v for k, v in first.result.cleaning.items() if k.startswith("pii replaced")}
    assert counts == {"pii replaced: email": 60, "pii replaced: phone": 60, "pii replaced: card": 60}
    # The next run takes the file from the cache: the same rows and the same counts as parsing it.
    write_part(folder, "more.csv", tiny_frame.iloc[200:260])
    second = ingest_version(config, root, remote)
    assert (second.files_read, second.files_cached) == (1, 1)
    assert {k: v for k, v in second.result.cleaning.items() if k.startswith("pii replaced")} == counts
    fresh = ingest_version(config, tmp_path / "other-repo", str(tmp_path / "other-remote"), incremental=False)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(second.result.splits[name], fresh.result.splits[name])
    # Purging deletes every cached copy; the versions stay and the next run reads the files again.
    n_files, size = purge_raw_cache(DataLayout(root).raw_cache_dir)
    assert n_files == 2 and size > 0 and not list(DataLayout(root).raw_cache_dir.iterdir())
    (folder / "more.csv").unlink()
    third = ingest_version(config, root, remote)
    assert (third.files_read, third.files_cached) == (1, 0) and third.version.md5 == first.version.md5


def test_without_scrubbing_the_cache_still_drops_unused_columns(dvc, tmp_path, tiny_frame):
    root, remote = dvc
    source = write_part(tmp_path / "incoming", "rows.csv", tiny_frame.head(60).assign(notes="private note"))
    ingest_version(DataConfig(source=str(source.parent), scrub_pii=False), root, remote)
    assert "private note" not in _cached_text(root)


def test_the_summary_says_what_cleaning_changed_and_which_files_were_ignored(dvc, tmp_path):
    """PII replaced per kind is in the printed summary and in the report's JSON; a folder's non-data files are a
    warning the user sees, not only a line in the markdown report."""
    root, remote = dvc
    folder = tmp_path / "exports"
    folder.mkdir()
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima".split()
    lines = [f"my {w} order {i} is {kind},{kind}" for i, w in enumerate(words) for kind in ("late", "lost")]
    lines[0] = "write to jane.doe@example.com about my apple order,late"
    (folder / "tickets.csv").write_text("text,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (folder / "tickets.xlsx").write_bytes(b"PK\x03\x04 not read")
    config = DataConfig(source=str(folder), task="classification", min_rows=1, scrub_pii=True)
    outcome = ingest_version(config, root, remote)
    assert outcome.summary["cleaning"]["pii replaced: email"] == 1
    assert outcome.to_dict()["counts"]["pii replaced: email"] == 1  # the ingest-report.json
    assert "Cleaned: pii replaced: email 1" in outcome.summary_text()
    ignored = [w for w in outcome.summary["warnings"] if "ignored" in w]
    assert len(ignored) == 1 and "tickets.xlsx" in ignored[0] and "1 file(s) ignored" in ignored[0]
    assert f"warning: {ignored[0]}" in outcome.summary_text()
