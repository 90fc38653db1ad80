"""The ``data`` and ``bias`` sections: where the data comes from, how it is cleaned, and its bias audit."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, CommaList, check
from compactlm.data.schemas import AUGMENT_METHODS
from compactlm.data.sources import SourceKind, source_kind
from compactlm.data.sources.feedback import check_feedback_spec
from compactlm.errors import ConfigError
from compactlm.shapes import SHAPES


@dataclass(config=SECTION)
class DataConfig:
    """Where the data comes from, which shape it has, and how it is cleaned, split and versioned.

    ``source`` is ``generator``, a local file or folder (CSV/TSV/JSONL/JSON/Parquet/TXT), an
    ``s3://bucket/prefix`` or ``hf:NAME_OR_PATH`` (a Hugging Face dataset). ``task`` picks the
    task shape (``compactlm.shapes``: its canonical schema and suite); ``columns`` maps canonical names to the
    source's own column names. Left at their defaults, ``expectation_suite`` follows the task's own suite and
    ``dataset_name`` is the task's name (``support-instructions`` for the instruction task).

    Raises:
        ConfigError: a value out of range, an unknown task, augmentation method or canonical column, or a
            cleaning/augmentation option the task does not support.
    """

    source: str = "generator"
    task: str = "instruction"  # instruction | chat | classification | summarization | pretraining
    columns: dict[str, str] = field(default_factory=dict)  # canonical column -> the source's column
    extra_columns: CommaList[str] = field(default_factory=list)  # source columns carried through unchanged
    n_rows: int = 10_000  # rows produced by the bundled generator
    seed: int = 0
    bias: float = 0.0  # bias injected by the generator (0 = none), to demo the audit
    split_column: str | None = None  # a source column saying train/val/test: the user's own split (fractions unused)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    min_rows: int = 20  # fewer usable rows than this fail validation
    min_chars: int = 2
    max_chars: int = 2_000
    max_document_chars: int = 50_000  # summarization documents (pretraining documents are chunked instead)
    allowed_intents: CommaList[str] | None = None  # None: the generator's intents, or any for other sources
    dataset_name: str = "support-instructions"  # left at this default, other tasks use the task's name
    dvc_remote: str | None = None  # None: a local remote under the state folder; or s3://bucket/prefix
    expectation_suite: str = "support_instructions"  # left at this default, follows the task's own suite
    s3_endpoint_url: str | None = None  # an S3-compatible store; None: AWS_ENDPOINT_URL or AWS itself
    hf_split: str | None = None  # one split of a Hugging Face dataset dict; None: all splits
    incremental: bool = True  # unchanged source files (by content hash) are not re-read
    unicode_form: str = "NFC"  # NFC keeps compatibility characters; NFKC folds them (full-width, ligatures)
    strip_html: bool = True
    scrub_pii: bool = True  # e-mails, phone and card numbers -> {{Email}}, {{Phone Number}}, {{Card Number}}
    near_duplicates: bool = True  # quarantine near duplicates (see compactlm.data.text.near_duplicate_key)
    classic_cleaning: bool = False  # lowercase, letters only, no stopwords: classification data only
    chat_format: bool = True  # add prompt/completion columns rendered with the chat template
    chunk_words: int = 256  # pretraining: words per training sequence
    augment_ratio: float = 0.0  # augmented rows added to train, as a fraction of the train rows
    augment_methods: CommaList[str] = field(default_factory=lambda: ["synonym", "insert", "swap", "delete"])
    augment_words: float = 0.1  # fraction of a text's words each augmentation changes
    distribution_reference: str = "previous"  # previous | none | a JSON file {label: proportion}
    distribution_tolerance: float = 0.05  # max KL divergence (nats) of the labels from the reference

    def __post_init__(self) -> None:
        check(self.task in SHAPES, "data.task", self.task, f"one of {', '.join(SHAPES)}")
        check(self.n_rows >= 1, "data.n_rows", self.n_rows, ">= 1")
        check(0.0 <= self.bias < 1.0, "data.bias", self.bias, "in [0, 1)")
        check(0.0 < self.val_fraction < 0.5, "data.val_fraction", self.val_fraction, "in (0, 0.5)")
        check(0.0 < self.test_fraction < 0.5, "data.test_fraction", self.test_fraction, "in (0, 0.5)")
        total = self.val_fraction + self.test_fraction
        check(total < 0.9, "data.val_fraction + data.test_fraction", total, "< 0.9")
        check(self.min_rows >= 1, "data.min_rows", self.min_rows, ">= 1")
        check(self.min_chars >= 1, "data.min_chars", self.min_chars, ">= 1")
        check(self.max_chars > self.min_chars, "data.max_chars", self.max_chars, "> data.min_chars")
        check(self.max_document_chars > self.min_chars, "data.max_document_chars", self.max_document_chars,
              "> data.min_chars")
        check(bool(self.source), "data.source", self.source, "'generator', a path, s3://... or hf:...")
        check(self.unicode_form in ("NFC", "NFKC"), "data.unicode_form", self.unicode_form, "NFC or NFKC")
        check(self.chunk_words >= 8, "data.chunk_words", self.chunk_words, ">= 8")
        check(0.0 <= self.augment_ratio <= 4.0, "data.augment_ratio", self.augment_ratio, "in [0, 4]")
        check(0.0 < self.augment_words <= 0.5, "data.augment_words", self.augment_words, "in (0, 0.5]")
        unknown = [m for m in self.augment_methods if m not in AUGMENT_METHODS]
        check(not unknown and bool(self.augment_methods), "data.augment_methods", self.augment_methods,
              f"a non-empty list of {', '.join(AUGMENT_METHODS)}")
        check(self.distribution_tolerance > 0, "data.distribution_tolerance", self.distribution_tolerance, "> 0")
        # Classic NLP cleaning destroys what a generative model must learn to write.
        check(not self.classic_cleaning or self.task == "classification", "data.classic_cleaning",
              self.classic_cleaning, f"false for data.task={self.task!r} (it only applies to classification data)")
        shape = SHAPES[self.task]
        schema = shape.schema
        for canonical, column in self.columns.items():
            check(canonical in schema.input_columns, f"data.columns.{canonical}", column,
                  f"keyed by a column of the {self.task} schema ({', '.join(schema.input_columns)})")
            check(bool(str(column).strip()), f"data.columns.{canonical}", column, "a non-empty column name")
        check(self.augment_ratio == 0 or schema.augment_column is not None, "data.augment_ratio",
              self.augment_ratio, f"0 for data.task={self.task!r} (augmentation needs a short text column)")
        if self.expectation_suite == "support_instructions":
            self.expectation_suite = shape.suite
        if self.dataset_name == "support-instructions" and self.task != "instruction":
            self.dataset_name = self.task  # a classification dataset is not "support-instructions"

    def check_source(self) -> None:
        """Fail early (before any server or compute starts) when a local source does not exist.

        Raises:
            ConfigError: ``source`` names a local file or folder that does not exist, or is a ``feedback:``
                URL holding a password.
        """
        if source_kind(self.source) is SourceKind.LOCAL and not Path(self.source).exists():
            raise ConfigError(f"data.source: file {self.source} does not exist")
        if source_kind(self.source) is SourceKind.FEEDBACK:
            check_feedback_spec(self.source)


@dataclass(config=SECTION)
class BiasConfig:
    """AIF360 dataset audit: protected attributes against a binary outcome label, with optional reweighing.

    ``protected_attributes`` maps each audited column to its unprivileged values; when empty, the single
    ``protected_attribute``/``unprivileged_values`` pair is audited. The label is favorable when it equals
    ``favorable_label`` (0/1 labels) or, when ``favorable_values`` is set, when it is one of those values.
    The default lower bound on disparate impact, 0.8, is the "four-fifths rule" of the US EEOC Uniform
    Guidelines (29 CFR 1607.4(D)); 1.25 is its inverse, for a bias the other way.

    Raises:
        ConfigError: an empty list of unprivileged values, or a bound outside its range.
    """

    protected_attribute: str = "age_band"
    unprivileged_values: CommaList[str] = field(default_factory=lambda: ["65+"])
    protected_attributes: dict[str, CommaList[str]] = field(default_factory=dict)
    label_column: str = "resolved"
    favorable_label: int = 1
    favorable_values: CommaList[str] = field(default_factory=list)
    min_disparate_impact: float = 0.8
    max_disparate_impact: float = 1.25
    max_abs_statistical_parity: float = 0.1
    fail_on_violation: bool = True
    reweighing: bool = False  # AIF360 Reweighing -> a sample_weight column in train, used by fine-tuning

    def __post_init__(self) -> None:
        check(len(self.unprivileged_values) > 0, "bias.unprivileged_values", self.unprivileged_values,
              "a non-empty list")
        for attribute, values in self.protected_attributes.items():
            check(len(values) > 0, f"bias.protected_attributes.{attribute}", values, "a non-empty list")
        check(0.0 < self.min_disparate_impact <= 1.0, "bias.min_disparate_impact",
              self.min_disparate_impact, "in (0, 1]")
        check(self.max_disparate_impact >= 1.0, "bias.max_disparate_impact", self.max_disparate_impact, ">= 1")
        check(0.0 <= self.max_abs_statistical_parity <= 1.0, "bias.max_abs_statistical_parity",
              self.max_abs_statistical_parity, "in [0, 1]")

    def attributes(self) -> dict[str, list[str]]:
        """Every audited attribute with its unprivileged values, in audit order.

        Returns:
            ``protected_attributes`` when set, else ``{protected_attribute: unprivileged_values}``.
        """
        return dict(self.protected_attributes) or {self.protected_attribute: list(self.unprivileged_values)}
