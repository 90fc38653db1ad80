"""What every configuration section shares: pydantic settings, comma-separated lists, one-line checks.

Sections are ``pydantic.dataclasses.dataclass`` classes: real dataclasses (``dataclasses.replace``,
``asdict`` and ``fields`` work on them, and they pickle for Prefect) whose fields pydantic coerces and
type-checks on construction, in its lax mode (https://docs.pydantic.dev/latest/concepts/conversion_table/):
``"3"`` -> 3 for an int, 3 -> 3.0 for a float (and ``True`` -> 1), ``"false"``/``"no"``/``0`` -> False for
a bool, a number -> its text for a string. What a type cannot say (ranges, choices, rules across fields)
each section checks in ``__post_init__`` with ``check``, which pydantic runs once the fields are coerced.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, ConfigDict

from compactlm.errors import ConfigError

SECTION = ConfigDict(
    extra="forbid",  # a misspelt field fails ("unknown config field ...") instead of being ignored
    coerce_numbers_to_str=True,  # `registry.model_name: 2024` is the name "2024"
)
"""The pydantic settings of every section: ``@dataclass(config=SECTION)``."""

T = TypeVar("T")


def split_commas(value: Any) -> Any:
    """Read ``"a, b"`` as ``["a", "b"]`` (what ``--set data.allowed_intents=a,b`` gives); pass anything else on.

    Args:
        value: the raw value of a list field.

    Returns:
        The stripped, non-empty comma-separated items of a string; any other value unchanged.
    """
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[T], BeforeValidator(split_commas)]
"""A list field that also accepts one comma-separated string: ``CommaList[str]``."""


def check(ok: bool, name: str, value: Any, expected: str) -> None:
    """Fail with one line naming the field and the value unless ``ok``.

    Args:
        ok: whether the value is acceptable.
        name: the dotted field name, e.g. ``train.batch_size``.
        value: the offending value (shown with ``repr``).
        expected: what the value must be, e.g. ``>= 1`` or ``one of a, b``.

    Raises:
        ConfigError: ``"<name> must be <expected>, got <value!r>"`` when ``ok`` is false.
    """
    if not ok:
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
