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
from compactlm.evaluation.runner import EvalResult, answer_metrics, classification_result, generation_sample
from compactlm.models.classifier import OOS_MAX_ACCURACY_LOSS, choose_threshold, labels_from_scores

TFIDF_SVM = "tfidf-linear-svm"
TFIDF_RETRIEVAL = "tfidf-retrieval"
BASELINE_DESCRIPTIONS = {
    TFIDF_SVM: "TF-IDF (word 1-2-grams + character 2-5-grams) + linear SVM (scikit-learn)",
    TFIDF_RETRIEVAL: "TF-IDF nearest-neighbour retrieval (the answer of the closest training prompt, scikit-learn)",
}


TEXT = "text"  # the name of the feature step in a baseline's pipeline


def text_frame(texts) -> pd.DataFrame:
    """Texts as the one-column frame a baseline's scikit-learn pipeline reads (its first column).

    A frame, not a bare list, so that the logged model reads what ``mlflow.pyfunc`` passes it (a list of
    strings becomes a one-column DataFrame there): ``model.predict(["where is my order"])`` works.
    """
    # An unnamed (integer) column: fitted on it, the pipeline selects by position, so any one-column input works.
    return pd.DataFrame({0: [str(t) for t in texts]})


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
    answers: bool = False  # the model's predict() returns answers (retrieval), not class labels

    @property
    def description(self) -> str:
        """A short human description of the model."""
        return BASELINE_DESCRIPTIONS[self.name]

    def input_example(self, text: str = "where is my order") -> list[str]:
        """What the logged model takes: a list of texts (``model.predict(["where is my order"])``)."""
        return [text]

    @property
    def labels(self) -> list[str]:
        """The class labels, in the column order of ``decision_scores``."""
        return [str(label) for label in self.model.classes_]

    def predict(self, texts: list[str]) -> list[str]:
        """One label per text (the out-of-scope label where it abstains), or one answer per prompt (retrieval)."""
        if self.answers:
            return [str(answer) for answer in self.model.predict(text_frame(texts))]
        return labels_from_scores(self.decision_scores(texts), self.labels, self.oos_label, self.oos_threshold)

    def decision_scores(self, texts: list[str]) -> np.ndarray:
        """The linear model's margins, ``(len(texts), len(labels))`` (higher means more likely; not probabilities)."""
        scores = np.asarray(self.model.decision_function(text_frame(texts)), dtype=np.float64).reshape(len(texts), -1)
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
    from sklearn.compose import ColumnTransformer
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
    model = make_pipeline(ColumnTransformer([(TEXT, features, 0)], sparse_threshold=1.0),
                          LinearSVC(C=c, random_state=seed))
    start = time.perf_counter()
    model.fit(text_frame(texts), labels)
    seconds = time.perf_counter() - start
    svm = model[-1]
    union = model[0].named_transformers_[TEXT]
    n_features = sum(len(vectorizer.vocabulary_) for _, vectorizer in union.transformer_list)
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


def train_retrieval(train: pd.DataFrame, oos_label: str | None = None) -> Baseline:
    """Fit the retrieval baseline: each prompt is answered with the completion of its nearest training prompt.

    The prompts and completions are the rendered pairs the candidate trains on (``supervised_pairs``:
    instruction/response, the conversation so far/next reply, document/summary). Nearest by cosine
    similarity of TF-IDF vectors (word 1-2-grams, sublinear tf) with scikit-learn's 1-nearest-neighbour
    classifier, whose "classes" are the training completions: a plain scikit-learn model that maps
    prompts to answers, logged and registrable like the classification baseline. Support traffic repeats
    itself, so copying the closest past answer is the bar a generative model must clear.

    Args:
        train: supervised rows of a generation shape (see ``compactlm.training.encoding.supervised_pairs``).
        oos_label: unused (generation shapes have no out-of-scope label).

    Raises:
        DataError: rows without supervised columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    from compactlm.training.encoding import supervised_pairs

    prompts, completions = supervised_pairs(train)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    model = make_pipeline(ColumnTransformer([(TEXT, vectorizer, 0)], sparse_threshold=1.0),
                          KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute"))
    start = time.perf_counter()
    model.fit(text_frame(prompts), completions)
    seconds = time.perf_counter() - start
    n_features = len(model[0].named_transformers_[TEXT].vocabulary_)
    # Its "parameters" are the stored training vectors' non-zero weights (a nearest-neighbour index).
    stored = int(model[0].transform(text_frame(prompts)).nnz)
    return Baseline(TFIDF_RETRIEVAL, model, seconds, stored, n_features, answers=True)


def evaluate_answer_baseline(baseline: Baseline, test: pd.DataFrame) -> EvalResult:
    """Score an answering baseline with the candidate's generation metrics on the same rows.

    Args:
        baseline: a fitted retrieval baseline.
        test: the rows the candidate's generations are scored on (the same seeded sample of the test split).

    Returns:
        ``rouge_1``/``rouge_2``/``rouge_l``, ``exact_match`` (fractions), ``bleu`` (0-100),
        ``latency_ms_per_answer``, ``train_seconds`` and ``parameters``.
    """
    from compactlm.training.encoding import supervised_pairs

    prompts, references = supervised_pairs(test)
    start = time.perf_counter()
    predictions = baseline.predict(prompts)
    seconds = time.perf_counter() - start
    metrics = {**answer_metrics(predictions, references, seconds),
               "train_seconds": baseline.train_seconds, "parameters": float(baseline.parameters)}
    return EvalResult(metrics=metrics, n_rows=len(prompts), n_generated=len(prompts), seconds=seconds,
                      examples=[{"instruction": p[-300:], "reference": r, "generated": g}
                                for p, r, g in list(zip(prompts, references, predictions))[:5]])


BASELINES = {TFIDF_SVM: train_text_classifier, TFIDF_RETRIEVAL: train_retrieval}


def fit_and_score(name: str, train: pd.DataFrame, test: pd.DataFrame, val: pd.DataFrame | None = None,
                  oos_label: str | None = None, oos_max_accuracy_loss: float = OOS_MAX_ACCURACY_LOSS,
                  sample: tuple[int, int] | None = None) -> tuple[Baseline, EvalResult]:
    """Fit baseline ``name`` on the train split and score it on the test split.

    An answering baseline is scored on the seeded sample of the test split that the candidate's
    generations are scored on (``sample``: ``(eval.max_generate_samples, eval.seed)``), a classifier on
    every test row.

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
    if baseline.answers:
        return baseline, evaluate_answer_baseline(baseline, generation_sample(test, *(sample or (len(test), 0))))
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
