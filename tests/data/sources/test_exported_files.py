"""Files as support teams export them (spreadsheets, help-desk tools, notebooks): read losslessly, or fail
with one line naming the file and line. Each test writes its own small file."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma

import pytest
from helpers import one_line_error

from compactlm.config import DataConfig
from compactlm.data.prepare import prepare_dataset
from compactlm.data.sources import list_files, read_table
from compactlm.errors import DataError

LABELS = ["billing", "shipping", "refund", "account", "other"]


def ticket_lines(n: int = 50) -> list[tuple[str, str]]:
    return [(f"ticket number {i} about my {LABELS[i % 5]} problem", LABELS[i % 5]) for i in range(n)]


def test_tsv_with_plain_double_quotes_keeps_every_line(tmp_path):
    rows = ticket_lines()
    rows[7] = ('"it broke and nobody answers', "refund")  # a quote opening a field, never closed
    rows[20] = ('Customer said "it broke', "billing")  # a quote inside the text
    rows[33] = ('the "premium" plan is "great"', "account")
    path = tmp_path / "export.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert len(frame) == 50  # 50 lines in, 50 rows out
    assert frame["text"].tolist() == [t for t, _ in rows]
    assert frame["label"].tolist() == [lab for _, lab in rows]
    assert len(warnings) == 1 and "double quotes read as plain characters" in warnings[0] and "line 9" in warnings[0]


def test_really_quoted_tsv_is_still_unquoted(tmp_path):
    path = tmp_path / "quoted.tsv"
    path.write_text('text\tlabel\n"a ""quoted""\ttab"\tbilling\n"two\nlines"\tshipping\nplain\trefund\n',
                    encoding="utf-8")
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert frame["text"].tolist() == ['a "quoted"\ttab', "two\nlines", "plain"] and warnings == []


def test_csv_quote_that_would_swallow_rows_names_the_line(tmp_path):
    lines = [f"{t},{lab}" for t, lab in ticket_lines(10)]
    lines[3] = '"it broke,billing'  # opens on line 5 ...
    lines[6] = 'still broken",refund'  # ... and closes at a field end on line 8: 3 rows would vanish
    path = tmp_path / "swallow.csv"
    path.write_text("text,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "line 5", "double quote", "swallow rows")


def test_csv_quote_never_closed_names_the_line_it_opens_on(tmp_path):
    path = tmp_path / "unclosed.csv"
    path.write_text('text,label\nfine text,billing\n"it broke,refund\nmore text,other\n', encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "line 3", "not a valid CSV")


def test_trailing_delimiter_on_every_row_keeps_columns_and_labels(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("text,label\n" + "".join(f"{t},{lab},\n" for t, lab in ticket_lines(30)), encoding="utf-8")
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert list(frame.columns) == ["text", "label"]
    assert frame["label"].tolist() == [lab for _, lab in ticket_lines(30)]
    assert len(warnings) == 1 and "line 2 has 3 fields, the header has 2" in warnings[0] and "30 row(s)" in warnings[0]
    result = prepare_dataset(DataConfig(source=str(path), task="classification", min_rows=1))
    assert result.counts["rows_kept"] == 30 and "line 2 has 3 fields" in result.to_markdown()


def test_an_extra_field_with_a_value_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("text,label\nfine text,billing\nsecond,refund,surprise\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "line 3 has 3 fields, the header has 2")


def test_short_rows_are_padded_and_warned_about(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("text,label,id\nfine text,billing,1\nsecond,refund\n", encoding="utf-8")
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert len(frame) == 2 and frame["id"].isna().tolist() == [False, True]
    assert "line 3 has 2 field(s), the header has 3" in warnings[0]


@pytest.mark.parametrize("header", ["text,label,text", "text,label, text "])
def test_a_column_named_twice_is_an_error_naming_it(tmp_path, header):
    path = tmp_path / "twice.csv"
    path.write_text(f"{header}\na,billing,b\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "column 'text' appears twice", "columns 1 and 3")


def test_header_in_other_case_and_spaces_is_matched_and_reported(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text(" Text ,LABEL\n" + "".join(f"{t},{lab}\n" for t, lab in ticket_lines(30)), encoding="utf-8")
    result = prepare_dataset(DataConfig(source=str(path), task="classification", min_rows=1))
    assert result.columns_mapped == {"Text": "text", "LABEL": "label"}
    assert result.counts["rows_kept"] == 30
    assert "`LABEL` -> `label`" in result.to_markdown()


def test_ambiguous_case_variants_are_not_guessed(tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("Text,TEXT,label\na,b,billing\n", encoding="utf-8")
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(source=str(path), task="classification", min_rows=1))
    one_line_error(excinfo, str(path), "missing required column(s) 'text'", "found: Text, TEXT, label")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_unicode_text_exports_with_a_byte_order_mark(tmp_path, encoding):
    path = tmp_path / "unicode.tsv"
    bom = {"utf-16-be": b"\xfe\xff"}.get(encoding, b"")  # Python writes the mark itself for the others
    path.write_bytes(bom + "text\tlabel\ncafé ☕ is late\tshipping\nrefund please\trefund\n".encode(encoding))
    frame = read_table(path)
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == ["café ☕ is late", "refund please"]


def test_utf16_with_a_broken_byte_names_the_encoding_and_line(tmp_path):
    path = tmp_path / "broken.tsv"
    path.write_bytes("text\tlabel\nok\tx\n".encode("utf-16") + b"\x00\xd8")  # a lone high surrogate
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "not UTF-16", "line 3")


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("inner", [".csv", ".tsv", ".jsonl"])
def test_compressed_files_are_read_and_listed_as_files(tmp_path, suffix, inner):
    content = {".csv": "text,label\nwhere is it,shipping\nrefund me,refund\n",
               ".tsv": "text\tlabel\nwhere is it\tshipping\nrefund me\trefund\n",
               ".jsonl": '{"text": "where is it", "label": "shipping"}\n{"text": "refund me", "label": "refund"}\n'}
    path = tmp_path / f"tickets{inner}{suffix}"
    path.write_bytes(COMPRESSORS[suffix](content[inner].encode("utf-8")))
    files, ignored = list_files(str(path))
    assert [f.key for f in files] == [path.name] and ignored == []
    assert read_table(path)["label"].tolist() == ["shipping", "refund"]


def test_corrupt_gzip_is_one_line(tmp_path):
    path = tmp_path / "tickets.csv.gz"
    path.write_bytes(gzip.compress(b"text,label\na,b\n")[:20])
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "not a readable .gz file")


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard is installed")
def test_zst_without_zstandard_names_the_missing_package(tmp_path):
    path = tmp_path / "tickets.csv.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd not really zstd")
    assert [f.key for f in list_files(str(path))[0]] == ["tickets.csv.zst"]
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    one_line_error(excinfo, str(path), "zstandard package", "pip install zstandard")


@pytest.mark.parametrize("name", ["tickets.xlsx", "tickets.parquet.gz", "tickets.csv.7z"])
def test_a_file_of_unsupported_type_is_not_called_a_folder(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError) as excinfo:
        list_files(str(path))
    message = one_line_error(excinfo, str(path), "unsupported file type")
    assert "folder" not in message


def test_a_folder_lists_compressed_files_and_ignores_others(tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"text,label\nx,y\n"))
    (tmp_path / "notes.docx").write_bytes(b"PK")
    files, ignored = list_files(str(tmp_path))
    assert [f.key for f in files] == ["a.csv.gz"] and ignored == ["notes.docx"]


def test_a_unicode_text_export_named_txt_is_read_as_a_table(tmp_path):
    """Excel's "Unicode text" export is UTF-16, tab-separated, and named .txt: a table, not a document."""
    from compactlm.data.sources.files import read_columns

    path = tmp_path / "tickets.txt"
    rows = "".join(f"where is order {i}, café\tit ships on day {i}\tshipping\n" for i in range(30))
    path.write_text("instruction\tresponse\tintent\n" + rows, encoding="utf-16")
    warnings: list[str] = []
    frame = read_table(path, warnings=warnings)
    assert list(frame.columns) == ["instruction", "response", "intent"] and len(frame) == 30
    assert frame["instruction"].iloc[3] == "where is order 3, café"
    assert len(warnings) == 1 and "read as a tab-separated table" in warnings[0] and str(path) in warnings[0]
    assert read_columns(path) == ["instruction", "response", "intent"]  # the pre-flight header check sees it
    result = prepare_dataset(DataConfig(source=str(path), task="instruction", min_rows=1))
    assert result.counts["rows_in"] == 30 and result.counts["rows_kept"] == 30


def test_a_prose_txt_with_tabs_stays_a_document(tmp_path):
    from compactlm.data.sources.files import read_columns

    path = tmp_path / "notes.txt"
    path.write_text("Shipping policy\n\tOrders ship in two days.\nRefunds take a week.\n", encoding="utf-8")
    frame = read_table(path)
    assert list(frame.columns) == ["id", "title", "text"] and len(frame) == 1
    assert read_columns(path) is None
