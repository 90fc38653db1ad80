"""Shared test set-up: offline, quiet, every test in its own state folder, one Prefect harness per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports prefect, mlflow or transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "FALSE")
for _var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL", "COMPACTLM_DVC_REMOTE"):
    os.environ.pop(_var, None)

REPO_ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO_ROOT / "configs" / "ci.yaml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh COMPACTLM_HOME for one test (MLflow database, DVC repository, artifacts)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("COMPACTLM_HOME", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return folder


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """One real Prefect API (temporary server + SQLite) for every flow test of the session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(Path(os.environ["PREFECT_HOME"]) / "storage")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_frame():
    """600 generated rows, enough for every split and intent."""
    from compactlm.data.sources.generator import generate_support_dataset

    return generate_support_dataset(n_rows=600, seed=3)


@pytest.fixture
def s3(monkeypatch):
    """A fresh in-memory S3 API on 127.0.0.1 (moto server mode) with bucket ``compactlm-data``; the AWS_*
    variables point boto3 and DVC at it. Yields a boto3 client."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="compactlm-data")
    yield client
    server.stop()
