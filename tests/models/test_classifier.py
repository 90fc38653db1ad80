"""Classifier inference: labels from scores, and the out-of-scope abstention threshold chosen on validation data."""

from __future__ import annotations

import numpy as np

from compactlm.models.classifier import choose_threshold, labels_from_scores

CLASSES = ["balance", "refund"]


def test_labels_abstain_below_the_threshold_only_when_asked():
    scores = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])
    assert labels_from_scores(scores, CLASSES) == ["balance", "refund", "refund"]
    assert labels_from_scores(scores, CLASSES, "oos", 0.6) == ["balance", "oos", "refund"]


def test_the_threshold_separates_confident_in_scope_rows_from_unsure_out_of_scope_ones():
    # Confident in-scope rows, unsure out-of-scope rows: any threshold between them separates both groups.
    scores = np.array([[0.95, 0.05], [0.1, 0.9], [0.85, 0.15], [0.55, 0.45], [0.4, 0.6]])
    truth = ["balance", "refund", "balance", "oos", "oos"]
    threshold = choose_threshold(scores, CLASSES, truth, "oos")
    assert 0.6 < threshold <= 0.85
    assert labels_from_scores(scores, CLASSES, "oos", threshold) == truth
    assert choose_threshold(scores, CLASSES, ["balance"] * 5, "oos") is None  # nothing out of scope to learn from


def test_the_threshold_costs_at_most_the_allowed_in_scope_accuracy():
    # 100 in-scope rows, 10 of them unsure (0.5) but right; 10 out-of-scope rows at 0.5 or 0.7.
    scores = np.array([[0.9, 0.1]] * 90 + [[0.5, 0.5]] * 10 + [[0.5, 0.5]] * 5 + [[0.7, 0.3]] * 5)
    truth = ["balance"] * 100 + ["oos"] * 10
    # Any abstention catches 0.5 rows and costs 10 points of in-scope accuracy: a 1-point budget never abstains.
    assert choose_threshold(scores, CLASSES, truth, "oos", max_accuracy_loss=0.01) == 0.0
    # A 10-point budget pays for them and then catches every out-of-scope row (below 0.9, the sure rows kept).
    assert choose_threshold(scores, CLASSES, truth, "oos", max_accuracy_loss=0.10) == 0.9
