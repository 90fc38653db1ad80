"""One evaluation of one model: every metric the gate can check, with a report per section.

The same function scores the candidate and re-scores the champion, on the same frozen test split,
the same seeded samples, the same MCQ set and the same probes, so their figures are comparable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from compactlm.config import EvalConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.evaluation import probes
from compactlm.evaluation.generate import (
    eval_pairs,
    fast_engine,
    generate_from_prompts,
    generate_responses,
    response_likelihood,
)
from compactlm.evaluation.language_model import evaluate_language_model
from compactlm.evaluation.mcq import evaluate_mcq, load_mcq_set
from compactlm.evaluation.metrics import (
    accuracy,
    bleu,
    exact_match,
    macro_f1,
    rouge_l_per_pair,
    rouge_scores,
    slice_means,
)
from compactlm.evaluation.result import EvalResult
from compactlm.models.classifier import predict_labels
from compactlm.shapes import get_shape

# The text columns of every shape: training text whose PII-like strings must never appear in answers.
_TEXT_COLUMNS = ("instruction", "response", "text", "document", "summary")


def generation_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The seeded sample of ``n`` rows (all when fewer) that generation metrics are computed on."""
    return frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)


def answer_metrics(predictions: Sequence[str], references: Sequence[str], seconds: float) -> dict[str, float]:
    """The metrics of answers against references, whatever produced them (a model, a retrieval baseline).

    Returns:
        ``rouge_1``/``rouge_2``/``rouge_l`` and ``exact_match`` (fractions), ``bleu`` (0-100) and
        ``latency_ms_per_answer`` (``seconds`` spread over the answers, in ms).
    """
    return {**rouge_scores(predictions, references), "bleu": bleu(predictions, references),
            "exact_match": exact_match(predictions, references),
            "latency_ms_per_answer": 1000 * seconds / max(len(predictions), 1)}


