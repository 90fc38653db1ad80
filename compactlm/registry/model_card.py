"""The model card logged with every registered version (markdown, Hugging Face model-card sections)."""

from __future__ import annotations

from typing import Any

from compactlm.config import PipelineConfig

INTENDED_USE = (
    "Drafting first replies to customer-support messages (orders, shipping, refunds, accounts, payments) "
    "for a human agent to review, on modest hardware. Answers contain Bitext-style placeholders such as "
    "{{Order Number}} that the serving application must fill."
)
LIMITATIONS = (
    "A compact model trained on synthetic, templated support conversations: it learns the reply for an "
    "intent, not facts about a real company, and it can pick the wrong intent (see the weakest slices). "
    "It has no knowledge of orders or accounts, does not follow instructions outside the support domain, "
    "and must not be used to make decisions about customers. English only."
)


def _table(values: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in values.items())
    return "| item | value |\n|---|---|\n" + rows


def build_model_card(*, model_name: str, version: str | None, config: PipelineConfig, data: dict[str, Any],
                     training: dict[str, dict[str, Any]], metrics: dict[str, float], dataset_bias: dict[str, Any],
                     gate_markdown: str, lineage: dict[str, str]) -> str:
    """Assemble the card from what the run measured.

    Args:
        data: dataset facts (name, DVC version, remote, split sizes, source).
        training: summaries of the training stages (pretrain, finetune).
        metrics: the candidate's evaluation metrics.
        dataset_bias: the AIF360 dataset audit report as a dict.
        gate_markdown: the gate report.
        lineage: the registry tags (data version, git commit, config hash...).
    """
    title = f"{model_name} v{version}" if version else model_name
    quality = {k: metrics[k] for k in ("perplexity", "word_perplexity", "rouge_1", "rouge_2", "rouge_l", "bleu",
                                       "exact_match", "mcq_accuracy", "latency_ms_per_answer", "model_size_mb")
               if k in metrics}
    probes = {k: v for k, v in metrics.items() if k.startswith(("counterfactual_", "robustness_", "safety_", "pii_"))}
    sections = [
        f"# Model card: {title}", "",
        "## Model details", "",
        _table({"architecture": "Llama-style decoder (transformers LlamaForCausalLM)",
                "preset": config.model.preset, "context length": config.model.max_seq_len,
                "tokenizer": f"byte-level BPE, {config.model.vocab_size} tokens, trained on the train split",
                "fine-tuning": f"LoRA r={config.lora.r}, alpha={config.lora.alpha}, merged" if config.lora.enabled
                else "none (base model)"}), "",
        "## Intended use", "", INTENDED_USE, "",
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
        "## Limitations", "", LIMITATIONS, "",
        "## Lineage", "", _table(lineage), "",
        "## How to load", "",
        f"```python\nimport mlflow\nmodel = mlflow.pyfunc.load_model('models:/{model_name}/{version}')\n"
        "model.predict(['Where is my order?'], params={'max_new_tokens': 64})\n```",
    ]
    return "\n".join(sections)
