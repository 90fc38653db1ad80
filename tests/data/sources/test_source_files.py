"""compactlm.data.sources.files: the bad-input corpus (one-line errors naming the fault) and round trips."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import one_line_error, write_csv

from compactlm.data.sources import read_table, write_table
from compactlm.errors import DataError

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
    one_line_error(excinfo, str(path), "unsupported file type .xlsx", ".csv", ".parquet")


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


# ---------------------------------------------------------------------------------------------------
# Positive round trips
# ---------------------------------------------------------------------------------------------------


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
