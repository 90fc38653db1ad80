"""The traffic store on SQLite: tables, reopening (nothing lost), duplicates, time filters, URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compactlm.serving.traffic import (
    FeedbackRecord,
    RequestRecord,
    TrafficStore,
    TrafficStoreError,
    masked_url,
    resolve_traffic_url,
)


def served(request_id: str, version: str | None = "5", **fields) -> RequestRecord:
    return RequestRecord(request_id=request_id, created_at=fields.pop("created_at", datetime.now(UTC)),
                         route="/v1/chat/completions", model_name="support-chat", model_version=version, status=200,
                         latency_ms=21.5, prompt_tokens=11, completion_tokens=7, **fields)


def test_rows_survive_closing_and_reopening_the_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'state' / 'traffic.db'}"  # the folder is created
    store = TrafficStore.open(url)
    assert store.write_requests([served("a", ttft_ms=3.5, prompt_text="Where is my order?"), served("b")]) == 2
    feedback_id = store.add_feedback(FeedbackRecord("a", -1, corrected_answer="Tomorrow.", reason="wrong day"))
    store.close()

    again = TrafficStore.open(url, create=False)
    row = again.request("a")
    assert row["model_version"] == "5" and row["ttft_ms"] == 3.5 and row["prompt_text"] == "Where is my order?"
    assert row["created_at"].tzinfo is UTC
    (feedback,) = again.feedback()
    assert feedback["id"] == feedback_id and feedback["request_model_version"] == "5"
    assert again.summary() == {"requests": 2, "feedback_up": 0, "feedback_down": 1, "corrected_answers": 1}


def test_a_repeated_request_id_keeps_its_first_row(tmp_path):
    store = TrafficStore.open(f"sqlite:///{tmp_path / 't.db'}")
    assert store.write_requests([served("x", version="1")]) == 1
    assert store.write_requests([served("x", version="2"), served("y"), served("y", version="9")]) == 1
    assert store.request("x")["model_version"] == "1" and store.request("y")["model_version"] == "5"
    assert store.has_request("y") and not store.has_request("z")


def test_feedback_since_filters_by_utc_time(tmp_path):
    store = TrafficStore.open(f"sqlite:///{tmp_path / 't.db'}")
    store.write_requests([served("a")])
    old = datetime(2026, 1, 1, 12, tzinfo=UTC)
    store.add_feedback(FeedbackRecord("a", 1, created_at=old))
    store.add_feedback(FeedbackRecord("a", -1, created_at=old + timedelta(days=2)))
    assert [f["rating"] for f in store.feedback(since=datetime(2026, 1, 2))] == [-1]  # naive = UTC
    assert [f["rating"] for f in store.feedback(since=datetime(2026, 1, 1, 13, tzinfo=UTC))] == [-1]
    assert store.summary(since=datetime(2026, 1, 2, tzinfo=UTC))["feedback_down"] == 1


def test_urls_resolve_from_config_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPACTLM_TRAFFIC_DB", raising=False)
    default = tmp_path / "home" / "traffic.db"
    assert resolve_traffic_url("default", default) == f"sqlite:///{default}"
    assert resolve_traffic_url("none", default) is None and resolve_traffic_url(None, default) is None
    assert resolve_traffic_url("OFF", default) is None
    assert resolve_traffic_url(str(tmp_path / "x.db"), default) == f"sqlite:///{tmp_path / 'x.db'}"
    assert resolve_traffic_url("postgresql://u:p@h/db", default) == "postgresql://u:p@h/db"
    monkeypatch.setenv("COMPACTLM_TRAFFIC_DB", "postgresql://u:p@other/db")
    assert resolve_traffic_url("default", default) == "postgresql://u:p@other/db"  # the environment wins
    monkeypatch.setenv("COMPACTLM_TRAFFIC_DB", "none")
    assert resolve_traffic_url("default", default) is None
    assert masked_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_unusable_stores_fail_with_one_line_and_no_password(tmp_path):
    with pytest.raises(TrafficStoreError, match="no such file") as missing:
        TrafficStore.open(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    assert not (tmp_path / "absent.db").exists()  # opening to read creates nothing
    with pytest.raises(TrafficStoreError) as refused:
        TrafficStore.open("postgresql://me:s3cret-pw@127.0.0.1:1/traffic")
    message = str(refused.value)
    assert "postgresql://me:***@127.0.0.1:1/traffic" in message and "s3cret-pw" not in message
    assert "\n" not in message and "\n" not in str(missing.value)
    with pytest.raises(TrafficStoreError, match="Can't load plugin|invalid"):
        TrafficStore.open("nosuchdb://x/y")
