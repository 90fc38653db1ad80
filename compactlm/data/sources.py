"""Reading user data files (CSV, JSONL/JSON, Parquet) into a DataFrame, with one-line errors.

Every failure raises ``DataError`` naming the file (and the line or column where it can): the CLI
prints it without a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from compactlm.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def _check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} on line {line})") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    with path.open(encoding="utf-8-sig") as handle:  # tolerate the BOM some Windows tools write
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path} line {lineno}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _read_json(path: Path) -> pd.DataFrame:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        # A .json file holding JSON lines is common enough to accept.
        if exc.msg.startswith("Extra data"):
            return _read_jsonl(path)
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(payload, dict):
        # {"data": [...]} / {"rows": [...]}: take the single list of records.
        lists = [v for v in payload.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a list of records or an object holding one list")
        payload = lists[0]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise DataError(f"{path}: expected a list of JSON objects")
    return pd.DataFrame.from_records(payload)


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has no header and no rows") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"{path}: not a valid {'TSV' if sep == chr(9) else 'CSV'} file ({detail})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        detail = str(exc).strip().splitlines()[0][:160]
        raise DataError(f"{path}: not a readable Parquet file ({detail})") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one data file into a DataFrame.

    Args:
        path: a .csv, .tsv, .jsonl, .json or .parquet file.

    Raises:
        DataError: missing, empty, non-UTF-8, unparseable, or holding no rows.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data path {path} is a folder; pass one .csv, .jsonl, .json or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path}: unsupported format {suffix or '(no suffix)'!r} "
                        f"(use one of {', '.join(SUPPORTED_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if suffix == ".parquet":
        frame = _read_parquet(path)
    else:
        _check_utf8(path)
        if suffix == ".jsonl":
            frame = _read_jsonl(path)
        elif suffix == ".json":
            frame = _read_json(path)
        else:
            frame = _read_csv(path, "\t" if suffix == ".tsv" else ",")
    if frame.empty:
        raise DataError(f"{path}: no data rows (only a header, or nothing but blank lines)")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV, JSONL or Parquet (by suffix), atomically: a temp file, then a rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise DataError(f"{path}: unsupported output format {suffix or '(no suffix)'!r} (use .csv, .jsonl or .parquet)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".csv":
        frame.to_csv(tmp, index=False)
    elif suffix == ".jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
