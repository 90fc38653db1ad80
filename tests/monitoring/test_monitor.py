"""One monitor run on real state: a registered champion with DVC lineage, and a SQLite traffic store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import OFF_DOMAIN_PROMPTS, one_line_error, register_served_champion, served_records

from compactlm.config import load_config
from compactlm.monitoring.monitor import (
    MonitorError,
    monitor_traffic,
    recent_retrain_request,
    record_retrain_request,
)
from compactlm.serving.traffic.store import FeedbackRecord, TrafficStore
from compactlm.state import state_paths

NAME = "monitor-unit"


@pytest.fixture
def champion(home):
    version, test_split, registered = register_served_champion(home, NAME)
    yield version, test_split, registered
    import mlflow

    mlflow.set_tracking_uri(None)


def config_for(home, *extra):
    return load_config(None, [f"home={home}", f"registry.model_name={NAME}", "monitor.min_requests=20", *extra])


def test_no_champion_is_a_one_line_error(home):
    from compactlm.registry import store

    store.setup_tracking(state_paths(home), "monitor-tests")
    with pytest.raises(MonitorError) as excinfo:
        monitor_traffic(state_paths(home), config_for(home))
    one_line_error(excinfo, NAME, "champion")


def test_the_monitor_compares_served_prompts_with_the_champions_training_data(champion, home):
    version, test_split, registered = champion
    paths = state_paths(home)
    store = TrafficStore.open(f"sqlite:///{paths.traffic_db}")
    on_topic = served_records(test_split["instruction"].tolist()[:40], NAME, registered)
    store.write_requests(on_topic)
    other_version = served_records(OFF_DOMAIN_PROMPTS, NAME, "99", start=datetime.now(UTC) - timedelta(minutes=30))
    store.write_requests(other_version)  # traffic of another version: not this version's drift
    store.add_feedback(FeedbackRecord(on_topic[0].request_id, -1, corrected_answer="Here is the fix.", prompt="q"))
    for _ in range(5):  # clicking thumbs-down again on the same answer is still one rated answer
        store.add_feedback(FeedbackRecord(on_topic[0].request_id, -1))
    store.add_feedback(FeedbackRecord(on_topic[1].request_id, -1))
    store.add_feedback(FeedbackRecord(on_topic[1].request_id, 1))  # changed its mind: the latest rating counts

    report = monitor_traffic(paths, config_for(home), run_id="run-a")
    assert report.model_version == registered and report.data_version == version.md5
    assert report.n_served == 40 and report.n_prompts == 40 and report.n_reference > 300
    assert report.drifted == [] and report.retrain_reasons == [], report.to_markdown()
    assert report.feedback == {"up": 1, "down": 1, "rated": 2} and report.corrected_answers == 1
    stored = store.latest_monitor_checks()
    assert [row["check"] for row in stored] == [c.name for c in report.checks] and stored[0]["run_id"] == "run-a"

    store.write_requests(served_records(OFF_DOMAIN_PROMPTS, NAME, registered,
                                        start=datetime.now(UTC) - timedelta(minutes=20)))
    drifted = monitor_traffic(paths, config_for(home, "monitor.corrected_answers_min=1"), run_id="run-b")
    assert {"out_of_domain", "vocabulary"} <= set(drifted.drifted), drifted.to_markdown()
    assert "corrected_answers" in drifted.retrain_reasons
    latest = {row["check"]: row for row in store.latest_monitor_checks()}
    assert latest["out_of_domain"]["drifted"] and latest["out_of_domain"]["run_id"] == "run-b"

    old = monitor_traffic(paths, config_for(home), now=datetime.now(UTC) - timedelta(days=3))
    assert old.n_served == 0 and old.drifted == []  # nothing served in that window
    store.close()


def test_a_retrain_request_cools_down_per_version(tmp_path):
    path = tmp_path / "retrain.json"
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert recent_retrain_request(path, "3", 24, now) is None
    record_retrain_request(path, "3", "event-1", ["out_of_domain"], now)
    assert recent_retrain_request(path, "3", 24, now + timedelta(hours=23))["event_id"] == "event-1"
    assert recent_retrain_request(path, "3", 24, now + timedelta(hours=25)) is None
    assert recent_retrain_request(path, "4", 24, now + timedelta(hours=1)) is None  # a new version is watched anew


def test_traffic_recording_off_is_a_one_line_error(champion, home):
    with pytest.raises(MonitorError) as excinfo:
        monitor_traffic(state_paths(home), config_for(home, "monitor.traffic_db=off"))
    one_line_error(excinfo, "monitor.traffic_db")
