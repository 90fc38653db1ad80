"""Where data comes from: the one place that tells what kind of source ``data.source`` is, and lists and reads it.

A source spec (``data.source``, ``--source``) is one of:

* ``generator``: the bundled synthetic support data (``sources.generator``, ``sources.generator_shapes``);
* a local file or folder of CSV/TSV/JSONL/JSON/Parquet/TXT files (``sources.files``);
* ``s3://bucket/prefix``: the data objects under a prefix (``sources.s3``);
* ``hf:PATH`` or ``hf:NAME``: a Hugging Face dataset on disk or on the hub (``sources.hf``);
* ``feedback:`` or ``feedback:URL``: corrected answers from the serving traffic store (``sources.feedback``).

``source_kind`` makes that decision; ``list_files`` and ``read_file`` list and read the files of any
kind; ``read_table``, ``write_table`` and ``jsonl_records`` read and write one local file. Every other
module asks this package rather than looking at the spec's prefix itself.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd

from compactlm.data.sources.feedback import FEEDBACK_PREFIX, feedback_source_file
from compactlm.data.sources.files import (
    SourceFile,
    file_format,
    jsonl_records,
    list_local_files,
    read_columns,
    read_table,
    write_table,
)
from compactlm.data.sources.hf import HF_PREFIX, hf_local_path
from compactlm.data.sources.s3 import S3_PREFIX, list_s3_files, read_s3_file

# The package's API: what a spec is, listing and reading any kind, and local table files (read_table,
# write_table, jsonl_records: also used for evaluation sets and prompt files).
__all__ = ["SourceFile", "SourceKind", "jsonl_records", "list_files", "read_columns", "read_file", "read_table",
           "source_kind", "write_table"]


class SourceKind(StrEnum):
    """What a source spec names (see ``source_kind``)."""

    GENERATOR = "generator"  # the bundled synthetic data: nothing to list, rows come from config
    LOCAL = "local"  # a local file or folder of data files
    S3 = "s3"  # s3://bucket/prefix
    HF_LOCAL = "hf-local"  # hf:PATH with PATH on disk: a saved dataset or a folder load_dataset reads
    HF_HUB = "hf-hub"  # hf:NAME of a hub dataset: it may change without notice, so it has no files to compare
    FEEDBACK = "feedback"  # feedback: or feedback:URL: corrected answers in the traffic store (a database)
    OTHER_URL = "other-url"  # another scheme://address: not readable, it fails as a path that does not exist

    @property
    def reads_files(self) -> bool:
        """True when the rows are the union of the listed data files, read one by one (``read_file``).

        A ``hf:PATH`` folder is listed too (every file, to fingerprint it), but ``datasets`` reads it whole.
        """
        return self in (SourceKind.LOCAL, SourceKind.S3, SourceKind.OTHER_URL)


def source_kind(spec: str) -> SourceKind:
    """Tell what a source spec names.

    Args:
        spec: ``data.source``: ``generator``, a path, ``s3://bucket/prefix``, ``hf:PATH``, ``hf:NAME``,
            ``feedback:`` or ``feedback:URL``.

    Returns:
        The kind. ``hf:`` is ``HF_LOCAL`` when the path after it exists (``~`` expanded), else ``HF_HUB``.
    """
    if spec == SourceKind.GENERATOR:
        return SourceKind.GENERATOR
    if spec.startswith(FEEDBACK_PREFIX):
        return SourceKind.FEEDBACK
    if spec.startswith(HF_PREFIX):
        return SourceKind.HF_LOCAL if hf_local_path(spec) is not None else SourceKind.HF_HUB
    if spec.startswith(S3_PREFIX):
        return SourceKind.S3
    if "://" in spec:
        return SourceKind.OTHER_URL
    return SourceKind.LOCAL


def list_files(spec: str, endpoint_url: str | None = None,
               known: dict[str, SourceFile] | None = None) -> tuple[list[SourceFile], list[str]]:
    """The files of a source with their content fingerprints, and the names of ignored (non-data) files.

    Args:
        spec: the source (see ``source_kind``).
        endpoint_url: the S3 endpoint (``data.s3_endpoint_url``; None: AWS_ENDPOINT_URL, else AWS).
        known: the previous run's files by key: a local file whose size and modification time match
            keeps its recorded fingerprint without being hashed again.

    Returns:
        ``(files, ignored)``, sorted by key. The generator and hub datasets have no files: ``([], [])``.
        A ``hf:PATH`` folder lists every file it holds (the dataset is fingerprinted as a whole); a
        ``feedback:`` store is one entry whose fingerprint is its rows' content.

    Raises:
        DataError: the path does not exist (another ``scheme://`` address fails this way too), or the
            folder or S3 prefix holds no data file, or S3 is unreachable (one line naming the address), or
            the feedback store is unreachable or holds no corrected answer.
    """
    kind = source_kind(spec)
    if kind in (SourceKind.GENERATOR, SourceKind.HF_HUB):
        return [], []
    if kind is SourceKind.FEEDBACK:
        return [feedback_source_file(spec)], []
    if kind is SourceKind.S3:
        return list_s3_files(spec, endpoint_url)
    if kind is SourceKind.HF_LOCAL:
        return list_local_files(hf_local_path(spec), known, suffixes=None)
    return list_local_files(spec, known)


def read_file(file: SourceFile, endpoint_url: str | None = None, warnings: list[str] | None = None) -> pd.DataFrame:
    """Parse one listed file of a source, downloading it first when it is on S3.

    A ``.txt`` file is one document: its ``id`` is its name within the source (``file.key``), which is
    stable across machines, unlike its full path.

    Args:
        file: a file from ``list_files``.
        endpoint_url: as in ``list_files``.
        warnings: as in ``read_table``: what was read in an unexpected way is appended to it.

    Raises:
        DataError: the file is unreadable (see ``read_table``) or cannot be downloaded.
    """
    if source_kind(file.uri) is SourceKind.S3:
        frame = read_s3_file(file, endpoint_url, warnings)
    else:
        frame = read_table(file.uri, warnings=warnings)
    if file_format(file.key)[0] == ".txt" and list(frame.columns) == ["id", "title", "text"]:
        frame["id"] = file.key  # a document (a tab-separated .txt table keeps its own columns)
    return frame
