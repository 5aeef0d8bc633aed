"""The logs of ``asyncrec serve``: lines for people, or JSON lines for log shippers.

The formats themselves are in :mod:`asyncrec._logs` (the encoder processes use them too).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from .._logs import LEVELS, JsonFormatter, LogFormat, TextFormatter, fields, formatter

__all__ = ["LEVELS", "JsonFormatter", "LogFormat", "TextFormatter", "configure", "fields"]


def configure(level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``.

    Raises ValueError for an unknown level or format.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiortc and aioice log every packet-level event at info: keep them to warnings.
    for noisy in ("aiortc", "aioice"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
