"""Serving ``models:/<name>@champion`` from a real SQLite MLflow registry: 503 until it exists, reload on a move."""

from __future__ import annotations

import time

import httpx
import pytest

from compactlm.config import ServeConfig
from compactlm.errors import ModelNotFoundError
from compactlm.models.tokenizer import format_prompt
from compactlm.serving.engine.generation import GenerationEngine
from compactlm.serving.engine.loading import resolve_version
from compactlm.serving.engine.sampling import SamplingParams
from compactlm.serving.http.app import create_app

NAME = "unit-serve"
PROMPT = format_prompt("Where is my order?")


@pytest.fixture
def registered(home, tmp_path, make_decoder, tokenizer):
    """Two registered versions of different weights, no alias yet; yields their greedy answers to PROMPT."""
    import mlflow

    from compactlm.registry import store
    from compactlm.registry.pyfunc import log_chat_model
    from compactlm.state import state_paths

    experiment = store.setup_tracking(state_paths(), "unit")
    answers = {}
    for seed in (0, 1):
        model = make_decoder(seed=seed)
        folder = tmp_path / f"m{seed}"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        with mlflow.start_run(experiment_id=experiment):
            logged = log_chat_model(folder)
        version = store.register_version(getattr(logged, "model_uri", logged), NAME, {})
        engine = GenerationEngine.from_hf(model, tokenizer, max_batch_size=1)
        answers[version] = engine.generate([engine.encode(PROMPT)], SamplingParams(max_tokens=10))[0].text
    assert len(set(answers.values())) == 2  # the two versions really answer differently
    yield answers
    mlflow.set_tracking_uri(None)


def wait_for_version(url: str, version: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/ready")
        if response.status_code == 200 and response.json()["model"]["version"] == version:
            return response.json()
        time.sleep(0.1)
    raise AssertionError(f"version {version} not served after {timeout} s: {response.text}")


def test_serves_the_champion_follows_the_alias_and_pins_versions(registered, start_server):
    from compactlm.registry import store

    with pytest.raises(ModelNotFoundError, match=f"registered model '{NAME}' has no alias 'champion'.*make demo"):
        resolve_version(f"models:/{NAME}@champion")
    config = ServeConfig(model_uri=f"models:/{NAME}@champion", reload_interval_s=0.2, threads=0, max_batch_size=2)
    live = start_server(create_app(config))

    not_ready = httpx.get(f"{live.url}/ready")
    assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "5"
    assert httpx.get(f"{live.url}/health").status_code == 200  # alive, just not ready
    deadline = time.monotonic() + 30
    while "no alias 'champion'" not in (httpx.get(f"{live.url}/ready").json()["error"] or ""):
        assert time.monotonic() < deadline, "the failed load is not reported on /ready"
        time.sleep(0.05)
    early = httpx.post(f"{live.url}/v1/completions", json={"model": NAME, "prompt": PROMPT})
    assert early.status_code == 503 and early.json()["error"]["code"] == "model_not_ready"

    client = live.client()
    for version in registered:  # first promotion, then a move to the other version
        store.set_alias(NAME, store.CHAMPION, version)
        ready = wait_for_version(live.url, version)
        assert ready["model"]["id"] == NAME and ready["model"]["source"] == f"models:/{NAME}@champion"
        answer = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, temperature=0)
        assert answer.choices[0].text == registered[version]
        assert client.models.list().data[0].id == NAME
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'compactlm_model_reloads_total{outcome="loaded"} 2.0' in metrics
    last = list(registered)[-1]
    assert f'compactlm_model_info{{model="{NAME}",quantization="fp32",version="{last}"}} 1.0' in metrics

    # A URI can also pin a version, and an fp32 version can be quantized at load.
    from compactlm.serving.engine.loading import load_model

    first = next(iter(registered))
    loaded = load_model(f"models:/{NAME}/{first}", quantization="int8", max_batch_size=1)
    assert loaded.version == first and loaded.quantization == "int8" and loaded.model_id == NAME
    assert loaded.engine.decoder.scheme == "int8"
