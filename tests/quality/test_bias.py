"""AIF360 dataset audit: hand-computed metrics, the generator's injected bias, and explicit non-audits."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import one_line_error

from compactlm.config import BiasConfig
from compactlm.data.sources.generator import generate_support_dataset
from compactlm.errors import DataError
from compactlm.quality.bias import audit_dataset_bias, reweighing_weights


def group(value: str, n: int, favorable: int) -> pd.DataFrame:
    return pd.DataFrame({"age_band": [value] * n, "resolved": [1] * favorable + [0] * (n - favorable)})


def frame_with_rates(privileged: int, unprivileged: int) -> pd.DataFrame:
    """Two privileged bands of 5 rows each and 10 rows aged 65+; the counts are favorable outcomes out of 10."""
    return pd.concat([group("18-29", 5, privileged // 2), group("30-44", 5, privileged - privileged // 2),
                      group("65+", 10, unprivileged)], ignore_index=True)


def test_hand_computed_disparity_fails_with_reasons():
    report = audit_dataset_bias(frame_with_rates(privileged=8, unprivileged=4), BiasConfig())
    assert report.audited
    assert report.n_rows == 20
    assert report.favorable_rate_privileged == pytest.approx(0.8)
    assert report.favorable_rate_unprivileged == pytest.approx(0.4)
    assert report.disparate_impact == pytest.approx(0.5)
    assert report.statistical_parity_difference == pytest.approx(-0.4)
    assert report.passed is False
    assert len(report.reasons) == 2
    assert "disparate impact 0.500 < 0.8" in report.reasons[0]
    assert "statistical parity difference| 0.400 > 0.1" in report.reasons[1]
    markdown = report.to_markdown()
    assert "FAILED" in markdown and "0.5000" in markdown and "-0.4000" in markdown


def test_a_fair_frame_passes():
    report = audit_dataset_bias(frame_with_rates(privileged=8, unprivileged=8), BiasConfig())
    assert report.audited and report.passed
    assert report.disparate_impact == pytest.approx(1.0)
    assert report.statistical_parity_difference == pytest.approx(0.0)
    assert "within thresholds" in report.reasons[0]
    assert "PASSED" in report.to_markdown()


def test_favoring_the_unprivileged_group_too_much_also_fails():
    report = audit_dataset_bias(frame_with_rates(privileged=4, unprivileged=8), BiasConfig())
    assert report.disparate_impact == pytest.approx(2.0)
    assert report.statistical_parity_difference == pytest.approx(0.4)
    assert not report.passed
    assert any("> 1.25" in r for r in report.reasons)


def test_favorable_label_zero_inverts_the_rates():
    config = BiasConfig(favorable_label=0)
    report = audit_dataset_bias(frame_with_rates(privileged=8, unprivileged=4), config)
    assert report.favorable_rate_privileged == pytest.approx(0.2)
    assert report.favorable_rate_unprivileged == pytest.approx(0.6)
    assert report.disparate_impact == pytest.approx(3.0)


def test_several_unprivileged_values_and_string_labels_from_csv():
    frame = frame_with_rates(privileged=8, unprivileged=4)
    frame["resolved"] = frame["resolved"].astype(str)  # "0"/"1" as read from a CSV file
    config = BiasConfig(unprivileged_values=["65+", "30-44"])
    report = audit_dataset_bias(frame, config)
    # unprivileged: 30-44 (4/5) + 65+ (4/10) = 8/15; privileged: 18-29 (4/5)
    assert report.favorable_rate_unprivileged == pytest.approx(8 / 15)
    assert report.favorable_rate_privileged == pytest.approx(0.8)
    assert report.disparate_impact == pytest.approx((8 / 15) / 0.8)


def test_thresholds_come_from_the_config():
    frame = frame_with_rates(privileged=8, unprivileged=4)
    lenient = BiasConfig(min_disparate_impact=0.5, max_abs_statistical_parity=0.4)
    assert audit_dataset_bias(frame, lenient).passed


def test_generator_bias_is_caught_and_no_bias_passes():
    biased = audit_dataset_bias(generate_support_dataset(n_rows=10_000, bias=0.5), BiasConfig())
    assert biased.audited and not biased.passed
    assert biased.disparate_impact < 0.8
    assert biased.statistical_parity_difference < -0.1
    fair = audit_dataset_bias(generate_support_dataset(n_rows=10_000, bias=0.0), BiasConfig())
    assert fair.audited and fair.passed, fair.reasons
    assert 0.9 < fair.disparate_impact < 1.1


@pytest.mark.parametrize("column", ["resolved", "age_band"])
def test_a_missing_column_is_reported_as_not_audited(column):
    frame = frame_with_rates(privileged=8, unprivileged=4).drop(columns=[column])
    report = audit_dataset_bias(frame, BiasConfig())
    assert report.audited is False
    assert report.disparate_impact is None and report.statistical_parity_difference is None
    assert len(report.reasons) == 1 and repr(column) in report.reasons[0]
    assert "NOT AUDITED" in report.to_markdown()


def test_an_all_null_label_column_is_reported_as_not_audited():
    """What a user file without a ``resolved`` column becomes after ``to_canonical``."""
    frame = frame_with_rates(privileged=8, unprivileged=4).assign(resolved=pd.NA)
    report = audit_dataset_bias(frame, BiasConfig())
    assert report.audited is False
    assert "'resolved'" in report.reasons[0]


@pytest.mark.parametrize("values", [["90+"], ["18-29", "30-44", "65+"]])
def test_unprivileged_values_matching_no_or_all_rows_raise(values):
    frame = frame_with_rates(privileged=8, unprivileged=4)
    with pytest.raises(DataError) as excinfo:
        audit_dataset_bias(frame, BiasConfig(unprivileged_values=values))
    one_line_error(excinfo, "bias.unprivileged_values", "'age_band'", "65+")


def test_non_numeric_labels_raise():
    frame = frame_with_rates(privileged=8, unprivileged=4)
    frame["resolved"] = frame["resolved"].map({1: "yes", 0: "no"})
    with pytest.raises(DataError) as excinfo:
        audit_dataset_bias(frame, BiasConfig())
    one_line_error(excinfo, "'resolved'", "0/1")


@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_numeric_labels_other_than_0_and_1_raise(bad):
    frame = frame_with_rates(privileged=8, unprivileged=4)
    frame["resolved"] = frame["resolved"].astype(float)
    frame.loc[0, "resolved"] = bad
    with pytest.raises(DataError) as excinfo:
        audit_dataset_bias(frame, BiasConfig())
    one_line_error(excinfo, "'resolved'")


# ---------------------------------------------------------------------------------------------------
# Several attributes, label definitions, and Reweighing
# ---------------------------------------------------------------------------------------------------


def two_attribute_frame() -> pd.DataFrame:
    """Age band disadvantaged (65+: 4/10 vs 8/10), region fair (north 6/10 vs south 6/10)."""
    frame = frame_with_rates(privileged=8, unprivileged=4)
    frame["region"] = ["north", "south"] * 10
    return frame


def test_every_configured_attribute_is_audited_and_any_violation_fails():
    config = BiasConfig(protected_attributes={"age_band": ["65+"], "region": ["north"], "tier": ["gold"]})
    report = audit_dataset_bias(two_attribute_frame(), config)
    audits = {a.attribute: a for a in report.attributes}
    assert audits["age_band"].before.disparate_impact == pytest.approx(0.5)
    assert audits["region"].before.disparate_impact == pytest.approx(1.0)
    assert audits["region"].before.passed and not audits["age_band"].before.passed
    assert not audits["tier"].audited and "'tier'" in audits["tier"].reasons[0]
    assert report.audited and not report.passed
    assert report.attribute == "age_band" and report.disparate_impact == pytest.approx(0.5)
    assert any(r.startswith("tier: not audited") for r in report.reasons)
    markdown = report.to_markdown()
    assert "| region | north | disparate impact | 1.0000 | — |" in markdown and "not audited" in markdown


def test_a_string_label_with_favorable_values():
    frame = two_attribute_frame()
    frame["outcome"] = frame["resolved"].map({1: "solved", 0: "escalated"})
    frame.loc[0, "outcome"] = "closed"  # any value outside favorable_values is unfavorable
    config = BiasConfig(label_column="outcome", favorable_values=["solved"])
    report = audit_dataset_bias(frame, config)
    assert report.favorable_rate_unprivileged == pytest.approx(0.4)
    assert report.favorable_rate_privileged == pytest.approx(0.7)


def test_reweighing_weights_remove_the_disparity_and_the_verdict_follows_them():
    frame = two_attribute_frame()
    config = BiasConfig(protected_attributes={"age_band": ["65+"], "region": ["north"]}, reweighing=True)
    weights, note = reweighing_weights(frame, config)
    assert note.startswith("reweighed 20 train rows over age_band, region")
    assert weights.mean() == pytest.approx(1.0) and (weights > 0).all()
    # Kamiran & Calders: weight = P(group) P(label) / P(group, label); favorable 65+ rows weigh the most.
    favorable_old = weights[(frame["age_band"] == "65+") & (frame["resolved"] == 1)]
    unfavorable_old = weights[(frame["age_band"] == "65+") & (frame["resolved"] == 0)]
    assert favorable_old.min() > 1 > unfavorable_old.max()
    report = audit_dataset_bias(frame.assign(sample_weight=weights), config)
    assert report.reweighed and report.passed
    for audit in report.attributes:
        assert audit.after.disparate_impact == pytest.approx(1.0, abs=1e-4)
        assert audit.after.statistical_parity_difference == pytest.approx(0.0, abs=1e-4)
    age = report.attributes[0]
    assert age.before.disparate_impact == pytest.approx(0.5) and not age.before.passed
    assert report.disparate_impact == pytest.approx(1.0, abs=1e-4)  # the effective (weighted) figure
    assert any(r.startswith("mitigated by reweighing: age_band: disparate impact 0.500") for r in report.reasons)
    assert "| age_band | 65+ | disparate impact | 0.5000 | 1.0000 |" in report.to_markdown()


def test_generator_bias_is_mitigated_by_reweighing_in_the_prepared_train_split():
    from compactlm.config import DataConfig
    from compactlm.data.prepare import prepare_dataset

    bias = BiasConfig(reweighing=True)
    result = prepare_dataset(DataConfig(n_rows=3000, bias=0.5), bias)
    train = result.splits["train"]
    assert "sample_weight" in train.columns and "sample_weight" not in result.splits["test"].columns
    report = audit_dataset_bias(train, bias)
    assert not report.attributes[0].before.passed and report.passed
    assert report.attributes[0].after.disparate_impact == pytest.approx(1.0, abs=1e-6)


def test_reweighing_without_a_label_leaves_weights_at_one_and_says_why():
    frame = frame_with_rates(privileged=8, unprivileged=4).assign(resolved=pd.NA)
    weights, note = reweighing_weights(frame, BiasConfig(reweighing=True))
    assert (weights == 1.0).all() and note.startswith("not reweighed: no 'resolved' label")
