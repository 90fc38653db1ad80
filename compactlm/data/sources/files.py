"""Local sources: reading data files (CSV/TSV, JSONL/JSON, Parquet, plain text) and folders of them.

Every failure raises ``DataError`` naming the file (and the line or column where it can): the CLI
prints it without a traceback. A folder is read as the union of its data files (sorted, hidden files
skipped); one unreadable file fails the whole read, so a dataset version is never built from part of
a source.

Text files are UTF-8, or whatever their byte-order mark declares (UTF-8, UTF-16 or UTF-32: spreadsheet
"Unicode text" exports are UTF-16 with a BOM). CSV, TSV, JSONL, JSON and TXT files may be compressed
(``.gz``, ``.bz2``, ``.xz``, and ``.zst`` when the ``zstandard`` package is installed). CSV and TSV are
parsed losslessly (``compactlm.data.sources.delimited``).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import json
import lzma
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from compactlm.data.sources.delimited import header_fields, parse_delimited
from compactlm.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")  # the formats that may be compressed
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: where it is, its name within the source, and its content fingerprint."""

    uri: str  # a local path or s3://bucket/key: what errors and reports name
    key: str  # the name relative to the source root (stable between runs)
    fingerprint: str  # sha256 of the bytes (local) or "etag:size" (S3): equal means unchanged
    size: int
    mtime_ns: int = 0  # local files: lets an unchanged file skip re-hashing


def file_format(name: str | Path) -> tuple[str, str | None]:
    """``(format suffix, compression suffix or None)`` of a file name: ``tickets.csv.gz`` -> ``(".csv", ".gz")``."""
    path = PurePosixPath(str(name))
    suffix = path.suffix.lower()
    if suffix in COMPRESSED_SUFFIXES:
        return PurePosixPath(path.stem).suffix.lower(), suffix
    return suffix, None


def is_data_file(name: str | Path) -> bool:
    """True for a name ``read_table`` reads: a supported suffix, or a compressed CSV/TSV/JSONL/JSON/TXT one."""
    fmt, compression = file_format(name)
    return fmt in (SUPPORTED_SUFFIXES if compression is None else _TEXT_SUFFIXES)


def _unsupported(name: str) -> DataError:
    fmt, compression = file_format(name)
    shown = (fmt + (compression or "")) or "(no suffix)"
    return DataError(f"{name}: unsupported file type {shown} (use one of {', '.join(SUPPORTED_SUFFIXES)}; CSV, TSV, "
                     f"JSONL, JSON and TXT may be compressed as {', '.join(COMPRESSED_SUFFIXES)})")


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes, decompressed when its name ends in a compression suffix."""
    _, compression = file_format(path)
    if compression is None:
        return path.read_bytes()
    if compression == ".zst":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{name}: reading .zst files needs the zstandard package (pip install zstandard), "
                            "which is not installed") from None
        opener = lambda p: zstandard.ZstdDecompressor().stream_reader(p.open("rb"))  # noqa: E731
    else:
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[compression]
    try:
        with opener(path) as handle:
            return handle.read()
    except Exception as exc:  # each library raises its own types for corrupt data
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name}: not a readable {compression} file ({detail})") from None


def read_text(path: Path, name: str | None = None) -> str:
    """A text file's content: decompressed, decoded as its byte-order mark says (UTF-8 without one).

    Args:
        path: the file (compressed when its name ends in .gz, .bz2, .xz or .zst).
        name: how errors name the file; the path by default.

    Raises:
        DataError: bytes that are not valid in the encoding (naming the byte and its line), or an
            unreadable compressed file.
    """
    name = name or str(path)
    data = _read_bytes(path, name)
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        label = "UTF-8" if encoding.startswith("utf-8") else encoding.upper() + " (as its byte-order mark says)"
        raise DataError(f"{name}: not {label} text (invalid byte 0x{data[exc.start]:02x} on line {line})") from None


def jsonl_records(path: Path, name: str | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file (a leading BOM is tolerated).

    Args:
        path: the file (UTF-8).
        name: how errors name the file; the path by default.

    Raises:
        DataError: one line naming ``name`` (default: the path) and the line that is not a JSON object.
    """
    name = name or str(path)
    # Split on "\n" only: JSON strings may hold U+2028 and other characters str.splitlines() breaks on.
    for lineno, line in enumerate(read_text(path, name).split("\n"), start=1):
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
        payload = json.loads(read_text(path, name))
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


def _read_delimited(path: Path, sep: str, name: str, warnings: list[str]) -> pd.DataFrame:
    header, rows = parse_delimited(read_text(path, name), sep, name, warnings)
    return pd.DataFrame(rows, columns=header).astype(str)  # None stays missing (NaN)


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        detail = str(exc).strip().splitlines()[0][:160]
        raise DataError(f"{name}: not a readable Parquet file ({detail})") from None


def is_tab_table(text: str) -> bool:
    """Whether a ``.txt`` file's text is a tab-separated table (a spreadsheet's "Unicode text" or "Text (Tab
    delimited)" export) rather than a document: its first non-blank line holds a tab and the next non-blank
    line has as many tab-separated fields.
    """
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    return (len(lines) >= 2 and "\t" in lines[0] and lines[1].count("\t") == lines[0].count("\t")
            and all(0 < len(field.strip()) <= 64 for field in lines[0].split("\t")))


