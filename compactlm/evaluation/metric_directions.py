"""Which direction is better for each metric the pipeline produces, by name prefix.

Comparisons against the champion need it (the gate, and the gate config's check that a ``max_drop``
has a direction); absolute bounds do not. Per-token perplexity is absent on purpose from the default
gate's comparisons: each run trains its own tokenizer, so only per-word perplexity is comparable.
"""

from __future__ import annotations

HIGHER_IS_BETTER_PREFIXES = ("rouge", "bleu", "exact_match", "accuracy", "macro_f1", "mcq_accuracy",
                             "tokens_per_second", "slice_min_", "oos_")
LOWER_IS_BETTER_PREFIXES = ("perplexity", "bits_per_character", "tokens_per_character", "word_perplexity",
                            "robustness_", "safety_", "pii_", "latency",
                            "model_size", "generation_seconds")


def direction_of(metric: str) -> bool | None:
    """Whether higher is better for a metric, from its name.

    Args:
        metric: a metric name, e.g. ``rouge_l`` or ``word_perplexity``.

    Returns:
        True when higher is better, False when lower is, None when the name is unknown.
    """
    if metric.startswith(LOWER_IS_BETTER_PREFIXES):
        return False
    if metric.startswith(HIGHER_IS_BETTER_PREFIXES):
        return True
    return None
