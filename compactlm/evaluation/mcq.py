"""Multiple-choice evaluation: which agent reply answers the customer's message?

Each question offers four candidate replies (one from the right intent, three from other categories).
A causal LM answers by likelihood: the option whose tokens have the highest mean log-probability given
the prompt wins, the standard zero-shot MCQ method for small models, which cannot follow an "answer
with a letter" instruction (per-token normalisation as in Brown et al. 2020, "Language Models are
Few-Shot Learners", section 2.4). One JSONL record per question::

    {"question_id", "question", "options", "answer_gt",
     "model_output": {"reasoning_steps", "final_answer"}, "is_correct"}

The bundled set (``data/support_mcq.jsonl``, built from the generator with a fixed seed) is frozen:
its SHA-256 is reported with the accuracy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from compactlm.data.sources import jsonl_records
from compactlm.errors import DataError
from compactlm.evaluation.generate import _pad
from compactlm.fileio import atomic_open
from compactlm.models.tokenizer import prompt_start_ids, render_prompt

BUNDLED_MCQ = Path(__file__).with_name("data") / "support_mcq.jsonl"
LETTERS = "ABCD"


def build_mcq_set(frame: pd.DataFrame, n_questions: int, seed: int) -> list[dict]:
    """Questions from instruction rows: the row's own response plus three from other categories.

    Args:
        frame: instruction rows (``instruction``, ``response``, ``intent``, ``category``) spanning at
            least four categories.
        n_questions: how many rows become questions (at most ``len(frame)``).
        seed: seeds the row sample, the distractors and the option order.

    Returns:
        Records with ``question_id``, ``question``, ``options`` (letters A-D -> reply), ``answer_gt``
        (the right letter) and ``intent``.

    Raises:
        ValueError: fewer than three categories besides a question's own (numpy cannot draw the distractors).
    """
    rng = np.random.default_rng(seed)
    rows = frame.sample(n=min(n_questions, len(frame)), random_state=seed).reset_index(drop=True)
    by_category = {c: g["response"].tolist() for c, g in frame.groupby("category")}
    questions = []
    for i, row in rows.iterrows():
        others = [c for c in sorted(by_category) if c != row["category"]]
        distractors = [by_category[c][int(rng.integers(len(by_category[c])))]
                       for c in rng.choice(others, size=3, replace=False)]
        options = [row["response"], *distractors]
        order = rng.permutation(4)
        shuffled = [options[j] for j in order]
        questions.append({"question_id": f"support-mcq-{i + 1:04d}", "question": row["instruction"],
                          "options": dict(zip(LETTERS, shuffled)), "answer_gt": LETTERS[int(np.argmax(order == 0))],
                          "intent": row["intent"]})
    return questions


def load_mcq_set(path: str | Path | None = None) -> tuple[list[dict], str]:
    """The questions of an MCQ JSONL file (default: the bundled set) and the file's SHA-256.

    Args:
        path: a JSONL file of question records (``eval.mcq_path``); None: ``BUNDLED_MCQ``.

    Returns:
        ``(questions, sha256 hex digest of the file's bytes)``.

    Raises:
        DataError: the file does not exist, a line is not a JSON object, or a record lacks ``question_id``,
            ``question``, ``options`` or an ``answer_gt`` among the option keys (naming the line).
    """
    path = Path(path) if path else BUNDLED_MCQ
    if not path.is_file():
        raise DataError(f"eval.mcq_path: file {path} does not exist")
    questions = []
    for lineno, item in jsonl_records(path):
        missing = [k for k in ("question_id", "question", "options", "answer_gt") if k not in item]
        if missing or item.get("answer_gt") not in item.get("options", {}):
            raise DataError(f"{path} line {lineno}: an MCQ record needs question_id, question, options and an "
                            f"answer_gt among the option keys (missing: {', '.join(missing) or 'answer_gt key'})")
        questions.append(item)
    return questions, hashlib.sha256(path.read_bytes()).hexdigest()


def option_scores(model, tokenizer, question: str, options: dict[str, str], engine=None) -> dict[str, float]:
    """Mean log-probability of each option's tokens (and EOS) given the prompt.

    One forward pass over the four ``BOS + render_prompt(question) + option + EOS`` sequences (each
    cut to its last ``max_position_embeddings`` tokens, default 2048), right-padded.

    Args:
        model: a causal LM; inputs go to the device of its parameters.
        tokenizer: its tokenizer (BOS, EOS and pad ids set).
        question: the raw customer message.
        options: letter -> candidate reply.
        engine: a ``compactlm.evaluation.generate.fast_engine`` over ``model``: the same scores from its
            decoder (logits only at the options' tokens), several times faster on a CPU.

    Returns:
        Letter -> mean natural-log probability per option token (<= 0; higher is more likely).
    """
    import torch

    prompt = [*prompt_start_ids(tokenizer),
              *tokenizer(render_prompt(question, tokenizer), add_special_tokens=False)["input_ids"]]
    keys = list(options)
    answers = [tokenizer(options[k], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for k in keys]
    limit = getattr(model.config, "max_position_embeddings", 2048)
    if engine is not None:
        limit = engine.max_seq_len
    sequences = [(prompt + a)[-limit:] for a in answers]
    if engine is not None:
        # A sequence cut to the context keeps its end: the option, or its last tokens when it alone is longer.
        spans = engine.decoder.span_logprobs(sequences, [max(len(s) - len(a), 1) for s, a in zip(sequences, answers)])
        return {key: float(span.mean()) for key, span in zip(keys, spans)}
    ids, mask = _pad(sequences, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
    scores = {}
    for row, (key, answer) in enumerate(zip(keys, answers)):
        end = len(sequences[row])
        start = end - len(answer)
        targets = ids[row, start:end].to(device)
        token_logprobs = logprobs[row, start - 1:end - 1].gather(-1, targets[:, None]).squeeze(-1)
        scores[key] = float(token_logprobs.mean())
    return scores


@dataclass
class MCQResult:
    """Outcome of ``evaluate_mcq``.

    Attributes:
        accuracy: share of questions answered right, in [0, 1] (0.25 is chance with four options).
        n_questions: how many questions were asked.
        records_path: the JSONL file with one record per question.
        set_sha256: SHA-256 of the question file, so a figure names the exact set it was measured on.
    """

    accuracy: float
    n_questions: int
    records_path: str
    set_sha256: str


def evaluate_mcq(model, tokenizer, questions: list[dict], output_path: str | Path, set_sha256: str,
                 engine=None) -> MCQResult:
    """Answer every question, write one JSONL record per question atomically, and return the accuracy.

    Args:
        model, tokenizer: a causal LM and its tokenizer (see ``option_scores``).
        questions: records as ``load_mcq_set`` returns them.
        output_path: the JSONL file to write (replaced atomically).
        set_sha256: the question file's digest, passed through to the result.
        engine: score through this fast engine (see ``option_scores``).

    Returns:
        The accuracy (0.0 for an empty set) and where the records are.
    """
    output_path = Path(output_path)
    correct = 0
    with atomic_open(output_path) as out:
        for item in questions:
            scores = option_scores(model, tokenizer, item["question"], item["options"], engine)
            final = max(scores, key=scores.get)
            steps = [f"option {k}: mean token log-probability {v:.3f}" for k, v in scores.items()]
            steps.append(f"choose {final}: the most likely reply given the customer's message")
            is_correct = final == item["answer_gt"]
            correct += is_correct
            record = {"question_id": item["question_id"], "question": item["question"], "options": item["options"],
                      "answer_gt": item["answer_gt"],
                      "model_output": {"reasoning_steps": steps, "final_answer": final}, "is_correct": is_correct}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return MCQResult(correct / len(questions) if questions else 0.0, len(questions), str(output_path), set_sha256)
