"""The shipped suites of every task shape, the derived checks (leakage, label consistency, cards), the
distribution check against a reference, GE Data Docs, and the quality report with its plots."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from compactlm.config import DataConfig
from compactlm.data.prepare import prepare_dataset
from compactlm.data.splits import combined_splits
from compactlm.errors import ConfigError
from compactlm.quality.expectations import load_suite, validate_frame
from compactlm.quality.report import write_quality_report
from compactlm.quality.suites import partition_object, reference_counts, suite_parameters

WORDS = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima mike oscar papa quebec".split()
PNG = b"\x89PNG\r\n\x1a\n"


def failing(report) -> dict[str, object]:
    return {c.column: c for c in report.checks if not c.success}


@pytest.fixture(scope="module")
def instruction():
    config = DataConfig(n_rows=600, seed=2)
    return config, combined_splits(prepare_dataset(config).splits)


def shape_frames(tmp_path_factory) -> dict[str, tuple[DataConfig, pd.DataFrame]]:
    folder = tmp_path_factory.mktemp("shapes")
    pairs = list(itertools.permutations(WORDS, 2))[:90]
    classification = pd.DataFrame({"text": [f"the {a} {b} was {'fine' if i % 2 else 'bad'}" for i, (a, b) in
                                            enumerate(pairs)], "label": ["pos", "neg"] * 45})
    summaries = pd.DataFrame({"document": [f"Report on {a} and {b}. " * 30 for a, b in pairs[:40]],
                              "summary": [f"{a} and {b}." for a, b in pairs[:40]]})
    chats = pd.DataFrame({"messages": [json.dumps([{"role": "user", "content": f"where is my {a} {b}"},
                                                   {"role": "assistant", "content": f"your {a} ships soon"}])
                                       for a, b in pairs[:60]], "intent": ["late", "lost", "other"] * 20})
    corpus = pd.DataFrame({"text": [" ".join(f"{w}{k}" for k in range(300)) for w in WORDS[:6]]})
    frames = {}
    for task, raw in {"classification": classification, "summarization": summaries, "chat": chats,
                      "pretraining": corpus}.items():
        config = DataConfig(source=str(folder), task=task, chunk_words=50)
        frames[task] = (config, combined_splits(prepare_dataset(config, raw=(raw, str(folder))).splits))
    return frames


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return shape_frames(tmp_path_factory)


@pytest.mark.parametrize("task", ["classification", "summarization", "chat", "pretraining"])
def test_each_shapes_suite_passes_on_its_clean_data(shapes, task):
    config, frame = shapes[task]
    report = validate_frame(frame, config.expectation_suite, suite_parameters(config, frame, None))
    assert report.success and not report.warnings, [c.describe() for c in report.checks if not c.success]
    expectations = load_suite(config.expectation_suite)["expectations"]
    assert len(report.checks) + len(report.skipped) == len(expectations)
    assert {c.column for c in report.checks} >= {"dq_splits_per_key", "dq_card_numbers"}  # leakage and PII


def test_a_near_duplicate_across_splits_is_a_critical_leak(instruction):
    config, frame = instruction
    bad = frame.copy()
    test_row = bad.index[bad["split"] == "test"][0]
    train_row = bad.index[bad["split"] == "train"][0]
    bad.loc[test_row, "instruction"] = bad.loc[train_row, "instruction"].upper() + "?!"  # same message, shouted
    report = validate_frame(bad, config.expectation_suite, suite_parameters(config, bad, None))
    leak = failing(report)["dq_splits_per_key"]
    assert leak.severity == "critical" and leak in report.critical_failures
    assert {s["id"] for s in leak.sample} <= {bad.loc[test_row, "id"], bad.loc[train_row, "id"]} | set(
        bad.loc[bad["instruction"] == bad.loc[train_row, "instruction"], "id"])


def test_the_same_message_with_two_intents_is_a_critical_label_inconsistency(instruction):
    config, frame = instruction
    bad = frame.copy()
    twin = bad.iloc[[0]].assign(id="twin", response="another answer", intent="complaint")
    bad = pd.concat([bad, twin], ignore_index=True)
    report = validate_frame(bad, config.expectation_suite, suite_parameters(config, bad, None))
    check = failing(report)["dq_labels_per_key"]
    same_message = (bad["instruction"].str.lower() == twin["instruction"].iloc[0].lower()).sum()
    assert check.severity == "critical" and check.unexpected_count == same_message >= 2
    assert "twin" in {s["id"] for s in check.sample}


def test_a_card_number_left_in_the_text_is_critical_and_an_email_a_warning(instruction):
    config, frame = instruction
    bad = frame.copy()
    bad.loc[3, "response"] = "Your card 4111 1111 1111 1111 was refunded."
    bad.loc[4, "instruction"] = "mail me at someone@example.org"
    report = validate_frame(bad, config.expectation_suite, suite_parameters(config, bad, None))
    assert not report.success
    cards = failing(report)["dq_card_numbers"]
    assert cards.severity == "critical" and [s["id"] for s in cards.sample] == [bad.loc[3, "id"]]
    assert [(c.column, c.severity) for c in report.warnings] == [("instruction", "warning")]


def test_control_characters_fail_the_character_set_check(instruction):
    config, frame = instruction
    bad = frame.copy()
    bad.loc[5, "response"] = "broken \ufffd decoding"
    report = validate_frame(bad, config.expectation_suite, suite_parameters(config, bad, None))
    check = failing(report)["response"]
    assert check.expectation == "expect_column_values_to_not_match_regex" and check.severity == "critical"


def test_the_label_distribution_is_compared_with_the_reference(instruction):
    config, frame = instruction
    counts = frame["intent"].value_counts().to_dict()
    same = validate_frame(frame, config.expectation_suite, suite_parameters(config, frame, counts))
    assert not any("kl_divergence" in s for s in same.skipped)
    kl = next(c for c in same.checks if c.expectation == "expect_column_kl_divergence_to_be_less_than")
    assert kl.success and kl.observed == pytest.approx(0.0, abs=1e-9)
    skewed = dict(counts, track_order=counts["track_order"] * 20)
    drift = validate_frame(frame, config.expectation_suite, suite_parameters(config, frame, skewed))
    assert drift.success  # a warning: reported, not fatal
    assert [(c.expectation, c.column) for c in drift.warnings] == [("expect_column_kl_divergence_to_be_less_than",
                                                                      "intent")]
    assert drift.warnings[0].observed > config.distribution_tolerance


def test_reference_counts_come_from_the_previous_version_a_file_or_nowhere(tmp_path):
    records = [{"md5": "a" * 32, "labels": {"x": 3, "y": 1}}, {"md5": "b" * 32, "labels": {"x": 1}}]
    config = DataConfig()
    assert reference_counts(config, records, "b" * 32) == ({"x": 3, "y": 1}, f"previous version {'a' * 12}")
    assert reference_counts(config, records, "a" * 32)[0] is None
    assert reference_counts(config, records, "c" * 32)[0] == {"x": 1}  # a new version: the latest before it
    assert reference_counts(DataConfig(distribution_reference="none"), records, "b" * 32)[0] is None
    path = tmp_path / "reference.json"
    path.write_text(json.dumps({"x": 0.25, "y": 0.75}))
    assert reference_counts(DataConfig(distribution_reference=str(path)), records, "b" * 32)[0] == {"x": 0.25,
                                                                                                   "y": 0.75}
    path.write_text('["x"]')
    with pytest.raises(ConfigError) as excinfo:
        reference_counts(DataConfig(distribution_reference=str(path)), records, "b" * 32)
    assert "data.distribution_reference" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert partition_object({"b": 1, "a": 3, "z": 0}) == {"values": ["a", "b"], "weights": [0.75, 0.25]}


def test_data_docs_are_rendered_to_html(instruction, tmp_path):
    config, frame = instruction
    bad = frame.copy()
    bad.loc[0, "intent"] = "teleport"
    docs = tmp_path / "docs"
    report = validate_frame(bad, config.expectation_suite, suite_parameters(config, bad, None), docs_dir=docs)
    assert report.docs_path == str(docs / "index.html")
    pages = list((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    html = pages[0].read_text(encoding="utf-8")
    assert "support_instructions" in html and "teleport" in html
    assert (docs / "expectations" / "support_instructions.html").is_file()
    again = validate_frame(frame, config.expectation_suite, suite_parameters(config, frame, None), docs_dir=docs)
    assert len(list((docs / "validations").rglob("*.html"))) == 1  # the folder holds one validation only
    assert "Data Docs" in again.to_markdown()


def test_the_quality_report_has_plots_and_the_numbers(instruction, tmp_path):
    config, frame = instruction
    splits = {name: part.drop(columns="split") for name, part in frame.groupby("split")}
    quarantine = frame.head(3).assign(reason=["near duplicate of gen-000001", "near duplicate of gen-000002",
                                              "blank or null response"])
    counts = {"rows_in": 603, "pii replaced: email": 2}
    reference = frame["intent"].value_counts().to_dict()
    report = write_quality_report(splits, quarantine, "instruction", tmp_path / "report", counts=counts,
                                  reference=reference, reference_name="previous version abc")
    assert sorted(report.images) == ["attributes.png", "labels.png", "lengths.png", "quarantine.png"]
    for image in report.images:
        assert (tmp_path / "report" / image).read_bytes()[:8] == PNG
    text = (tmp_path / "report" / "report.md").read_text()
    assert text == report.markdown
    assert "| near duplicate of an earlier row | 2 |" in text and "| pii replaced: email | 2 |" in text
    assert "## intent distribution (reference: previous version abc)" in text
    assert "## Attributes" in text and "| 65+ |" in text
    assert all(f"]({image})" in text for image in report.images)
