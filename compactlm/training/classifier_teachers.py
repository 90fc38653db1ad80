"""The teachers of a distilled sequence classifier, and their logits over the student's train texts.

A classification run with ``distill.teacher`` set trains its classifier on
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard loss`` (``compactlm.training.distill``);
the teacher's logits are computed once here, before training, and travel with the train rows. The teacher is:

* ``baseline``: the run's TF-IDF + linear SVM baseline (``compactlm.evaluation.baselines``), fitted here on
  the same train rows. An SVM's margins are not logits: most lie within about +-1, so over CLINC150's 150
  intents ``softmax(margins)`` gives the best class of a train row 5 % on average. They are multiplied by the one scale
  that minimises the cross-entropy of ``softmax(scale * margins)`` on the validation rows (temperature
  scaling, Guo et al. 2017, https://arxiv.org/abs/1706.04599), so the teacher's probabilities are calibrated
  before ``distill.temperature`` softens them as it does any teacher's.
* a sequence classifier: a model folder, a ``models:/`` registry URI, ``bundled:<name>`` or a hub id, whose
  ``id2label`` holds every label of the student. Its logits of the student's labels are kept, in the
  student's order; classes beyond them are dropped (the softmax over the rest is the teacher's
  distribution given that the answer is one of the student's labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from compactlm.errors import ConfigError
from compactlm.evaluation.baselines import train_text_classifier
from compactlm.models.classifier import class_logits
from compactlm.models.loading import load_base, load_model_config, max_positions, resolve_model_ref
from compactlm.training.distill import BASELINE_TEACHER

FIELD = "distill.teacher"
TEXT, LABEL = "text", "label"


def calibration_scale(margins: np.ndarray, truth: Sequence[int]) -> float:
    """The scale ``s`` that minimises the mean cross-entropy of ``softmax(s * margins)`` against ``truth``.

    Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks",
    https://arxiv.org/abs/1706.04599) with ``s = 1 / T``; the cross-entropy is convex in ``s``, and
    scipy's bounded Brent search finds its minimum over ``s`` in [0.05, 100]. Rows the scores all rank
    right push ``s`` to the upper bound (a nearly one-hot teacher); on CLINC150's 150 intents the
    baseline's validation margins give about 7.

    Args:
        margins: ``(rows, classes)`` scores, higher meaning more likely.
        truth: each row's class (a column index).
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows, truth = np.arange(len(margins)), np.asarray(truth)

    def cross_entropy(log_scale: float) -> float:
        return float(-log_softmax(np.exp(log_scale) * margins, axis=1)[rows, truth].mean())

    return float(np.exp(minimize_scalar(cross_entropy, bounds=(np.log(0.05), np.log(100.0)), method="bounded").x))


def baseline_logits(train: pd.DataFrame, val: pd.DataFrame, classes: list[str], seed: int = 0) -> np.ndarray:
    """The baseline's calibrated margins for the train rows, ``(len(train), len(classes))``, float32.

    Args:
        train: the student's train rows (``text``, ``label``); the baseline is fitted on them.
        val: rows of the same labels where the scale is chosen (``calibration_scale``); train when empty.
        classes: the student's labels in id order (the columns).
        seed: the SVM solver's ``random_state``.

    Raises:
        DataError: fewer than two labels in ``train``.
    """
    baseline = train_text_classifier(train, seed=seed)
    order = [baseline.labels.index(label) for label in classes]

    def margins(rows: pd.DataFrame) -> np.ndarray:
        return baseline.decision_scores([str(t) for t in rows[TEXT]])[:, order]

    held_out = val if len(val) else train
    scale = calibration_scale(margins(held_out), [classes.index(str(y)) for y in held_out[LABEL]])
    return (margins(train) * scale).astype(np.float32)


def model_logits(teacher: str, texts: Sequence[str], classes: list[str], device: str = "cpu") -> np.ndarray:
    """A sequence classifier's logits of ``classes`` for ``texts``, ``(len(texts), len(classes))``, float32.

    Texts are cut at the teacher's own positions (its tokenizer), in batches under ``torch.no_grad``.

    Args:
        teacher: a model folder, ``models:/`` URI, ``bundled:<name>`` or hub id.
        texts: the student's train texts.
        classes: the student's labels in id order (the columns).
        device: where the teacher runs (``cpu``, ``cuda``).

    Raises:
        ConfigError: an unreachable teacher, or one whose ``id2label`` misses a label of ``classes``
            (before its weights are read).
    """
    source = resolve_model_ref(teacher, FIELD)  # a registry version is downloaded once, here
    config = load_model_config(source, FIELD)
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    missing = next((label for label in classes if label not in labels), None)
    if missing is not None:
        raise ConfigError(f"{FIELD} {teacher!r}: the teacher has no label {missing!r} "
                          f"(its {len(labels)} labels must cover the student's {len(classes)})")
    model, tokenizer = load_base(source, "classifier", id2label=dict(enumerate(labels)), field=FIELD)
    logits = class_logits(model.to(device), tokenizer, texts, batch_size=64, max_length=max_positions(config))
    return logits[:, [labels.index(label) for label in classes]]


def teacher_logits(teacher: str, train: pd.DataFrame, val: pd.DataFrame, classes: list[str],
                   device: str = "cpu", seed: int = 0) -> np.ndarray:
    """The teacher's logits for the train rows, ``(len(train), len(classes))`` float32, columns in ``classes`` order.

    Args:
        teacher: ``baseline`` or a sequence classifier (``distill.teacher``).
        train: the rows the student trains on (``text``, ``label``; out-of-scope rows already left out).
        val: validation rows of the same labels (the baseline's calibration).
        classes: the student's labels in id order (``id2label``).
        device: where a model teacher runs.
        seed: the baseline's solver seed.

    Raises:
        ConfigError: see ``model_logits``.
    """
    if teacher == BASELINE_TEACHER:
        return baseline_logits(train, val, classes, seed)
    return model_logits(teacher, [str(t) for t in train[TEXT]], classes, device)
