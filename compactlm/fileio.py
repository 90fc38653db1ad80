"""Atomic file writes: write a temp file beside the target, rename it over the target on success.

Readers never see half a file, and a failure leaves the previous file (or none) in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
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
