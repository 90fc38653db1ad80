"""The promotion gate: every branch, and a property test that a worse candidate never passes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactlm.config import GateCheckConfig, GateConfig, load_config
from compactlm.errors import ConfigError
from compactlm.evaluation.gate import run_gate
from compactlm.evaluation.metric_directions import direction_of

CFG = GateConfig(checks={
    "perplexity": GateCheckConfig(max=50),
    "rouge_l": GateCheckConfig(min=0.2, max_drop=0.02),
    "bleu": GateCheckConfig(min=5, max_drop=2.0, relative=False),
    "word_perplexity": GateCheckConfig(max_drop=0.02),
})
GOOD = {"perplexity": 10.0, "word_perplexity": 20.0, "rouge_l": 0.5, "bleu": 30.0}


def _row(report, prefix):
    return next(c for c in report.checks if c.name.startswith(prefix))


def test_first_run_is_judged_by_thresholds_alone_and_says_so():
    report = run_gate(GOOD, CFG)
    assert report.passed and report.champion_version is None
    assert [c.status for c in report.checks] == ["pass", "pass", "skipped", "pass", "skipped", "skipped"]
    assert "No champion yet" in report.notes[0]
    assert "PASSED" in report.to_markdown()


def test_threshold_failure_names_the_check_value_and_bound():
    report = run_gate({**GOOD, "bleu": 1.0}, CFG)
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["bleu >= 5"]
    assert failed[0].value == 1.0 and failed[0].threshold == 5 and "violates" in failed[0].reason
    assert report.notes[-1] == "Failed: bleu >= 5."


def test_missing_or_nan_metric_fails_its_check_explicitly():
    report = run_gate({k: v for k, v in GOOD.items() if k != "rouge_l"}, CFG)
    check = _row(report, "rouge_l >=")
    assert not report.passed and check.status == "fail" and "missing" in check.reason
    assert not run_gate({**GOOD, "perplexity": math.nan}, CFG).passed


def test_relative_and_absolute_drops_against_the_champion():
    champion = dict(GOOD)
    within = run_gate({**GOOD, "rouge_l": 0.5 * 0.99, "bleu": 28.5}, CFG, champion, "3")
    assert within.passed and within.champion_version == "3"
    assert "re-scored" in within.notes[0]
    assert _row(within, "bleu vs champion").threshold == pytest.approx(28.0)  # absolute: 30 - 2 points
    worse = run_gate({**GOOD, "word_perplexity": 20.0 * 1.05}, CFG, champion, "3")
    failed = [c for c in worse.checks if not c.passed]
    assert [c.metric for c in failed] == ["word_perplexity"]
    assert failed[0].baseline == 20.0 and failed[0].threshold == pytest.approx(20.4)
    assert "+5.0%" in failed[0].reason


def test_missing_champion_metric_fails_the_comparison():
    report = run_gate(GOOD, CFG, {"rouge_l": 0.5, "bleu": 30.0}, "1")
    check = _row(report, "word_perplexity vs champion")
    assert check.status == "fail" and "missing for the champion" in check.reason


def test_a_check_without_bounds_is_informational():
    config = GateConfig(checks={"rouge_l": GateCheckConfig(min=0.2), "latency_ms": GateCheckConfig()})
    report = run_gate({"rouge_l": 0.3, "latency_ms": 12.0}, config)
    info = _row(report, "latency_ms")
    assert report.passed and info.status == "info" and info.value == 12.0
    assert any("Informational only" in n and "latency_ms" in n for n in report.notes)


def test_gate_config_from_yaml_overrides_one_bound_and_keeps_the_rest():
    config = load_config(overrides=["gate.checks.rouge_l.min=0.9", "gate.checks.exact_match.min=0.1"])
    assert config.gate.checks["rouge_l"].min == 0.9 and config.gate.checks["rouge_l"].max_drop == 0.02
    assert config.gate.checks["bleu"].min == 5.0  # untouched defaults survive an override
    assert config.gate.checks["exact_match"].min == 0.1


def test_invalid_gate_checks_fail_with_the_metric_named():
    with pytest.raises(ConfigError, match=r"gate.checks.rouge_l.min must be <= max"):
        load_config(overrides=["gate.checks.rouge_l.max=0.1", "gate.checks.rouge_l.min=0.5"])
    with pytest.raises(ConfigError, match=r"gate.checks.my_score.higher_is_better must be set"):
        load_config(overrides=["gate.checks.my_score.max_drop=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config field 'gate.checks.bleu.minimum'"):
        load_config(overrides=["gate.checks.bleu.minimum=3"])


def test_metric_directions():
    assert direction_of("rouge_l") is True and direction_of("slice_min_rouge_l") is True
    assert direction_of("word_perplexity") is False and direction_of("safety_violations") is False
    assert direction_of("something_new") is None


@settings(max_examples=200, deadline=None)
@given(champ_rouge=st.floats(0.21, 1.0), champ_bleu=st.floats(6, 100), champ_wppl=st.floats(1.0, 40.0),
       which=st.sampled_from(["rouge_l", "bleu", "word_perplexity"]), worse_by=st.floats(0.1, 0.9))
def test_a_candidate_worse_than_the_champion_on_any_check_never_passes(champ_rouge, champ_bleu, champ_wppl,
                                                                      which, worse_by):
    champion = {"perplexity": 10.0, "rouge_l": champ_rouge, "bleu": champ_bleu, "word_perplexity": champ_wppl}
    candidate = dict(champion)
    if which == "word_perplexity":
        candidate[which] = champ_wppl * (1 + worse_by)
    elif which == "bleu":
        candidate[which] = champ_bleu - 2.0 - worse_by * 3  # beyond the absolute 2-point allowance
    else:
        candidate[which] = champion[which] * (1 - worse_by)
    assert not run_gate(candidate, CFG, champion, "1").passed


BEAT = GateConfig(checks={"accuracy": GateCheckConfig(min=0.5, beat_baseline=True),
                          "perplexity": GateCheckConfig(max=50, beat_baseline=True)})


@pytest.mark.parametrize(("candidate", "baseline", "status"), [
    ({"accuracy": 0.95, "perplexity": 10.0}, {"accuracy": 0.92, "perplexity": 12.0}, ["pass", "pass"]),
    ({"accuracy": 0.92, "perplexity": 12.0}, {"accuracy": 0.92, "perplexity": 12.0}, ["fail", "fail"]),  # a tie
    ({"accuracy": 0.60, "perplexity": 30.0}, {"accuracy": 0.92, "perplexity": 12.0}, ["fail", "fail"]),
])
def test_the_baseline_row_needs_the_candidate_strictly_better_in_the_metrics_direction(candidate, baseline, status):
    report = run_gate(candidate, BEAT, baseline_metrics=baseline, baseline_name="TF-IDF + linear SVM")
    rows = [c for c in report.checks if c.name.endswith("vs baseline")]
    assert [r.status for r in rows] == status
    assert all(r.baseline == baseline[r.metric] for r in rows)
    assert report.passed == (status == ["pass", "pass"])
    says = [n for n in report.notes if n.startswith("The candidate does not beat the TF-IDF + linear SVM baseline")]
    assert bool(says) == (not report.passed) and ("\n" not in "".join(says))


def test_without_a_baseline_the_row_is_skipped_and_a_missing_metric_fails():
    skipped = run_gate({"accuracy": 0.9, "perplexity": 10.0}, BEAT)
    assert [c.status for c in skipped.checks if c.name.endswith("vs baseline")] == ["skipped", "skipped"]
    assert skipped.passed
    missing = run_gate({"accuracy": 0.9, "perplexity": 10.0}, BEAT, baseline_metrics={"accuracy": 0.5},
                       baseline_name="b")
    assert [c.status for c in missing.checks if c.name.endswith("vs baseline")] == ["pass", "fail"]


def test_classification_gates_on_the_baseline_by_default():
    assert load_config(overrides=["data.task=classification"]).gate.checks["accuracy"].beat_baseline
    assert not any(c.beat_baseline for c in load_config().gate.checks.values())


def test_an_ungated_baseline_is_reported_in_one_sentence_without_deciding():
    config = GateConfig(checks={"rouge_l": GateCheckConfig(min=0.2)})
    report = run_gate({"rouge_l": 0.55}, config, baseline_metrics={"rouge_l": 0.6}, baseline_name="retrieval")
    assert report.verdict == "passed" and not [c for c in report.checks if c.name.endswith("vs baseline")]
    note = next(n for n in report.notes if n.startswith("For reference, the retrieval baseline"))
    assert "rouge_l 0.6" in note and "gate.checks.rouge_l.beat_baseline=true" in note


BASE = GateConfig(checks={"rouge_l": GateCheckConfig(min=0.1, max_drop=0.02, beat_base=True),
                          "mcq_accuracy": GateCheckConfig(min=0.3, beat_base=True)})


@pytest.mark.parametrize(("candidate", "status"), [
    ({"rouge_l": 0.40, "mcq_accuracy": 0.80}, ["pass", "pass"]),
    ({"rouge_l": 0.40, "mcq_accuracy": 0.50}, ["pass", "fail"]),  # a tie with the base does not pass
    ({"rouge_l": 0.10, "mcq_accuracy": 0.40}, ["fail", "fail"]),
])
def test_a_fine_tuned_model_must_beat_its_zero_shot_base(candidate, status):
    base = {"rouge_l": 0.12, "mcq_accuracy": 0.50}
    report = run_gate(candidate, BASE, base_metrics=base, base_name="bundled:smollm2-135m")
    rows = [c for c in report.checks if c.name.endswith("vs base")]
    assert [r.status for r in rows] == status
    assert report.passed == (status == ["pass", "pass"])
    assert "its base bundled:smollm2-135m zero-shot" in rows[0].reason
    assert any("scored zero-shot" in n for n in report.notes)


def test_a_model_trained_from_scratch_skips_the_base_rows_and_the_report_sets_figures_side_by_side():
    report = run_gate({"rouge_l": 0.4, "mcq_accuracy": 0.8}, BASE, {"rouge_l": 0.39, "mcq_accuracy": 0.7}, "3")
    assert [c.status for c in report.checks if c.name.endswith("vs base")] == ["skipped", "skipped"]
    assert report.passed
    assert report.side_by_side["rouge_l"] == {"base": None, "candidate": 0.4, "champion": 0.39, "baseline": None}
    with_base = run_gate({"rouge_l": 0.4, "mcq_accuracy": 0.8}, BASE, {"rouge_l": 0.39, "mcq_accuracy": 0.7}, "3",
                         base_metrics={"rouge_l": 0.2, "mcq_accuracy": 0.5}, base_name="b")
    table = with_base.to_markdown().split("## Side by side")[1]
    assert "| metric | base (zero-shot) | candidate | champion |" in table
    assert "| rouge_l | 0.2 | 0.4 | 0.39 |" in table


def test_conversational_gates_require_beating_the_base_on_rouge_l_and_mcq():
    checks = load_config().gate.checks
    assert checks["rouge_l"].beat_base and checks["mcq_accuracy"].beat_base
