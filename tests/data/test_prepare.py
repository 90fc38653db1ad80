"""compactlm.data.prepare: a user's file prepared end to end (defaults filled, quarantine, stable ids)."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import one_line_error, write_csv

from compactlm.config import DataConfig
from compactlm.data.prepare import prepare_dataset
from compactlm.data.schemas import SCHEMAS
from compactlm.errors import DataError

DEFAULTS = DataConfig()


def user_rows(n_per_intent: int = 20, intents: tuple[str, ...] = ("track_order", "get_refund")) -> list[str]:
    """Distinct, valid CSV data rows (instruction,response,intent)."""
    return [f"question number {i} about {intent},answer number {i} for {intent},{intent}"
            for intent in intents for i in range(n_per_intent)]


def test_prepare_dataset_with_missing_file_fails_naming_it(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source=str(path)))
    one_line_error(excinfo, str(path))


def test_one_megabyte_field_is_quarantined_as_too_long(tmp_path):
    huge = "x" * 1_000_000
    path = write_csv(tmp_path / "huge.csv", "instruction,response,intent",
                     [*user_rows(), f"{huge},fine response,track_order"])
    result = prepare_dataset(DataConfig(source=str(path)))
    assert DEFAULTS.max_chars == 2000
    assert len(result.quarantine) == 1
    assert result.quarantine["reason"].tolist() == ["instruction longer than 2000 characters"]
    assert len(result.quarantine["instruction"].iloc[0]) == 1_000_000
    kept = pd.concat(result.splits.values())
    assert kept["instruction"].str.len().max() <= 2000
    assert result.counts["rows_in"] == 41
    assert result.counts["rows_kept"] == 40


def test_duplicates_only_are_too_few_to_split(tmp_path):
    path = write_csv(tmp_path / "dups.csv", "instruction,response,intent",
                     ["where is my parcel,it ships today,track_order"] * 30)
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source=str(path)))
    assert "too few" in one_line_error(excinfo, "split")


def test_unknown_labels_pass_ingestion(tmp_path):
    """Label checking is the quality suite's job (see tests/quality/test_expectations.py)."""
    path = write_csv(tmp_path / "labels.csv", "instruction,response,intent",
                     user_rows(intents=("track_order", "not_a_real_intent")))
    result = prepare_dataset(DataConfig(source=str(path)))
    assert result.quarantine.empty
    assert set(pd.concat(result.splits.values())["intent"]) == {"track_order", "not_a_real_intent"}


def test_prepare_dataset_on_a_minimal_user_csv_fills_the_defaults(tmp_path):
    path = write_csv(tmp_path / "user.csv", "instruction,response,intent", user_rows())
    result = prepare_dataset(DataConfig(source=str(path)))
    assert result.source == str(path)
    assert result.counts["rows_in"] == result.counts["rows_kept"] == 40
    assert result.counts["rows_quarantined"] == 0
    assert sum(len(f) for f in result.splits.values()) == 40
    assert all(len(result.splits[name]) > 0 for name in ("train", "val", "test"))
    rows = pd.concat(result.splits.values(), ignore_index=True)
    # The canonical columns, then the instruction-format (chat template) conversion.
    assert tuple(rows.columns) == (*SCHEMAS["instruction"].output_columns, "prompt", "completion")
    assert rows["prompt"].str.startswith("### Instruction:\n").all()
    assert (rows["completion"] == rows["response"]).all()
    assert rows["id"].str.fullmatch(r"row-[0-9a-f]{12}").all()
    assert rows["id"].is_unique
    assert (rows["category"] == "general").all()
    for column in ("age_band", "region", "customer_tier"):
        assert (rows[column] == "unknown").all(), column
    assert rows["resolved"].isna().all()  # no outcome label: the bias audit reports "not audited"
    assert set(result.files()) == {"train.parquet", "val.parquet", "test.parquet", "quarantine.parquet"}


def test_content_ids_are_stable_across_reads(tmp_path):
    path = write_csv(tmp_path / "user.csv", "instruction,response,intent", user_rows())
    first = prepare_dataset(DataConfig(source=str(path)))
    second = prepare_dataset(DataConfig(source=str(path)))
    for name in ("train", "val", "test"):
        assert first.splits[name]["id"].tolist() == second.splits[name]["id"].tolist()
