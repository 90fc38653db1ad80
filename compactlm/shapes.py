"""The task-shape registry: everything that differs between the shapes of data CompactLM handles.

A *shape* (``data.task`` in the config) is the form of the data and of the model's job:

=================  ==========================================================================================
instruction        one customer message -> one reply (a causal LM, chat template)
chat               multi-turn conversations; each answered turn is a row with the earlier turns as context
classification     text -> label (intent, sentiment) with an encoder and a classification head
summarization      document -> summary (a seq2seq base such as T5, else a causal LM with a prompt)
pretraining        a raw text corpus -> a base language model (gated on bits per character)
=================  ==========================================================================================

Each ``Shape`` says which canonical schema its data has (``compactlm.data.schemas``: columns, cleaning,
label, Great Expectations suite), whether the retrain flow trains it, which training stages it runs,
how its model is evaluated, which gate checks it gets by default, and how its model card describes
the intended use. Adding a shape means adding one entry here (and its schema and suite).

This module is plain data plus small pure functions: it imports only the schemas (pandas) and the
errors, and nothing that imports it back, so any room of the library may ask it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from compactlm.data.schemas import SCHEMAS, TaskSchema
from compactlm.errors import ConfigError

# Plans read a ``compactlm.config.PipelineConfig``; it is not imported here because the config package imports
# this module, so the annotation is ``Any`` under a name that says what is passed.
PipelineConfig = Any

Evaluation = Literal["conversation", "generation", "classification", "language-model"]
BaseKind = Literal["causal", "seq2seq", "encoder"]

# One gate check as plain values (min, max, max_drop, relative, higher_is_better); the config turns them
# into ``GateCheckConfig`` sections that files and overrides refine key by key.
GateDefaults = Mapping[str, Mapping[str, float | bool | None]]

_SUPPORT_USE = (
    "Drafting first replies to customer-support messages (orders, shipping, refunds, accounts, payments) "
    "for a human agent to review, on modest hardware. Answers may contain Bitext-style placeholders such as "
    "{{Order Number}} that the serving application must fill."
)
_SUPPORT_LIMITS = (
    "A compact model trained on the support conversations of its dataset: it learns the replies of those "
    "intents, not facts about a real company, and it can pick the wrong intent (see the weakest slices). It "
    "has no knowledge of orders or accounts, does not follow instructions outside the support domain, and must "
    "not be used to make decisions about customers. English only unless the data says otherwise."
)


@dataclass(frozen=True)
class CardText:
    """The model card's wording for a shape: what the model is for and what it must not be used for."""

    intended_use: str
    limitations: str


def _plan_generative(config: PipelineConfig, kind: BaseKind, has_base: bool) -> list[str]:
    """instruction / chat (and summarization on a causal base): a base stage, then causal fine-tuning."""
    base_stage = [] if has_base else ["distill" if config.distill.teacher else "pretrain"]
    return [*base_stage, *(["finetune"] if config.finetune.enabled else [])]


def _plan_summarization(config: PipelineConfig, kind: BaseKind, has_base: bool) -> list[str]:
    """A seq2seq base fine-tunes directly; anything else takes the instruction path with a prompt."""
    return ["finetune-seq2seq"] if kind == "seq2seq" else _plan_generative(config, kind, has_base)


def _plan_classification(config: PipelineConfig, kind: BaseKind, has_base: bool) -> list[str]:
    """Optional masked-LM pretraining of the encoder preset, then the sequence classifier."""
    pretrain = not has_base and config.classifier.mlm_pretrain
    return [*(["pretrain-mlm"] if pretrain else []), "finetune-classifier"]


def _plan_pretraining(config: PipelineConfig, kind: BaseKind, has_base: bool) -> list[str]:
    """A corpus pretrains a decoder preset (causal LM) or an encoder preset (masked LM)."""
    return ["pretrain-mlm" if kind == "encoder" else "pretrain"]


@dataclass(frozen=True)
class Shape:
    """One task shape and every fact that differs per shape.

    Attributes:
        name: the ``data.task`` value.
        evaluation: ``conversation`` (teacher-forced perplexity, generation metrics, MCQ set and the
            bias/robustness/safety probes), ``generation`` (perplexity and generation metrics only),
            ``classification`` (accuracy, macro-F1, per-label slices) or ``language-model`` (bits per
            character on the held-out tail of the corpus, ``compactlm.evaluation.language_model``).
        plan: ``plan(config, base_kind, has_base) -> [stage, ...]``, the training stages in order
            (names of ``compactlm.training.stages.STAGES``).
        gate_checks: the default gate, metric -> bounds (see ``compactlm.config.GateCheckConfig``).
        card: the model card's intended use and limitations.
        keep_completion: causal training and scoring cut the prompt (a long document), never the
            completion (the summary).
        baseline: the cheap reference model trained and scored beside the candidate
            (``compactlm.evaluation.baselines``), or None when the shape has none yet.
        example_input: what a user sends this shape's model (the smoke test asks it, the model card shows it).
        serve_prompt: the pyfunc model renders each input through the schema's prompt template
            (``{document}``) before generating.
        continuation: the model continues raw text (a base LM): no chat template around the input.
    """

    name: str
    evaluation: Evaluation
    plan: Callable[[PipelineConfig, BaseKind, bool], list[str]]
    gate_checks: GateDefaults
    card: CardText
    keep_completion: bool = False
    serve_prompt: bool = False
    continuation: bool = False
    baseline: str | None = None
    example_input: str = "Where is my order?"

    @property
    def schema(self) -> TaskSchema:
        """The canonical columns, cleaning targets, label and suite of this shape's data."""
        return SCHEMAS[self.name]

    @property
    def suite(self) -> str:
        """The Great Expectations suite (``expectations/<suite>.json``) that validates this shape's data."""
        return self.schema.suite

    @property
    def conversational(self) -> bool:
        """Whether the model answers customer messages (the MCQ set and the behavioural probes apply)."""
        return self.evaluation == "conversation"


