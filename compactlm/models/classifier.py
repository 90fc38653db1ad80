"""Inference with a sequence classifier: class probabilities, one label per text, and out-of-scope abstention.

Used by the evaluation (``compactlm.evaluation.runner``) and the MLflow pyfunc model, for any
``AutoModelForSequenceClassification`` with ``id2label`` in its config (a CompactLM encoder or a
fine-tuned pretrained one).

Support traffic holds questions no intent covers. A classifier trained with ``classifier.oos_label``
abstains: when its highest class probability is below a threshold chosen on the validation split
(``choose_threshold``), it answers the out-of-scope label instead (the maximum-softmax-probability
baseline of Hendrycks & Gimpel 2017, used for CLINC150 by Larson et al. 2019). The label and threshold
are saved in the model's ``config.json`` (``oos_label``, ``oos_threshold``), so every loader abstains alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def class_logits(model, tokenizer, texts: Sequence[str], batch_size: int = 32,
                 max_length: int | None = None) -> np.ndarray:
    """Raw class logits, ``(len(texts), num_labels)`` float32, columns in ``id2label`` order, under no_grad.

    Args:
        model: a sequence classifier; tokenizer: its tokenizer.
        texts: the texts; batch_size: texts per forward pass; max_length: tokens per text (longer ones
            are truncated; default: the tokenizer's ``model_max_length``).
    """
    import torch

    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer([str(t) for t in texts[start:start + batch_size]], padding=True, truncation=True,
                              max_length=max_length or tokenizer.model_max_length, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out.append(model(**batch).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def class_probabilities(model, tokenizer, texts: Sequence[str], batch_size: int = 32,
                        max_length: int | None = None) -> np.ndarray:
    """Softmax class probabilities, ``(len(texts), num_labels)`` float64, columns in ``id2label`` order.

    Args:
        model, tokenizer, texts, batch_size, max_length: as ``class_logits``.
    """
    logits = class_logits(model, tokenizer, texts, batch_size, max_length).astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))  # shifted: exp never overflows
    return exp / exp.sum(axis=1, keepdims=True)


def labels_from_scores(scores: np.ndarray, classes: Sequence[str], oos_label: str | None = None,
                       threshold: float | None = None) -> list[str]:
    """The best class per row, or ``oos_label`` where the best score is below ``threshold``.

    Args:
        scores: ``(rows, classes)``: probabilities or any score where higher means more likely.
        classes: the column labels; oos_label, threshold: abstention (both or neither).
    """
    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=int)
    labels = [str(classes[i]) for i in best]
    if oos_label is None or threshold is None:
        return labels
    return [oos_label if score < threshold else label for label, score in zip(labels, scores.max(axis=1))]


def choose_threshold(scores: np.ndarray, classes: Sequence[str], truth: Sequence[str], oos_label: str) -> float | None:
    """The abstention threshold that maximises the mean of in-scope accuracy and out-of-scope recall.

    Every distinct best score of the validation rows is a candidate (abstaining below it). The two
    rates weigh equally, so a few hundred out-of-scope rows among thousands still count (CLINC150's
    validation split has 100 of them for 3,000 in-scope rows).

    Args:
        scores: ``(rows, classes)`` of the validation split; classes: their labels.
        truth: each row's true label (``oos_label`` for out-of-scope rows).
        oos_label: the out-of-scope label.

    Returns:
        The threshold, or None when the validation split has no out-of-scope row or no in-scope row.
    """
    truth = np.asarray([str(t) for t in truth])
    out = truth == oos_label
    if not out.any() or out.all():
        return None
    best = scores.max(axis=1)
    predicted = np.asarray([str(classes[i]) for i in scores.argmax(axis=1)])
    correct = predicted == truth
    candidates = np.unique(np.concatenate([[0.0], best]))
    rates = [(float((correct & ~out & (best >= t)).sum() / (~out).sum())
              + float((out & (best < t)).sum() / out.sum())) / 2 for t in candidates]
    return float(candidates[int(np.argmax(rates))])


def predict_labels(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None
                   ) -> list[str]:
    """Label strings for ``texts`` from a classifier (a model object, or a saved folder with ``tokenizer=None``).

    A model saved with ``oos_label``/``oos_threshold`` in its config abstains below the threshold.

    Args:
        model: a sequence classifier with ``id2label`` in its config, or its ``save_pretrained`` folder.
        tokenizer: its tokenizer (None with a folder: loaded from it).
        texts: the texts to classify.
        batch_size: texts per forward pass.
        max_length: tokens per text (longer ones are truncated); default: the tokenizer's ``model_max_length``.

    Returns:
        One label string per text, in order.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(model, (str, Path)):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        model = AutoModelForSequenceClassification.from_pretrained(str(model))
    classes = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores = class_probabilities(model, tokenizer, texts, batch_size, max_length)
    return labels_from_scores(scores, classes, getattr(model.config, "oos_label", None),
                              getattr(model.config, "oos_threshold", None))
