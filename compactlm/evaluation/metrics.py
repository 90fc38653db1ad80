"""Metric functions: ROUGE (rouge-score), BLEU (sacrebleu), exact match, accuracy, macro-F1, slices, size.

Pure functions over lists of strings or labels, each tested against hand-computed values; the
pairwise ones raise ``ValueError`` when predictions and references differ in length. The evaluation
run that produces the pipeline's metrics is in ``compactlm.evaluation.runner``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def _aligned(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over the pairs, each in [0, 1].

    ROUGE as defined by Lin (2004), "ROUGE: A Package for Automatic Evaluation of Summaries"; computed
    with Google's ``rouge-score`` package (Porter stemmer on; ROUGE-L is the sentence-level LCS
    ``rougeL``, not ``rougeLsum``).

    Args:
        predictions: generated texts.
        references: one reference text per prediction.

    Returns:
        ``{"rouge_1", "rouge_2", "rouge_l"}``; all 0.0 for empty input.

    Raises:
        ValueError: predictions and references differ in length.
    """
    from rouge_score import rouge_scorer

    _aligned(predictions, references)
    if not predictions:
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred)
        for key in totals:
            totals[key] += scores[key].fmeasure
    n = len(predictions)
    return {"rouge_1": totals["rouge1"] / n, "rouge_2": totals["rouge2"] / n, "rouge_l": totals["rougeL"] / n}


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, stemmed), in [0, 1]; see ``rouge_scores``.

    Raises:
        ValueError: predictions and references differ in length.
    """
    return rouge_scores(predictions, references)["rouge_l"]


def rouge_l_per_pair(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each pair, each in [0, 1] (for slices and per-answer rubrics); see ``rouge_scores``.

    Raises:
        ValueError: predictions and references differ in length.
    """
    from rouge_score import rouge_scorer

    _aligned(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with one reference per prediction, in [0, 100] (not [0, 1]).

    BLEU after Papineni et al. (2002); computed with sacrebleu's ``corpus_bleu`` and its defaults
    (13a tokenisation, exponential smoothing; Post 2018, "A Call for Clarity in Reporting BLEU Scores").
    Returns 0.0 for empty input.

    Raises:
        ValueError: predictions and references differ in length.
    """
    import sacrebleu

    _aligned(predictions, references)
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lowercase, turn ASCII punctuation into spaces, collapse whitespace.

    Close to the answer normalisation of the SQuAD v1.1 evaluation script (Rajpurkar et al. 2016), but
    punctuation becomes a space instead of vanishing, and articles (a, an, the) are kept.
    """
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after ``normalize_answer``, in [0, 1] (0.0 when empty).

    Raises:
        ValueError: predictions and references differ in length.
    """
    _aligned(predictions, references)
    if not predictions:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(predictions)


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    """Share of exact label matches, in [0, 1] (0.0 when empty).

    Raises:
        ValueError: predictions and references differ in length.
    """
    _aligned(predictions, labels)
    return sum(p == y for p, y in zip(predictions, labels)) / len(labels) if labels else 0.0


def macro_f1(predictions: Sequence, labels: Sequence, classes: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1 over every class seen in labels or predictions (or ``classes``), in [0, 1].

    Per class ``F1 = 2TP / (2TP + FP + FN)``; a class with no true positives scores 0 (a class never
    predicted and never present cannot occur). Equal to scikit-learn's ``f1_score(average="macro",
    zero_division=0)`` over the union of labels and predictions (or with ``labels=classes``). Returns 0.0 when empty.

    Raises:
        ValueError: predictions and references differ in length.
    """
    _aligned(predictions, labels)
    classes = sorted(set(labels) | set(predictions), key=str) if classes is None else list(classes)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def slice_means(values: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Mean of ``values`` per group (e.g. ROUGE-L per intent), groups sorted by name.

    Args:
        values: one number per row.
        groups: one group name per row (same length as ``values``).

    Returns:
        Group name -> mean of its values, in the unit of ``values``.
    """
    frame = pd.DataFrame({"value": list(values), "group": list(groups)})
    return {str(k): float(v) for k, v in frame.groupby("group", sort=True)["value"].mean().items()}


def model_size_mb(model_dir: str | Path) -> float:
    """Size of the weight files of a saved model, in MB (10^6 bytes, not MiB).

    Counts every ``.safetensors``, ``.bin``, ``.pt`` and ``.pth`` file under ``model_dir``, recursively;
    tokenizer and config files are left out. 0.0 for a folder without weights.
    """
    folder = Path(model_dir)
    files = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6
