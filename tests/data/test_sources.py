"""Reading user data files: the bad-input corpus (one-line errors naming the fault) and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import one_line_error

from compactlm.config import DataConfig
from compactlm.data.ingest import prepare_dataset
from compactlm.data.prepare import CANONICAL_COLUMNS, clean_rows, to_canonical
from compactlm.data.sources import read_table, write_table
from compactlm.errors import DataError

DEFAULTS = DataConfig()


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def user_rows(n_per_intent: int = 20, intents: tuple[str, ...] = ("track_order", "get_refund")) -> list[str]:
    """Distinct, valid CSV data rows (instruction,response,intent)."""
    return [f"question number {i} about {intent},answer number {i} for {intent},{intent}"
            for intent in intents for i in range(n_per_intent)]


def read_canonical(path: Path) -> pd.DataFrame:
    return to_canonical(read_table(path), str(path))


# ---------------------------------------------------------------------------------------------------
# Bad inputs that must fail with one line naming the file (and line/column where it can)
# ---------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "empty" in one_line_error(excinfo, str(path))


def test_header_only_csv(tmp_path):
    path = write_csv(tmp_path / "header.csv", "instruction,response,intent", [])
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "no data rows" in one_line_error(excinfo, str(path))


def test_only_blank_lines_csv(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path))


def test_semicolon_csv_reports_missing_columns_and_hints_at_the_delimiter(tmp_path):
    path = tmp_path / "semicolon.csv"
    path.write_text("instruction;response;intent\nwhere is my parcel;it ships today;track_order\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_canonical(path)
    message = one_line_error(excinfo, str(path), "'instruction'", "'response'", "'intent'")
    assert "delimiter" in message


def test_semicolon_csv_with_commas_in_the_text_still_hints_at_the_delimiter(tmp_path):
    path = tmp_path / "semicolon.csv"
    path.write_text("instruction;response;intent\nHi, where is my parcel?;It ships today;track_order\n",
                    encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_canonical(path)
    assert "delimiter" in one_line_error(excinfo, str(path))


def test_tab_separated_file_named_csv_hints_at_the_delimiter(tmp_path):
    path = tmp_path / "tabs.csv"
    path.write_text("instruction\tresponse\tintent\nwhere is it\tit ships\ttrack_order\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_canonical(path)
    assert "delimiter" in one_line_error(excinfo, str(path))


def test_missing_required_column_is_named_with_the_columns_found(tmp_path):
    path = write_csv(tmp_path / "no_intent.csv", "instruction,response,category",
                     ["where is my parcel,it ships today,ORDER"])
    with pytest.raises(DataError) as excinfo:
        read_canonical(path)
    message = one_line_error(excinfo, str(path), "'intent'", "found: instruction, response, category")
    assert "'instruction'" not in message.split("found:")[0]  # only the missing one is listed as missing
    assert "delimiter" not in message  # several columns were found: no delimiter hint


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"instruction,response,intent\nwhere is it,it ships,track_order\ncaf\xe9 order,ok,track_order\n")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    message = one_line_error(excinfo, str(path), "line 3", "0xe9")
    assert "UTF-8" in message


def test_non_utf8_jsonl_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"instruction": "ok"}\n{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n')
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "line 3")


def test_ragged_csv_row_names_the_line(tmp_path):
    path = write_csv(tmp_path / "ragged.csv", "instruction,response,intent",
                     ["where is it,it ships,track_order", "where is it,it ships,track_order,extra"])
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "not a valid CSV" in one_line_error(excinfo, str(path), "line 3")


def test_truncated_parquet(tmp_path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"instruction": ["where is my parcel"] * 50, "response": ["soon"] * 50,
                  "intent": ["track_order"] * 50}).to_parquet(path, index=False)
    data = path.read_bytes()
    assert pd.read_parquet(path).shape == (50, 3)  # a real, valid file before the truncation
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "not a readable Parquet file" in one_line_error(excinfo, str(path))


def test_jsonl_line_that_is_not_json_names_the_line_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "a", "response": "b", "intent": "c"}\n\n'
                    '{"instruction": "a", "response": "b", "intent": "c"}\n'
                    'this is not json\n', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "not valid JSON" in one_line_error(excinfo, f"{path} line 4")


def test_jsonl_line_that_is_not_an_object_names_the_line_number(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "a"}\n["a", "b"]\n', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, f"{path} line 2", "list")


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"instruction": "a"},\n  {"instruction": }\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, f"{path} line 3")


def test_json_that_is_not_a_list_of_records(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"count": 3, "name": "x"}', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path))


def test_path_that_does_not_exist(tmp_path):
    path = tmp_path / "missing" / "rows.csv"
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    assert "does not exist" in one_line_error(excinfo, str(path))


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "rows.xlsx"
    path.write_bytes(b"PK\x03\x04 not really excel")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "'.xlsx'", ".csv", ".parquet")


def test_file_without_suffix(tmp_path):
    path = tmp_path / "rows"
    path.write_text("instruction,response,intent\na,b,c\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "no suffix")


def test_folder_path(tmp_path):
    folder = tmp_path / "data.csv"  # a folder, even with a data-file suffix
    folder.mkdir()
    with pytest.raises(DataError) as excinfo:
        read_table(folder)
    assert "folder" in one_line_error(excinfo, str(folder))


def test_prepare_dataset_with_missing_file_fails_naming_it(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source=str(path)))
    one_line_error(excinfo, str(path))


# ---------------------------------------------------------------------------------------------------
# Bad rows: quarantined with a reason, never an error and never dropped silently
# ---------------------------------------------------------------------------------------------------


def test_blank_and_null_text_is_quarantined_with_a_reason(tmp_path):
    path = write_csv(tmp_path / "blanks.csv", "instruction,response,intent", [
        "where is my parcel,it ships today,track_order",  # the only good row
        '"   ",whitespace-only instruction,track_order',
        ",empty instruction,track_order",
        "empty response,,track_order",
        "empty intent,it ships today,",
        'tab-only response,"\t ",track_order',
    ])
    cleaned = clean_rows(read_canonical(path), DEFAULTS.min_chars, DEFAULTS.max_chars)
    assert cleaned.rows["instruction"].tolist() == ["where is my parcel"]
    reasons = cleaned.quarantine["reason"].tolist()
    assert sorted(reasons) == sorted(["blank or null instruction"] * 2 + ["blank or null response"] * 2
                                     + ["blank or null intent"])
    assert cleaned.counts["rows_in"] == 6
    assert cleaned.counts["rows_quarantined"] == 5
    assert cleaned.counts["quarantined: blank or null response"] == 2


def test_null_json_values_are_quarantined(tmp_path):
    path = tmp_path / "nulls.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": None, "response": "it ships today", "intent": "track_order"},
        {"instruction": "where is my parcel", "response": None, "intent": "track_order"},
        {"instruction": "where is my parcel", "response": "it ships today", "intent": "track_order"},
    ]) + "\n", encoding="utf-8")
    cleaned = clean_rows(read_canonical(path), DEFAULTS.min_chars, DEFAULTS.max_chars)
    assert len(cleaned.rows) == 1
    assert sorted(cleaned.quarantine["reason"]) == ["blank or null instruction", "blank or null response"]


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


def test_duplicates_only_keep_the_first_row(tmp_path):
    row = "where is my parcel,it ships today,track_order"
    path = write_csv(tmp_path / "dups.csv", "instruction,response,intent",
                     [row] * 4 + ["where   is my parcel ,  it ships today,track_order"])  # same after normalising
    cleaned = clean_rows(read_canonical(path), DEFAULTS.min_chars, DEFAULTS.max_chars)
    assert len(cleaned.rows) == 1
    assert cleaned.quarantine["reason"].tolist() == ["exact duplicate of an earlier row"] * 4
    assert cleaned.counts == {"rows_in": 5, "rows_kept": 1, "rows_quarantined": 4,
                              "quarantined: exact duplicate of an earlier row": 4}


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


# ---------------------------------------------------------------------------------------------------
# A minimal user file and positive round trips
# ---------------------------------------------------------------------------------------------------


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
    assert tuple(rows.columns) == (*CANONICAL_COLUMNS, "prompt", "completion")
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


TRICKY = pd.DataFrame({
    "instruction": ["where is my parcel", 'a "quoted", comma-laden question', "café ☕ naïve", "two\nlines"],
    "response": ["it ships today", "answer; with semicolon", "ünïcödé ✓", "tab\tinside"],
    "intent": ["track_order", "get_refund", "complaint", "review"],
})


def test_csv_round_trip(tmp_path):
    path = write_table(TRICKY, tmp_path / "rows.csv")
    pd.testing.assert_frame_equal(read_table(path), TRICKY, check_dtype=False)


def test_tsv_round_trip(tmp_path):
    path = tmp_path / "rows.tsv"
    TRICKY.to_csv(path, sep="\t", index=False)
    pd.testing.assert_frame_equal(read_table(path), TRICKY, check_dtype=False)


def test_jsonl_round_trip(tmp_path):
    path = write_table(TRICKY, tmp_path / "rows.jsonl")
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(TRICKY)
    pd.testing.assert_frame_equal(read_table(path), TRICKY, check_dtype=False)


def test_json_list_round_trip(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(TRICKY.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    pd.testing.assert_frame_equal(read_table(path), TRICKY, check_dtype=False)


def test_json_object_holding_one_list_and_json_lines_in_a_json_file(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 2, "data": TRICKY.to_dict(orient="records")}), encoding="utf-8")
    pd.testing.assert_frame_equal(read_table(wrapped), TRICKY, check_dtype=False)
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(r) for r in TRICKY.to_dict(orient="records")), encoding="utf-8")
    pd.testing.assert_frame_equal(read_table(lines), TRICKY, check_dtype=False)


def test_parquet_round_trip_keeps_types(tmp_path):
    frame = TRICKY.assign(resolved=[1, 0, 1, 1])
    path = write_table(frame, tmp_path / "rows.parquet")
    back = read_table(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert pd.api.types.is_integer_dtype(back["resolved"])


def test_headers_are_stripped_and_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(" instruction , response ,intent\r\nwhere is it,it ships,track_order\r\n".encode("utf-8-sig"))
    frame = read_table(path)
    assert list(frame.columns) == ["instruction", "response", "intent"]
    assert frame.iloc[0].tolist() == ["where is it", "it ships", "track_order"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_write_table_is_atomic_and_leaves_no_temp_file(tmp_path, suffix):
    target = tmp_path / "out" / f"rows{suffix}"
    write_table(TRICKY.head(1), target)  # an older version to replace
    returned = write_table(TRICKY, target)
    assert returned == target
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    pd.testing.assert_frame_equal(read_table(target), TRICKY, check_dtype=False)


@pytest.mark.parametrize("name", ["rows.xlsx", "rows.tsv", "rows"])
def test_write_table_rejects_unknown_suffixes(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(DataError) as excinfo:
        write_table(TRICKY, path)
    one_line_error(excinfo, str(path), ".csv", ".jsonl", ".parquet")
    assert list(tmp_path.iterdir()) == []
