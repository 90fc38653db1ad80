"""The ingest flow under a real Prefect API, MLflow (SQLite) and DVC: lineage, Data Docs, reports, reuse.

One module-scoped state folder: the first run versions a folder source, the next ones build on it in
order (unchanged source reused, a new file makes a new version, a bad label fails validation).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["data.n_rows=400", "bias.reweighing=true", "bias.min_disparate_impact=0.5"]


@pytest.fixture(scope="module")
def state(tmp_path_factory, prefect_harness, tiny_frame):
    """A state folder and a folder source (two files), with the first ingest done."""
    root = tmp_path_factory.mktemp("ingest")
    folder = root / "incoming"
    folder.mkdir()
    tiny_frame.iloc[:300].to_csv(folder / "part-1.csv", index=False)
    tiny_frame.iloc[300:450].to_json(folder / "part-2.jsonl", orient="records", lines=True)
    previous = os.environ.get("COMPACTLM_HOME")
    os.environ["COMPACTLM_HOME"] = str(root / "state")
    from flows.ingest import ingest

    first = ingest(overrides=OVERRIDES, source=str(folder))
    yield {"home": root / "state", "folder": folder, "first": first}
    if previous is None:
        os.environ.pop("COMPACTLM_HOME", None)
    else:
        os.environ["COMPACTLM_HOME"] = previous


def _index(state) -> list[str]:
    from compactlm.data.versioning import list_versions

    return list_versions(state["home"] / "data", "support-instructions")


def test_first_run_versions_validates_and_logs_lineage_docs_and_reports(state):
    from mlflow import MlflowClient

    first = state["first"]
    assert first["changed"] and first["validation_passed"]
    md5 = first["dataset"]["md5"]
    assert _index(state) == [md5]
    assert Path(first["data_docs"]).is_file() and first["data_docs"].endswith("index.html")
    assert first["bias"]["reweighed"] and first["bias"]["passed"]
    client = MlflowClient()
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "compactlm-data"
    assert run.data.tags["data_version"] == md5
    assert {d.dataset.digest for d in run.inputs.dataset_inputs} == {md5[:36]}
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/ingest-report.md", "reports/data-validation.md", "reports/bias-audit.md",
            "reports/data-quality"} <= reports
    plots = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, "reports/data-quality")}
    assert {"report.md", "labels.png", "lengths.png", "attributes.png"} <= plots
    docs = {a.path for a in client.list_artifacts(run.info.run_id, "data-docs")}
    assert "data-docs/index.html" in docs


def test_first_run_published_prefect_artifacts(state):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    keys = {a.key for a in artifacts if a.key}
    assert {"data-docs", "data-quality-report", "data-quality", "ingest-report"} <= keys, keys
    link = next(a for a in artifacts if a.key == "data-docs")  # Prefect stores a link as markdown
    assert link.data.startswith("[Great Expectations Data Docs](file://") and link.data.endswith("index.html)")


def test_an_unchanged_source_reuses_the_version(state):
    from flows.ingest import ingest

    again = ingest(overrides=OVERRIDES, source=str(state["folder"]))
    assert not again["changed"] and again["dataset"]["reused"]
    assert again["dataset"]["md5"] == state["first"]["dataset"]["md5"]
    assert _index(state) == [state["first"]["dataset"]["md5"]]


def test_a_new_file_makes_a_new_version(state, tiny_frame):
    from flows.ingest import ingest

    tiny_frame.iloc[450:].to_parquet(state["folder"] / "part-3.parquet", index=False)
    third = ingest(overrides=OVERRIDES, source=str(state["folder"]))
    assert third["changed"] and third["dataset"]["md5"] != state["first"]["dataset"]["md5"]
    assert _index(state) == [state["first"]["dataset"]["md5"], third["dataset"]["md5"]]


def test_a_critical_failure_stops_the_flow_and_marks_the_run_failed(state, tiny_frame):
    from mlflow import MlflowClient

    from compactlm.data.sources.generator import INTENTS
    from compactlm.errors import ValidationFailed
    from flows.ingest import ingest

    tiny_frame.head(20).assign(intent="refund_plz", id=lambda f: f["id"] + "-bad",
                               instruction=lambda f: f["instruction"] + " again").to_csv(
        state["folder"] / "part-4.csv", index=False)
    allowed = "[" + ",".join(sorted(INTENTS)) + "]"
    with pytest.raises(ValidationFailed) as failure:
        ingest(overrides=[*OVERRIDES, f"data.allowed_intents={allowed}"], source=str(state["folder"]))
    assert "expect_column_values_to_be_in_set" in str(failure.value) and "-bad" in str(failure.value)
    experiment = MlflowClient().get_experiment_by_name("compactlm-data")
    statuses = [r.info.status for r in MlflowClient().search_runs([experiment.experiment_id])]
    assert statuses.count("FAILED") == 1 and statuses.count("FINISHED") == 3


def test_the_cli_ingests_another_task_shape(tmp_path):
    """`compactlm data ingest --task classification` end to end in a fresh process."""
    source = tmp_path / "reviews.csv"
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet".split()
    lines = ["review,stars"] + [f"the {a} {b} was {'good' if (i + j) % 2 else 'bad'},{(i + j) % 2}"
                                for i, a in enumerate(words) for j, b in enumerate(words) if a != b]
    source.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "COMPACTLM_HOME": str(tmp_path / "state"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "compactlm.cli", "data", "ingest", "--source", str(source),
                           "--task", "classification", "--set", "data.columns.text=review",
                           "--set", "data.columns.label=stars", "--set", "data.dataset_name=reviews"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "text_classification: " in done.stdout and "0 critical failure(s)" in done.stdout
    assert "Data Docs: " in done.stdout
    assert (tmp_path / "state" / "data" / "datasets" / "reviews" / "train.parquet").is_file()
