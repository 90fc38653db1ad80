"""JSON log lines for the service: one object per line, request id on every request record."""

from __future__ import annotations

import json
import logging
import sys
import time

# LogRecord attributes that are not user data (everything else passed with ``extra=`` is logged).
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName",
                                                                       "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object: UTC timestamp (ms), level, logger, message, the ``extra`` fields, any exception."""
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_json_logging(level: str = "INFO") -> None:
    """Send the service's and uvicorn's logs to stderr as JSON lines (and silence progress bars on stderr)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("compactlm.serving", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers = [handler]
        log.setLevel(level)
        log.propagate = False
