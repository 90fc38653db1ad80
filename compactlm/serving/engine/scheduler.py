"""The scheduler between asyncio request handlers and the engine: one engine thread, a bounded waiting queue.

Handlers ``submit_many`` sequences and await their ``RequestHandle``. One thread owns the engine: before
every step it admits waiting sequences into free cache rows (iteration-level scheduling, as in Orca: Yu
et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models", OSDI 2022), runs
``engine.step()`` and hands the results back to the event loop with a single ``call_soon_threadsafe``
per step. Torch ops release the GIL, so the event loop keeps serving HTTP while a step runs.

Backpressure: at most ``max_queue`` sequences wait for a row; beyond that ``submit_many`` raises
``QueueFullError`` (the API answers 503) instead of letting latency grow without bound. A sequence also
waits, in order, while the KV cache of those in flight plus it would exceed the engine's budget
(``GenerationEngine.can_admit``). After ``idle_release_s`` with nothing to do, the engine frees its cache.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable

from compactlm.errors import EngineUnavailableError, QueueFullError
from compactlm.serving.engine.generation import Completion, GenerationEngine, Sequence

logger = logging.getLogger(__name__)


class EngineFailure(Exception):
    """A bug in a decode step; every sequence in flight fails with it."""


class RequestHandle:
    """The event-loop side of one sequence: stream its text deltas or await its completion."""

    def __init__(self, seq: Sequence, scheduler: Scheduler, loop: asyncio.AbstractEventLoop):
        self.seq = seq
        self._scheduler = scheduler
        self._deltas: asyncio.Queue[str | None] = asyncio.Queue()
        self._done: asyncio.Future[Completion] = loop.create_future()

    def _push(self, delta: str, completion: Completion | None, error: BaseException | None) -> None:
        if delta:
            self._deltas.put_nowait(delta)
        if self._done.done():
            return
        if error is not None:
            self._done.set_exception(error)
            self._deltas.put_nowait(None)
        elif completion is not None:
            self._done.set_result(completion)
            self._deltas.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        """Text deltas as they are decoded; ends when the sequence finishes (then ``await result()``)."""
        while True:
            delta = await self._deltas.get()
            if delta is None:
                return
            yield delta

    async def result(self) -> Completion:
        """The finished sequence's completion.

        Raises:
            EngineFailure: a decode step failed while the sequence was in flight.
        """
        return await asyncio.shield(self._done)

    def cancel(self) -> None:
        """Stop decoding (the client went away); the row is freed at the engine's next step."""
        self.seq.cancelled = True
        self._scheduler.wake()


