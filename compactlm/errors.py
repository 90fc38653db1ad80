"""User-facing errors.

A ``CompactLMError`` is a mistake in the user's input (a file, a column, a config value). The CLI
prints its message on one line and exits non-zero without a traceback; anything else is a bug and
keeps its traceback.
"""


class CompactLMError(Exception):
    """A user error with a one-line message that names the file, column, row or field at fault."""

    exit_code = 2


class ConfigError(CompactLMError):
    """An invalid configuration value (names the field and the value)."""


class DataError(CompactLMError):
    """Unreadable, malformed or empty input data (names the file, column or row)."""


class ValidationFailed(CompactLMError):
    """A critical data-quality expectation failed; nothing downstream may run."""

    exit_code = 3


class BiasViolation(CompactLMError):
    """The dataset bias audit failed and ``bias.fail_on_violation`` is set."""


class SmokeTestFailed(CompactLMError):
    """The registered version did not load and answer in a fresh process."""
