"""MLflow tracking set-up and model-registry helpers: versions, lineage tags, aliases.

Aliases: ``challenger`` marks the newest candidate that passed the gate and the smoke test;
``champion`` the approved production model. Who may move ``champion`` is decided in
``compactlm.registry.review``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from compactlm.state import StatePaths

CHAMPION, CHALLENGER = "champion", "challenger"


def point_tracking(paths: StatePaths) -> str:
    """Point MLflow's tracking and registry at the state folder's store (or the configured server).

    MLFLOW_REGISTRY_URI, when set, keeps the registry elsewhere. The environment variables are left as
    they were, so a later state folder in the same process is honoured.

    Returns:
        The tracking URI (``MLFLOW_TRACKING_URI``, else ``sqlite:///<home>/mlflow.db``).
    """
    uri = paths.tracking_uri()
    exported = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(exported["MLFLOW_REGISTRY_URI"] or uri)
    # set_*_uri also export the variables; undo that so a later state folder in this process is honoured.
    for key, value in exported.items():
        if value is None:
            os.environ.pop(key, None)
    return uri


def setup_tracking(paths: StatePaths, experiment: str) -> str:
    """Point MLflow at the tracking server (or the local SQLite store) and return the experiment id.

    With local tracking, artifacts go under the state folder instead of ./mlruns. The experiment is
    created when missing (a concurrent creation is tolerated).

    Args:
        paths: the state folder's paths.
        experiment: the experiment's name.
    """
    point_tracking(paths)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = (paths.mlflow_artifacts / experiment).resolve().as_uri() if paths.uses_local_tracking() else None
    try:
        return mlflow.create_experiment(experiment, artifact_location=location)
    except MlflowException:  # created concurrently by another run
        return mlflow.get_experiment_by_name(experiment).experiment_id


@dataclass
class VersionInfo:
    """A registered version, its aliases and the tags a reviewer looks at.

    Attributes:
        version: the version number, as a string.
        aliases: the aliases pointing at it, sorted.
        tags: its model-version tags (lineage, gate verdict, approval...).
        run_id: the MLflow run that logged it.
        created: creation time, UTC ISO 8601 to the second.
    """

    version: str
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    created: str

    def to_dict(self) -> dict[str, Any]:
        """The version as a plain dict."""
        return {"version": self.version, "aliases": self.aliases, "tags": self.tags, "run_id": self.run_id,
                "created": self.created}


CHAT_MODEL_DESCRIPTION = ("CompactLM customer-support chat model. "
                          "Aliases: challenger = newest gated candidate, champion = approved.")


def register_version(model_uri: str, model_name: str, tags: dict[str, str], description: str = "",
                     model_description: str = CHAT_MODEL_DESCRIPTION,
                     model_tags: dict[str, str] | None = None) -> str:
    """Register ``model_uri`` as a new version of ``model_name`` with lineage tags; returns the version.

    ``model_description`` and ``model_tags`` apply when this call creates the registered model.

    Args:
        model_uri: the logged model (``runs:/<run>/<path>`` or a model URI MLflow accepts).
        model_name: the registered model.
        tags: lineage tags of the version (values stored as strings).
        description: the version's description (markdown; e.g. the model card).
        model_description: the registered model's description, on creation.
        model_tags: the registered model's tags, on creation.
    """
    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        try:
            client.create_registered_model(model_name, tags=model_tags, description=model_description)
        except MlflowException:
            pass  # created concurrently
    # register_model tries to create the registered model again and prints "already exists" for the one
    # created above, even on a brand-new store; its other lines ("Created version ...") are passed on.
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        version = mlflow.register_model(model_uri, model_name, tags={k: str(v) for k, v in tags.items()})
    for line in captured.getvalue().splitlines():
        if line.strip() and "already exists. Creating a new version" not in line:
            print(line, file=sys.stderr)
    if description:
        client.update_model_version(model_name, version.version, description=description)
    return str(version.version)


def alias_version(model_name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or the alias does not exist."""
    try:
        return str(MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def set_alias(model_name: str, alias: str, version: str) -> None:
    """Point ``alias`` (e.g. ``champion``) of ``model_name`` at ``version``, moving it if it points elsewhere."""
    MlflowClient().set_registered_model_alias(model_name, alias, version)


def retire_alias(model_name: str, alias: str, version: str) -> bool:
    """Delete ``alias`` if it points at ``version`` (e.g. ``challenger`` once its review is decided).

    Returns:
        True when the alias pointed at ``version`` and was deleted.
    """
    if alias_version(model_name, alias) != str(version):
        return False
    MlflowClient().delete_registered_model_alias(model_name, alias)
    return True


def tag_version(model_name: str, version: str, tags: dict[str, Any]) -> None:
    """Set model-version tags on ``version`` (values stored as strings; existing keys overwritten)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))


def list_versions(model_name: str) -> list[VersionInfo]:
    """Every version of ``model_name``, newest first, with aliases and tags."""
    client = MlflowClient()
    try:
        model = client.get_registered_model(model_name)
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    quoted = model_name.replace("'", "\\'")  # MLflow's filter grammar escapes a quote with a backslash
    versions = client.search_model_versions(f"name='{quoted}'")
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC).isoformat(timespec="seconds")
        out.append(VersionInfo(str(mv.version), sorted(aliases.get(str(mv.version), [])), dict(mv.tags or {}),
                               mv.run_id, created))
    return out
