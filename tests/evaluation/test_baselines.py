"""The TF-IDF + linear SVM baseline on real intent data no one here wrote (a CLINC150 slice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compactlm.errors import DataError
from compactlm.evaluation.baselines import evaluate_baseline, fit_and_score, train_text_classifier

CLINC = Path(__file__).resolve().parents[3] / "shared" / "data" / "clinc150"


@pytest.fixture(scope="module")
def clinc_slice():
    """20 in-scope intents of CLINC150 (Larson et al. 2019, CC BY 3.0): 2,000 train rows, 600 test rows."""
    train, test = pd.read_csv(CLINC / "train.csv"), pd.read_csv(CLINC / "test.csv")
    intents = sorted(set(train["label"]) - {"oos"})[:20]
    return train[train["label"].isin(intents)], test[test["label"].isin(intents)]


def test_the_baseline_learns_real_intents_in_seconds(clinc_slice):
    train, test = clinc_slice
    baseline, result = fit_and_score("tfidf-linear-svm", train, test)
    assert result.metrics["accuracy"] > 0.9 and result.metrics["macro_f1"] > 0.9
    assert 0 < baseline.train_seconds < 60 and result.metrics["train_seconds"] == baseline.train_seconds
    assert baseline.parameters == 20 * baseline.n_features + 20  # one weight per feature and class, plus biases
    scores = baseline.decision_scores(list(test["text"][:3]))
    assert scores.shape == (3, 20) and np.array_equal(np.array(baseline.labels)[scores.argmax(1)],
                                                      baseline.predict(list(test["text"][:3])))


def test_the_baseline_is_scored_with_the_candidates_metrics(clinc_slice):
    train, test = clinc_slice
    result = evaluate_baseline(train_text_classifier(train), test)
    assert {"accuracy", "macro_f1", "slice_min_accuracy_label", "latency_ms_per_answer"} <= set(result.metrics)
    assert result.n_rows == len(test) and "Accuracy by label" in result.reports["slices"]


def test_one_label_is_a_data_error():
    with pytest.raises(DataError, match="at least 2 labels"):
        train_text_classifier(pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}))


def test_with_out_of_scope_rows_the_baseline_abstains_and_reports_oos_recall():
    train, val, test = (pd.read_csv(CLINC / f"{split}.csv") for split in ("train", "val", "test"))
    intents = sorted(set(train["label"]) - {"oos"})[:20]
    keep = [*intents, "oos"]
    train, val, test = (frame[frame["label"].isin(keep)] for frame in (train, val, test))
    baseline, result = fit_and_score("tfidf-linear-svm", train, test, val, oos_label="oos")
    assert "oos" not in baseline.labels and baseline.oos_threshold is not None
    assert 0.2 < result.metrics["oos_recall"] <= 1 and 0 < result.metrics["oos_precision"] <= 1
    assert result.metrics["accuracy"] > 0.8  # in-scope rows only, abstentions counted wrong
    assert result.n_rows == (test["label"] != "oos").sum()


def test_the_retrieval_baseline_answers_with_the_nearest_training_prompts_answer():
    train = pd.DataFrame({"instruction": ["where is my parcel", "i want a refund for my shoes",
                                          "how do i change my password"],
                          "response": ["Your parcel ships today.", "Refunds take five days.", "Use the reset link."]})
    test = pd.DataFrame({"instruction": ["my parcel, where is it?", "refund for shoes please"],
                         "response": ["Your parcel ships today.", "Refunds take 5 days."]})
    baseline, result = fit_and_score("tfidf-retrieval", train, test, sample=(10, 0))
    assert baseline.answers and baseline.description.startswith("TF-IDF nearest-neighbour retrieval")
    # The test sample is shuffled (seeded); the answers follow their prompts.
    answers = dict(zip(["where is my parcel", "refund"], baseline.predict(["where is my parcel?", "refund shoes"])))
    assert answers == {"where is my parcel": "Your parcel ships today.", "refund": "Refunds take five days."}
    assert result.n_rows == 2 and result.metrics["exact_match"] == 0.5
    assert {"rouge_l", "bleu", "train_seconds", "parameters"} <= set(result.metrics)


def test_the_retrieval_baseline_is_scored_on_the_candidates_generation_sample():
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.evaluation.runner import generation_sample

    frame = generate_support_dataset(n_rows=300, seed=1)[["instruction", "response", "intent"]]
    train, test = frame.iloc[:200], frame.iloc[200:]
    _, result = fit_and_score("tfidf-retrieval", train, test, sample=(16, 3))
    sample = generation_sample(test, 16, 3)
    assert result.n_rows == 16
    assert [e["reference"] for e in result.examples] == list(sample["response"][:5])
    assert 0.2 < result.metrics["rouge_l"] <= 1.0  # templated support answers: copying the nearest one is strong
