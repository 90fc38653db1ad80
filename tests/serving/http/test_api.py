"""The service through the official OpenAI client against a live uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time

import httpx
import openai
import pytest

from compactlm.config import ServeConfig
from compactlm.models.tokenizer import format_prompt
from compactlm.serving.engine.loading import load_model
from compactlm.serving.engine.sampling import SamplingParams
from compactlm.serving.http.app import create_app

PROMPT = format_prompt("Where is my order?")


@pytest.fixture(scope="module")
def server(tiny_model_dir, live_server_cls):
    """One server for the module: no API keys, generous limits, prompts kept in the logs."""
    config = ServeConfig(model_dir=str(tiny_model_dir), threads=0, redact_prompts=False, max_prompt_chars=2000,
                         max_new_tokens=16, max_batch_size=8)
    loaded = load_model(model_dir=tiny_model_dir, max_batch_size=8)
    with live_server_cls(create_app(config, preloaded=loaded)) as live:
        live.model_id = loaded.model_id
        yield live


@pytest.fixture(scope="module")
def reference(tiny_model, tokenizer):
    """Greedy text of the fast engine run directly (no HTTP) for a prompt."""
    from compactlm.serving.engine.generation import GenerationEngine

    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=2)
    return lambda prompt, n: engine.generate([engine.encode(prompt)], SamplingParams(max_tokens=n))[0]


def test_health_ready_and_models(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["status"] == "ready" and ready["model"]["id"] == server.model_id
    assert ready["model"]["quantization"] == "fp32" and ready["model"]["context_length"] == 256
    models = server.client().models.list()
    assert [m.id for m in models.data] == [server.model_id] and models.data[0].owned_by == "compactlm"
    assert server.client().models.retrieve(server.model_id).id == server.model_id


def test_completion_is_the_engines_greedy_output(server, reference):
    response = server.client().completions.create(model=server.model_id, prompt=PROMPT, max_tokens=12,
                                                  temperature=0)
    expected = reference(PROMPT, 12)
    assert response.object == "text_completion" and response.choices[0].text == expected.text
    assert response.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == expected.completion_tokens
    assert response.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_several_prompts_give_one_choice_each(server, reference):
    prompts = [PROMPT, format_prompt("Cancel my plan")]
    response = server.client().completions.create(model=server.model_id, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in response.choices] == [0, 1]
    assert [c.text for c in response.choices] == [reference(p, 6).text for p in prompts]


def test_chat_renders_the_chat_template(server, reference, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I want a refund"}]
    response = server.client().chat.completions.create(model=server.model_id, messages=messages, max_tokens=10,
                                                       temperature=0)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("### Response:\n")
    message = response.choices[0].message
    assert response.object == "chat.completion" and message.role == "assistant"
    assert message.content == reference(rendered, 10).text


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_streaming_deltas_add_up_to_the_full_answer(server, chat):
    client = server.client()
    common = {"model": server.model_id, "max_tokens": 14, "temperature": 0}
    if chat:
        messages = [{"role": "user", "content": "Where is my order?"}]
        full = client.chat.completions.create(messages=messages, **common).choices[0].message.content
        chunks = list(client.chat.completions.create(messages=messages, stream=True,
                                                     stream_options={"include_usage": True}, **common))
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert chunks[0].choices[0].delta.role == "assistant"
    else:
        full = client.completions.create(prompt=PROMPT, **common).choices[0].text
        chunks = list(client.completions.create(prompt=PROMPT, stream=True, stream_options={"include_usage": True},
                                                **common))
        pieces = [c.choices[0].text for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # really streamed, not one blob
    assert "".join(pieces) == full
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["length"], ["stop"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 14


def test_stop_sequence_and_seeded_sampling(server, reference):
    client = server.client()
    full = reference(PROMPT, 16).text
    stop = full[8:11]
    cut = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
    sampled = [client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=12, temperature=1.0,
                                         seed=seed).choices[0].text for seed in (5, 5, 6)]
    assert sampled[0] == sampled[1] != sampled[2]


def test_batch_endpoint_takes_parameters_per_item(server, reference):
    body = {"model": server.model_id, "inputs": [{"id": "a", "prompt": PROMPT, "max_tokens": 4, "temperature": 0},
                                                 {"prompt": format_prompt("Refund"), "max_tokens": 7,
                                                  "temperature": 0}]}
    result = httpx.post(f"{server.url}/v1/completions/batch", json=body, timeout=60).json()
    assert [d["id"] for d in result["data"]] == ["a", None]
    expected = [reference(PROMPT, 4).text, reference(format_prompt("Refund"), 7).text]
    assert [d["text"] for d in result["data"]] == expected
    assert result["usage"]["completion_tokens"] == sum(d["usage"]["completion_tokens"] for d in result["data"])


@pytest.mark.parametrize(("kwargs", "param", "fragment"), [
    ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"max_tokens": 400}, "max_tokens", "exceeds the context of 256 tokens"),
    ({"n": 2}, "n", "less than or equal to 1"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"prompt": "x" * 2001}, "prompt", "2001 characters; the limit is 2000"),
    ({"prompt": ""}, "prompt", "at least 1 character"),
    ({"extra_body": {"max_token": 3}}, "max_token", "Extra inputs are not permitted"),
    ({"extra_body": {"min_tokens": 9}, "max_tokens": 4}, "min_tokens", "min_tokens must be in [0, max_tokens=4]"),
])
def test_invalid_requests_get_400_naming_the_field(server, kwargs, param, fragment):
    request = {"model": server.model_id, "prompt": PROMPT, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        server.client().completions.create(**request)
    error = info.value.body
    assert info.value.status_code == 400 and error["param"] == param and fragment in error["message"], error


def test_unknown_model_is_404_and_bad_chat_is_400(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.completions.create(model="gpt-4", prompt=PROMPT)
    with pytest.raises(openai.BadRequestError, match="non-empty user message"):
        client.chat.completions.create(model=server.model_id, messages=[{"role": "system", "content": "hi"}])
    bad_json = httpx.post(f"{server.url}/v1/completions", content=b"{not json", timeout=10,
                          headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "JSON decode error" in bad_json.json()["error"]["message"]
    surrogate = httpx.post(f"{server.url}/v1/completions", timeout=10, headers={"content-type": "application/json"},
                           content=b'{"model": "x", "prompt": "\\ud800"}')
    assert surrogate.status_code == 400 and "unicode string" in surrogate.json()["error"]["message"]


def test_request_ids_metrics_and_json_logs(server, caplog):
    caplog.set_level(logging.INFO, logger="compactlm.serving.access")
    response = httpx.post(f"{server.url}/v1/completions", headers={"X-Request-ID": "trace-42"}, timeout=60,
                          json={"model": server.model_id, "prompt": PROMPT, "max_tokens": 3})
    assert response.headers["x-request-id"] == "trace-42" and response.json()["id"] == "cmpl-trace-42"
    assert httpx.get(f"{server.url}/health").headers["x-request-id"]  # generated when not supplied
    records = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-42"]
    assert len(records) == 1
    record = records[0]
    assert record.status == 200 and record.prompt_tokens > 0 and record.completion_tokens == 3
    assert record.prompt == PROMPT  # this server keeps text (redact_prompts=false)
    from compactlm.serving.http.logs import JsonFormatter

    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-42" and line["path"] == "/v1/completions" and line["latency_ms"] > 0

    text = httpx.get(f"{server.url}/metrics").text
    assert 'compactlm_requests_total{method="POST",route="/v1/completions",status="200",version=""}' in text
    assert "compactlm_request_latency_seconds_bucket" in text and "compactlm_time_to_first_token_seconds" in text
    assert "compactlm_queue_depth 0.0" in text and "compactlm_sequences_in_flight 0.0" in text
    tokens_out = next(line for line in text.splitlines() if line.startswith("compactlm_completion_tokens_total"))
    assert float(tokens_out.split()[-1]) >= 3
    assert f'compactlm_model_info{{model="{server.model_id}",quantization="fp32",version=""}} 1.0' in text


def test_prompts_are_redacted_from_logs_by_default(tiny_model_dir, start_server, caplog):
    caplog.set_level(logging.INFO, logger="compactlm.serving.access")
    # Attach directly: a serve command run earlier in the session stops compactlm.serving propagating to root.
    access = logging.getLogger("compactlm.serving.access")
    access.addHandler(caplog.handler)
    try:
        live = start_server(create_app(ServeConfig(threads=0), preloaded=load_model(model_dir=tiny_model_dir,
                                                                                    max_batch_size=2)))
        live.client().completions.create(model=live.app.state.server.current.model.model_id, prompt=PROMPT,
                                         max_tokens=2)
        # The access line is written once the response has gone out: wait for it, not for the client.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(getattr(r, "path", None) == "/v1/completions"
                                                      for r in caplog.records):
            time.sleep(0.05)
    finally:
        access.removeHandler(caplog.handler)
    record = next(r for r in caplog.records if getattr(r, "path", None) == "/v1/completions")
    assert record.prompt_tokens > 0 and not hasattr(record, "prompt") and not hasattr(record, "completion")


def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir, start_server):
    config = ServeConfig(threads=0, max_batch_size=1, max_queue=1)
    live = start_server(create_app(config, preloaded=load_model(model_dir=tiny_model_dir, max_batch_size=1)))
    model_id = live.app.state.server.current.model.model_id
    body = {"model": model_id, "prompt": PROMPT, "max_tokens": 200, "min_tokens": 200, "temperature": 0}

    async def burst():
        async with httpx.AsyncClient(base_url=live.url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(6)))

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 1 and codes.count(503) >= 1 and set(codes) == {200, 503}, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and "queue is full" in rejected.json()["error"]["message"]
    assert all(r.json()["usage"]["completion_tokens"] == 200 for r in responses if r.status_code == 200)
    assert 'compactlm_requests_rejected_total{reason="queue_full"}' in httpx.get(f"{live.url}/metrics").text


def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Property-based requests over the whole OpenAPI schema (valid and invalid): never a 5xx."""
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
         "--max-examples", "25", "--seed", "0", "--workers", "1", "--phases", "examples,coverage,fuzzing",
         "--request-timeout", "60", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 300, done.stdout[-2000:]
    # The schema names the served model, so generated requests reach the engine (not only 404s).
    assert "repeatedly returned 404" not in done.stdout
