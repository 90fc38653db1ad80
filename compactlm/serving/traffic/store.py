"""``TrafficStore``: the served-request and feedback tables behind one SQLAlchemy engine.

Every method is blocking (call it from a thread, never from the event loop: ``TrafficWriter`` does for
requests, the HTTP route uses ``asyncio.to_thread`` for feedback). The URL may hold a password: it is
only ever shown through ``masked_url``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, event, func, insert, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from compactlm.errors import CompactLMError
from compactlm.serving.traffic.schema import Base, Feedback, MonitorCheck, ServedRequest

ENV_VAR = "COMPACTLM_TRAFFIC_DB"
OFF = ("none", "off", "false", "")


class TrafficStoreError(CompactLMError):
    """The traffic store cannot be opened or used (bad URL, unreachable server, missing file)."""


@dataclass(frozen=True)
class RequestRecord:
    """One served request, as the ``served_request`` table stores it (times in UTC, durations in ms)."""

    request_id: str
    created_at: datetime
    route: str
    model_name: str
    model_version: str | None
    status: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None = None
    finish_reason: str | None = None
    n_choices: int = 1
    stream: bool = False
    client_id: str | None = None
    prompt_text: str | None = None
    completion_text: str | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    """One feedback: ``rating`` is +1 or -1; the texts are optional."""

    request_id: str
    rating: int
    corrected_answer: str | None = None
    reason: str | None = None
    prompt: str | None = None
    source: str = "api"
    client_id: str | None = None
    created_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what logs and errors show); unparsable: ``<invalid URL>``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def resolve_traffic_url(configured: str | None, default_file: str | Path) -> str | None:
    """The store's SQLAlchemy URL, or None when recording is off.

    ``COMPACTLM_TRAFFIC_DB`` wins over ``configured`` (``serve.traffic_db``): URLs may hold passwords,
    which belong in the environment. ``default`` is the SQLite file ``default_file``; ``none``/``off``
    turns recording off; a plain path is a SQLite file; anything else is a SQLAlchemy URL
    (``postgresql://user:pw@host:5432/db``, ``sqlite:////abs/path.db``).

    Args:
        configured: ``serve.traffic_db``.
        default_file: the embedded store (``StatePaths.traffic_db``, ``<COMPACTLM_HOME>/traffic.db``).
    """
    value = os.environ.get(ENV_VAR)
    value = (configured if value is None else value) or "none"
    if value.strip().lower() in OFF:
        return None
    if value.strip().lower() == "default":
        return f"sqlite:///{Path(default_file).resolve()}"
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    return value


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers (an export) run while the server writes; busy_timeout waits out a short lock."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database in (None, "", ":memory:"):  # one shared in-memory database for every thread
        return create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
    engine = create_engine(parsed, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class TrafficStore:
    """The traffic database. ``TrafficStore.open(url)`` connects and creates the tables if missing.

    Args:
        url: a SQLAlchemy URL (see ``resolve_traffic_url``).
        create: create missing tables (and a SQLite file's folder); False opens an existing store only.

    Raises:
        TrafficStoreError: an invalid URL, a missing driver, an unreachable server, or (``create=False``)
            a SQLite file that does not exist; the message shows the URL with its password masked.
    """

    def __init__(self, url: str, create: bool = True):
        self.url = url
        self.display_url = masked_url(url)
        try:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                path = Path(parsed.database)
                if not create and not path.is_file():
                    raise TrafficStoreError(f"traffic store {self.display_url}: no such file {path}")
                path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = _engine(url)
            if create:
                Base.metadata.create_all(self.engine)
            else:
                with self.engine.connect():
                    pass
        except TrafficStoreError:
            raise
        except (ArgumentError, ImportError, SQLAlchemyError, OSError) as exc:
            raise TrafficStoreError(f"traffic store {self.display_url}: {_one_line(exc)}") from None

    @classmethod
    def open(cls, url: str, create: bool = True) -> TrafficStore:
        """Connect to ``url`` (see the class); the same as ``TrafficStore(url, create)``."""
        return cls(url, create)

    def write_requests(self, records: list[RequestRecord]) -> int:
        """Insert served requests in one transaction; a request id already stored keeps its first row.

        Returns:
            How many rows were inserted (duplicates of stored ids excluded).

        Raises:
            SQLAlchemyError: the database refused or is unreachable (nothing of the batch is written).
        """
        if not records:
            return 0
        rows = [dataclasses.asdict(r) for r in records]
        rows = list({row["request_id"]: row for row in reversed(rows)}.values())  # first of each id in the batch
        with self.engine.begin() as conn:
            known = set(conn.scalars(select(ServedRequest.request_id).where(
                ServedRequest.request_id.in_([row["request_id"] for row in rows]))))
            fresh = [row for row in rows if row["request_id"] not in known]
            if fresh:
                conn.execute(insert(ServedRequest), fresh)
        return len(fresh)

    def add_feedback(self, record: FeedbackRecord) -> int:
        """Store one feedback and return its id.

        Raises:
            SQLAlchemyError: the database refused or is unreachable.
        """
        with self.engine.begin() as conn:
            result = conn.execute(insert(Feedback).values(**dataclasses.asdict(record)))
            return int(result.inserted_primary_key[0])

    def has_request(self, request_id: str) -> bool:
        """True when a served request with this id is stored."""
        with self.engine.connect() as conn:
            found = conn.scalar(select(ServedRequest.request_id).where(ServedRequest.request_id == request_id))
        return found is not None

    def request(self, request_id: str) -> dict | None:
        """The stored served request as a dict of its columns, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ServedRequest).where(ServedRequest.request_id == request_id)).mappings().first()
        return dict(row) if row is not None else None

    def feedback(self, since: datetime | None = None) -> list[dict]:
        """Feedback rows (oldest first), each with its served request's columns prefixed ``request_``.

        Args:
            since: only feedback created at or after this time (a naive datetime is taken as UTC).
        """
        query = (select(*Feedback.__table__.columns, ServedRequest.model_name.label("request_model_name"),
                        ServedRequest.model_version.label("request_model_version"),
                        ServedRequest.prompt_text.label("request_prompt_text"),
                        ServedRequest.completion_text.label("request_completion_text"),
                        ServedRequest.route.label("request_route"))
                 .outerjoin(ServedRequest, ServedRequest.request_id == Feedback.request_id)
                 .order_by(Feedback.created_at, Feedback.id))
        if since is not None:
            query = query.where(Feedback.created_at >= _utc(since))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def summary(self, since: datetime | None = None) -> dict[str, int]:
        """Counts for monitoring: served requests, feedback up and down, corrected answers (since ``since``)."""
        def count(model, *where):
            query = select(func.count()).select_from(model)
            if since is not None:
                query = query.where(model.created_at >= _utc(since))
            for clause in where:
                query = query.where(clause)
            return int(conn.scalar(query) or 0)

        with self.engine.connect() as conn:
            return {"requests": count(ServedRequest), "feedback_up": count(Feedback, Feedback.rating > 0),
                    "feedback_down": count(Feedback, Feedback.rating < 0),
                    "corrected_answers": count(Feedback, Feedback.corrected_answer.is_not(None))}

    def served_window(self, since: datetime, until: datetime, model_name: str | None = None,
                      model_version: str | None = None) -> tuple[int, list[str]]:
        """Requests served in ``[since, until)`` (of one model and version, when given) and their stored prompts.

        Returns:
            ``(n_served, prompts)``: how many successful requests (status < 400) the window holds, and the
            prompt texts of those that stored one (none when the service redacts prompts).
        """
        query = select(ServedRequest.prompt_text).where(
            ServedRequest.created_at >= _utc(since), ServedRequest.created_at < _utc(until), ServedRequest.status < 400)
        if model_name is not None:
            query = query.where(ServedRequest.model_name == model_name)
        if model_version is not None:
            query = query.where(ServedRequest.model_version == str(model_version))
        with self.engine.connect() as conn:
            texts = list(conn.scalars(query))
        return len(texts), [t for t in texts if t]

    def feedback_counts(self, since: datetime, until: datetime | None = None,
                        model_version: str | None = None) -> dict[str, int]:
        """Rated answers in ``[since, until)``: ``{"up", "down", "corrected"}``, one vote per answer (its latest
        rating in the window: rating one answer 25 times counts once), for answers of ``model_version`` when
        given (joined on the request id). ``corrected``: answers with a corrected answer among their feedback."""
        window = [Feedback.created_at >= _utc(since)]
        if until is not None:
            window.append(Feedback.created_at < _utc(until))
        latest = select(func.max(Feedback.id)).where(*window).group_by(Feedback.request_id)
        corrected = (select(func.count(func.distinct(Feedback.request_id)))
                     .where(*window, Feedback.corrected_answer.is_not(None)))
        votes = select(Feedback.rating).where(Feedback.id.in_(latest))
        if model_version is not None:
            same_version = select(ServedRequest.request_id).where(ServedRequest.model_version == str(model_version))
            votes = votes.where(Feedback.request_id.in_(same_version))
            corrected = corrected.where(Feedback.request_id.in_(same_version))
        with self.engine.connect() as conn:
            ratings = list(conn.scalars(votes))
            return {"up": sum(r > 0 for r in ratings), "down": sum(r < 0 for r in ratings),
                    "corrected": int(conn.scalar(corrected) or 0)}

    def write_monitor_checks(self, rows: list[dict]) -> int:
        """Store one monitor run's checks (dicts with the ``monitor_check`` columns but ``id``); returns the count."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(insert(MonitorCheck), [{**row, "created_at": _utc(row["created_at"])} for row in rows])
        return len(rows)

    def latest_monitor_checks(self) -> list[dict]:
        """The checks of the newest monitor run (empty when the monitor never ran against this store)."""
        with self.engine.connect() as conn:
            newest = conn.scalar(select(MonitorCheck.run_id).order_by(MonitorCheck.created_at.desc(),
                                                                      MonitorCheck.id.desc()).limit(1))
            if newest is None:
                return []
            query = (select(*MonitorCheck.__table__.columns).where(MonitorCheck.run_id == newest)
                     .order_by(MonitorCheck.id))
            return [dict(row) for row in conn.execute(query).mappings()]

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
