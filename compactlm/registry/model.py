"""The MLflow pyfunc flavor of a CompactLM chat model.

A registered version holds the merged transformers model and tokenizer as the ``model_dir`` artifact,
plus this package as code, so ``mlflow.pyfunc.load_model("models:/<name>@champion")`` works in any
fresh process with the pinned requirements installed::

    model = mlflow.pyfunc.load_model("models:/compactlm-support-chat@champion")
    model.predict(["Where is my order?"], params={"max_new_tokens": 64})
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "model_dir"
INPUT_COLUMN = "instruction"


class CompactLMChatModel(mlflow.pyfunc.PythonModel):
    """Answers customer messages with a causal LM saved by ``save_pretrained``."""

    def load_context(self, context) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = context.artifacts[MODEL_ARTIFACT]
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir)
        self.model.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Greedy responses; MLflow hands over a frame with an ``instruction`` column (from a str, list or frame)."""
        from compactlm.evaluation.generate import generate_responses

        params = params or {}
        if isinstance(model_input, str):
            instructions = [model_input]
        elif isinstance(model_input, pd.DataFrame):
            column = INPUT_COLUMN if INPUT_COLUMN in model_input.columns else model_input.columns[0]
            instructions = [str(v) for v in model_input[column]]
        else:
            instructions = [str(v) for v in model_input]
        return generate_responses(self.model, self.tokenizer, instructions,
                                  max_new_tokens=int(params.get("max_new_tokens", 64)),
                                  batch_size=int(params.get("batch_size", 16)))


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


def log_chat_model(model_dir: str | Path, name: str = "model"):
    """Log a saved model folder as a pyfunc model in the active MLflow run; returns MLflow's ``ModelInfo``."""
    import compactlm

    package = Path(compactlm.__file__).parent
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(package / "registry" / "pyfunc_entry.py"),
        artifacts={MODEL_ARTIFACT: str(model_dir)},
        code_paths=[str(package)],
        signature=model_signature(),
        input_example=pd.DataFrame({INPUT_COLUMN: ["Where is my order?"]}),
        pip_requirements=pip_requirements(),
    )
    return info


def load_chat_model(model_uri: str):
    """Load a registered chat model through MLflow; returns ``(transformers model, tokenizer)``."""
    model, tokenizer, _ = load_chat_model_with_dir(model_uri)
    return model, tokenizer


def load_chat_model_with_dir(model_uri: str):
    """Like ``load_chat_model``, plus the local folder MLflow downloaded the weights to."""
    loaded = mlflow.pyfunc.load_model(model_uri)
    python_model = loaded.unwrap_python_model()
    return python_model.model, python_model.tokenizer, python_model.model_dir
