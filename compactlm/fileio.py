"""Files: atomic writes (a temp file beside the target, renamed over it on success) and content digests.

Readers never see half a file, and a failure leaves the previous file (or none) in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[str]]:
    """A UTF-8 text handle whose content replaces ``path`` when the block ends without an exception.

    The temporary file sits beside ``path`` (same filesystem, so ``os.replace`` is atomic, POSIX
    ``rename``); parent folders are created. On an exception the temporary file is removed and the
    exception propagates, leaving ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_open(path) as out:
        out.write(text)


def files_digest(paths: Iterable[str | Path], seed: str = "") -> str:
    """SHA-256 (16 hex digits) of files' names and contents, in sorted path order: a change to any of them
    changes it (code versions for caches and ingest reuse).

    Args:
        paths: the files to hash; seed: text hashed first (e.g. the package version).
    """
    digest = hashlib.sha256(seed.encode())
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
