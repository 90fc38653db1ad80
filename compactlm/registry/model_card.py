"""The model card logged with every registered version (markdown, Hugging Face model-card sections).

Model details are read from what was trained, not assumed: the architecture from the saved folder's
``config.json``, the tokenizer from its ``tokenizer.json``, the fine-tuning mode and base from the
stages that ran. The intended use and limitations come from the task shape (``compactlm.shapes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compactlm.models.loading import gguf_provenance
from compactlm.shapes import get_shape
from compactlm.training.stages import STAGES

# transformers architecture -> how a reader knows it.
_FAMILIES = {
    "LlamaForCausalLM": "Llama-style decoder",
    "BertForSequenceClassification": "BERT-style encoder with a sequence-classification head",
    "BertForMaskedLM": "BERT-style encoder (masked LM)",
    "T5ForConditionalGeneration": "T5 encoder-decoder (seq2seq)",
}
def _table(values: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in values.items())
    return "| item | value |\n|---|---|\n" + rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def describe_architecture(model_dir: str | Path) -> str:
    """``"Llama-style decoder (LlamaForCausalLM), 2 layers, width 64, 4 heads"`` from a saved folder's config.

    Returns ``"unknown (no config.json)"`` when the folder holds no readable config.
    """
    config = _read_json(Path(model_dir) / "config.json")
    if not config:
        return "unknown (no config.json)"
    architecture = (config.get("architectures") or [config.get("model_type", "unknown")])[0]
    family = _FAMILIES.get(architecture, config.get("model_type", "transformer"))
    layers = config.get("num_hidden_layers", config.get("num_layers"))
    width = config.get("hidden_size", config.get("d_model"))
    heads = config.get("num_attention_heads", config.get("num_heads"))
    parts = [f"{family} (transformers {architecture})"]
    parts += [f"{layers} layers"] if layers else []
    parts += [f"width {width}"] if width else []
    parts += [f"{heads} attention heads"] if heads else []
    return ", ".join(parts)


def describe_tokenizer(model_dir: str | Path) -> str:
    """``"byte-level BPE, 512 tokens"`` / ``"WordPiece, 1,000 tokens"`` / ``"Unigram (SentencePiece), ..."``.

    Read from ``tokenizer.json`` (the fast tokenizer's model and pre-tokenizer); the vocabulary size
    counts the added special tokens too.
    """
    data = _read_json(Path(model_dir) / "tokenizer.json")
    model = data.get("model") or {}
    kind = model.get("type")
    if kind is None:
        return "unknown (no tokenizer.json)"
    vocab = model.get("vocab") or {}
    pieces = set(vocab) if isinstance(vocab, dict) else {entry[0] for entry in vocab}  # Unigram: [piece, score]
    size = len(pieces | {token["content"] for token in data.get("added_tokens", [])})
    pre = json.dumps(data.get("pre_tokenizer") or {})
    name = {"BPE": "byte-level BPE" if "ByteLevel" in pre else "BPE", "WordPiece": "WordPiece",
            "Unigram": "Unigram (SentencePiece)", "WordLevel": "word-level"}.get(kind, kind)
    return f"{name}, {size:,} tokens"


def _bundled_hub_id(ref: str) -> str | None:
    from compactlm.models.bundled import BUNDLED, PREFIX

    known = BUNDLED.get(str(ref).removeprefix(PREFIX)) if str(ref).startswith(PREFIX) else None
    return known.hub_id if known is not None else None


def describe_training(config: Any, stages: list[str]) -> dict[str, str]:
    """The base the model started from and how it was fine-tuned, from the config and the stages that ran.

    Args:
        config: the run's ``PipelineConfig``.
        stages: the names of the stages that ran, in order (``compactlm.training.stages``).
    """
    base_stage = next((s for s in stages if STAGES[s].produces_base), None)
    if config.model.base:
        base = f"`{config.model.base}` (tokenizer from the base)"
        source = gguf_provenance(config.model.base)
        if source is not None:
            base += (f"; converted from the GGUF file `{source['file']}` (SHA-256 `{source['sha256'][:16]}`, "
                     f"{source['quantization']}): {source['note']}")
            hub = _bundled_hub_id(config.model.base)
            if hub:
                base += f" With network access, the hub id `{hub}` gives the original weights."
    elif base_stage:
        base = f"{STAGES[base_stage].description}: preset `{config.model.preset}`, tokenizer trained on the train split"
        if base_stage == "distill":
            base += f" (teacher `{config.distill.teacher}`)"
    else:
        base = f"preset `{config.model.preset}` initialised at random, tokenizer trained on the train split"
    stage = next((s for s in stages if not STAGES[s].produces_base), None)
    finetune = config.finetune
    if stage is None:
        mode = "none (the base model itself)"
    elif finetune.mode == "full":
        mode = "full fine-tuning (every weight)"
    else:
        mode = (f"{'QLoRA (4-bit base)' if finetune.quantize_4bit else 'LoRA'} r={finetune.r}, "
                f"alpha={finetune.alpha}, adapter merged into the weights")
    if stage:
        mode += f" ({stage})"
    if stage == "finetune-classifier" and config.distill.teacher:
        distill = config.distill
        mode += f", distilled from teacher `{distill.teacher}` (alpha={distill.alpha}, T={distill.temperature})"
    return {"base": base, "fine-tuning": mode}


def build_model_card(*, model_name: str, version: str | None, config: Any, model_dir: str | Path,
                     stages: list[str], data: dict[str, Any], training: dict[str, dict[str, Any]],
                     metrics: dict[str, float], dataset_bias: dict[str, Any], gate_markdown: str,
                     lineage: dict[str, str]) -> str:
    """Assemble the card from what the run trained and measured.

    Args:
        model_name, version: the registered model and version.
        config: the run's ``PipelineConfig``.
        model_dir: the saved model folder (read for the architecture and tokenizer).
        stages: the stages that ran, in order.
        data: dataset facts (name, DVC version, remote, split sizes, source).
        training: summaries of the training stages.
        metrics: the candidate's evaluation metrics.
        dataset_bias: the AIF360 dataset audit report as a dict.
        gate_markdown: the gate report.
        lineage: the registry tags (data version, git commit, config hash...).
    """
    shape = get_shape(config.data.task)
    title = f"{model_name} v{version}" if version else model_name
    quality = {k: metrics[k] for k in ("perplexity", "word_perplexity", "rouge_1", "rouge_2", "rouge_l", "bleu",
                                       "exact_match", "mcq_accuracy", "accuracy", "macro_f1",
                                       "latency_ms_per_answer", "model_size_mb") if k in metrics}
    probes = {k: v for k, v in metrics.items() if k.startswith(("counterfactual_", "robustness_", "safety_", "pii_"))}
    details = {"task shape": shape.name, "architecture": describe_architecture(model_dir),
               "tokenizer": describe_tokenizer(model_dir), "context length": config.model.max_seq_len,
               **describe_training(config, stages)}
    sections = [
        f"# Model card: {title}", "",
        "## Model details", "", _table(details), "",
        "## Intended use", "", shape.card.intended_use, "",
        "## Training data", "", _table(data), "",
        "## Training", "",
        *[f"### {stage}\n\n{_table(summary)}\n" for stage, summary in training.items()],
        "## Evaluation (frozen test split)", "", _table(quality), "",
        "## Bias, robustness and safety", "",
        "Dataset audit (AIF360): " + (f"disparate impact {dataset_bias.get('disparate_impact'):.3f}, statistical "
                                      f"parity difference {dataset_bias.get('statistical_parity_difference'):.3f} "
                                      f"on `{dataset_bias.get('attribute')}`." if dataset_bias.get("audited")
                                      else "not audited (no attribute or outcome column)."), "",
        _table(probes) if probes else "No probes were run.", "",
        "## Gate", "", gate_markdown.replace("# Promotion gate", "### Promotion gate"), "",
        "## Limitations", "", shape.card.limitations, "",
        "## Lineage", "", _table(lineage), "",
        "## How to load", "",
        f"```python\nimport mlflow\nmodel = mlflow.pyfunc.load_model('models:/{model_name}/{version}')\n"
        f"model.predict([{shape.example_input!r}])\n```",
    ]
    return "\n".join(sections)