class Scheduler:
    """Runs ``engine`` on a background thread, admitting concurrent requests into its running batch.

    Args:
        engine: the generation engine (owned by this scheduler's thread once started).
        max_queue: most sequences allowed to wait for a free cache row (beyond: ``QueueFullError``).
        on_step: called after each step with the number of sequences decoded (metrics).
        idle_release_s: seconds without work after which the engine's KV cache is freed.
    """

    def __init__(self, engine: GenerationEngine, max_queue: int = 256, on_step: Callable[[int], None] | None = None,
                 idle_release_s: float = 2.0):
        self.engine = engine
        self.max_queue = max_queue
        self.on_step = on_step
        self.idle_release_s = idle_release_s
        self._waiting: deque[tuple[Sequence, RequestHandle, asyncio.AbstractEventLoop]] = deque()
        self._handles: dict[int, tuple[RequestHandle, asyncio.AbstractEventLoop]] = {}
        self._cond = threading.Condition()
        self._accepting = True
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="compactlm-engine", daemon=True)

    def start(self) -> Scheduler:
        """Start the engine thread; returns ``self``."""
        self._thread.start()
        return self

    @property
    def queue_depth(self) -> int:
        """Sequences waiting for a cache row (or for room in the KV-cache budget)."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Sequences holding a cache row."""
        return len(self.engine.active) + len(self.engine.pending)

    def submit_many(self, seqs: list[Sequence]) -> list[RequestHandle]:
        """Queue sequences for decoding, all or none (a batch request never half-enters the queue); call from
        the event loop.

        Raises:
            QueueFullError: ``max_queue`` sequences are already waiting.
            EngineUnavailableError: the scheduler is closing.
        """
        loop = asyncio.get_running_loop()
        handles = [RequestHandle(seq, self, loop) for seq in seqs]
        with self._cond:
            if not self._accepting:
                raise EngineUnavailableError("the model is being replaced or the server is shutting down; retry")
            if len(self._waiting) + len(seqs) > self.max_queue + max(self.engine.free_rows, 0):
                raise QueueFullError(f"the request queue is full ({self.max_queue} waiting); retry later")
            for seq, handle in zip(seqs, handles):
                self._waiting.append((seq, handle, loop))
            self._cond.notify()
        return handles

    def wake(self) -> None:
        """Wake the engine thread (a sequence was cancelled)."""
        with self._cond:
            self._cond.notify()

    def close(self, drain: bool = True, timeout: float | None = 60.0) -> None:
        """Stop accepting; with ``drain``, finish everything queued or running first; then stop the thread.

        Args:
            drain: finish queued and running sequences (else cancel them).
            timeout: seconds to wait for the thread (None: as long as it takes).
        """
        with self._cond:
            self._accepting = False
            if not drain:
                for seq, _, _ in self._waiting:
                    seq.cancelled = True
                for seq in self.engine.active + self.engine.pending:
                    seq.cancelled = True
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- engine thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        engine = self.engine
        while True:
            with self._cond:
                while not self._waiting and not engine.busy and not self._stop:
                    held = engine.decoder.cache.nbytes > 0
                    if not self._cond.wait(self.idle_release_s if held else None) and held:
                        engine.release_cache()  # idle: hand the KV cache back until the next request
                if self._stop and not self._waiting and not engine.busy:
                    return
                dropped = self._admit()
            touched: list[Sequence] = []
            if engine.busy:
                batch = len(engine.active) + len(engine.pending)
                try:
                    touched = engine.step()
                except Exception as exc:  # a bug: fail what is in flight, keep serving new requests
                    logger.exception("decode step failed")
                    self._fail_in_flight(exc)
                    continue
                if self.on_step is not None:
                    self.on_step(batch)
            self._deliver(dropped + touched)

    def _admit(self) -> list[Sequence]:
        """Move waiting sequences, in order, into free rows while the KV-cache budget allows (lock held); returns
        the cancelled ones it dropped."""
        dropped = []
        while self._waiting and (self._waiting[0][0].cancelled or self.engine.can_admit(self._waiting[0][0])):
            seq, handle, loop = self._waiting.popleft()
            self._handles[id(seq)] = (handle, loop)
            if seq.cancelled:
                seq.finish_reason = "cancelled"
                dropped.append(seq)
            else:
                self.engine.add(seq)
        return dropped

    def _deliver(self, seqs: list[Sequence], error: BaseException | None = None) -> None:
        batches: dict[asyncio.AbstractEventLoop, list] = {}
        for seq in seqs:
            entry = self._handles.get(id(seq))
            if entry is None:
                continue
            handle, loop = entry
            completion = seq.completion() if seq.finished else None
            if seq.finished or error is not None:
                del self._handles[id(seq)]
            batches.setdefault(loop, []).append((handle, seq.delta(), completion, error))
        for loop, items in batches.items():
            try:
                loop.call_soon_threadsafe(_dispatch, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _fail_in_flight(self, exc: Exception) -> None:
        engine = self.engine
        seqs = engine.active + engine.pending
        engine.active, engine.pending = [], []
        self._deliver(seqs, EngineFailure(f"decode step failed: {exc}"))


def _dispatch(items: list) -> None:
    for handle, delta, completion, error in items:
        handle._push(delta, completion, error)
