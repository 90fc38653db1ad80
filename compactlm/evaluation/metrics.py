"""Text metrics over generated responses (sacrebleu BLEU, rouge-score ROUGE-L) and the evaluation run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from compactlm.config import EvalConfig
from compactlm.evaluation.generate import generate_responses, response_likelihood


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, stemmed), in [0, 1]."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return sum(scores) / len(scores)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, default 13a tokenisation), in [0, 100]."""
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


@dataclass
class EvalResult:
    """Metrics of one model on one frozen test set, with a few examples for the report."""

    metrics: dict[str, float]
    n_rows: int
    n_generated: int
    seconds: float
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(model, tokenizer, test: pd.DataFrame, config: EvalConfig, max_length: int) -> EvalResult:
    """Perplexity on every test row; ROUGE-L and BLEU on greedy generations for a seeded sample.

    The sample is drawn with ``config.seed``, so a challenger and the re-scored champion see the
    same rows.
    """
    start = time.perf_counter()
    likelihood = response_likelihood(model, tokenizer, test, max_length, config.batch_size)
    sample = test.sample(n=min(config.max_generate_samples, len(test)), random_state=config.seed)
    gen_start = time.perf_counter()
    predictions = generate_responses(model, tokenizer, list(sample["instruction"]), config.max_new_tokens,
                                     config.batch_size, max_length)
    gen_seconds = time.perf_counter() - gen_start
    references = list(sample["response"])
    metrics = {
        "perplexity": likelihood.perplexity,
        "word_perplexity": likelihood.word_perplexity,
        "rouge_l": rouge_l(predictions, references),
        "bleu": bleu(predictions, references),
        "generation_seconds_per_sample": gen_seconds / max(len(sample), 1),
    }
    examples = [{"instruction": i, "reference": r, "generated": p}
                for i, r, p in list(zip(sample["instruction"], references, predictions))[:5]]
    return EvalResult(metrics=metrics, n_rows=len(test), n_generated=len(sample),
                      seconds=time.perf_counter() - start, examples=examples)
