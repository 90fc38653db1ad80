"""The traffic tables (SQLAlchemy 2.0 declarative): ``served_request`` and ``feedback``.

Timestamps are stored in UTC and always read back as timezone-aware UTC datetimes (SQLite keeps no
zone, PostgreSQL does): ``UtcDateTime`` makes both behave the same. ``feedback.request_id`` is indexed
but not a foreign key: feedback is accepted only for a request id the store knows (the HTTP route checks),
yet a served row may later be purged while its feedback, the valuable part, stays.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Integer, SmallInteger, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 128  # request ids: the middleware accepts client ids of up to 128 safe characters


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (naive values are taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the traffic tables (its ``metadata`` is what ``create_all`` creates)."""


class ServedRequest(Base):
    """One completed ``/v1/completions`` or ``/v1/chat/completions`` request (streaming included)."""

    __tablename__ = "served_request"

    request_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)  # when the response ended
    route: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(64))  # registry version; None for a folder
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)  # to the last byte, streams included
    ttft_ms: Mapped[float | None] = mapped_column(Float)  # queueing to the first generated token
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    n_choices: Mapped[int] = mapped_column(SmallInteger, default=1)
    stream: Mapped[bool] = mapped_column(default=False)
    client_id: Mapped[str | None] = mapped_column(String(128))  # API-key fingerprint or address, never a key
    prompt_text: Mapped[str | None] = mapped_column(Text)  # only with serve.redact_prompts: false
    completion_text: Mapped[str | None] = mapped_column(Text)  # idem


class Feedback(Base):
    """A rating of one served answer, optionally with a corrected answer and a reason."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    rating: Mapped[int] = mapped_column(SmallInteger)  # +1 (up) or -1 (down)
    corrected_answer: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)  # the question, sent by the client (the chat UI has it)
    source: Mapped[str] = mapped_column(String(32), default="api")  # api, ui...
    client_id: Mapped[str | None] = mapped_column(String(128))


class MonitorCheck(Base):
    """One drift check of one monitor run (what ``GET /metrics`` exposes as ``compactlm_drift_*``)."""

    __tablename__ = "monitor_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)  # one id per monitor run
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(64))
    check: Mapped[str] = mapped_column(String(64))
    statistic: Mapped[float | None] = mapped_column(Float)  # None: not computed (too little traffic...)
    threshold: Mapped[float] = mapped_column(Float)  # the bar applied (a JS check: at least its no-drift p99)
    drifted: Mapped[bool] = mapped_column(default=False)
