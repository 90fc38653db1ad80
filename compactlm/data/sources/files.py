"""Local sources: reading data files (CSV/TSV, JSONL/JSON, Parquet, plain text) and folders of them.

Every failure raises ``DataError`` naming the file (and the line or column where it can): the CLI
prints it without a traceback. A folder is read as the union of its data files (sorted, hidden files
skipped); one unreadable file fails the whole read, so a dataset version is never built from part of
a source.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from compactlm.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: where it is, its name within the source, and its content fingerprint."""

    uri: str  # a local path or s3://bucket/key: what errors and reports name
    key: str  # the name relative to the source root (stable between runs)
    fingerprint: str  # sha256 of the bytes (local) or "etag:size" (S3): equal means unchanged
    size: int
    mtime_ns: int = 0  # local files: lets an unchanged file skip re-hashing


def _check_utf8(path: Path, name: str) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{name}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} on line {line})") from None


def jsonl_records(path: Path, name: str | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file (a leading BOM is tolerated).

    Args:
        path: the file (UTF-8).
        name: how errors name the file; the path by default.

    Raises:
        DataError: one line naming ``name`` (default: the path) and the line that is not a JSON object.
    """
    name = name or str(path)
    with path.open(encoding="utf-8-sig") as handle:  # tolerate the BOM some Windows tools write
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name} line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{name} line {lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def _read_jsonl(path: Path, name: str) -> pd.DataFrame:
    return pd.DataFrame.from_records([record for _, record in jsonl_records(path, name)])


def _read_json(path: Path, name: str) -> pd.DataFrame:
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        # A .json file holding JSON lines is common enough to accept.
        if exc.msg.startswith("Extra data"):
            return _read_jsonl(path, name)
        raise DataError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(payload, dict):
        # {"data": [...]} / {"rows": [...]}: take the single list of records.
        lists = [v for v in payload.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{name}: expected a list of records or an object holding one list")
        payload = lists[0]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise DataError(f"{name}: expected a list of JSON objects")
    return pd.DataFrame.from_records(payload)


def _read_csv(path: Path, sep: str, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: the file has no header and no rows") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"{name}: not a valid {'TSV' if sep == chr(9) else 'CSV'} file ({detail})") from None


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        detail = str(exc).strip().splitlines()[0][:160]
        raise DataError(f"{name}: not a readable Parquet file ({detail})") from None


def _read_txt(path: Path, name: str) -> pd.DataFrame:
    """A plain-text file is one document of a corpus (``id`` = its name, ``title`` = its stem)."""
    text = path.read_text(encoding="utf-8-sig")
    return pd.DataFrame({"id": [name], "title": [Path(name).stem], "text": [text]}).astype("string")


def read_table(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read one data file into a DataFrame.

    Args:
        path: a .csv, .tsv, .jsonl, .json, .parquet or .txt file.
        name: how errors name the file (e.g. its ``s3://`` address); the path by default.

    Raises:
        DataError: missing, empty, non-UTF-8, unparseable, or holding no rows.
    """
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise DataError(f"data file {name} does not exist")
    if path.is_dir():
        raise DataError(f"data path {name} is a folder; pass one data file, or use read_source for folders")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{name}: unsupported format {suffix or '(no suffix)'!r} "
                        f"(use one of {', '.join(SUPPORTED_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise DataError(f"{name}: the file is empty")
    if suffix == ".parquet":
        frame = _read_parquet(path, name)
    else:
        _check_utf8(path, name)
        if suffix == ".jsonl":
            frame = _read_jsonl(path, name)
        elif suffix == ".json":
            frame = _read_json(path, name)
        elif suffix == ".txt":
            frame = _read_txt(path, name)
        else:
            frame = _read_csv(path, "\t" if suffix == ".tsv" else ",", name)
    if frame.empty:
        raise DataError(f"{name}: no data rows (only a header, or nothing but blank lines)")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_local_files(path: str | Path, known: dict[str, SourceFile] | None = None,
                     suffixes: tuple[str, ...] | None = SUPPORTED_SUFFIXES) -> tuple[list[SourceFile], list[str]]:
    """The data files of a local file or folder with their fingerprints, and the names of ignored files.

    A file whose size and modification time match ``known`` (the previous run's manifest, by key)
    keeps its recorded fingerprint without being read again. ``suffixes=None`` lists every file (a
    saved Hugging Face dataset is fingerprinted as a whole).

    Args:
        path: a file, or a folder read recursively (hidden files and folders skipped).
        known: the previous run's files by key.
        suffixes: the data file suffixes to list (others are returned as ignored); None for all.

    Returns:
        ``(files, ignored)`` in name order; a file's key is its path relative to the folder (or its name).

    Raises:
        DataError: the path does not exist, or a folder holds no data file.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"data path {root} does not exist")
    if root.is_file():
        candidates, base = [root], root.parent
    else:
        candidates = sorted(p for p in root.rglob("*")
                            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        base = root
    files, ignored = [], []
    for file in candidates:
        key = file.relative_to(base).as_posix()
        if suffixes is not None and file.suffix.lower() not in suffixes:
            ignored.append(key)
            continue
        stat = file.stat()
        previous = (known or {}).get(key)
        if previous and previous.size == stat.st_size and previous.mtime_ns == stat.st_mtime_ns:
            fingerprint = previous.fingerprint
        else:
            fingerprint = _sha256(file)
        files.append(SourceFile(str(file), key, fingerprint, stat.st_size, stat.st_mtime_ns))
    if not files:
        raise DataError(f"data folder {root} holds no data file (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    return files, ignored


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV, JSONL or Parquet (by suffix), atomically: a temp file, then a rename.

    Args:
        frame: the rows to write (CSV and Parquet without the index; JSONL one object per row, UTF-8).
        path: the file to write; its folder is created.

    Returns:
        ``path``.

    Raises:
        DataError: the suffix is not .csv, .jsonl or .parquet.
    """
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
