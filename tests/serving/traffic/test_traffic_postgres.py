"""The traffic store against a real PostgreSQL server (started by ``postgres_url``): the same behaviour as SQLite,
through the live service, with the password never shown."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import make_url

from compactlm.config import ServeConfig
from compactlm.serving.engine.loading import load_model
from compactlm.serving.http.app import create_app
from compactlm.serving.traffic import FeedbackRecord, RequestRecord, TrafficStore


def test_the_store_keeps_rows_across_reconnections(postgres_url):
    store = TrafficStore.open(postgres_url)
    assert make_url(postgres_url).password not in store.display_url and "***" in store.display_url
    now = datetime.now(UTC)
    records = [RequestRecord(f"pg-{i}", now, "/v1/completions", "m", "2", 200, 4.0, 3, 5, ttft_ms=1.25)
               for i in range(3)]
    assert store.write_requests(records) == 3 and store.write_requests(records[:1]) == 0  # first row kept
    feedback_id = store.add_feedback(FeedbackRecord("pg-1", -1, corrected_answer="Better.", prompt="Q?"))
    store.close()
    again = TrafficStore.open(postgres_url, create=False)
    row = again.request("pg-1")
    assert row["model_version"] == "2" and row["ttft_ms"] == 1.25 and row["created_at"].tzinfo is not None
    assert abs((row["created_at"] - now).total_seconds()) < 1e-3
    (feedback,) = [f for f in again.feedback() if f["id"] == feedback_id]
    assert feedback["request_model_version"] == "2" and feedback["rating"] == -1
    again.close()


def test_served_requests_and_feedback_through_the_service_then_exported(postgres_url, tiny_model_dir,
                                                                        start_server, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="compactlm")
    password = make_url(postgres_url).password
    loaded = load_model(model_dir=tiny_model_dir, max_batch_size=2)
    loaded.version = "11"
    config = ServeConfig(model_dir=str(tiny_model_dir), threads=0, max_new_tokens=4, max_batch_size=2)
    live = start_server(create_app(config, preloaded=loaded, traffic=TrafficStore.open(postgres_url)))
    messages = [{"role": "user", "content": "Where is my parcel?"}]
    answer = httpx.post(f"{live.url}/v1/chat/completions", headers={"X-Request-ID": "pg-chat"},
                        json={"model": loaded.model_id, "messages": messages, "max_tokens": 3})
    assert answer.status_code == 200
    rated = httpx.post(f"{live.url}/v1/feedback", json={"request_id": "pg-chat", "rating": "down",
                                                         "corrected_answer": "It arrives on Monday.",
                                                         "prompt": "Where is my parcel?"})
    assert rated.status_code == 201, rated.text
    live.server.should_exit = True
    live.thread.join(30)  # shutdown flushes the writer

    out = tmp_path / "pg.jsonl"
    done = subprocess.run([sys.executable, "-m", "compactlm.cli", "feedback", "export", "--db", postgres_url,
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=300,
                          env={"COMPACTLM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr and json.loads(done.stdout)["rows"] >= 1
    (row,) = [json.loads(line) for line in out.read_text().splitlines() if '"pg-chat"' in line]
    assert row["model_version"] == "11" and row["response"] == "It arrives on Monday."
    assert row["instruction"] == "Where is my parcel?" and row["feedback_id"] == rated.json()["id"]
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "recording served requests" in logged and password not in logged
    reader = TrafficStore.open(postgres_url, create=False)
    assert reader.request("pg-chat")["prompt_text"] is None  # redacted by default
    reader.close()
