"""The MLflow pyfunc flavour of CompactLM models, for both kinds of folder this project logs.

* ``CompactLMChatModel`` — a folder saved by ``save_pretrained`` (what the retrain pipeline registers),
  with a ``compactlm_task.json`` naming its task shape: replies (chat), summaries (summarization) or
  labels (classification), computed with ``transformers``.
* ``FastChatModel`` — an engine folder (fp32 or quantized engine weights, what ``compactlm quantize``
  registers as ``<name>-int8``...): replies computed with the fast engine.

Both are logged the same way: as models-from-code (``pyfunc_entry.py``, a file path rather than a pickle,
so loading never unpickles code) with this package as code, one signature and pinned requirements, and
both read their input with ``parse_texts``. So ``mlflow.pyfunc.load_model`` works in any fresh process
with the pinned requirements installed::

    model = mlflow.pyfunc.load_model("models:/compactlm-support-chat@champion")
    model.predict(["Where is my order?"], params={"max_new_tokens": 64})   # -> answers
    # a summarization model takes documents and returns summaries; a classifier returns labels
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from compactlm.evaluation.generate import generate_from_prompts, is_seq2seq
from compactlm.models.classifier import predict_labels
from compactlm.models.loading import load_trained
from compactlm.models.tokenizer import render_prompt
from compactlm.shapes import get_shape
from compactlm.training.encoding import SEQ2SEQ_PREFIX

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # compactlm/, logged as the model's code
MODEL_ARTIFACT = "model_dir"  # the artifact key of a save_pretrained folder
ENGINE_ARTIFACT = "engine_dir"  # the artifact key of an engine folder
INPUT_COLUMN = "instruction"
TASK_FILE = "compactlm_task.json"
ENTRY_FILE = "registry/pyfunc_entry.py"  # relative to the compactlm package
FLAVOUR_KEY = "compactlm_flavour"  # in the logged model config: which class the entry file builds
# Versions logged before the two pyfunc modules were merged into this one carry entry files that import
# these modules; ``load_python_model`` points them here so such versions still load in this process.
_FORMER_MODULES = ("compactlm.registry.model", "compactlm.serving.mlflow_model")


def write_task_file(model_dir: str | Path, task: str, prompt_template: str | None) -> None:
    """Record which task shape a saved model serves and how its inputs are rendered.

    Args:
        model_dir: the ``save_pretrained`` folder (the file is written into it).
        task: the task shape (``instruction``, ``summarization``, ``classification``...).
        prompt_template: a template with ``{document}`` that wraps each input (summarization), or None.
    """
    (Path(model_dir) / TASK_FILE).write_text(json.dumps({"task": task, "prompt_template": prompt_template}))


def read_task_file(model_dir: str | Path) -> dict[str, str | None]:
    """The task file of a saved model; a folder without one is an instruction (chat) model."""
    path = Path(model_dir) / TASK_FILE
    return json.loads(path.read_text()) if path.is_file() else {"task": "instruction", "prompt_template": None}


def parse_texts(model_input: Any) -> list[str]:
    """The texts of a pyfunc input, for every CompactLM flavour.

    Args:
        model_input: a str; a DataFrame (its ``instruction`` column, else its first column, as MLflow
            hands over a list of strings); or any iterable of values (each turned into a str).

    Returns:
        One string per input row.
    """
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        column = INPUT_COLUMN if INPUT_COLUMN in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column]]
    return [str(v) for v in model_input]


class CompactLMChatModel(mlflow.pyfunc.PythonModel):
    """Answers texts with a model saved by ``save_pretrained``: replies, summaries or labels by task shape.

    ``predict`` params: ``max_new_tokens`` (64) and ``batch_size`` (16).
    """

    def load_context(self, context) -> None:
        """Load the model and tokenizer from the ``model_dir`` artifact."""
        model_dir = context.artifacts[MODEL_ARTIFACT]
        self.model_dir = model_dir
        self.task = read_task_file(model_dir)
        self.model, self.tokenizer = load_trained(model_dir, self.task["task"])
        self.model.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Greedy answers (or labels), one per input text (see ``parse_texts``)."""
        params = params or {}
        texts = parse_texts(model_input)
        batch_size = int(params.get("batch_size", 16))
        if self.task["task"] == "classification":

            return predict_labels(self.model, self.tokenizer, texts, batch_size=batch_size)
        template = self.task.get("prompt_template")
        if is_seq2seq(self.model):
            prompts = [SEQ2SEQ_PREFIX + t for t in texts]
        elif get_shape(self.task["task"]).continuation:  # a base LM continues the text as it is
            prompts = texts
        else:
            prompts = [render_prompt(template.replace("{document}", t) if template else t, self.tokenizer)
                       for t in texts]
        return generate_from_prompts(self.model, self.tokenizer, prompts,
                                     max_new_tokens=int(params.get("max_new_tokens", 64)), batch_size=batch_size)


