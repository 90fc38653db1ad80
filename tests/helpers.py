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
