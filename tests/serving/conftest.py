"""Serving fixtures: tiny untrained decoders (MHA and GQA), their tokenizer, and live uvicorn servers on loopback."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
import torch

from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.encoding import corpus_texts

FRAME = pd.DataFrame({
    "instruction": ["Where is my order?", "Cancel my plan please", "I want a refund for the lamp",
                    "How do I change my address?", "My package arrived damaged"],
    "response": ["It ships tomorrow.", "Your plan is cancelled.", "The refund is on its way.",
                 "Go to your account settings.", "Sorry! We will send a new one."],
})


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe_tokenizer(corpus_texts(FRAME) * 20, 300, 256)


def tiny_decoder(tokenizer, seed: int = 0, kv_heads: int | None = None, std: float | None = 0.2):
    """decoder-tiny (hidden 64, 2 layers, 4 heads), or its grouped-query variant with ``kv_heads``.

    Matrices are redrawn with ``std`` (None keeps transformers' 0.02 init): at 0.02 an untrained residual
    model just repeats its last input token, which would make "same greedy tokens as transformers" a
    weak check; at 0.2 it is chaotic, which makes quantization error look far worse than on a trained one.
    """
    torch.manual_seed(seed)
    model = build_decoder("decoder-tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id)
    if kv_heads is not None:
        from transformers import LlamaForCausalLM

        config = model.config
        config.num_key_value_heads = kv_heads
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2 and std is not None:
                param.normal_(0.0, std)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return tiny_decoder(tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class LiveServer:
    """A real uvicorn server on 127.0.0.1 (an ephemeral port) in a background thread."""

    def __init__(self, app, port: int = 0):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, api_key: str = "unused", **kwargs):
        """The official OpenAI client, without retries (so 429/503 surface at once)."""
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = httpx.get(f"{self.url}/ready")
            if response.status_code == 200:
                return response.json()
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s: {response.text}")


@pytest.fixture
def start_server() -> Iterator:
    """``start_server(app, port=0) -> LiveServer``; every server started is stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda app, port=0: stack.enter_context(LiveServer(app, port))


@pytest.fixture(scope="session")
def make_decoder(tokenizer):
    """``make_decoder(seed=0, kv_heads=None, std=0.2)``: a fresh tiny model."""
    return lambda seed=0, kv_heads=None, std=0.2: tiny_decoder(tokenizer, seed, kv_heads, std)


@pytest.fixture(scope="session")
def live_server_cls():
    """The ``LiveServer`` class, for module-scoped servers (``with live_server_cls(app) as live``)."""
    return LiveServer
