"""Log records as JSON lines: one object per record, its structured fields included.

The engine's records carry their facts as ``extra`` fields (``run_id``, ``workflow``,
``step``, ``attempt``, ``outcome``, ``duration_ms``, ``action``, ...); a text log shows
them only inside the message. :class:`JsonFormatter` writes each record as one JSON
object on one line (a traceback is a string field, never extra lines), so a log
pipeline can filter on them. Inside a traced step the record also gets ``trace_id`` and
``span_id``, which join a log line to its span. The standard library only: no
dependency for a formatter.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from durable_sa.telemetry.tracing import tracing

if TYPE_CHECKING:
    from collections.abc import Callable

_STANDARD: Final = frozenset(
    (
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    )
)
"""A record's own attributes: everything else on it came as ``extra``."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the extras.

    ``scrub`` rewrites every string field and then the finished line (the CLI passes its
    password scrubber: a secret is caught before JSON escapes it, and a value written
    as its ``str``, which is how JSON holds any other value, after).
    """

    def __init__(self, scrub: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        )
        ids = tracing.current_ids()
        if ids is not None:
            document["trace_id"], document["span_id"] = ids
        if record.exc_info:
            document["exc_type"] = getattr(record.exc_info[0], "__name__", None)
            document["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        scrub = self._scrub
        if scrub is None:
            return json.dumps(document, default=str, ensure_ascii=False)
        document = {k: scrub(v) if isinstance(v, str) else v for k, v in document.items()}
        return scrub(json.dumps(document, default=str, ensure_ascii=False))
