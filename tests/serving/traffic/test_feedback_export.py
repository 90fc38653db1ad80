"""`compactlm feedback export`: corrected answers as JSONL rows with provenance, written atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compactlm.serving.traffic import FeedbackRecord, RequestRecord, TrafficStore

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def run_cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "COMPACTLM_HOME": str(home), **env}
    environ.pop("COMPACTLM_TRAFFIC_DB", None)
    return subprocess.run([sys.executable, "-m", "compactlm.cli", "feedback", "export", *args], capture_output=True,
                          text=True, env=environ, timeout=300)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    return line


@pytest.fixture
def filled(tmp_path) -> Path:
    """The default store of a state folder: five feedbacks, of which three corrections can become rows."""
    home = tmp_path / "home"
    store = TrafficStore.open(f"sqlite:///{home / 'traffic.db'}")
    requests = [RequestRecord(f"q{i}", T0, "/v1/chat/completions", "support-chat", version, 200, 30.0, 10, 8,
                              prompt_text=text)
                for i, (version, text) in enumerate([("3", "Where is my order?"), ("3", None), ("4", None),
                                                     ("4", "Cancel my plan")])]
    store.write_requests(requests)
    for offset, record in enumerate([
        FeedbackRecord("q0", -1, corrected_answer="First try.", created_at=T0),
        FeedbackRecord("q0", -1, corrected_answer="It ships tomorrow.", reason="wrong date", created_at=T0),
        FeedbackRecord("q1", -1, corrected_answer="Go to Settings > Address.", prompt="How do I change my address?",
                       source="ui", created_at=T0),
        FeedbackRecord("q2", -1, corrected_answer="No prompt anywhere.", created_at=T0),  # skipped
        FeedbackRecord("q3", 1, created_at=T0),  # a thumbs up: nothing to learn
        FeedbackRecord("q3", -1, corrected_answer="Your plan is cancelled.", created_at=T0 + timedelta(days=1)),
    ]):
        store.add_feedback(FeedbackRecord(**{**record.__dict__, "created_at": record.created_at
                                             + timedelta(minutes=offset)}))
    store.close()
    return home


def test_export_writes_rows_with_provenance(filled, tmp_path):
    out = tmp_path / "out" / "corrections.jsonl"
    done = run_cli("--out", str(out), "--json", home=filled)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"path": str(out), "rows": 3, "skipped_without_prompt": 1,
                      "store": f"sqlite:///{filled / 'traffic.db'}"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["request_id"] for r in rows] == ["q0", "q1", "q3"]
    first = rows[0]
    assert first == {"instruction": "Where is my order?", "response": "It ships tomorrow.", "intent": "feedback",
                     "source": "feedback", "request_id": "q0", "model_name": "support-chat", "model_version": "3",
                     "feedback_id": 2, "created_at": "2026-11-30T09:01:00.000Z", "reason": "wrong date"}
    assert rows[1]["instruction"] == "How do I change my address?"  # the prompt the feedback carried
    assert rows[2]["model_version"] == "4"
    assert [p.name for p in out.parent.iterdir()] == ["corrections.jsonl"]  # no temporary file left


def test_since_filters_and_the_text_summary_names_the_skipped(filled, tmp_path):
    out = tmp_path / "recent.jsonl"
    done = run_cli("--out", str(out), "--since", "2026-12-01", home=filled)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Wrote 1 row(s) to {out} from sqlite:///")
    assert [json.loads(line)["request_id"] for line in out.read_text().splitlines()] == ["q3"]
    everything = run_cli("--out", str(out), home=filled)
    assert "1 corrected answer(s) skipped: no prompt text" in everything.stdout


def test_errors_are_one_line_and_leave_the_previous_file(filled, tmp_path):
    out = tmp_path / "kept.jsonl"
    out.write_text("previous\n")
    assert "--since 'last week' is not an ISO 8601 date" in one_line_error(
        run_cli("--out", str(out), "--since", "last week", home=filled))
    line = one_line_error(run_cli("--out", str(out), "--db", "postgresql://me:pg-pass-9@127.0.0.1:1/traffic",
                                  home=filled))
    assert "postgresql://me:***@127.0.0.1:1/traffic" in line and "pg-pass-9" not in line
    assert "no such file" in one_line_error(run_cli("--out", str(out), home=tmp_path / "empty-home"))
    assert "traffic store is off" in one_line_error(run_cli("--out", str(out), "--set", "serve.traffic_db=none",
                                                            home=filled))
    assert out.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
