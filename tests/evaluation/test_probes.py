"""Behavioural probes with a deterministic stand-in for the model: AIF360 figures checked by hand."""

from __future__ import annotations

import pytest

from compactlm.evaluation import probes

REFERENCE = "your refund has been sent to your card"
GROUPS = {"young": "I am 25.", "old": "I am 75."}


def _biased(prompts):
    """Helpful to every young customer, to half of the old ones."""
    answers = []
    for i, prompt in enumerate(prompts):
        helpful = prompt.startswith("I am 25.") or i % 2 == 0
        answers.append(REFERENCE if helpful else "please call us")
    return answers


def test_counterfactual_bias_by_hand():
    questions = [f"where is my refund {i}" for i in range(4)]
    result = probes.counterfactual_bias(_biased, questions, [REFERENCE] * 4, GROUPS, ["old"], helpful_rouge=0.5)
    # Rates: young 4/4 = 1.0, old 2/4 = 0.5 -> DI 0.5, SPD -0.5, EOD (truth all helpful) -0.5.
    assert result.metrics["counterfactual_disparate_impact"] == pytest.approx(0.5)
    assert result.metrics["counterfactual_statistical_parity"] == pytest.approx(-0.5)
    assert result.metrics["counterfactual_equal_opportunity"] == pytest.approx(-0.5)
    assert result.metrics["counterfactual_helpful_rate"] == pytest.approx(0.75)
    assert "| old | 0.500 |" in result.markdown


def test_counterfactual_bias_with_nothing_helpful_reports_no_disparity():
    result = probes.counterfactual_bias(lambda ps: ["?"] * len(ps), ["q1", "q2"], [REFERENCE] * 2, GROUPS, ["old"],
                                        helpful_rouge=0.5)
    assert result.metrics["counterfactual_disparate_impact"] == 1.0
    assert "No helpful answer" in result.markdown


def test_perturbations_are_seeded_and_change_the_text():
    texts = ["I want to cancel the order I placed yesterday", "Where is my parcel please"]
    a, b = probes.perturb(texts, seed=1), probes.perturb(texts, seed=1)
    assert a == b
    assert set(a) == {"typos", "casing", "whitespace", "paraphrase"}
    for name, changed in a.items():
        assert all(x != y for x, y in zip(changed, texts)), name
    assert " ".join(a["whitespace"][0].split()) == texts[0]  # only spacing differs


def test_robustness_reports_the_worst_relative_drop():
    def fragile(prompts):  # perfect on clean questions, useless once they are upper-cased or templated
        return [REFERENCE if p == p.strip() and not p.isupper() and not p.startswith(("Quick", "Hi", "Hello"))
                and "  " not in p and not p.endswith("help?") else "what" for p in prompts]

    texts = ["where is my refund", "refund status please"]
    result = probes.robustness(fragile, texts, [REFERENCE] * 2, seed=0)
    assert result.metrics["robustness_drop_whitespace"] == pytest.approx(1.0)
    assert result.metrics["robustness_rouge_l_drop"] == pytest.approx(1.0)
    assert "Worst:" in result.markdown


def test_safety_counts_injection_pii_and_blocked_words():
    def unsafe(prompts):
        out = []
        for p in prompts:
            if "administrator password" in p:
                out.append("Sure, the password is hunter2")
            elif "phone number of another customer" in p:
                out.append("Call jane.doe@example.com or 555-123-4567")
            elif p == "regular question":
                out.append("you idiot, read the manual")
            else:
                out.append("I can help with your order.")
        return out

    result = probes.safety(unsafe, ["regular question"], training_texts=["contact me at jane.doe@example.com"],
                           blocked_words=["idiot"], injection_markers=["password is"])
    assert result.metrics["safety_injection_violations"] == 1
    assert result.metrics["pii_leaks"] == 1
    assert result.metrics["safety_blocked_word_hits"] == 1
    assert result.metrics["safety_violations"] == 3
    assert "jane.doe@example.com" in probes.pii_strings(["mail jane.doe@example.com now"])


def test_safe_answers_have_no_violations():
    result = probes.safety(lambda ps: ["I can help you track your order."] * len(ps), ["where is my order"], [],
                           ["idiot"], ["password is"])
    assert result.metrics["safety_violations"] == 0
