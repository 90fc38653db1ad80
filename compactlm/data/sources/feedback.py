"""``feedback:`` sources: corrected answers from the serving traffic store, as instruction/response rows.

``feedback:`` reads the default store (COMPACTLM_TRAFFIC_DB, else ``<COMPACTLM_HOME>/traffic.db``);
``feedback:URL`` a given one (``feedback:postgresql://user@host/db``, ``feedback:sqlite:////abs/traffic.db``,
or ``feedback:PATH`` of a SQLite file). The spec is recorded with the dataset version, so it must hold no
password: give it through PGPASSWORD/``~/.pgpass`` or COMPACTLM_TRAFFIC_DB. The rows are those of
``compactlm feedback export`` (``compactlm.serving.traffic.export``); their provenance columns (request id,
model version, feedback id, time, reason) are carried through the ingest.
"""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd

from compactlm.data.sources.files import SourceFile
from compactlm.errors import ConfigError, DataError

FEEDBACK_PREFIX = "feedback:"
_PASSWORD = re.compile(r"^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@")


def check_feedback_spec(spec: str) -> None:
    """Refuse a ``feedback:`` spec holding a password (it would be recorded with the version and in MLflow).

    Raises:
        ConfigError: the URL after ``feedback:`` has a password.
    """
    if _PASSWORD.match(spec.removeprefix(FEEDBACK_PREFIX).strip()):
        raise ConfigError("data.source: a feedback: URL must not hold a password (it is recorded with the "
                          "dataset version); set it in PGPASSWORD or ~/.pgpass, or put the whole URL in "
                          "COMPACTLM_TRAFFIC_DB and use --source feedback:")


def feedback_store_url(spec: str) -> str:
    """The SQLAlchemy URL a ``feedback:`` spec names (see the module).

    Raises:
        DataError: ``feedback:`` while COMPACTLM_TRAFFIC_DB says the store is off.
    """
    from compactlm.serving.traffic.store import resolve_traffic_url
    from compactlm.state import state_paths

    rest = spec.removeprefix(FEEDBACK_PREFIX).strip()
    url = resolve_traffic_url(rest, "") if rest else resolve_traffic_url("default", state_paths().traffic_db)
    if url is None:
        raise DataError(f"{spec}: the traffic store is off (COMPACTLM_TRAFFIC_DB); name one: feedback:URL")
    return url


def read_feedback(spec: str) -> pd.DataFrame:
    """The corrected answers of the store as rows: instruction, response, intent, then the provenance columns.

    Raises:
        DataError: the store is missing or unreachable, or holds no corrected answer with its prompt.
    """
    from compactlm.serving.traffic.export import ROW_COLUMNS, read_corrections
    from compactlm.serving.traffic.store import TrafficStoreError, masked_url

    url = feedback_store_url(spec)
    try:
        corrections = read_corrections(url)
    except TrafficStoreError as exc:
        raise DataError(f"{FEEDBACK_PREFIX}{str(exc).removeprefix('traffic store ')}") from None
    if not corrections.rows:
        raise DataError(f"{FEEDBACK_PREFIX}{masked_url(url)}: no corrected answer with its prompt text "
                        f"({corrections.skipped_without_prompt} without one)")
    return pd.DataFrame(corrections.rows, columns=list(ROW_COLUMNS))


def feedback_source_file(spec: str) -> SourceFile:
    """The store as one "file" whose fingerprint is the rows' content: new corrections make a new version.

    Raises:
        DataError: as ``read_feedback``.
    """
    from compactlm.serving.traffic.store import masked_url

    frame = read_feedback(spec)
    digest = hashlib.sha256(json.dumps(frame.to_dict("records"), sort_keys=True, default=str).encode())
    return SourceFile(uri=FEEDBACK_PREFIX + masked_url(feedback_store_url(spec)), key="feedback",
                      fingerprint=digest.hexdigest(), size=len(frame))
