"""Log lines for people, or JSON lines for log shippers: the formats of ``asyncrec serve``
(:mod:`asyncrec.whip._logs` sets them up), also used by the encoder processes so their
lines match the server's.

Session records carry their facts as fields (``extra=``: ``session``, ``remote``,
``codecs``, ``resolution``, ``reason``, ``file``, ``bytes``...); the text format appends
them as ``key=value``, the JSON format puts them beside ``time``, ``level``, ``logger``
and ``message``.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error")
#: The attributes every LogRecord has: anything else on a record is a field of ours.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields given to a log call with ``extra=``."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{key}={value}" for key, value in fields(record).items() if value is not None)
        return f"{text} {extra}" if extra else text


def root_format() -> LogFormat:
    """The root logger's format: JSON if one of its handlers writes JSON lines, else text."""
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers) else "text"


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``fmt`` ("json", else text)."""
    return JsonFormatter() if fmt == "json" else TextFormatter()
