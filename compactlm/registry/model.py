"""The MLflow pyfunc flavor of CompactLM models: chat, summarization and text classification.

A registered version holds the transformers model and tokenizer as the ``model_dir`` artifact (with a
``compactlm_task.json`` saying which task shape it serves), plus this package as code, so
``mlflow.pyfunc.load_model("models:/<name>@champion")`` works in any fresh process with the pinned
requirements installed::

    model = mlflow.pyfunc.load_model("models:/compactlm-support-chat@champion")
    model.predict(["Where is my order?"], params={"max_new_tokens": 64})   # -> answers
    # a summarization model takes documents and returns summaries; a classifier returns labels
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "model_dir"
INPUT_COLUMN = "instruction"
TASK_FILE = "compactlm_task.json"


def write_task_file(model_dir: str | Path, task: str, prompt_template: str | None) -> None:
    """Record which task shape a saved model serves and how its inputs are rendered."""
    (Path(model_dir) / TASK_FILE).write_text(json.dumps({"task": task, "prompt_template": prompt_template}))


def read_task_file(model_dir: str | Path) -> dict[str, str | None]:
    path = Path(model_dir) / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else {"task": "instruction", "prompt_template": None}


class CompactLMChatModel(mlflow.pyfunc.PythonModel):
    """Answers texts with a model saved by ``save_pretrained``: replies, summaries or labels by task."""

    def load_context(self, context) -> None:
        from compactlm.models.loading import load_trained

        model_dir = context.artifacts[MODEL_ARTIFACT]
        self.model_dir = model_dir
        self.task = read_task_file(model_dir)
        self.model, self.tokenizer = load_trained(model_dir, self.task["task"])
        self.model.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Greedy answers (or labels); MLflow hands over a frame whose first column holds the texts."""
        from compactlm.evaluation.generate import generate_from_prompts, is_seq2seq
        from compactlm.models.tokenizer import format_prompt
        from compactlm.training.encoding import SEQ2SEQ_PREFIX

        params = params or {}
        if isinstance(model_input, str):
            texts = [model_input]
        elif isinstance(model_input, pd.DataFrame):
            column = INPUT_COLUMN if INPUT_COLUMN in model_input.columns else model_input.columns[0]
            texts = [str(v) for v in model_input[column]]
        else:
            texts = [str(v) for v in model_input]
        batch_size = int(params.get("batch_size", 16))
        if self.task["task"] == "classification":
            from compactlm.training.encoder import predict_labels

            return predict_labels(self.model, self.tokenizer, texts, batch_size=batch_size)
        template = self.task.get("prompt_template")
        if is_seq2seq(self.model):
            prompts = [SEQ2SEQ_PREFIX + t for t in texts]
        else:
            prompts = [format_prompt(template.replace("{document}", t) if template else t) for t in texts]
        return generate_from_prompts(self.model, self.tokenizer, prompts,
                                     max_new_tokens=int(params.get("max_new_tokens", 64)), batch_size=batch_size)


def model_signature():
    """Input: one string column (a list of str, or a frame whose first column holds them); output: responses."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", 64), ParamSpec("batch_size", "long", 16)]),
    )


def pip_requirements() -> list[str]:
    """The packages a fresh environment needs to load the model (pinned to what trained it)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("torch", "transformers", "tokenizers", "pandas", "mlflow")]


def log_model_from_code(entry: str, artifacts: dict[str, str], name: str = "model"):
    """Log a pyfunc model defined by ``compactlm/<entry>`` (models-from-code) with the package as code, the
    shared signature and pinned requirements; returns MLflow's ``ModelInfo``."""
    import compactlm

    package = Path(compactlm.__file__).parent
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(package / entry),
        artifacts=artifacts,
        code_paths=[str(package)],
        signature=model_signature(),
        input_example=pd.DataFrame({INPUT_COLUMN: ["Where is my order?"]}),
        pip_requirements=pip_requirements(),
    )


def log_chat_model(model_dir: str | Path, name: str = "model"):
    """Log a saved model folder as a pyfunc model in the active MLflow run; returns MLflow's ``ModelInfo``."""
    return log_model_from_code("registry/pyfunc_entry.py", {MODEL_ARTIFACT: str(model_dir)}, name)


def load_chat_model(model_uri: str):
    """Load a registered chat model through MLflow; returns ``(transformers model, tokenizer)``."""
    model, tokenizer, _ = load_chat_model_with_dir(model_uri)
    return model, tokenizer


def load_chat_model_with_dir(model_uri: str):
    """Like ``load_chat_model``, plus the local folder MLflow downloaded the weights to."""
    loaded = mlflow.pyfunc.load_model(model_uri)
    python_model = loaded.unwrap_python_model()
    return python_model.model, python_model.tokenizer, python_model.model_dir
