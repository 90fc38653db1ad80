"""The `compactlm` command as a user runs it: help, data generation, and one-line user errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "configs" / "ci.yaml"


def run_cli(*args: str, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMPACTLM_HOME": str(home), "PREFECT_HOME": str(home / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "compactlm.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands(tmp_path):
    done = run_cli("--help", home=tmp_path)
    assert done.returncode == 0
    for command in ("data", "pipeline", "registry", "config"):
        assert command in done.stdout
    sub = run_cli("data", "--help", home=tmp_path)
    assert "generate" in sub.stdout and "ingest" in sub.stdout


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_data_generate_writes_every_format(tmp_path, suffix):
    out = tmp_path / f"support{suffix}"
    done = run_cli("data", "generate", "--rows", "120", "--seed", "1", "-o", str(out), home=tmp_path)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_json(out, lines=True) if suffix == ".jsonl" \
        else pd.read_parquet(out)
    assert len(frame) == 120 and {"instruction", "response", "intent"} <= set(frame.columns)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["pipeline", "run", "--config", "missing.yaml"], ["config file missing.yaml does not exist"]),
        (["pipeline", "run", "--config", str(CI_CONFIG), "--set", "train.batch_size=0"],
         ["train.batch_size must be >= 1, got 0"]),
        (["pipeline", "run", "--source", "nowhere.csv"], ["data.source: file nowhere.csv does not exist"]),
        (["pipeline", "run", "--set", "model.preset=decoder-huge"], ["model.preset must be one of"]),
        (["data", "generate", "--rows", "0", "-o", "x.csv"], ["n_rows", "0"]),
        (["data", "generate", "-o", "x.xlsx"], ["unsupported output format '.xlsx'"]),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(tmp_path, args, fragments):
    done = run_cli(*args, home=tmp_path / "state")
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "state" / "mlflow.db").exists()  # nothing tracked or registered


@pytest.mark.slow
def test_pipeline_on_a_file_with_missing_columns_fails_cleanly(tmp_path):
    source = tmp_path / "tickets.csv"
    pd.DataFrame({"question": ["a", "b"], "answer": ["c", "d"]}).to_csv(source, index=False)
    done = run_cli("pipeline", "run", "--config", str(CI_CONFIG), "--source", str(source), "--auto-approve",
                   home=tmp_path / "state")
    assert_one_line_error(done, "missing required column(s) 'instruction', 'response', 'intent'", "tickets.csv")
    assert done.returncode == 2
    list_done = run_cli("registry", "list", "--json", home=tmp_path / "state")
    assert list_done.returncode == 0 and list_done.stdout.strip() == "[]"


def test_registry_list_of_an_empty_name_names_the_models_that_are_there(tmp_path):
    """After the SmolLM2 run, a bare `registry list` (the default config's model name) must not just say
    "nothing": it names the registered models the store does hold."""
    from mlflow import MlflowClient

    home = tmp_path / "state"
    home.mkdir()
    MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").create_registered_model("compactlm-smollm2-support")
    done = run_cli("registry", "list", home=home)
    assert done.returncode == 0
    assert "No versions of 'compactlm-support-chat'" in done.stdout
    assert "Registered models there: compactlm-smollm2-support (name one with --model NAME" in done.stdout
