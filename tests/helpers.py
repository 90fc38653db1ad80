"""Assertions shared by the test modules (importable because pyproject sets pytest's pythonpath to tests/)."""

from __future__ import annotations

import pytest

from compactlm.errors import CompactLMError


def one_line_error(excinfo: pytest.ExceptionInfo, *names: str) -> str:
    """The error's message, checked to be a project error on a single line that names every one of ``names``."""
    message = str(excinfo.value)
    assert isinstance(excinfo.value, CompactLMError), repr(excinfo.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    return message


def write_csv(path, header: str, rows: list[str]):
    """Write a small UTF-8 CSV file (``header`` then ``rows``, one per line) and return its path."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
