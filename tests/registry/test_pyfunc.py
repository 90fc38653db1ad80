"""The pyfunc module: one input parser for both flavours, and versions logged before the merge still load."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from compactlm.registry import pyfunc
from compactlm.registry.pyfunc import CompactLMChatModel, FastChatModel, parse_texts, python_model_for

# The entry files of versions logged before registry/model.py and serving/mlflow_model.py became one module.
FORMER_ENTRIES = {
    "transformers": "from mlflow.models import set_model\n\nfrom compactlm.registry.model import CompactLMChatModel\n\n"
                    "set_model(CompactLMChatModel())\n",
    "engine": "from mlflow.models import set_model\n\nfrom compactlm.serving.mlflow_model import FastChatModel\n\n"
              "set_model(FastChatModel())\n",
}


def test_one_parser_reads_strings_lists_and_frames():
    assert parse_texts("Where is my order?") == ["Where is my order?"]
    assert parse_texts(["a", "b"]) == ["a", "b"]
    assert parse_texts(pd.DataFrame({"id": [1, 2], "instruction": ["x", "y"]})) == ["x", "y"]
    assert parse_texts(pd.DataFrame({0: ["first", "column"]})) == ["first", "column"]
    assert parse_texts([1, 2.5]) == ["1", "2.5"]


def test_each_flavour_has_its_class_and_unknown_ones_are_refused():
    assert type(python_model_for("transformers")) is CompactLMChatModel
    assert type(python_model_for("engine")) is FastChatModel
    with pytest.raises(ValueError, match="unknown CompactLM pyfunc flavour 'onnx'"):
        python_model_for("onnx")


@pytest.fixture
def saved_model(tmp_path):
    """A tiny decoder as a save_pretrained folder and as an engine folder."""
    from compactlm.models.presets import build_decoder
    from compactlm.models.tokenizer import train_bpe_tokenizer
    from compactlm.serving.engine.artifact import save_engine_weights
    from compactlm.serving.engine.weights import DecoderWeights

    tok = train_bpe_tokenizer(["hello there, where is my order?"] * 30, 300, 32)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    save_engine_weights(DecoderWeights.from_hf(model), tok, tmp_path / "engine")
    return {"transformers": (pyfunc.MODEL_ARTIFACT, tmp_path / "m"),
            "engine": (pyfunc.ENGINE_ARTIFACT, tmp_path / "engine")}


@pytest.mark.parametrize("flavour", ["transformers", "engine"])
def test_versions_logged_with_a_former_entry_file_load_in_this_process(home, tmp_path, saved_model, flavour,
                                                                       monkeypatch):
    import mlflow

    from compactlm.registry import store
    from compactlm.state import state_paths

    key, folder = saved_model[flavour]
    entry = tmp_path / "pyfunc_entry.py"
    entry.write_text(FORMER_ENTRIES[flavour])
    experiment = store.setup_tracking(state_paths(), "unit")
    # Logging runs the entry file too: give it the former module only while the version is logged.
    with monkeypatch.context() as patch:
        for former in ("compactlm.registry.model", "compactlm.serving.mlflow_model"):
            patch.delitem(sys.modules, former, raising=False)
            patch.setitem(sys.modules, former, pyfunc)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(name="model", python_model=str(entry), artifacts={key: str(folder)},
                                           code_paths=[str(pyfunc.PACKAGE_DIR)], signature=pyfunc.model_signature())
    for former in ("compactlm.registry.model", "compactlm.serving.mlflow_model"):
        monkeypatch.delitem(sys.modules, former, raising=False)
    try:
        python_model = pyfunc.load_python_model(info.model_uri)
        assert type(python_model) is python_model_for(flavour).__class__
        for given in (["Where is my order?"], pd.DataFrame({"instruction": ["Where is my order?"]})):
            answers = python_model.predict(None, given, {"max_new_tokens": 3})
            assert len(answers) == 1 and isinstance(answers[0], str)
    finally:
        mlflow.set_tracking_uri(None)


def test_a_loaded_model_is_freed_when_its_caller_lets_it_go(home, saved_model):
    """MLflow keeps a models-from-code model in a module global and its entry file in ``sys.modules``; the
    server converts the model to engine weights and drops it, so those references must not outlive the load
    (SmolLM2's server held a second 540 MB copy of its weights that way)."""
    import gc
    import weakref

    import mlflow

    from compactlm.registry import store
    from compactlm.state import state_paths

    key, folder = saved_model["transformers"]
    experiment = store.setup_tracking(state_paths(), "unit")
    try:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(name="model", python_model=str(pyfunc.PACKAGE_DIR / pyfunc.ENTRY_FILE),
                                           artifacts={key: str(folder)}, code_paths=[str(pyfunc.PACKAGE_DIR)],
                                           model_config={pyfunc.FLAVOUR_KEY: "transformers"},
                                           signature=pyfunc.model_signature())
        modules = set(sys.modules)
        python_model = pyfunc.load_python_model(info.model_uri)
        assert python_model.model is not None
        assert not [name for name in set(sys.modules) - modules if name.startswith("code_model_")]
        alive = weakref.ref(python_model.model)
        del python_model
        gc.collect()
        assert alive() is None
    finally:
        mlflow.set_tracking_uri(None)
