"""Classifier inference: labels from scores, and the out-of-scope abstention threshold chosen on validation data."""

from __future__ import annotations

import numpy as np

from compactlm.models.classifier import choose_threshold, labels_from_scores

CLASSES = ["balance", "refund"]


def test_labels_abstain_below_the_threshold_only_when_asked():
    scores = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])
    assert labels_from_scores(scores, CLASSES) == ["balance", "refund", "refund"]
    assert labels_from_scores(scores, CLASSES, "oos", 0.6) == ["balance", "oos", "refund"]


def test_the_threshold_balances_in_scope_accuracy_and_out_of_scope_recall():
    # Confident in-scope rows, unsure out-of-scope rows: any threshold between them separates both groups.
    scores = np.array([[0.95, 0.05], [0.1, 0.9], [0.85, 0.15], [0.55, 0.45], [0.4, 0.6]])
    truth = ["balance", "refund", "balance", "oos", "oos"]
    threshold = choose_threshold(scores, CLASSES, truth, "oos")
    assert 0.6 < threshold <= 0.85
    assert labels_from_scores(scores, CLASSES, "oos", threshold) == truth
    assert choose_threshold(scores, CLASSES, ["balance"] * 5, "oos") is None  # nothing out of scope to learn from