class FastChatModel(mlflow.pyfunc.PythonModel):
    """Answers customer messages with the fast engine on saved engine weights (any quantization scheme).

    ``predict`` params: ``max_new_tokens`` (64); greedy decoding, up to 16 sequences at a time.
    """

    def load_context(self, context) -> None:
        """Read the engine weights and tokenizer from the ``engine_dir`` artifact."""
        # Local: torch (seconds of imports) only when an engine model is loaded, not for the transformers flavour.
        from compactlm.serving.engine.artifact import load_engine_weights

        self.engine_dir = context.artifacts[ENGINE_ARTIFACT]
        self.weights, self.tokenizer, self.manifest = load_engine_weights(self.engine_dir)
        self._engine = None

    @property
    def engine(self):
        """Built on first use: a server that only wants the weights never pays for a second KV cache."""
        if self._engine is None:
            # serving imports registry (pyfunc); registry reaches the engine only here, when it is used.
            from compactlm.serving.engine.generation import GenerationEngine

            self._engine = GenerationEngine.from_weights(self.weights, self.tokenizer, max_batch_size=16)
        return self._engine

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Greedy responses, one per input text (see ``parse_texts``), stripped of surrounding spaces."""
        from compactlm.serving.engine.sampling import SamplingParams  # local: torch, as in load_context

        params = params or {}
        done = self.engine.complete(parse_texts(model_input),
                                    SamplingParams(max_tokens=int(params.get("max_new_tokens", 64))))
        return [c.text.strip() for c in done]


_FLAVOURS: dict[str, type[mlflow.pyfunc.PythonModel]] = {"transformers": CompactLMChatModel, "engine": FastChatModel}


def python_model_for(flavour: str) -> mlflow.pyfunc.PythonModel:
    """A fresh python model of a logged flavour (what ``pyfunc_entry.py`` hands to MLflow).

    Raises:
        ValueError: an unknown flavour name.
    """
    if flavour not in _FLAVOURS:
        raise ValueError(f"unknown CompactLM pyfunc flavour {flavour!r}; expected one of {', '.join(_FLAVOURS)}")
    return _FLAVOURS[flavour]()


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


def _log_model_from_code(flavour: str, artifacts: dict[str, str], name: str, example: str = "Where is my order?"):
    """Log ``pyfunc_entry.py`` building ``flavour`` with the package as code, the shared signature, pinned
    requirements and ``example`` as the input example in the active run; returns MLflow's ``ModelInfo``."""
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(PACKAGE_DIR / ENTRY_FILE),
        model_config={FLAVOUR_KEY: flavour},
        artifacts=artifacts,
        code_paths=[str(PACKAGE_DIR)],
        signature=model_signature(),
        input_example=pd.DataFrame({INPUT_COLUMN: [example]}),
        pip_requirements=pip_requirements(),
    )


def log_chat_model(model_dir: str | Path, name: str = "model", example: str = "Where is my order?"):
    """Log a ``save_pretrained`` folder as a pyfunc model in the active MLflow run.

    Args:
        model_dir: the folder (model, tokenizer and, for non-chat shapes, the task file).
        name: the logged model's name in the run.
        example: an input the model's shape expects (the logged input example).

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` is what ``register_version`` takes).
    """
    return _log_model_from_code("transformers", {MODEL_ARTIFACT: str(model_dir)}, name, example)


def log_engine_model(engine_dir: str | Path, name: str) -> str:
    """Log an engine folder (``save_engine_weights``) as a pyfunc model in the active run; returns its model URI."""
    return _log_model_from_code("engine", {ENGINE_ARTIFACT: str(engine_dir)}, name).model_uri


def load_python_model(model_uri: str) -> mlflow.pyfunc.PythonModel:
    """Load a logged CompactLM model in this process and return its python model (with its ``load_context`` run).

    Loading prepends the model's logged code folder to ``sys.path``; a long-running server that reloads on
    every alias move would grow it without end, and everything the model needs is imported by the time
    loading returns, so ``sys.path`` is restored. MLflow's own references to the loaded model are dropped
    too: the caller's is the only one, so a model the caller lets go is freed.

    Args:
        model_uri: any MLflow model URI (``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/...``).

    Raises:
        mlflow.exceptions.MlflowException: no such model, version or alias.
    """
    for former in _FORMER_MODULES:
        sys.modules.setdefault(former, sys.modules[__name__])
    saved, modules = list(sys.path), set(sys.modules)
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    finally:
        sys.path[:] = saved
        # A models-from-code load leaves the model in ``mlflow.models.model.__mlflow_model__`` (set_model's
        # global) and its entry file as a ``code_model_<uuid>`` module: both would keep every model this
        # process ever loaded alive (SmolLM2's 540 MB of fp32 weights after the server had copied them).
        import mlflow.models.model as mlflow_model_module

        mlflow_model_module.__mlflow_model__ = None
        for name in set(sys.modules) - modules:
            if name.startswith("code_model_"):
                del sys.modules[name]


def load_chat_model(model_uri: str):
    """Load a registered chat model through MLflow; returns ``(transformers model, tokenizer)``."""
    model, tokenizer, _ = load_chat_model_with_dir(model_uri)
    return model, tokenizer


def load_chat_model_with_dir(model_uri: str):
    """Like ``load_chat_model``, plus the local folder MLflow downloaded the weights to."""
    python_model = load_python_model(model_uri)
    return python_model.model, python_model.tokenizer, python_model.model_dir
