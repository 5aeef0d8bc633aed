"""The exception tree of asyncrec, and the one place PyAV's errors are translated.

::

    AsyncrecError
    ├── InvalidStateError         method called in the wrong recorder state
    ├── NotSupportedError         MIME type, codec or stream that cannot be recorded
    ├── InvalidModificationError  the recorded stream's track set changed
    ├── EncodingError             an encoder or the muxer failed
    ├── SecurityError             recording is not allowed
    ├── QuotaExceededError        consumers fell too far behind (see MediaRecorder)
    ├── SinkError                 writing the chunks failed (disk full, permission...)
    ├── NotFoundError             no device (or file) matches the request
    ├── NotReadableError          the device is busy or cannot be read
    ├── OverconstrainedError      no device can satisfy a constraint
    └── UnknownError              anything else that stops a recording

The subclasses carry the DOMException names of the W3C spec in ``name``, so code written
against the browser's ``event.error.name`` carries over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import av

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class AsyncrecError(Exception):
    """Base class of every error asyncrec raises or reports."""

    #: The DOMException name, as in the W3C spec.
    name = "Error"


class InvalidStateError(AsyncrecError):
    """A method was called in a state that does not allow it."""

    name = "InvalidStateError"


class NotSupportedError(AsyncrecError):
    """The MIME type, codec or stream cannot be recorded."""

    name = "NotSupportedError"


class InvalidModificationError(AsyncrecError):
    """A track was added to or removed from the stream while recording."""

    name = "InvalidModificationError"


class EncodingError(AsyncrecError):
    """An encoder or the muxer failed."""

    name = "EncodingError"


class SecurityError(AsyncrecError):
    """Recording is not allowed."""

    name = "SecurityError"


class QuotaExceededError(AsyncrecError):
    """The chunks not yet taken by handlers or iterators passed the recorder's bound."""

    name = "QuotaExceededError"


class SinkError(AsyncrecError):
    """Writing chunks to their destination failed; ``path`` names it.

    Raised by :class:`~asyncrec.FileSink` (disk full, permission, a vanished directory)
    and by any sink that wants its failure to stop the recording: a ``dataavailable``
    handler that raises it ends the recording with an ``"error"`` event, then the final
    chunk, then ``"stop"``, instead of being logged and ignored.
    """

    name = "SinkError"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class NotFoundError(AsyncrecError):
    """No device (or media file) matches the request."""

    name = "NotFoundError"


class NotReadableError(AsyncrecError):
    """The device or file exists but cannot be opened or read (busy, no permission...)."""

    name = "NotReadableError"


class OverconstrainedError(AsyncrecError):
    """A constraint cannot be satisfied; ``constraint`` names it, as in the DOM."""

    name = "OverconstrainedError"

    def __init__(self, constraint: str, message: str = "") -> None:
        super().__init__(message or f"cannot satisfy {constraint}")
        self.constraint = constraint


class UnknownError(AsyncrecError):
    """Recording could not go on for a reason no other error names."""

    name = "UnknownError"


@contextlib.contextmanager
def map_av_errors(what: str) -> Iterator[None]:
    """Translate PyAV's and FFmpeg's exceptions into :class:`EncodingError`.

    The one choke point for them: nothing PyAV raises reaches a user raw. ``what`` says
    which step failed, for the message.

    Only what PyAV and FFmpeg raise is translated: a ValueError, TypeError or
    RuntimeError raised by asyncrec's own code is a bug, and goes on as it is (the worker
    reports it as ``UnknownError`` with its traceback logged) rather than being disguised
    as an encoding failure.
    """
    try:
        yield
    except AsyncrecError:
        raise
    except (av.FFmpegError, OSError, MemoryError) as exc:
        raise EncodingError(f"{what} failed: {exc}") from exc
    except (ValueError, TypeError, RuntimeError) as exc:
        if _raised_by_asyncrec(exc):
            raise
        raise EncodingError(f"{what} failed: {exc}") from exc


def _raised_by_asyncrec(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is asyncrec's own code (PyAV's
    frames carry the names of its Cython sources, under ``av/``)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)).startswith(_PACKAGE)
