"""Inference with a sequence classifier: one label per text.

Used by the evaluation (``compactlm.evaluation.runner``) and the MLflow pyfunc model, for any
``AutoModelForSequenceClassification`` with ``id2label`` in its config (a CompactLM encoder or a
fine-tuned pretrained one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def predict_labels(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int | None = None
                   ) -> list[str]:
    """Label strings for ``texts`` from a classifier (a model object, or a saved folder with ``tokenizer=None``).

    Args:
        model: a sequence classifier with ``id2label`` in its config, or its ``save_pretrained`` folder.
        tokenizer: its tokenizer (None with a folder: loaded from it).
        texts: the texts to classify.
        batch_size: texts per forward pass.
        max_length: tokens per text (longer ones are truncated); default: the tokenizer's ``model_max_length``.

    Returns:
        One label string per text, in order (argmax of the logits).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(model, (str, Path)):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        model = AutoModelForSequenceClassification.from_pretrained(str(model))
    model.eval()
    id2label = model.config.id2label
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer([str(t) for t in texts[start:start + batch_size]], padding=True, truncation=True,
                              max_length=max_length or tokenizer.model_max_length, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out.extend(id2label[int(i)] for i in model(**batch).logits.argmax(-1))
    return out
