"""Served requests recorded in the traffic store and ``POST /v1/feedback``, through a live server."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from compactlm.config import ServeConfig
from compactlm.models.tokenizer import format_prompt
from compactlm.serving.engine.loading import load_model
from compactlm.serving.http.app import create_app
from compactlm.serving.http.security import key_fingerprint
from compactlm.serving.traffic import TrafficStore

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my order?"}]


@pytest.fixture
def serve(tiny_model_dir, start_server, tmp_path):
    """``serve(store=..., api_keys=(), version="7", **config) -> live``: a live server over a fresh tiny model."""

    def start(store: TrafficStore | None, api_keys=(), version: str | None = "7", **settings):
        config = ServeConfig(model_dir=str(tiny_model_dir), threads=0, max_new_tokens=6, max_batch_size=4,
                             **settings)
        loaded = load_model(model_dir=tiny_model_dir, max_batch_size=4)
        loaded.version = version  # as if loaded from models:/<name>/7
        live = start_server(create_app(config, api_keys, preloaded=loaded, traffic=store))
        live.model_id = loaded.model_id
        return live

    return start


def _store(tmp_path) -> TrafficStore:
    return TrafficStore.open(f"sqlite:///{tmp_path / 'traffic.db'}")


def _wait_for_row(store: TrafficStore, request_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.request(request_id)
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} was not recorded within {timeout} s")


def test_a_chat_answer_is_recorded_and_rated_by_its_response_id(serve, tmp_path):
    store = _store(tmp_path)
    live = serve(store, redact_prompts=False)
    answer = httpx.post(f"{live.url}/v1/chat/completions", headers={"X-Request-ID": "req-chat-1"},
                        json={"model": live.model_id, "messages": CHAT, "max_tokens": 4, "temperature": 0})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-chat-1"
    assert answer.json()["id"] == "chatcmpl-req-chat-1"

    posted = httpx.post(f"{live.url}/v1/feedback", json={
        "request_id": answer.json()["id"], "rating": "down", "corrected_answer": "It ships tomorrow.",
        "reason": "vague", "source": "ui"})
    assert posted.status_code == 201, posted.text
    created = posted.json()
    assert created["object"] == "feedback" and created["request_id"] == "req-chat-1" and created["rating"] == -1

    reader = _store(tmp_path)  # another connection: the rows are really in the file
    row = _wait_for_row(reader, "req-chat-1")
    assert row["model_version"] == "7" and row["model_name"] == live.model_id
    assert row["route"] == "/v1/chat/completions" and row["status"] == 200 and not row["stream"]
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == answer.json()["usage"]["completion_tokens"]
    assert row["latency_ms"] > 0 and row["ttft_ms"] is not None and row["created_at"].tzinfo is not None
    assert row["prompt_text"] == "Where is my order?"  # the last user message, since prompts are not redacted
    assert row["completion_text"] == answer.json()["choices"][0]["message"]["content"]
    (feedback,) = reader.feedback()
    assert feedback["id"] == created["id"] and feedback["rating"] == -1 and feedback["source"] == "ui"
    assert feedback["corrected_answer"] == "It ships tomorrow." and feedback["reason"] == "vague"
    assert feedback["request_model_version"] == "7"
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'compactlm_feedback_total{rating="down",version="7"} 1.0' in metrics  # the version that answered
    assert 'compactlm_requests_total{method="POST",route="/v1/chat/completions",status="200",version="7"} 1.0' \
        in metrics  # request metrics carry the version that answered
    reader.close()


def test_metrics_expose_the_newest_monitor_runs_drift(serve, tmp_path):
    from datetime import UTC, datetime

    store = _store(tmp_path)
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    old = {"run_id": "r0", "created_at": datetime(2026, 11, 30, tzinfo=UTC), "model_name": "m", "model_version": "6",
           "check": "out_of_domain", "statistic": 0.01, "threshold": 0.2, "drifted": False}
    store.write_monitor_checks([old, *({"run_id": "r1", "created_at": at, "model_name": "m", "model_version": "7",
                                        **check} for check in (
        {"check": "out_of_domain", "statistic": 0.62, "threshold": 0.2, "drifted": True},
        {"check": "negative_feedback", "statistic": None, "threshold": 0.3, "drifted": False}))])
    live = serve(store)
    metrics = httpx.get(f"{live.url}/metrics").text
    assert 'compactlm_drift_statistic{check="out_of_domain",version="7"} 0.62' in metrics, metrics[-3000:]
    assert 'compactlm_drift_threshold{check="out_of_domain",version="7"} 0.2' in metrics
    assert 'compactlm_drift_detected{check="out_of_domain",version="7"} 1.0' in metrics
    assert 'compactlm_drift_statistic{check="negative_feedback",version="7"} NaN' in metrics
    assert 'version="6"' not in metrics  # only the newest monitor run
    (checked,) = re.findall(r"^compactlm_drift_checked_timestamp_seconds (\S+)$", metrics, re.M)
    assert float(checked) == at.timestamp()


def test_a_stream_is_recorded_after_its_last_byte_without_text_by_default(serve, tmp_path):
    store = _store(tmp_path)
    live = serve(store)
    body = {"model": live.model_id, "prompt": format_prompt("Cancel my plan"), "max_tokens": 5, "stream": True,
            "temperature": 0}
    with httpx.stream("POST", f"{live.url}/v1/completions", json=body, headers={"X-Request-ID": "req-s"}) as rsp:
        events = [line for line in rsp.iter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    row = _wait_for_row(store, "req-s")
    assert row["stream"] and row["route"] == "/v1/completions" and row["model_version"] == "7"
    assert row["completion_tokens"] >= 1 and row["finish_reason"] in ("length", "stop", "eos")
    assert row["prompt_text"] is None and row["completion_text"] is None  # serve.redact_prompts: true
    assert httpx.post(f"{live.url}/v1/feedback", json={"request_id": "req-s", "rating": 1}).status_code == 201


def test_feedback_needs_a_key_when_keys_are_set_and_stores_only_its_fingerprint(serve, tmp_path):
    store = _store(tmp_path)
    live = serve(store, api_keys=["secret-key-1"])
    auth = {"Authorization": "Bearer secret-key-1"}
    ask = {"model": live.model_id, "prompt": format_prompt("hi"), "max_tokens": 2}
    request_id = httpx.post(f"{live.url}/v1/completions", json=ask, headers=auth).headers["x-request-id"]
    rating = {"request_id": request_id, "rating": "up"}
    assert httpx.post(f"{live.url}/v1/feedback", json=rating).status_code == 401
    wrong = httpx.post(f"{live.url}/v1/feedback", json=rating, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(f"{live.url}/v1/feedback", json=rating, headers=auth).status_code == 201
    assert _wait_for_row(store, request_id)["client_id"] == key_fingerprint("secret-key-1")
    assert store.feedback()[0]["client_id"] == key_fingerprint("secret-key-1")
    live.server.should_exit = True  # stop, so every write is flushed, then look at the whole file
    live.thread.join(30)
    assert b"secret-key-1" not in (tmp_path / "traffic.db").read_bytes()


@pytest.mark.parametrize(("body", "field"), [
    ({"rating": "up"}, "request_id"),
    ({"request_id": "x", "rating": "meh"}, "rating"),
    ({"request_id": "x", "rating": 2}, "rating"),
    ({"request_id": "x", "rating": True}, "rating"),
    ({"request_id": "x"}, "rating"),
    ({"request_id": "x", "rating": "up", "corrected_answer": "a" * 16_001}, "corrected_answer"),
    ({"request_id": "x", "rating": "up", "stars": 5}, "stars"),
    ({"request_id": "x", "rating": "up", "source": "Web UI!"}, "source"),
    ({"request_id": "", "rating": "up"}, "request_id"),
])
def test_bad_feedback_is_a_400_naming_the_field(serve, tmp_path, body, field):
    live = serve(_store(tmp_path))
    answer = httpx.post(f"{live.url}/v1/feedback", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and error["message"].startswith(field)


def test_unknown_request_ids_are_404_and_feedback_is_off_without_a_store(serve, tmp_path):
    live = serve(_store(tmp_path))
    answer = httpx.post(f"{live.url}/v1/feedback", json={"request_id": "never-served", "rating": -1})
    assert answer.status_code == 404 and answer.json()["error"]["param"] == "request_id"
    assert answer.json()["error"]["code"] == "request_not_found"
    off = serve(None)
    answer = httpx.post(f"{off.url}/v1/feedback", json={"request_id": "never-served", "rating": -1})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "feedback_disabled"
    assert "/v1/feedback" not in httpx.get(f"{off.url}/openapi.json").json()["paths"]
    assert "/v1/feedback" in httpx.get(f"{live.url}/openapi.json").json()["paths"]


def test_nothing_is_lost_when_the_server_restarts(serve, tmp_path):
    first = serve(_store(tmp_path), version="3")
    ids = [httpx.post(f"{first.url}/v1/completions", json={"model": first.model_id, "prompt": format_prompt(q),
                                                            "max_tokens": 3}).headers["x-request-id"]
           for q in ("one", "two", "three")]
    first.server.should_exit = True  # shutdown flushes the queue; the next server opens the same file
    first.thread.join(30)
    second = serve(_store(tmp_path), version="4")
    for request_id in ids:
        rated = httpx.post(f"{second.url}/v1/feedback", json={"request_id": request_id, "rating": "down",
                                                               "corrected_answer": "Better.", "prompt": "one"})
        assert rated.status_code == 201, rated.text
    reader = _store(tmp_path)
    assert [reader.request(i)["model_version"] for i in ids] == ["3", "3", "3"]
    assert reader.summary()["corrected_answers"] == 3


class SlowStore(TrafficStore):
    """A store whose every write takes ``delay`` seconds (a database on its knees)."""

    delay = 1.5

    def write_requests(self, records):
        time.sleep(self.delay)
        return super().write_requests(records)


def test_a_slow_store_never_slows_requests_and_overflow_is_counted(serve, tmp_path, caplog):
    caplog.set_level("WARNING", logger="compactlm")
    store = SlowStore(f"sqlite:///{tmp_path / 'traffic.db'}")
    live = serve(store, traffic_queue=2)
    ask = {"model": live.model_id, "prompt": format_prompt("hi"), "max_tokens": 2, "temperature": 0}
    took = []
    for _ in range(8):
        start = time.perf_counter()
        assert httpx.post(f"{live.url}/v1/completions", json=ask).status_code == 200
        took.append(time.perf_counter() - start)
    assert max(took) < SlowStore.delay / 2, took  # no request waited for a write
    metrics = httpx.get(f"{live.url}/metrics").text
    dropped = [line for line in metrics.splitlines()
               if line.startswith('compactlm_traffic_dropped_total{reason="queue_full"}')]
    assert dropped and float(dropped[0].split()[-1]) >= 1, metrics
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "traffic_queue_full"]
    assert len(warnings) == 1  # logged once, however many are dropped


def test_schemathesis_finds_no_server_error_in_feedback(serve, tmp_path):
    """Generated bodies for POST /v1/feedback (valid and invalid) against a real store: never a 5xx."""
    live = serve(_store(tmp_path))
    httpx.post(f"{live.url}/v1/completions", headers={"X-Request-ID": "0"},
               json={"model": live.model_id, "prompt": "hi", "max_tokens": 1})  # one known id for the fuzzer
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{live.url}/openapi.json", "--include-path",
         "/v1/feedback", "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance", "--max-examples", "25", "--seed", "0", "--workers", "1",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"(\d+) generated, \1 passed", done.stdout), done.stdout[-2000:]
