"""Where local state lives, and how the standard variables switch it to real servers.

Everything the embedded default writes sits under one folder (``.compactlm/`` unless COMPACTLM_HOME
or ``home:`` in the config says otherwise); delete it to start over. The same code talks to real
services through the usual variables, with no code change:

* ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_REGISTRY_URI``): an MLflow server instead of SQLite.
* ``PREFECT_API_URL``: a Prefect server instead of the ephemeral API.
* ``COMPACTLM_DVC_REMOTE`` or ``data.dvc_remote``: ``s3://bucket/prefix`` with AWS_* credentials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compactlm.data.layout import DataLayout


@dataclass(frozen=True)
class StatePaths:
    """The folders and URIs of one state home (``home`` is absolute: ``state_paths`` resolves it)."""

    home: Path

    @property
    def data_repo(self) -> Path:
        """The DVC-tracked git repository of the datasets (``<home>/data``)."""
        return DataLayout.for_home(self.home).repo

    @property
    def local_remote(self) -> Path:
        """The DVC remote used when none is configured (``<home>/dvc-remote``)."""
        return self.home / "dvc-remote"

    @property
    def runs(self) -> Path:
        """Working folders of flow runs and sweeps (``<home>/runs/<run id>``)."""
        return self.home / "runs"

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow tracking and registry store, a SQLite file."""
        return self.home / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """Artifact root of experiments created against the embedded store."""
        return self.home / "mlartifacts"

    @property
    def traffic_db(self) -> Path:
        """The embedded store of served requests and feedback, a SQLite file (``serve.traffic_db: default``)."""
        return self.home / "traffic.db"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME for the embedded (ephemeral) Prefect API."""
        return self.home / "prefect"

    @property
    def last_run(self) -> Path:
        """The summary of the latest retrain run (``compactlm pipeline run``), as JSON."""
        return self.home / "last_run.json"

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI when set, else a SQLite database in the state folder."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_db.resolve()}"

    def uses_local_tracking(self) -> bool:
        """True for the embedded SQLite store (mlflow.set_tracking_uri also exports the variable)."""
        return self.tracking_uri() == f"sqlite:///{self.mlflow_db.resolve()}"

    def dvc_remote(self, configured: str | None) -> str:
        """COMPACTLM_DVC_REMOTE, else the configured remote, else a folder in the state folder."""
        return os.environ.get("COMPACTLM_DVC_REMOTE") or configured or str(self.local_remote.resolve())


def state_paths(home: str | Path | None = None) -> StatePaths:
    """State paths for ``home`` (COMPACTLM_HOME wins, then the argument, then ``.compactlm``), resolved to an
    absolute path; nothing is created."""
    chosen = os.environ.get("COMPACTLM_HOME") or home or ".compactlm"
    path = Path(chosen).expanduser().resolve()
    return StatePaths(home=path)


def set_offline_defaults() -> None:
    """No hub downloads or telemetry unless the user asked for them; quiet tokenizer threads (any process)."""
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
                       "DVC_NO_ANALYTICS": "1"}.items():
        os.environ.setdefault(key, value)


def configure_environment(home: str | Path | None = None) -> StatePaths:
    """Set the process defaults the embedded mode needs, without overriding anything the user set.

    Offline hub access, Prefect's home and a generous ephemeral-server start-up timeout (the server
    takes 10-25 s to start on a busy 2-core machine), quiet telemetry.

    Args:
        home: the state folder (see ``state_paths``); created if missing.

    Returns:
        The state paths.
    """
    paths = state_paths(home)
    paths.home.mkdir(parents=True, exist_ok=True)
    set_offline_defaults()
    defaults = {
        "PREFECT_HOME": str(paths.prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(paths.prefect_home / "storage"),
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return paths
