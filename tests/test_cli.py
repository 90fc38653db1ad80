"""The `compactlm` command as a user runs it: help, data generation, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "configs" / "ci.yaml"


def run_cli(*args: str, home: Path, timeout: int = 600, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMPACTLM_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), **extra_env}
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
        (["serve", "--model-dir", str(Path(__file__).parent)], ["holds neither a saved transformers model"]),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(tmp_path, args, fragments):
    done = run_cli(*args, home=tmp_path / "state")
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "state" / "mlflow.db").exists()  # nothing tracked or registered


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["monitor", "run", "--set", "registry.model_name=nothing-here"],
         ["registered model 'nothing-here' has no alias 'champion'"]),
        (["monitor", "run", "--set", "monitor.traffic_db=off"], ["'compactlm-support-chat' has no alias"]),
        (["monitor", "run", "--set", "monitor.ood_share_max=2"], ["monitor.ood_share_max must be between 0 and 1"]),
        (["monitor", "watch", "--source", "no/such/folder"], ["no/such/folder: no such file or folder to watch"]),
        (["monitor", "watch", "--source", "generator"], ["only a folder, a file or an s3:// prefix can be watched"]),
    ],
)
def test_monitor_user_errors_fail_before_any_flow_or_mlflow_run(tmp_path, args, fragments):
    started = time.monotonic()
    done = run_cli(*args, home=tmp_path / "state")
    assert_one_line_error(done, *fragments)
    assert "Flow run" not in done.stderr and time.monotonic() - started < 30
    import mlflow

    store = tmp_path / "state" / "mlflow.db"
    if store.exists():  # the registry was asked for the champion; no monitor run was logged
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
        assert client.get_experiment_by_name("compactlm-monitor") is None


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
    uri = f"sqlite:///{home / 'mlflow.db'}"  # the registry too: an earlier test may have set a global one
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("compactlm-smollm2-support")
    done = run_cli("registry", "list", home=home)
    assert done.returncode == 0
    assert "No versions of 'compactlm-support-chat'" in done.stdout
    assert "Registered models there: compactlm-smollm2-support (name one with --model NAME" in done.stdout


# ---------------------------------------------------------------------------------------------------
# `compactlm data ingest`: the source is checked before Prefect starts; flow logs go to a file (#13.6)
# ---------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("tickets.csv", "question,answer\nwhere is it,soon\n",
         ["tickets.csv: missing required column(s) 'instruction', 'response', 'intent'", "found: question, answer"]),
        ("twice.csv", "instruction,response,intent,response\na,b,c,d\n", ["column 'response' appears twice"]),
        ("tickets.xlsx", "PK", ["tickets.xlsx: unsupported file type .xlsx"]),
        ("missing.csv", None, ["data.source: file", "missing.csv does not exist"]),
    ],
)
def test_data_ingest_checks_the_source_before_the_flow_starts(tmp_path, name, content, fragments):
    source = _write(tmp_path / name, content) if content is not None else tmp_path / name
    started = time.monotonic()
    done = run_cli("data", "ingest", "--source", str(source), home=tmp_path / "state", timeout=120)
    elapsed = time.monotonic() - started
    assert_one_line_error(done, *fragments)
    assert done.stderr.strip().count("\n") == 0 and done.stdout == ""  # the error line and nothing else
    assert not (tmp_path / "state").exists()  # no Prefect server, no MLflow store, no log
    assert elapsed < 20, elapsed  # about a second on a quiet machine; Prefect alone takes 10+ s to start


def test_data_ingest_error_inside_the_flow_is_one_line_naming_the_flow_log(tmp_path):
    # The header is right (the check before the flow passes); line 4 has one field too many.
    source = _write(tmp_path / "tickets.csv", "instruction,response,intent\nwhere is it,soon,track\n"
                    "refund me,done,refund\nthis one,has,one,more\n")
    done = run_cli("data", "ingest", "--source", str(source), home=tmp_path / "state",
                   PREFECT_LOGGING_LEVEL="INFO")  # what a user gets (the tests default to WARNING)
    assert_one_line_error(done, "tickets.csv: not a valid CSV file (line 4 has 4 fields, the header has 3)",
                          "(flow log: ")
    assert done.stderr.strip().count("\n") == 0, done.stderr  # no Prefect or MLflow lines around it
    log = Path(done.stderr.split("(flow log: ")[1].strip().rstrip(")"))
    assert log.parent == tmp_path / "state" / "logs"
    text = log.read_text(encoding="utf-8")
    assert "Starting temporary server" in text and "Flow run" in text and "line 4 has 4 fields" in text


def test_data_ingest_prints_what_happened(tmp_path):
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet".split()
    rows = [f"my {w} parcel {i} is {kind},{kind}" for i, w in enumerate(words) for kind in ("late", "lost")]
    source = _write(tmp_path / "tickets.tsv", "Text\tLabel\n" + "\n".join(r.replace(",", "\t") for r in rows)
                    + "\n\u200f\u202e\tlost\n")
    done = run_cli("data", "ingest", "--source", str(source), "--task", "classification", "--set",
                   "data.min_rows=1", home=tmp_path / "state", PREFECT_LOGGING_LEVEL="INFO")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # Prefect's and MLflow's logs went to the flow log
    out = done.stdout
    summary = json.loads(out[:out.index("\n}\n") + 2])["ingest"]
    assert summary["rows_read"] == 21 and sum(summary["rows_kept"].values()) == 20
    assert summary["quarantined"] == {"text empty after cleaning": 1}
    assert summary["columns_mapped"] == {"Text": "text", "Label": "label"}
    assert "Read 21 rows; kept 20 rows (train " in out and "  quarantined, text empty after cleaning: 1" in out
    assert "Columns matched regardless of case and spaces: 'Text' -> 'text', 'Label' -> 'label'" in out
    assert "\"name\": \"classification\"" in out  # named after its task, not support-instructions
    log = Path(out.split("Flow log: ")[1].splitlines()[0])
    assert "Flow run" in log.read_text(encoding="utf-8")


def test_registry_list_piped_prints_full_values_as_tsv(tmp_path):
    """Piped to another program, `registry list` prints every value whole (TSV), not a table folded to 80
    columns (`champ…`, `appro…`); `--json` stays."""
    from mlflow import MlflowClient

    home = tmp_path / "state"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"  # the registry too: an earlier test may have set a global one
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "compactlm-support-chat"
    client.create_registered_model(name)
    tags = {"gate_verdict": "pass", "smoke_test": "passed", "approval": "approved",
            "approval.reviewer": "a-reviewer-with-a-long-name", "metric.rouge_l": "0.412345",
            "data_version": "0123456789abcdef0123"}
    for _ in range(2):
        client.create_model_version(name, source=str(tmp_path / "model"), tags=tags)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    done = run_cli("registry", "list", home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == ["version", "aliases", "gate", "smoke", "approval", "reviewer", "rouge_l", "data",
                                    "created"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[:8] for r in rows] == [
        ["2", "challenger", "pass", "passed", "approved", "a-reviewer-with-a-long-name", "0.412345", "0123456789ab"],
        ["1", "champion", "pass", "passed", "approved", "a-reviewer-with-a-long-name", "0.412345", "0123456789ab"]]
    assert "…" not in done.stdout
    as_json = json.loads(run_cli("registry", "list", "--json", home=home).stdout)
    assert [v["aliases"] for v in as_json] == [["challenger"], ["champion"]]


def test_data_purge_deletes_the_cached_source_copies_and_keeps_versions(tmp_path):
    home = tmp_path / "state"
    cache = home / "data" / "cache" / "raw"
    cache.mkdir(parents=True)
    pd.DataFrame({"instruction": ["mail jane@example.com"]}).to_parquet(cache / "0123.parquet")
    version = home / "data" / "datasets" / "support-instructions"
    version.mkdir(parents=True)
    (version / "train.parquet").write_bytes(b"kept")
    done = run_cli("data", "purge", home=home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Deleted 1 cached source file(s)" in done.stdout and str(cache) in done.stdout
    assert list(cache.iterdir()) == [] and (version / "train.parquet").read_bytes() == b"kept"