def _generation_section(model, tokenizer, sample: pd.DataFrame, config: EvalConfig, max_length: int,
                        result: EvalResult, engine=None) -> None:
    prompts, references = eval_pairs(sample, model, tokenizer)
    start = time.perf_counter()
    predictions = generate_from_prompts(model, tokenizer, prompts, config.max_new_tokens, config.batch_size,
                                        max_length, engine)
    seconds = time.perf_counter() - start
    n_tokens = sum(len(ids) + 1 for ids in tokenizer(predictions, add_special_tokens=False)["input_ids"])
    result.metrics.update(answer_metrics(predictions, references, seconds))
    result.metrics["generation_tokens_per_second"] = n_tokens / seconds if seconds > 0 else 0.0
    per_pair = rouge_l_per_pair(predictions, references)
    for column in ("intent", "category"):
        if column in sample.columns:
            result.slices[column] = slice_means(per_pair, sample[column].astype(str).tolist())
            result.metrics[f"slice_min_rouge_l_{column}"] = min(result.slices[column].values())
    result.n_generated = len(sample)
    inputs = sample["instruction"] if "instruction" in sample.columns else sample.get("document", pd.Series(prompts))
    result.examples = [{"instruction": str(i)[:300], "reference": r, "generated": p}
                       for i, r, p in list(zip(inputs, references, predictions))[:5]]
    lines = ["# Slices: ROUGE-L by intent and category", ""]
    for column, values in result.slices.items():
        lines += [f"## by {column}", "", f"| {column} | ROUGE-L |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(values.items(), key=lambda kv: kv[1])]
        lines.append("")
    result.reports["slices"] = "\n".join(lines)


def evaluate_classifier(model, tokenizer, test: pd.DataFrame, max_length: int,
                        model_size_mb: float | None = None) -> EvalResult:
    """Accuracy, macro-F1, per-label accuracy and latency of a sequence classifier on the test split.

    A model saved with an out-of-scope label (``classifier.oos_label``) abstains below its threshold,
    and the result also holds ``oos_recall``/``oos_precision`` (see ``classification_result``).

    Args:
        model, tokenizer: a sequence classifier with ``id2label`` in its config, and its tokenizer.
        test: rows with ``text`` and ``label``.
        max_length: tokens per text (longer texts are truncated).
        model_size_mb: the weight files' size in MB (10^6 bytes), reported as ``model_size_mb``.
    """
    start = time.perf_counter()
    texts, labels = [str(t) for t in test["text"]], [str(y) for y in test["label"]]
    predictions = predict_labels(model, tokenizer, texts, max_length=max_length)
    return classification_result(texts, labels, predictions, time.perf_counter() - start, model_size_mb,
                                 getattr(model.config, "oos_label", None))


def classification_result(texts: Sequence[str], labels: Sequence[str], predictions: Sequence[str], seconds: float,
                          model_size_mb: float | None = None, oos_label: str | None = None) -> EvalResult:
    """The classification metrics of one model's predictions (any classifier: encoder, baseline...).

    Args:
        texts: the test texts; labels: their true labels; predictions: one predicted label per text.
        seconds: wall time of predicting all of them (``latency_ms_per_answer`` is its mean per text, ms).
        model_size_mb: the model's size in MB (10^6 bytes), reported as ``model_size_mb`` when given.
        oos_label: the out-of-scope label, when the model abstains: ``accuracy``, ``macro_f1`` and the
            slices are then over in-scope rows (an abstention counts as wrong), and ``oos_recall`` (share
            of out-of-scope rows it abstained on) and ``oos_precision`` (share of its abstentions that were
            out of scope) are added (Larson et al. 2019's in-scope accuracy and out-of-scope recall).

    Returns:
        ``accuracy``, ``macro_f1``, ``slice_min_accuracy_label`` (fractions in [0, 1]), latency, and a
        per-label accuracy report.
    """
    metrics: dict[str, float] = {"latency_ms_per_answer": 1000 * seconds / max(len(texts), 1)}
    classes = None
    if oos_label is not None:
        out = [y == oos_label for y in labels]
        abstained = [p == oos_label for p in predictions]
        if any(out):
            metrics["oos_recall"] = sum(o and a for o, a in zip(out, abstained)) / sum(out)
        metrics["oos_precision"] = (sum(o and a for o, a in zip(out, abstained)) / sum(abstained)
                                    if any(abstained) else 0.0)
        kept = [i for i, o in enumerate(out) if not o]
        texts, labels, predictions = ([seq[i] for i in kept] for seq in (texts, labels, predictions))
        classes = sorted(set(labels))  # abstentions count as misses, not as a class of their own
    per_label = slice_means([float(p == y) for p, y in zip(predictions, labels)], list(labels))
    metrics = {"accuracy": accuracy(predictions, labels), "macro_f1": macro_f1(predictions, labels, classes),
               "slice_min_accuracy_label": min(per_label.values()) if per_label else 0.0, **metrics}
    if model_size_mb is not None:
        metrics["model_size_mb"] = model_size_mb
    lines = ["# Accuracy by label", "", "| label | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(per_label.items(), key=lambda kv: kv[1])]
    return EvalResult(metrics=metrics, n_rows=len(texts), n_generated=len(texts), seconds=seconds,
                      examples=[{"instruction": t[:300], "reference": y, "generated": p}
                                for t, y, p in list(zip(texts, labels, predictions))[:5]],
                      reports={"slices": "\n".join(lines)}, slices={"label": per_label})


def evaluate_model(model, tokenizer, test: pd.DataFrame, config: EvalConfig, max_length: int,
                   output_dir: str | Path, training_texts: Sequence[str] = (),
                   model_size_mb: float | None = None, task: str = "instruction") -> EvalResult:
    """Score a model on the test split and, for conversational shapes, the MCQ set and the probes.

    A generative model (causal LM or seq2seq) gets ``perplexity`` and ``word_perplexity`` over every test
    row (``LikelihoodResult``), then on ``eval.max_generate_samples`` seeded rows ``rouge_1``/``rouge_2``/
    ``rouge_l`` and ``exact_match`` (fractions), ``bleu`` (0-100), ``latency_ms_per_answer`` (batched
    generation wall time per answer, ms), ``generation_tokens_per_second`` and ``slice_min_rouge_l_<column>``
    (the worst intent or category). Conversational shapes add ``mcq_accuracy`` and the probes' metrics.

    Args:
        model, tokenizer: a transformers model and its tokenizer.
        test: the frozen test split (e.g. instruction, response, intent, category).
        config: sample sizes, generation length (tokens) and probe settings.
        max_length: the context length in tokens, for teacher-forced perplexity and generation.
        output_dir: receives ``mcq.jsonl`` (one record per question).
        training_texts: the training texts, whose PII-like strings must never appear in answers.
        model_size_mb: the size of the model's weight files in MB (10^6 bytes), reported as ``model_size_mb``.
        task: the data shape (``compactlm.shapes``): a classification shape is scored by
            ``evaluate_classifier``, a pretraining corpus by ``evaluate_language_model`` (bits per
            character); the MCQ set and the probes (support conversations) run for
            conversational shapes only.

    Returns:
        The metrics, section reports and files.

    Raises:
        ConfigError: an unknown ``task``.
        DataError: rows without supervised columns, or an unreadable MCQ set (``eval.mcq_path``).
    """
    shape = get_shape(task)
    if shape.evaluation == "classification":
        return evaluate_classifier(model, tokenizer, test, max_length, model_size_mb)
    if shape.evaluation == "language-model":
        return evaluate_language_model(model, tokenizer, test, max_length, config.batch_size,
                                       max_new_tokens=config.max_new_tokens, model_size_mb=model_size_mb)
    start = time.perf_counter()
    result = EvalResult(metrics={}, n_rows=len(test), n_generated=0, seconds=0.0)
    engine = fast_engine(model, tokenizer, config.batch_size)  # batched scoring and generation (CPU)
    with _timed(result, f"perplexity ({len(test)} rows)"):
        likelihood = response_likelihood(model, tokenizer, test, max_length, config.batch_size,
                                          keep_completion=shape.keep_completion, engine=engine)
    result.metrics.update({"perplexity": likelihood.perplexity, "word_perplexity": likelihood.word_perplexity})
    sample = generation_sample(test, config.max_generate_samples, config.seed)
    with _timed(result, f"generation ({len(sample)} answers)"):
        _generation_section(model, tokenizer, sample, config, max_length, result, engine)
    if model_size_mb is not None:
        result.metrics["model_size_mb"] = model_size_mb
    if not shape.conversational:
        result.seconds = time.perf_counter() - start
        return result
    _conversation_sections(model, tokenizer, test, config, max_length, output_dir, training_texts, result, engine)
    result.seconds = time.perf_counter() - start
    return result


@contextmanager
def _timed(result: EvalResult, section: str):
    """Record a section's wall time in ``result.timings`` and say it on stderr (evaluations take minutes)."""
    begin = time.perf_counter()
    yield
    result.timings[section] = time.perf_counter() - begin
    print(f"evaluation: {section} in {result.timings[section]:.1f} s", file=sys.stderr, flush=True)


def _conversation_sections(model, tokenizer, test: pd.DataFrame, config: EvalConfig, max_length: int,
                           output_dir: str | Path, training_texts: Sequence[str], result: EvalResult,
                           engine=None) -> None:
    """The MCQ set and the behavioural probes of a conversational model (see ``evaluate_model``)."""

    def generate(instructions: Sequence[str]) -> list[str]:
        return generate_responses(model, tokenizer, list(instructions), config.max_new_tokens, config.batch_size,
                                  max_length, engine)

    if config.mcq_max_questions:
        questions, sha = load_mcq_set(config.mcq_path)
        with _timed(result, f"mcq ({min(len(questions), config.mcq_max_questions)} questions)"):
            mcq = evaluate_mcq(model, tokenizer, questions[:config.mcq_max_questions], Path(output_dir) / "mcq.jsonl",
                               sha, engine)
        result.metrics["mcq_accuracy"] = mcq.accuracy
        result.files["mcq"] = mcq.records_path
        result.reports["mcq"] = (f"# Multiple-choice QA\n\nAccuracy {mcq.accuracy:.4f} on {mcq.n_questions} questions "
                                 f"(set SHA-256 `{sha[:16]}`); one JSONL record per question in `mcq.jsonl`.")
    if config.counterfactual_samples:
        sample = generation_sample(test, config.counterfactual_samples, config.seed + 1)
        with _timed(result, "counterfactual bias"):
            probe = probes.counterfactual_bias(generate, list(sample["instruction"]), list(sample["response"]),
                                               config.counterfactual_groups, config.counterfactual_unprivileged,
                                               config.helpful_rouge)
        result.metrics.update(probe.metrics)
        result.reports["counterfactual-bias"] = probe.markdown
    if config.robustness_samples:
        sample = generation_sample(test, config.robustness_samples, config.seed + 2)
        with _timed(result, "robustness"):
            probe = probes.robustness(generate, list(sample["instruction"]), list(sample["response"]), config.seed)
        result.metrics.update(probe.metrics)
        result.reports["robustness"] = probe.markdown
    if config.safety_samples:
        sample = generation_sample(test, config.safety_samples, config.seed + 3)
        with _timed(result, "safety"):
            probe = probes.safety(generate, list(sample["instruction"]), training_texts, config.blocked_words,
                                  config.injection_markers)
        result.metrics.update(probe.metrics)
        result.reports["safety"] = probe.markdown


def training_texts(train: pd.DataFrame) -> list[str]:
    """Every training text of a split, whatever its shape (the safety probe checks answers against them)."""
    return [str(v) for column in _TEXT_COLUMNS if column in train for v in train[column]]


def evaluate_version(model, tokenizer, version: DatasetVersion, config: EvalConfig, max_length: int,
                     output_dir: str | Path, model_size_mb: float | None = None,
                     task: str = "instruction") -> EvalResult:
    """``evaluate_model`` on a dataset version: its frozen test split, its train split as the PII reference.

    The candidate and the re-scored champion both go through here, so their figures are comparable.
    Arguments as ``evaluate_model``.

    Raises:
        DataError: a split file is missing, or as ``evaluate_model``.
        ConfigError: an unknown ``task``.
    """
    return evaluate_model(model, tokenizer, read_split(version.path, "test"), config, max_length, output_dir,
                          training_texts=training_texts(read_split(version.path, "train")),
                          model_size_mb=model_size_mb, task=task)