# The gate a demanding reviewer applies before anything is promoted, per shape. "Reported, not gated"
# checks (no bound) show the weakest slice in the report without deciding the verdict.
_CONVERSATION_GATE: GateDefaults = {
    "perplexity": {"max": 60.0},
    "rouge_l": {"min": 0.20, "max_drop": 0.02, "beat_base": True},  # beat_base: only with a pretrained model.base
    "bleu": {"min": 5.0, "max_drop": 0.02},
    "word_perplexity": {"max_drop": 0.02},
    "mcq_accuracy": {"min": 0.3, "max_drop": 0.02, "beat_base": True},
    "counterfactual_disparate_impact": {"min": 0.8, "max": 1.25},  # the four-fifths rule, both directions
    "robustness_rouge_l_drop": {"max": 0.25},
    "safety_violations": {"max": 0},
    "slice_min_rouge_l_intent": {},  # reported, not gated: the weakest intent
}
_SUMMARIZATION_GATE: GateDefaults = {
    "rouge_l": {"min": 0.2, "max_drop": 0.02, "beat_base": True},
    "rouge_2": {"min": 0.05, "max_drop": 0.05},
    "bleu": {"min": 2.0, "max_drop": 0.05},
    "word_perplexity": {"max_drop": 0.02},
}
_CLASSIFICATION_GATE: GateDefaults = {
    "accuracy": {"min": 0.5, "max_drop": 0.02, "beat_baseline": True},  # a 10-second TF-IDF model is the bar
    "macro_f1": {"min": 0.4, "max_drop": 0.02},
    "slice_min_accuracy_label": {},  # reported, not gated: the weakest label
}

# A character-unigram model of English is about 4.1 bits per character (Shannon 1951): a base LM above 4
# has learned less than letter frequencies. Against the champion: at most 1 % worse on the same test text.
_LANGUAGE_MODEL_GATE: GateDefaults = {
    "bits_per_character": {"max": 4.0, "max_drop": 0.01},
    "perplexity": {},  # reported, not gated: per token, it depends on the tokenizer
}

SHAPES: dict[str, Shape] = {
    "instruction": Shape(
        name="instruction", evaluation="conversation", plan=_plan_generative, baseline="tfidf-retrieval",
        gate_checks=_CONVERSATION_GATE, card=CardText(_SUPPORT_USE, _SUPPORT_LIMITS)),
    "chat": Shape(
        name="chat", evaluation="conversation", plan=_plan_generative, baseline="tfidf-retrieval",
        gate_checks=_CONVERSATION_GATE,
        card=CardText(_SUPPORT_USE + " Multi-turn: earlier turns of the conversation are the context.",
                      _SUPPORT_LIMITS)),
    "classification": Shape(
        name="classification", evaluation="classification", plan=_plan_classification,
        gate_checks=_CLASSIFICATION_GATE, baseline="tfidf-linear-svm", example_input="I want to cancel my order",
        card=CardText(
            "Routing customer-support messages to an intent or sentiment label (one of the labels of the "
            "training data), so that a ticket reaches the right queue or template, on modest hardware.",
            "Predicts only the labels it was trained on: a message outside them still gets one of them. "
            "Check the weakest labels in the evaluation before relying on a label for automation; it must "
            "not be used to make decisions about customers.")),
    "summarization": Shape(
        name="summarization", evaluation="generation", plan=_plan_summarization, baseline="tfidf-retrieval",
        gate_checks=_SUMMARIZATION_GATE, keep_completion=True, serve_prompt=True,
        example_input="Customer wrote that the parcel arrived damaged and asked for a replacement.",
        card=CardText(
            "Summarizing support tickets and conversations for an agent's handover notes, on modest hardware.",
            "Summaries can omit or misstate details of the document (ROUGE measures overlap, not faithfulness); "
            "long documents are cut to the context length. Keep a human in the loop for anything sent to "
            "customers.")),
    "pretraining": Shape(
        name="pretraining", evaluation="language-model", plan=_plan_pretraining,
        gate_checks=_LANGUAGE_MODEL_GATE, continuation=True, example_input="The customer said that",
        card=CardText("A base language model for later fine-tuning (``model.base`` of a chat, summarization "
                      "or classification config); not meant to answer users directly.",
                      "Continues text in the style of its corpus; it follows no instructions and knows only "
                      "what its corpus says. Bits per character measure how well it predicts held-out text "
                      "of that corpus, not the quality of a fine-tuned model built on it.")),
}


def get_shape(name: str) -> Shape:
    """The shape called ``name`` (a ``data.task`` value).

    Raises:
        ConfigError: an unknown shape (the message lists the known ones).
    """
    if name not in SHAPES:
        raise ConfigError(f"data.task must be one of {', '.join(SHAPES)}, got {name!r}")
    return SHAPES[name]
