"""The promotion gate: every branch, and a property test that a worse candidate never passes."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from compactlm.config import GateConfig
from compactlm.evaluation.gate import run_gate

CFG = GateConfig(max_perplexity=50, min_rouge_l=0.2, min_bleu=5, champion_tolerance=0.02)
GOOD = {"perplexity": 10.0, "word_perplexity": 20.0, "rouge_l": 0.5, "bleu": 30.0}


def test_first_run_is_judged_by_thresholds_alone_and_says_so():
    report = run_gate(GOOD, CFG)
    assert report.passed and report.champion_version is None
    assert [c.name for c in report.checks] == ["perplexity threshold", "rouge_l threshold", "bleu threshold"]
    assert "No champion yet" in report.notes[0]
    assert "PASSED" in report.to_markdown()


def test_threshold_failure_names_the_check():
    report = run_gate({**GOOD, "bleu": 1.0}, CFG)
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["bleu threshold"]
    assert failed[0].value == 1.0 and failed[0].threshold == 5
    assert "Failed: bleu threshold." in report.notes


def test_missing_metric_fails_its_check_explicitly():
    report = run_gate({k: v for k, v in GOOD.items() if k != "rouge_l"}, CFG)
    check = next(c for c in report.checks if c.metric == "rouge_l")
    assert not report.passed and not check.passed and "missing" in check.reason
    nan_report = run_gate({**GOOD, "perplexity": math.nan}, CFG)
    assert not nan_report.passed


def test_champion_comparison_within_and_beyond_tolerance():
    champion = dict(GOOD)
    within = run_gate({**GOOD, "rouge_l": 0.5 * 0.99}, CFG, champion, "3")
    assert within.passed and within.champion_version == "3"
    assert any("re-scored" in n for n in within.notes)
    worse = run_gate({**GOOD, "word_perplexity": 20.0 * 1.05}, CFG, champion, "3")
    assert not worse.passed
    assert [c.name for c in worse.checks if not c.passed] == ["word_perplexity vs champion"]
    assert next(c for c in worse.checks if not c.passed).baseline == 20.0


def test_missing_champion_metric_fails_the_comparison():
    report = run_gate(GOOD, CFG, {"rouge_l": 0.5, "bleu": 30.0}, "1")
    check = next(c for c in report.checks if c.name == "word_perplexity vs champion")
    assert not check.passed and "champion" in check.reason


metric = st.floats(min_value=0.01, max_value=100, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(champ_rouge=st.floats(0.21, 1.0), champ_bleu=st.floats(6, 100), champ_wppl=st.floats(1.0, 40.0),
       which=st.sampled_from(["rouge_l", "bleu", "word_perplexity"]), worse_by=st.floats(0.03, 0.9))
def test_a_candidate_worse_than_the_champion_on_any_check_never_passes(champ_rouge, champ_bleu, champ_wppl,
                                                                      which, worse_by):
    champion = {"perplexity": 10.0, "rouge_l": champ_rouge, "bleu": champ_bleu, "word_perplexity": champ_wppl}
    candidate = dict(champion)
    if which == "word_perplexity":
        candidate[which] = champ_wppl * (1 + worse_by)
    else:
        candidate[which] = champion[which] * (1 - worse_by)
    assert not run_gate(candidate, CFG, champion, "1").passed
