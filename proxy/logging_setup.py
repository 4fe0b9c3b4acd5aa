"""Process-wide logging: human-readable text or one JSON object per line.

Code logs with the standard library (``logging.getLogger(__name__)``) and passes
structured facts as ``extra={"conn_id": 7, "user": "app"}``; the formatters here
print those extras as ``key=value`` pairs (text) or as top-level fields (JSON:
``ts``, ``level``, ``logger``, ``msg``, then the extras). Nothing here filters
secrets: callers must never log parameters, row data, keys or passwords.

``configure_logging`` may be called again (e.g. on SIGHUP): it replaces the
handler it installed before and leaves other handlers alone.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

FORMATS: Final = ("text", "json")
LEVELS: Final = ("debug", "info", "warning", "error")

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

_installed: logging.Handler | None = None


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": "info", "logger": ..., "msg": ..., <extras>}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)  # an extra never hides a standard field
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO  proxy.server: msg key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        pairs = [f"{key}={_text_value(value)}" for key, value in _extras(record).items()]
        if pairs:
            line += " " + " ".join(pairs)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    # Quote only what would otherwise be ambiguous when split on spaces.
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure_logging(fmt: str, level: str, *, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to stderr (or ``stream``).

    ``fmt`` is ``text`` or ``json``; ``level`` one of debug, info, warning, error.
    """
    global _installed
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    _installed = handler
