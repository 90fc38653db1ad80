"""compactlm.data.cleaning: canonical rows (column errors name the file), cleaning, and the quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import one_line_error, write_csv

from compactlm.config import DataConfig
from compactlm.data.cleaning import clean_rows, to_canonical
from compactlm.data.sources import read_table
from compactlm.data.splits import split_rows
from compactlm.errors import DataError

DEFAULTS = DataConfig()


def read_canonical(path: Path) -> pd.DataFrame:
    return to_canonical(read_table(path), str(path))


# ---------------------------------------------------------------------------------------------------
# A user's columns that do not fit the schema: one line naming the file
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# clean_rows
# ---------------------------------------------------------------------------------------------------


def test_clean_rows_counts_add_up_and_every_quarantined_row_has_a_reason(tiny_frame):
    raw = tiny_frame.copy()
    raw.loc[0, "instruction"] = None
    raw.loc[1, "response"] = "   "
    raw.loc[2, "intent"] = ""
    raw.loc[3, "instruction"] = "x"  # shorter than min_chars
    raw.loc[4, "response"] = "y" * 301  # longer than max_chars
    raw.loc[5, ["instruction", "response"]] = raw.loc[6, ["instruction", "response"]].to_numpy()  # duplicate
    raw.loc[7, "instruction"] = "  " + raw.loc[8, "instruction"].replace(" ", "   ") + " "  # dup after normalising
    raw.loc[7, "response"] = raw.loc[8, "response"]
    canonical = to_canonical(raw, "generator")
    result = clean_rows(canonical, min_chars=2, max_chars=300)

    counts = result.counts
    assert counts["rows_in"] == len(raw) == 600
    assert counts["rows_in"] == counts["rows_kept"] + counts["rows_quarantined"]
    assert counts["rows_kept"] == len(result.rows)
    assert counts["rows_quarantined"] == len(result.quarantine)
    per_reason = {k: v for k, v in counts.items() if k.startswith("quarantined: ")}
    assert sum(per_reason.values()) == counts["rows_quarantined"]
    assert result.quarantine["reason"].notna().all()
    assert (result.quarantine["reason"].str.len() > 0).all()

    reason_of = dict(zip(result.quarantine["id"], result.quarantine["reason"], strict=True))
    ids = canonical["id"]
    assert reason_of[ids[0]] == "blank or null instruction"
    assert reason_of[ids[1]] == "blank or null response"
    assert reason_of[ids[2]] == "blank or null intent"
    assert reason_of[ids[3]] == "instruction shorter than 2 characters"
    assert reason_of[ids[4]] == "response longer than 300 characters"
    # The later copy of a duplicate pair is the one quarantined; the first stays.
    assert reason_of[ids[6]] == "exact duplicate of an earlier row"
    assert reason_of[ids[8]] == "exact duplicate of an earlier row"
    assert ids[5] in set(result.rows["id"]) and ids[7] in set(result.rows["id"])
    # Nothing lost, nothing invented.
    assert sorted([*result.rows["id"], *result.quarantine["id"]]) == sorted(ids)
    assert not result.rows.duplicated(["instruction", "response"]).any()


def test_clean_rows_normalises_the_kept_text_and_fills_missing_ids():
    rows = to_canonical(pd.DataFrame({
        "id": ["a1", None],
        "instruction": ["  where   is my\tparcel ", "cafe\u0301 order"],
        "response": ["it ships\r\ntoday", "ok then"],
        "intent": [" track_order ", "place_order"],
        "category": [None, "ORDER"],
    }), "inline")
    result = clean_rows(rows, 2, 2000)
    assert result.quarantine.empty
    assert result.rows["instruction"].tolist() == ["where is my parcel", "caf\u00e9 order"]
    assert result.rows["response"].tolist() == ["it ships\ntoday", "ok then"]
    assert result.rows["intent"].tolist() == ["track_order", "place_order"]
    assert result.rows["category"].tolist() == ["general", "ORDER"]
    assert result.rows["id"].iloc[0] == "a1"
    assert result.rows["id"].iloc[1].startswith("row-")


def test_clean_rows_of_only_bad_rows_keeps_nothing_and_says_why():
    rows = to_canonical(pd.DataFrame({"instruction": [None, "a"], "response": ["fine", "fine"],
                                      "intent": ["x", "x"]}), "inline")
    result = clean_rows(rows, 2, 2000)
    assert result.rows.empty
    assert result.counts["rows_quarantined"] == 2
    with pytest.raises(DataError) as excinfo:
        split_rows(result.rows, 0.15, 0.15, 0)
    one_line_error(excinfo, "no usable rows", "quarantine")


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


def test_duplicates_only_keep_the_first_row(tmp_path):
    row = "where is my parcel,it ships today,track_order"
    path = write_csv(tmp_path / "dups.csv", "instruction,response,intent",
                     [row] * 4 + ["where   is my parcel ,  it ships today,track_order"])  # same after normalising
    cleaned = clean_rows(read_canonical(path), DEFAULTS.min_chars, DEFAULTS.max_chars)
    assert len(cleaned.rows) == 1
    assert cleaned.quarantine["reason"].tolist() == ["exact duplicate of an earlier row"] * 4
    assert cleaned.counts == {"rows_in": 5, "rows_kept": 1, "rows_quarantined": 4,
                              "quarantined: exact duplicate of an earlier row": 4}


# ---------------------------------------------------------------------------------------------------
# Invisible text is not text (#13.2)
# ---------------------------------------------------------------------------------------------------

INVISIBLE = "\u200f\u200e\u202e\u202c"  # RLM, LRM, RIGHT-TO-LEFT OVERRIDE, POP DIRECTIONAL FORMATTING


def test_rows_of_only_format_characters_are_quarantined_as_empty_after_cleaning(tmp_path):
    path = write_csv(tmp_path / "bidi.csv", "text,label", [
        "where is my parcel,shipping", f"{INVISIBLE},billing", "\u200d\u200d\u2063,refund", "refund me please,refund"])
    rows = to_canonical(read_table(path), str(path), "classification")
    result = clean_rows(rows, 2, 2000, task="classification")
    assert result.rows["text"].tolist() == ["where is my parcel", "refund me please"]
    assert result.quarantine["reason"].tolist() == ["text empty after cleaning"] * 2
    assert result.counts["quarantined: text empty after cleaning"] == 2


def test_bidi_overrides_inside_text_are_removed_and_emoji_zwj_sequences_kept():
    woman_technologist = "\U0001f469\u200d\U0001f4bb"
    rows = to_canonical(pd.DataFrame({
        "instruction": ["my invoice says \u202etxt.exe\u202c is attached", f"the {woman_technologist} app crashed"],
        "response": ["we will check it", "please reinstall it"], "intent": ["billing", "bug"]}), "inline")
    result = clean_rows(rows, 2, 2000)
    assert result.rows["instruction"].tolist() == ["my invoice says txt.exe is attached",
                                                   f"the {woman_technologist} app crashed"]


def test_a_chat_message_of_only_format_characters_is_a_blank_message(tmp_path):
    from compactlm.data.chat import prepare_chat
    from compactlm.data.cleaning import CleanOptions

    conversations = [[{"role": "user", "content": "where is my parcel"}, {"role": "assistant", "content": INVISIBLE}],
                     [{"role": "user", "content": "refund please"}, {"role": "assistant", "content": "done"}]]
    rows = to_canonical(pd.DataFrame({"messages": [json.dumps(c) for c in conversations]}), "inline", "chat")
    result = prepare_chat(rows, CleanOptions())
    assert result.rows["instruction"].tolist() == ["refund please"]
    assert result.quarantine["reason"].tolist() == ["blank message in the conversation"]
