"""The background writer: ``submit`` never waits for the database; overflow and failures are counted."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from compactlm.serving.traffic import RequestRecord, TrafficStore, TrafficWriter


def record(i: int) -> RequestRecord:
    return RequestRecord(f"r{i}", datetime.now(UTC), "/v1/completions", "m", "1", 200, 5.0, 3, 4)


class GatedStore(TrafficStore):
    """Every write waits for ``gate`` (a database that has stopped answering), then writes."""

    def __init__(self, url: str):
        super().__init__(url)
        self.gate = threading.Event()

    def write_requests(self, records):
        self.gate.wait(30)
        return super().write_requests(records)


class FlakyStore(TrafficStore):
    """Fails the first ``failures`` writes (the password in its URL must never be logged)."""

    def __init__(self, url: str, failures: int):
        super().__init__(url)
        self.failures = failures

    def write_requests(self, records):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        return super().write_requests(records)


def test_submit_never_waits_for_a_stuck_database_and_overflow_is_counted_and_logged_once(tmp_path, caplog):
    caplog.set_level("WARNING", logger="compactlm")
    store = GatedStore(f"sqlite:///{tmp_path / 't.db'}")
    drops: list[tuple[str, int]] = []
    writer = TrafficWriter(store, max_queue=5, batch_size=2, on_drop=lambda reason, n: drops.append((reason, n)))
    writer.start()
    start = time.perf_counter()
    accepted = [writer.submit(record(i)) for i in range(50)]
    assert time.perf_counter() - start < 0.5  # 50 submits while the database answers nothing
    assert 5 <= sum(accepted) <= 7 and writer.dropped["queue_full"] == 50 - sum(accepted)
    assert drops == [("queue_full", 1)] * (50 - sum(accepted))
    full = [r for r in caplog.records if getattr(r, "event", None) == "traffic_queue_full"]
    assert len(full) == 1
    store.gate.set()
    assert writer.flush(10) and writer.pending == 0
    writer.close()
    assert sum(1 for i in range(50) if store.has_request(f"r{i}")) == sum(accepted) == writer.written


def test_a_failing_batch_is_retried_then_dropped_and_the_thread_survives(tmp_path, caplog):
    caplog.set_level("ERROR", logger="compactlm")
    url = f"sqlite:///{tmp_path / 't.db'}"
    flaky = FlakyStore(url, failures=2)
    writer = TrafficWriter(flaky, retry_delays_s=(0.01, 0.01, 0.01)).start()
    writer.submit(record(1))
    assert writer.flush(10) and flaky.has_request("r1") and not writer.dropped  # two failures, then written
    flaky.failures = 10
    writer.submit(record(2))
    assert writer.flush(10) and writer.dropped == {"write_error": 1} and not flaky.has_request("r2")
    failed = [r for r in caplog.records if getattr(r, "event", None) == "traffic_write_failed"]
    assert len(failed) == 1 and "server closed the connection" in failed[0].error
    flaky.failures = 0
    writer.submit(record(3))  # the thread is still there
    writer.close()
    assert flaky.has_request("r3")


def test_close_writes_what_is_queued(tmp_path):
    store = TrafficStore.open(f"sqlite:///{tmp_path / 't.db'}")
    writer = TrafficWriter(store, batch_size=7, flush_interval_s=5.0)
    for i in range(100):
        writer.submit(record(i))  # queued before the thread even starts
    writer.start().close()
    assert writer.written == 100 and store.summary()["requests"] == 100
