"""Lossless CSV/TSV parsing: every physical line is a row, or the read fails naming the line where it goes wrong.

pandas' reader swallows rows when a stray double quote opens a field (everything up to the next quote
becomes one value), shifts columns into the index when each row ends with an extra delimiter, and keeps
one of two columns of the same name. Here a file is parsed twice with Python's ``csv`` module: once with
quotes as plain characters (*literal*: one record per line) and once with quoting (*quoted*, strict: a
quote that opens a field must close it). Quoting is used when the file really is quoted: the quoted
parse gives every record the header's field count and, when the literal parse does too, as many
records. A TSV whose quotes are plain text (``Customer said "it broke``) is read literally, with a
warning; a CSV whose quote would swallow whole rows is an error naming the line where it opens.
"""

from __future__ import annotations

import csv
import io
import re

from compactlm.errors import DataError

Record = tuple[int, list[str]]  # (line the record starts on, its fields)


def _records(text: str, sep: str, quoted: bool) -> list[Record]:
    """The non-blank records of ``text`` with the line each starts on (raises ``csv.Error`` with ``line``)."""
    # The csv module refuses fields over 128 KiB by default; a field can be as long as the file.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', doublequote=True,
                        strict=quoted, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    out: list[Record] = []
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            exc.line = start  # the line the failing record starts on
            raise
        if fields and fields != [""]:
            out.append((start, fields))
        start = reader.line_num + 1


def _fits(records: list[Record], width: int) -> bool:
    """Every record has ``width`` fields, or more with only empty ones after them (trailing delimiters)."""
    return all(len(f) == width or (len(f) > width and not any(f[width:])) for _, f in records)


def _kind(sep: str) -> str:
    return "TSV" if sep == "\t" else "CSV"


def _choose(text: str, sep: str, name: str, warnings: list[str]) -> list[Record]:
    """The records of the interpretation (literal or quoted) that loses nothing; see the module docstring."""
    try:
        literal = _records(text, sep, quoted=False)
    except csv.Error as exc:  # e.g. a NUL byte
        raise DataError(f"{name}: not a valid {_kind(sep)} file (line {exc.line}: {exc})") from None
    if not literal:
        raise DataError(f"{name}: the file has no header and no rows")
    if not re.search(rf'(?:^|[{re.escape(sep)}\r\n])"', text):
        return literal  # no field starts with a quote: quoting cannot change anything
    width = len(literal[0][1])
    try:
        quoted: list[Record] | None = _records(text, sep, quoted=True)
        error = None
    except csv.Error as exc:
        quoted, error = None, (exc.line, str(exc))
    literal_fits = _fits(literal, width)
    if quoted is not None and _fits(quoted, len(quoted[0][1])) and (not literal_fits or len(quoted) == len(literal)):
        return quoted
    if literal_fits and sep == "\t":
        line = error[0] if error else next(start for start, f in literal if any(v.startswith('"') for v in f))
        warnings.append(f"{name}: double quotes read as plain characters (a quote opening a field on line {line} "
                        "is never closed where a field ends)")
        return literal
    if literal_fits and quoted is not None:
        first = next(start for start, fields in quoted if any("\n" in v or "\r" in v for v in fields))
        raise DataError(f"{name}: not a valid CSV file (line {first}: a double quote opens a field that runs over "
                        f"{len(literal) - len(quoted)} more line(s), which would swallow rows; close the quote, or "
                        'write a quote inside a quoted field as "")')
    if quoted is not None:
        return quoted
    if sep == "\t":
        return literal
    raise DataError(f"{name}: not a valid CSV file (line {error[0]}: {error[1]}; a field that starts with a double "
                    "quote must end with one)")


def parse_delimited(text: str, sep: str, name: str, warnings: list[str] | None = None) -> tuple[list[str],
                                                                                              list[list[str | None]]]:
    """Parse CSV (``sep=","``) or TSV (``sep="\\t"``) text into its header and rows, losing no line.

    Rows with an extra trailing empty field (a delimiter at the end of each row) are read without it, and
    short rows are padded with blanks; both are warned about, naming the first line. Empty values are None.

    Args:
        text: the decoded file.
        sep: the delimiter.
        name: how errors name the file.
        warnings: what was read in an unexpected way is appended to it.

    Returns:
        ``(header, rows)``: the header's names as written, and each row's values (as many as the header).

    Raises:
        DataError: one line naming the file and line: a row with more (non-empty) fields than the header,
            a quote that never closes, a quote that would swallow whole rows (CSV), or no header at all.
    """
    warnings = warnings if warnings is not None else []
    records = _choose(text, sep, name, warnings)
    (_, header), body = records[0], records[1:]
    width = len(header)
    trailing, short, rows = [], [], []
    for line, fields in body:
        if len(fields) > width:
            if any(fields[width:]):
                hint = " - wrong delimiter? CompactLM reads .csv with ',' and .tsv with tabs" \
                    if width == 1 and any(other in header[0] for other in ";|\t,") else ""
                raise DataError(f"{name}: not a valid {_kind(sep)} file (line {line} has {len(fields)} fields, the "
                                f"header has {width}){hint}")
            trailing.append((line, len(fields)))
            fields = fields[:width]
        elif len(fields) < width:
            short.append((line, len(fields)))
            fields = fields + [""] * (width - len(fields))
        rows.append([value if value != "" else None for value in fields])
    if trailing:
        line, n = trailing[0]
        warnings.append(f"{name}: line {line} has {n} fields, the header has {width}: the empty field(s) after "
                        f"the last column (a trailing delimiter) were ignored on {len(trailing)} row(s)")
    if short:
        line, n = short[0]
        warnings.append(f"{name}: line {line} has {n} field(s), the header has {width}: the missing values were "
                        f"read as blank on {len(short)} row(s)")
    return header, rows


def header_fields(text: str, sep: str, name: str) -> list[str]:
    """The fields of the first non-blank record of CSV/TSV text (the header), as ``parse_delimited`` reads them.

    Raises:
        DataError: no header at all.
    """
    for line in text.splitlines():
        if line.strip():
            quoted = line.startswith('"')
            return next(csv.reader([line], delimiter=sep, quotechar='"',
                                   quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE))
    raise DataError(f"{name}: the file has no header and no rows")
