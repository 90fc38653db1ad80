"""Cheap, strong reference models, trained on the same split as the candidate and scored on the same test split.

A candidate that does not beat a model trained in seconds is not worth promoting: the gate compares
the two (``GateCheckConfig.beat_baseline``), and the baseline itself is logged to MLflow as a model
that can be registered and shipped when it is the better choice.

Classification: TF-IDF features of word 1-2-grams and character 2-5-grams (``char_wb``, sublinear
term frequency) into a linear support-vector machine (scikit-learn ``LinearSVC``, C = 0.5), the
reference measured on CLINC150 in ``../shared/data/README.md`` (92.4 % in-scope test accuracy; Larson
et al. 2019 report similar figures for their bag-of-words SVM baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from compactlm.errors import DataError
from compactlm.evaluation.runner import EvalResult, classification_result
from compactlm.models.classifier import OOS_MAX_ACCURACY_LOSS, choose_threshold, labels_from_scores

TFIDF_SVM = "tfidf-linear-svm"
BASELINE_DESCRIPTIONS = {
    TFIDF_SVM: "TF-IDF (word 1-2-grams + character 2-5-grams) + linear SVM (scikit-learn)",
}


@dataclass
class Baseline:
    """A fitted reference model.

    Attributes:
        name: the baseline's kind (``tfidf-linear-svm``).
        model: the fitted scikit-learn ``Pipeline`` (``predict``/``decision_function`` over raw texts).
        train_seconds: wall time of the fit, in seconds.
        parameters: learned weights (the linear model's coefficients and intercepts; the vocabulary
            and IDF weights are not counted).
        n_features: TF-IDF features (vocabulary entries of both vectorizers).
        oos_label, oos_threshold: out-of-scope abstention, as the candidate's (``compactlm.models.classifier``).
    """

    name: str
    model: Any
    train_seconds: float
    parameters: int
    n_features: int
    oos_label: str | None = None
    oos_threshold: float | None = None  # abstain below this best margin (chosen on the validation split)

    @property
    def description(self) -> str:
        """A short human description of the model."""
        return BASELINE_DESCRIPTIONS[self.name]

    @property
    def labels(self) -> list[str]:
        """The class labels, in the column order of ``decision_scores``."""
        return [str(label) for label in self.model.classes_]

    def predict(self, texts: list[str]) -> list[str]:
        """One label per text (the out-of-scope label where it abstains)."""
        return labels_from_scores(self.decision_scores(texts), self.labels, self.oos_label, self.oos_threshold)

    def decision_scores(self, texts: list[str]) -> np.ndarray:
        """The linear model's margins, ``(len(texts), len(labels))`` (higher means more likely; not probabilities)."""
        scores = np.asarray(self.model.decision_function(texts), dtype=np.float64).reshape(len(texts), -1)
        # Two classes: scikit-learn gives one margin, positive for the second label; one column per label here.
        return np.hstack([-scores, scores]) if scores.shape[1] == 1 else scores


def train_text_classifier(train: pd.DataFrame, text_column: str = "text", label_column: str = "label",
                          c: float = 0.5, seed: int = 0, oos_label: str | None = None) -> Baseline:
    """Fit the TF-IDF + linear SVM baseline on the train split.

    Args:
        train: rows with ``text_column`` and ``label_column`` (labels compared as strings).
        text_column, label_column: the columns to read.
        c: the SVM's inverse regularisation strength (scikit-learn ``C``).
        seed: ``random_state`` of the solver (its dual coordinate descent shuffles).
        oos_label: out-of-scope rows (not a class) are left out of the fit.

    Returns:
        The fitted baseline.

    Raises:
        DataError: fewer than two labels in the train split.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    if oos_label is not None:
        train = train[train[label_column].astype(str) != oos_label]
    texts = [str(t) for t in train[text_column]]
    labels = [str(y) for y in train[label_column]]
    if len(set(labels)) < 2:
        raise DataError(f"a classification baseline needs at least 2 labels in the train split, got {set(labels)}")
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=True)),
    ])
    model = make_pipeline(features, LinearSVC(C=c, random_state=seed))
    start = time.perf_counter()
    model.fit(texts, labels)
    seconds = time.perf_counter() - start
    svm = model[-1]
    n_features = sum(len(vectorizer.vocabulary_) for _, vectorizer in model[0].transformer_list)
    return Baseline(TFIDF_SVM, model, seconds, int(svm.coef_.size + svm.intercept_.size), n_features, oos_label)


def evaluate_baseline(baseline: Baseline, test: pd.DataFrame, text_column: str = "text",
                      label_column: str = "label") -> EvalResult:
    """Score the baseline on the test split with exactly the candidate's classification metrics.

    Args:
        baseline: a fitted baseline.
        test: the frozen test split (``text_column``, ``label_column``).

    Returns:
        ``accuracy``, ``macro_f1``, ``slice_min_accuracy_label``, ``latency_ms_per_answer`` (and the
        out-of-scope rates when it abstains; see ``compactlm.evaluation.runner.classification_result``)
        plus ``train_seconds`` and ``parameters``.
    """
    texts, labels = [str(t) for t in test[text_column]], [str(y) for y in test[label_column]]
    start = time.perf_counter()
    predictions = baseline.predict(texts)
    result = classification_result(texts, labels, predictions, time.perf_counter() - start,
                                   oos_label=baseline.oos_label if baseline.oos_threshold is not None else None)
    result.metrics.update(train_seconds=baseline.train_seconds, parameters=float(baseline.parameters))
    return result


BASELINES = {TFIDF_SVM: train_text_classifier}


def fit_and_score(name: str, train: pd.DataFrame, test: pd.DataFrame, val: pd.DataFrame | None = None,
                  oos_label: str | None = None, oos_max_accuracy_loss: float = OOS_MAX_ACCURACY_LOSS
                  ) -> tuple[Baseline, EvalResult]:
    """Fit baseline ``name`` on the train split and score it on the test split.

    Args:
        name: a key of ``BASELINES`` (a shape's ``baseline``).
        train, test: the splits of one dataset version (canonical columns of the shape).
        val: the validation split, where the abstention threshold is chosen (with ``oos_label``).
        oos_label: the out-of-scope label (``classifier.oos_label``): left out of the fit, abstained to.
        oos_max_accuracy_loss: the in-scope accuracy its abstentions may cost on validation, as the
            candidate's (``classifier.oos_max_accuracy_loss``).

    Raises:
        KeyError: an unknown baseline name.
        DataError: data the baseline cannot learn from (fewer than two labels).
    """
    baseline = BASELINES[name](train, oos_label=oos_label)
    if oos_label is not None and val is not None:
        texts = [str(t) for t in val["text"]]
        baseline.oos_threshold = choose_threshold(baseline.decision_scores(texts), baseline.labels,
                                                  [str(y) for y in val["label"]], oos_label, oos_max_accuracy_loss)
    return baseline, evaluate_baseline(baseline, test)


@dataclass
class BaselineRun:
    """What a pipeline run keeps of its baseline: what it is, its test metrics and its logged model.

    Attributes:
        name: the baseline's kind; description: for reports.
        metrics: its metrics on the test split (those of ``evaluate_baseline``).
        model_uri: the MLflow model it was logged as (register it to ship it), or None.
    """

    name: str
    description: str
    metrics: dict[str, float]
    model_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (metrics rounded to 4 digits)."""
        return {"name": self.name, "description": self.description, "model_uri": self.model_uri,
                "metrics": {k: round(v, 4) for k, v in self.metrics.items()}}
