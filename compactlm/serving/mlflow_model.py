"""The MLflow pyfunc flavor of an engine folder (quantized or fp32 engine weights), and its registration.

Quantized CompactLM models are registered as their own registered model, ``<source name>-<scheme>``
(e.g. ``compactlm-support-chat-int8``), one version per quantization run, so they never mix with the
reviewed fp32 versions and their ``champion`` alias. Each version carries lineage tags
(``source.model``, ``source.version``, ``source.run_id``, ``quantization``, ``quality.*``, ``size.*``) and
loads anywhere with::

    model = mlflow.pyfunc.load_model("models:/compactlm-support-chat-int8/1")
    model.predict(["Where is my order?"], params={"max_new_tokens": 64})
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "engine_dir"


class FastChatModel(mlflow.pyfunc.PythonModel):
    """Answers customer messages with the fast engine on saved engine weights (any quantization scheme)."""

    def load_context(self, context) -> None:
        from compactlm.serving.artifact import load_engine_weights

        self.engine_dir = context.artifacts[MODEL_ARTIFACT]
        self.weights, self.tokenizer, self.manifest = load_engine_weights(self.engine_dir)
        self._engine = None

    @property
    def engine(self):
        """Built on first use: a server that only wants the weights never pays for a second KV cache."""
        if self._engine is None:
            from compactlm.serving.engine import GenerationEngine

            self._engine = GenerationEngine.from_weights(self.weights, self.tokenizer, max_batch_size=16)
        return self._engine

    def predict(self, context, model_input, params=None) -> list[str]:
        """Greedy responses; input as for the fp32 flavor (a str, a list of str, or a frame's first column)."""
        from compactlm.serving.sampling import SamplingParams

        params = params or {}
        if isinstance(model_input, str):
            instructions = [model_input]
        elif isinstance(model_input, pd.DataFrame):
            column = "instruction" if "instruction" in model_input.columns else model_input.columns[0]
            instructions = [str(v) for v in model_input[column]]
        else:
            instructions = [str(v) for v in model_input]
        done = self.engine.complete(instructions, SamplingParams(max_tokens=int(params.get("max_new_tokens", 64))))
        return [c.text.strip() for c in done]


def log_engine_model(engine_dir: str | Path, name: str) -> str:
    """Log an engine folder as a pyfunc model in the active run (models-from-code); returns its model URI."""
    from compactlm.registry.model import log_model_from_code

    return log_model_from_code("serving/pyfunc_entry.py", {MODEL_ARTIFACT: str(engine_dir)}, name).model_uri


def register_quantized(model_uri: str, source_name: str, scheme: str, tags: dict[str, str],
                       description: str = "") -> tuple[str, str]:
    """Register a logged quantized model as a new version of ``<source_name>-<scheme>``.

    Returns:
        ``(registered model name, version)``.
    """
    from compactlm.registry.store import register_version

    name = f"{source_name}-{scheme}"
    model_description = (f"{scheme.upper()} quantization of {source_name} for the CompactLM fast engine; each "
                         "version is tagged with the source version it was made from and its trade-off figures.")
    version = register_version(model_uri, name, tags, description, model_description=model_description,
                               model_tags={"source.model": source_name, "quantization": scheme})
    return name, version
