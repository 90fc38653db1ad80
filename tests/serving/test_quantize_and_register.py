"""`compactlm quantize` end to end: the trade-off table logged to MLflow and an int8 version registered, loaded
through MLflow and served by the engine's loader."""

from __future__ import annotations

import pandas as pd
import pytest

from compactlm.errors import ConfigError


@pytest.fixture
def tracking(home):
    """MLflow pointed at the test's own SQLite store, and back to the default afterwards (even on failure)."""
    import mlflow

    yield
    mlflow.set_tracking_uri(None)


def test_quantize_command_logs_the_table_and_registers_an_int8_version(tracking, tmp_path, tiny_model_dir):
    import mlflow
    from mlflow import MlflowClient

    from compactlm.config import load_config
    from compactlm.registry import store
    from compactlm.registry.pyfunc import log_chat_model
    from compactlm.serving.quantize_and_register import quantize_and_register
    from compactlm.state import state_paths

    paths = state_paths()
    experiment = store.setup_tracking(paths, "unit")
    with mlflow.start_run(experiment_id=experiment):
        logged = log_chat_model(tiny_model_dir)
    source_uri = getattr(logged, "model_uri", logged)  # ModelInfo, or its URI in older versions of the helper
    version = store.register_version(source_uri, "unit-chat", {})
    store.set_alias("unit-chat", store.CHAMPION, version)
    cfg = load_config(None, ["eval.max_new_tokens=8"])
    data = tmp_path / "eval.csv"
    pd.DataFrame({"instruction": ["Where is my order?", "Cancel my plan", "Refund please", "Change my address"],
                  "response": ["It ships tomorrow.", "Cancelled.", "Refund sent.", "Done."]}).to_csv(data, index=False)

    summary = quantize_and_register(cfg, paths, "models:/unit-chat@champion", None, ("int8", "int4"), ("int8",),
                                    data, rows=100, generate_rows=4, out_dir=tmp_path / "q", experiment="unit-q")

    assert summary["registered"] == [{"scheme": "int8", "name": "unit-chat-int8", "version": "1",
                                      "uri": "models:/unit-chat-int8/1"}]
    table = (tmp_path / "q" / "tradeoff.md").read_text()
    assert all(f"| {scheme} |" in table for scheme in ("fp32", "int8", "int4"))
    client = MlflowClient()
    run = client.get_run(summary["run_id"])
    assert run.data.params["source_version"] == version and run.data.metrics["fp32.size_ratio"] == 1.0
    assert 0 < run.data.metrics["int8.size_ratio"] < 0.3 and "int4.perplexity_change_pct" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"tradeoff.md", "tradeoff.json"} <= artifacts
    int8 = client.get_model_version("unit-chat-int8", "1")
    assert int8.tags["source.model"] == "unit-chat" and int8.tags["source.version"] == version
    assert int8.tags["quantization"] == "int8" and int8.tags["tradeoff_run_id"] == run.info.run_id
    source = client.get_model_version("unit-chat", version)
    assert source.tags["quantized.int8"] == "models:/unit-chat-int8/1"
    # The registered version loads anywhere through MLflow and answers with the fast engine.
    answers = mlflow.pyfunc.load_model("models:/unit-chat-int8/1").predict(["Where is my order?"],
                                                                           params={"max_new_tokens": 5})
    assert len(answers) == 1 and isinstance(answers[0], str)
    # ... and the server's loader serves it in its own scheme (asking for another one is refused).
    from compactlm.serving.engine.loading import load_model

    served = load_model("models:/unit-chat-int8/1", max_batch_size=1)
    assert served.quantization == "int8" and served.model_id == "unit-chat-int8" and served.version == "1"
    with pytest.raises(ConfigError, match="already quantized \\(int8\\); cannot serve it as int4"):
        load_model("models:/unit-chat-int8/1", quantization="int4", max_batch_size=1)
