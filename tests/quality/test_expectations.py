"""The shipped Great Expectations suite, run for real against generated and deliberately broken data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from compactlm.config import DataConfig
from compactlm.data.prepare import allowed_intents, prepare_dataset
from compactlm.data.splits import combined_splits
from compactlm.errors import ConfigError
from compactlm.quality.expectations import load_suite, suite_path, validate_frame

SUITE = "support_instructions"


def parameters_for(config: DataConfig, frame: pd.DataFrame) -> dict:
    """The suite parameters exactly as tasks/data.py ``run_quality_suite`` builds them."""
    return {"allowed_intents": allowed_intents(config, frame), "min_chars": config.min_chars,
            "max_chars": config.max_chars, "min_rows": config.min_rows}


@pytest.fixture(scope="module")
def generated():
    config = DataConfig(n_rows=600)
    frame = combined_splits(prepare_dataset(config).splits)
    return frame, parameters_for(config, frame)


def failures(report, severity: str | None = None) -> dict[tuple[str, str | None], object]:
    return {(c.expectation, c.column): c for c in report.checks
            if not c.success and (severity is None or c.severity == severity)}


def test_the_shipped_suite_passes_on_generated_data(generated):
    frame, params = generated
    report = validate_frame(frame, SUITE, params)
    assert report.success, report.summary()
    assert report.n_rows == len(frame) == 600
    # Without a reference distribution, augmentation or reweighing, those expectations are skipped, and said so.
    assert len(report.checks) + len(report.skipped) == len(load_suite(SUITE)["expectations"])
    assert [s.split("(")[0] for s in report.skipped] == [
        "expect_column_kl_divergence_to_be_less_than", "expect_column_pair_values_to_be_in_set",
        "expect_column_values_to_be_between"]
    assert "reference_distribution" in report.skipped[0] and "'sample_weight'" in report.skipped[2]
    assert all(c.success for c in report.checks), [c.describe() for c in report.checks if not c.success]
    assert report.critical_failures == [] and report.warnings == []
    severities = {c.severity for c in report.checks}
    assert severities == {"critical", "warning"}  # GE kept each expectation's severity from the suite file
    markdown = report.to_markdown()
    assert "PASSED" in markdown and "FAILED" not in markdown
    assert "| FAIL |" not in markdown
    json.dumps(report.to_dict())  # the report is plain JSON


def test_unknown_intent_labels_fail_critically_naming_the_rows(generated):
    frame, params = generated
    bad = frame.copy()
    rows = [3, 250, 599]
    bad.loc[rows, "intent"] = "teleport_parcel"
    report = validate_frame(bad, SUITE, params)

    assert not report.success
    failed = failures(report)
    assert set(failed) == {("expect_column_values_to_be_in_set", "intent")}
    check = failed[("expect_column_values_to_be_in_set", "intent")]
    assert check in report.critical_failures
    assert check.severity == "critical"
    assert check.unexpected_count == 3
    assert {s["id"] for s in check.sample} == set(bad.loc[rows, "id"])
    assert all(s["intent"] == "teleport_parcel" for s in check.sample)
    described = check.describe()
    assert "intent" in described and bad.loc[3, "id"] in described and "\n" not in described
    assert "FAILED" in report.to_markdown()


def test_unknown_labels_in_a_user_file_pass_ingestion_but_fail_validation(tmp_path):
    path = tmp_path / "user.csv"
    rows = [f"question {i} about {intent},answer {i} for {intent},{intent}"
            for intent in ("track_order", "get_refund", "refund_pls") for i in range(15)]
    path.write_text("instruction,response,intent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = DataConfig(source=str(path), allowed_intents=["track_order", "get_refund"])
    result = prepare_dataset(config)
    assert result.counts["rows_kept"] == 45  # ingestion accepts the label...
    frame = combined_splits(result.splits)
    report = validate_frame(frame, SUITE, parameters_for(config, frame))
    assert not report.success  # ...the quality suite rejects it
    assert [(c.expectation, c.column) for c in report.critical_failures] == [
        ("expect_column_values_to_be_in_set", "intent")]
    assert report.critical_failures[0].unexpected_count == 15


def test_a_user_file_without_configured_labels_validates(tmp_path):
    path = tmp_path / "user.csv"
    rows = [f"question {i} about {intent},answer {i} for {intent},{intent}"
            for intent in ("track_order", "get_refund") for i in range(15)]
    path.write_text("instruction,response,intent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = DataConfig(source=str(path))
    frame = combined_splits(prepare_dataset(config).splits)
    report = validate_frame(frame, SUITE, parameters_for(config, frame))
    assert report.success, [c.describe() for c in report.critical_failures]


def test_null_intent_fails_the_not_null_expectation(generated):
    """expect_column_values_to_be_in_set ignores nulls; the suite must still catch them."""
    frame, params = generated
    bad = frame.copy()
    bad.loc[10, "intent"] = None
    report = validate_frame(bad, SUITE, params)
    assert not report.success
    check = failures(report, "critical")[("expect_column_values_to_not_be_null", "intent")]
    assert check.unexpected_count == 1
    assert [s["id"] for s in check.sample] == [bad.loc[10, "id"]]
    assert set(failures(report)) == {("expect_column_values_to_not_be_null", "intent")}


def test_over_long_text_fails_the_length_expectation(generated):
    frame, params = generated
    bad = frame.copy()
    bad.loc[42, "instruction"] = "x" * (params["max_chars"] + 1)
    report = validate_frame(bad, SUITE, params)
    assert not report.success
    failed = failures(report, "critical")
    assert set(failed) == {("expect_column_value_lengths_to_be_between", "instruction")}
    check = failed[("expect_column_value_lengths_to_be_between", "instruction")]
    assert check.unexpected_count == 1
    assert check.sample[0]["id"] == bad.loc[42, "id"]


def test_a_duplicated_id_fails_uniqueness(generated):
    frame, params = generated
    bad = frame.copy()
    bad.loc[1, "id"] = bad.loc[0, "id"]
    report = validate_frame(bad, SUITE, params)
    assert not report.success
    failed = failures(report, "critical")
    assert set(failed) == {("expect_column_values_to_be_unique", "id")}
    check = failed[("expect_column_values_to_be_unique", "id")]
    assert check.unexpected_count == 2
    assert {s["id"] for s in check.sample} == {bad.loc[0, "id"]}


def test_too_few_rows_fail_the_row_count(generated):
    frame, params = generated
    report = validate_frame(frame.head(params["min_rows"] - 1), SUITE, params)
    assert not report.success
    check = failures(report, "critical")[("expect_table_row_count_to_be_between", None)]
    assert check.observed == params["min_rows"] - 1
    assert "observed" in check.describe()


def test_a_warning_failure_is_reported_but_does_not_fail_the_suite(generated):
    frame, params = generated
    bad = frame.copy()
    bad.loc[7, "response"] = "Please write to jane.doe@example.com and we will sort it out."
    report = validate_frame(bad, SUITE, params)
    assert report.success
    assert report.critical_failures == []
    assert [(c.expectation, c.column) for c in report.warnings] == [
        ("expect_column_values_to_not_match_regex", "response")]
    warning = report.warnings[0]
    assert warning.severity == "warning" and warning.unexpected_count == 1
    assert warning.sample[0]["id"] == bad.loc[7, "id"]
    assert "1 warning(s)" in report.summary() and "0 critical failure(s)" in report.summary()
    markdown = report.to_markdown()
    assert "PASSED" in markdown and "| FAIL |" in markdown


def test_to_markdown_says_failed_and_lists_the_failing_expectation(generated):
    frame, params = generated
    bad = frame.copy()
    bad.loc[0, "split"] = "holdout"
    report = validate_frame(bad, SUITE, params)
    markdown = report.to_markdown()
    assert markdown.count("FAILED") == 1 and "PASSED" not in markdown
    failing = [line for line in markdown.splitlines() if "| FAIL |" in line]
    assert len(failing) == 1 and "expect_column_values_to_be_in_set | split | critical" in failing[0]


def test_load_suite_with_a_missing_name_names_the_path(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_suite("no_such_suite", tmp_path)
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(tmp_path / "no_such_suite.json") in message and "'no_such_suite'" in message


def test_load_suite_missing_from_the_shipped_folder_names_the_path():
    with pytest.raises(ConfigError) as excinfo:
        load_suite("definitely_not_shipped")
    assert str(suite_path("definitely_not_shipped")) in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_load_suite_rejects_malformed_files_naming_them(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "name": "broken",\n  "expectations": [\n}', encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_suite("broken", tmp_path)
    assert f"{broken} line 4" in str(excinfo.value) and "\n" not in str(excinfo.value)

    empty = tmp_path / "empty.json"
    empty.write_text('{"name": "empty"}', encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_suite("empty", tmp_path)
    assert str(empty) in str(excinfo.value) and "expectations" in str(excinfo.value)


def test_expectations_dir_variable_selects_the_suite_folder(tmp_path, monkeypatch, generated):
    frame, params = generated
    shipped = load_suite(SUITE)
    only_rows = {**shipped, "expectations": shipped["expectations"][:1]}
    Path(tmp_path / f"{SUITE}.json").write_text(json.dumps(only_rows), encoding="utf-8")
    monkeypatch.setenv("COMPACTLM_EXPECTATIONS_DIR", str(tmp_path))
    report = validate_frame(frame, SUITE, params)
    assert [c.expectation for c in report.checks] == ["expect_table_row_count_to_be_between"]