TAB_TXT_NOTE = "read as a tab-separated table (its first lines are tab-separated columns, as a spreadsheet's " \
               "'Unicode text' export writes them); other .txt files are documents"


def _read_txt(path: Path, name: str, warnings: list[str] | None = None) -> pd.DataFrame:
    """A plain-text file is one document of a corpus (``id`` = its name, ``title`` = its stem), unless it is
    a tab-separated table (``is_tab_table``): then it is read as TSV, with a note in ``warnings``."""
    text = read_text(path, name)
    if is_tab_table(text):
        if warnings is not None:
            warnings.append(f"{name}: {TAB_TXT_NOTE}")
        header, rows = parse_delimited(text, "\t", name, warnings)
        return pd.DataFrame(rows, columns=header).astype(str)
    base = PurePosixPath(name)
    title = PurePosixPath(base.stem).stem if file_format(name)[1] else base.stem
    return pd.DataFrame({"id": [name], "title": [title], "text": [text]}).astype("string")


def _check_columns(columns: list[str], name: str) -> None:
    """Fail on a header naming a column twice (after trimming spaces): one of them would be used silently."""
    seen: dict[str, int] = {}
    for position, column in enumerate(columns, start=1):
        if column in seen:
            raise DataError(f"{name}: column {column!r} appears twice in the header (columns {seen[column]} and "
                            f"{position}); rename or remove one")
        seen[column] = position


def read_table(path: str | Path, name: str | None = None, warnings: list[str] | None = None) -> pd.DataFrame:
    """Read one data file into a DataFrame.

    Args:
        path: a .csv, .tsv, .jsonl, .json, .parquet or .txt file; all but Parquet may be compressed
            (.gz, .bz2, .xz, .zst) and may start with a UTF-8, UTF-16 or UTF-32 byte-order mark.
        name: how errors name the file (e.g. its ``s3://`` address); the path by default.
        warnings: what was read in an unexpected way (a trailing delimiter, quotes read as plain
            characters...) is appended to it, naming the file and line.

    Raises:
        DataError: missing, empty, not decodable, unparseable, a column named twice, or holding no rows.
    """
    path = Path(path)
    name = name or str(path)
    _check_file(path, name)
    suffix, _ = file_format(path.name)
    warnings = warnings if warnings is not None else []
    if suffix == ".parquet":
        frame = _read_parquet(path, name)
    elif suffix == ".jsonl":
        frame = _read_jsonl(path, name)
    elif suffix == ".json":
        frame = _read_json(path, name)
    elif suffix == ".txt":
        frame = _read_txt(path, name, warnings)
    else:
        frame = _read_delimited(path, "\t" if suffix == ".tsv" else ",", name, warnings)
    if frame.empty:
        raise DataError(f"{name}: no data rows (only a header, or nothing but blank lines)")
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_columns(list(frame.columns), name)
    return frame


def read_columns(path: str | Path, name: str | None = None) -> list[str] | None:
    """The column names of a data file, reading no more than needed: a CSV/TSV header line, a Parquet
    schema, a JSON or JSONL file whole (its records may differ in keys); None for a .txt document.

    What ``read_table`` would fail on first (a missing, empty, undecodable or unsupported file, a column
    named twice) fails here the same way, so a source can be checked in about a second before a run starts.

    Raises:
        DataError: as ``read_table``, for the parts of the file read.
    """
    path = Path(path)
    name = name or str(path)
    _check_file(path, name)
    suffix, _ = file_format(path.name)
    if suffix == ".txt":
        text = read_text(path, name)
        if not is_tab_table(text):
            return None
        columns = [c.strip() for c in header_fields(text, "\t", name)]
        _check_columns(columns, name)
        return columns
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            columns = [str(c).strip() for c in pq.read_schema(path).names if not str(c).startswith("__index_level_")]
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{name}: not a readable Parquet file ({str(exc).strip().splitlines()[0][:160]})") from None
    elif suffix in (".csv", ".tsv"):
        columns = [c.strip() for c in header_fields(read_text(path, name), "\t" if suffix == ".tsv" else ",", name)]
    else:
        return list(read_table(path, name).columns)
    _check_columns(columns, name)
    return columns


def _check_file(path: Path, name: str) -> None:
    """Fail unless ``path`` is an existing, non-empty file of a supported type."""
    if not path.exists():
        raise DataError(f"data file {name} does not exist")
    if path.is_dir():
        raise DataError(f"data path {name} is a folder; pass one data file, or use read_source for folders")
    if not is_data_file(path.name):
        raise _unsupported(name)
    if path.stat().st_size == 0:
        raise DataError(f"{name}: the file is empty")


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
        DataError: the path does not exist, a file of an unsupported type is named, or a folder holds no
            data file.
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
        if suffixes is not None and not (is_data_file(file.name) and file_format(file.name)[0] in suffixes):
            if root.is_file():  # one file named on purpose: say why it is not read, rather than ignore it
                raise _unsupported(str(root))
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
