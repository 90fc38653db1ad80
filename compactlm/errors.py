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


# Serving: requests the engine cannot take, models it cannot serve.

class InvalidRequestError(CompactLMError):
    """A request the engine cannot serve as asked; ``param`` names the offending field (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class UnsupportedModelError(CompactLMError):
    """The fast engine does not implement this architecture (names the feature at fault)."""


class QueueFullError(CompactLMError):
    """Too many requests are waiting; retry later."""


class EngineUnavailableError(CompactLMError):
    """The engine is shutting down or being replaced."""


class ModelNotFoundError(CompactLMError):
    """The model URI or folder names nothing that can be served."""
