"""The drift statistics: same-distribution traffic does not drift, off-domain traffic does, on each check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers import OFF_DOMAIN_PROMPTS

from compactlm.config import MonitorConfig
from compactlm.errors import ConfigError
from compactlm.monitoring.drift import compare_traffic

WINDOW = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))


@pytest.fixture(scope="module")
def frames():
    from compactlm.data.sources.generator import generate_support_dataset

    frame = generate_support_dataset(n_rows=1500, seed=5).sample(frac=1.0, random_state=0)  # the same distribution
    return frame.iloc[:1200], frame.iloc[1200:]


def compare(reference, served, config=None, up=0, down=0, corrected=0, n_served=None):
    return compare_traffic(reference["instruction"].tolist(), reference["intent"].tolist(), served,
                           n_served=len(served) if n_served is None else n_served, feedback_up=up, feedback_down=down,
                           corrected_answers=corrected, config=config or MonitorConfig(min_requests=20),
                           model_name="m", model_version="3", data_version="abc", window=WINDOW)


def test_held_out_support_questions_do_not_drift(frames):
    reference, held_out = frames
    report = compare(reference, held_out["instruction"].tolist()[:100])
    assert report.drifted == [] and not report.retrain_needed, report.to_markdown()
    stats = {c.name: c.statistic for c in report.checks}
    assert stats["length"] < 0.2 and stats["out_of_domain"] < 0.05
    for check in report.checks[1:3]:  # sampling noise of 100 prompts stays under the no-drift spread
        assert check.statistic <= check.extra["null_p99"], check
    assert report.checks[-1].statistic is None  # no feedback: no verdict
    assert "no retrain needed" in report.summary() and report.verdict == "no-drift"


def test_off_domain_questions_drift_on_every_text_check(frames):
    reference, _ = frames
    report = compare(reference, OFF_DOMAIN_PROMPTS)
    assert set(report.drifted) == {"length", "vocabulary", "intent", "out_of_domain"}, report.to_markdown()
    assert report.retrain_reasons == ["length", "vocabulary", "intent", "out_of_domain"]
    ood = next(c for c in report.checks if c.name == "out_of_domain")
    assert ood.statistic > 0.5
    vocab = next(c for c in report.checks if c.name == "vocabulary")
    assert vocab.extra["oov_rate"] > 0.3 and "recipe" in vocab.detail
    figures = report.figures()
    assert figures["drift.out_of_domain"] == ood.statistic and figures["served_prompts"] == len(OFF_DOMAIN_PROMPTS)
    markdown = report.to_markdown()
    assert "Retrain needed: length, vocabulary, intent, out_of_domain" in markdown and "Kolmogorov" in markdown
    assert report.verdict == "retrain-needed"
    assert vocab.applied_threshold == max(0.35, vocab.extra["null_p99"])  # the bar the distance had to pass
    assert report.to_dict()["checks"][1]["applied_threshold"] == vocab.applied_threshold


def test_a_drift_outside_retrain_on_is_reported_without_calling_for_a_retrain(frames):
    reference, _ = frames
    report = compare(reference, OFF_DOMAIN_PROMPTS, MonitorConfig(min_requests=20, retrain_on=["negative_feedback"]))
    assert report.drifted and not report.retrain_needed
    assert "not retraining on" in report.summary()


def test_too_little_traffic_or_redacted_prompts_give_no_text_verdict(frames):
    reference, _ = frames
    few = compare(reference, OFF_DOMAIN_PROMPTS[:5])
    assert few.drifted == [] and all(c.statistic is None for c in few.checks[:4])
    assert "not enough traffic: 5 served prompts" in few.checks[0].detail
    assert few.verdict == "no-verdict" and "no verdict (not enough traffic" in few.summary()
    assert "Kolmogorov" in few.checks[0].method  # the method is stated even when not computed
    redacted = compare(reference, [], n_served=500)
    assert "stores no prompt text" in redacted.checks[0].detail and redacted.drifted == []


def test_negative_feedback_and_corrected_answers_call_for_a_retrain(frames):
    reference, held_out = frames
    served = held_out["instruction"].tolist()[:100]
    unhappy = compare(reference, served, up=10, down=15)
    assert unhappy.drifted == ["negative_feedback"] and unhappy.checks[-1].statistic == pytest.approx(0.6)
    too_few = compare(reference, served, up=1, down=5)  # 6 ratings < min_feedback
    assert too_few.drifted == [] and "not enough feedback" in too_few.checks[-1].detail
    corrected = compare(reference, served, corrected=50)
    assert corrected.drifted == [] and corrected.retrain_reasons == ["corrected_answers"]


def test_a_task_without_labels_skips_the_intent_check(frames):
    reference, _ = frames
    report = compare_traffic(reference["instruction"].tolist(), None, OFF_DOMAIN_PROMPTS, n_served=48, feedback_up=0,
                             feedback_down=0, corrected_answers=0, config=MonitorConfig(min_requests=20),
                             model_name="m", model_version="1", data_version=None, window=WINDOW)
    intent = next(c for c in report.checks if c.name == "intent")
    assert intent.statistic is None and not intent.drifted and "out_of_domain" in report.drifted


@pytest.mark.parametrize("override, field", [({"ood_share_max": 1.5}, "monitor.ood_share_max"),
                                             ({"min_requests": 0}, "monitor.min_requests"),
                                             ({"retrain_on": ["accuracy"]}, "monitor.retrain_on"),
                                             ({"window_hours": 0}, "monitor.window_hours")])
def test_invalid_thresholds_fail_with_the_field_named(override, field):
    with pytest.raises(ConfigError, match=field):
        MonitorConfig(**override)
