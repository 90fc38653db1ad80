"""MLflow registry URIs (``models:/<name>/<version>``, ``models:/<name>@<alias>``), built and parsed in one place.

Kept free of the mlflow import so the serving start-up and the CLI can use it.
"""

from __future__ import annotations

import re

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def model_uri(model_name: str, version: str | int | None = None, alias: str | None = None) -> str:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (exactly one of them given).

    Raises:
        ValueError: neither or both of ``version`` and ``alias``.
    """
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version and alias")
    return f"models:/{model_name}/{version}" if version is not None else f"models:/{model_name}@{alias}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """``(name, alias, version)`` of a ``models:/`` URI (one of alias and version is None), or None otherwise."""
    match = _MODEL_URI.match(uri.strip())
    if match is None:
        return None
    return match["name"], match["alias"], match["version"]
