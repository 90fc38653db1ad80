"""``TrafficWriter``: served requests go to the store from a background thread, never from the request path.

``submit`` only puts a record on a bounded queue (``put_nowait``): it never waits, whatever the database
does. One thread drains the queue in batches (up to ``batch_size`` records, or what arrived within
``flush_interval_s``) and writes each batch in one transaction. When the queue is full the record is
dropped and counted (``on_drop("queue_full", 1)``, one warning in the log); a batch the database refuses
``retries`` times is dropped and counted as ``write_error``. ``close`` writes what is queued, then stops.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

from compactlm.serving.traffic.store import RequestRecord, TrafficStore

logger = logging.getLogger("compactlm.serving.traffic")

RETRY_DELAYS_S = (0.5, 2.0, 5.0)  # a database restart or a lock: wait, then try the same batch again
RECENT_IDS = 4096  # ids submitted lately, so feedback can name a request still in the queue
_WAKE = object()  # put on the queue by ``close``: the thread stops waiting for records at once


class TrafficWriter:
    """A bounded queue of ``RequestRecord`` drained into a ``TrafficStore`` by one daemon thread.

    Args:
        store: where records go.
        max_queue: records waiting at most; more are dropped (``on_drop``), never waited for.
        batch_size: records per transaction, at most.
        flush_interval_s: seconds the thread waits for more records before writing a partial batch.
        on_drop: called with ``(reason, count)`` for dropped records: ``queue_full`` or ``write_error``.
        retry_delays_s: seconds slept before each retry of a failed batch.
    """

    def __init__(self, store: TrafficStore, max_queue: int = 10_000, batch_size: int = 256,
                 flush_interval_s: float = 0.2, on_drop: Callable[[str, int], None] | None = None,
                 retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S):
        if max_queue < 1 or batch_size < 1:
            raise ValueError(f"max_queue and batch_size must be >= 1, got {max_queue} and {batch_size}")
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.on_drop = on_drop or (lambda reason, n: None)
        self.retry_delays_s = retry_delays_s
        self.written = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._recent: collections.OrderedDict[str, str | None] = collections.OrderedDict()  # id -> model version
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # submitted, not yet written or dropped
        self._stop = threading.Event()
        self._warned_full = False
        self._thread = threading.Thread(target=self._run, name="compactlm-traffic-writer", daemon=True)

    @property
    def pending(self) -> int:
        """Records submitted and not yet written or dropped."""
        return self._pending

    def start(self) -> TrafficWriter:
        """Start the writing thread (records submitted before wait in the queue)."""
        self._thread.start()
        return self

    def submit(self, record: RequestRecord) -> bool:
        """Queue a record without ever blocking.

        Returns:
            False when the queue was full: the record is dropped and counted.
        """
        with self._lock:
            self._pending += 1  # before the put: the thread may write it at once
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._done(1)
            self._drop("queue_full", 1)
            if not self._warned_full:
                self._warned_full = True
                logger.warning("traffic queue full: served requests are being dropped (counted in "
                               "compactlm_traffic_dropped_total); the traffic store is too slow",
                               extra={"event": "traffic_queue_full", "store": self.store.display_url})
            return False
        with self._lock:
            self._recent[record.request_id] = record.model_version
            if len(self._recent) > RECENT_IDS:
                self._recent.popitem(last=False)
        return True

    def recently_submitted(self, request_id: str) -> bool:
        """True when this process queued a record with this id lately (it may not be written yet)."""
        with self._lock:
            return request_id in self._recent

    def recent_version(self, request_id: str) -> str | None:
        """The model version of a request this process queued lately (None if unknown or not recent)."""
        with self._lock:
            return self._recent.get(request_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted record is written or dropped (the thread must be running).

        Returns:
            False when ``timeout`` seconds passed first.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then stop the thread."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # full: the thread is busy and sees the stop after this batch
            self._queue.put_nowait(_WAKE)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("traffic writer did not finish in time: %d record(s) not written", self._pending,
                         extra={"event": "traffic_close_timeout", "store": self.store.display_url})

    def _drop(self, reason: str, n: int) -> None:
        self.dropped[reason] += n
        self.on_drop(reason, n)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            self._idle.notify_all()

    def _take(self) -> list[RequestRecord]:
        try:  # once stopping, never wait: what is queued is written, then the thread ends
            first = self._queue.get_nowait() if self._stop.is_set() else self._queue.get(timeout=self.flush_interval_s)
            batch = [first]
        except queue.Empty:
            return []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [item for item in batch if item is not _WAKE]

    def _write(self, batch: list[RequestRecord]) -> None:
        for attempt in range(len(self.retry_delays_s) + 1):
            try:
                self.store.write_requests(batch)
                self.written += len(batch)
                return
            except Exception as exc:  # the database's errors vary by driver; the thread must survive them all
                if attempt == len(self.retry_delays_s) or (self._stop.is_set() and attempt >= 1):
                    self._drop("write_error", len(batch))
                    logger.error("traffic store write failed: %d record(s) dropped", len(batch),
                                 extra={"event": "traffic_write_failed", "store": self.store.display_url,
                                        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
                    return
                time.sleep(self.retry_delays_s[attempt])

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                try:
                    self._write(batch)
                finally:
                    self._done(len(batch))
            elif self._stop.is_set() and self._queue.empty():
                return
