"""Sinks: where a recording's chunks go. The protocol, and FileSink, which writes them to a
file without blocking the event loop."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import stat
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

from ._errors import AsyncrecError, SinkError
from ._events import BlobEvent
from ._serial import SerialThread

logger = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """What a recording's chunks can go to: an object with ``async write(chunk)`` and
    ``async aclose()``. :class:`FileSink` and :class:`SegmentSink` are sinks; so is any
    class of yours with these two methods (an HTTP upload, a queue, object storage).

    Attach one as the ``dataavailable`` handler, ``recorder.ondataavailable = sink.write``;
    the recorder awaits each write before it delivers the next chunk, which is the
    backpressure: a slow ``write`` holds back a source that is not real time (its frames
    wait, nothing is dropped); a real-time source cannot wait, so its chunks queue, up to
    ``MediaRecorder.max_undelivered_bytes``, past which the recording stops with
    ``QuotaExceededError`` (everything produced is still delivered).

    ``write`` should raise :class:`SinkError` when the data cannot be kept (the recording
    then stops with an ``"error"`` event, then delivers the rest and ``"stop"``) and may
    be cancelled; ``aclose`` is called once the recording has stopped and must be
    idempotent.
    """

    async def write(self, chunk: BlobEvent) -> None:
        """Keep one chunk (in order: the chunks of a recording arrive one at a time)."""

    async def aclose(self) -> None:
        """Finish: everything written is kept once this returns."""


class FileSink:
    """Appends chunks to a file, in order, with every open, write and close on a thread.

    Use it as the ``dataavailable`` handler; the recorder awaits each write before the
    next chunk, so the file is complete once ``await recorder.stop()`` returns::

        async with FileSink("out.webm") as sink:
            recorder.ondataavailable = sink.write
            ...

    A failure (disk full, permission, a missing directory...) raises :class:`SinkError`
    naming the path, with the ``OSError`` as its cause; a recorder whose
    ``dataavailable`` handler raises it stops with an ``"error"`` event. The sink then
    stays failed: later writes raise the same error at once without touching the disk,
    and the file keeps exactly the chunks written before (``bytes_written`` bytes).

    A sink is used once: after :meth:`aclose`, ``open`` and ``write`` raise SinkError
    (reopening would truncate the recording).

    Durable and finished: by default each chunk is flushed to the disk (``fsync="chunk"``;
    ``"close"`` syncs once at the end, ``"never"`` leaves it to the OS), so a process killed
    at any moment leaves a file that decodes up to its last whole chunk. At
    :meth:`aclose` the streamed file, which like a browser's has no Duration and no index,
    is remuxed into a finished, seekable one (WebM/Matroska with Duration and Cues, MP4
    with its ``moov`` at the front: see :func:`~asyncrec.repair`); the finished copy
    replaces it atomically, so a crash while finishing leaves the streamed file intact.
    A finishing that fails, or whose copy would not hold the whole file (reading stopped
    at damage), keeps the streamed file, with a warning: ``finished`` says which.
    ``finish=False`` keeps the streamed file as it is.

    Cancelling a call stops the wait at once, but an operation already handed to its
    thread cannot be interrupted: it completes, and the next call waits for it, so
    operations never overlap and chunks stay whole and in order.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: Literal["chunk", "close", "never"] = "chunk",
        finish: bool = True,
    ) -> None:
        if fsync not in ("chunk", "close", "never"):
            raise ValueError(f"fsync must be 'chunk', 'close' or 'never', not {fsync!r}")
        self.path = os.fspath(path)
        self.fsync = fsync
        self.finish = finish
        self._file: io.FileIO | None = None
        self._error: SinkError | None = None
        self._closed = False
        self._thread = SerialThread()
        #: Bytes written so far (whole chunks only).
        self.bytes_written = 0
        #: Whether :meth:`aclose` replaced the streamed file with a finished one.
        self.finished = False

    @property
    def error(self) -> SinkError | None:
        """The failure that ended this sink, or None while it works."""
        return self._error

    async def open(self) -> None:
        """Create (or truncate) the file; does nothing if it is open already.

        Raises:
            SinkError: the file cannot be created (from the ``OSError``; the sink is then
                failed), the sink failed before, or it is closed.

        Cancelling stops the wait; an open already on its thread still completes.
        """
        self._check()
        await self._thread.call(self._open)

    async def write(self, chunk: BlobEvent | bytes) -> None:
        """Append a chunk (a ``BlobEvent`` or bytes), opening the file first if needed.

        The chunk reaches the OS before this returns, so a full disk fails the write of
        the chunk that does not fit, not a later one or the close.

        Raises:
            SinkError: the open or the write failed (from the ``OSError``; a partly
                written chunk is cut off the file, which keeps the whole chunks before
                it), the sink failed before (the same error, at once), or it is closed.

        Cancelling stops the wait; a chunk already on its thread is still written whole
        (and counted) before any later call runs.
        """
        data = chunk.data if isinstance(chunk, BlobEvent) else chunk
        self._check()
        await self._thread.call(functools.partial(self._write, data))

    async def aclose(self) -> None:
        """Close the file; idempotent.

        After a failure it closes the file without raising again: that failure was
        reported by the call that met it.

        Raises:
            SinkError: closing failed (from the ``OSError``) and nothing failed before.

        Cancelling stops the wait; the file is closed all the same.
        """
        await self._thread.call(self._close)

    async def __aenter__(self) -> FileSink:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- on the thread (and _check on either) ------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise SinkError(self.path, "the sink is closed")

    def _fail(self, exc: OSError) -> SinkError:
        self._error = SinkError(self.path, exc.strerror or str(exc))
        return self._error

    def _open(self) -> io.FileIO:
        self._check()
        if self._file is None:
            try:
                # Unbuffered: each chunk goes to the OS in its own write, so its error is
                # its own, and nothing is left in a buffer to fail (or land late) at close.
                self._file = io.FileIO(self.path, "wb")
            except OSError as exc:
                raise self._fail(exc) from exc
        return self._file

    def _write(self, data: bytes) -> None:
        file = self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[file.write(view) :]  # a short write (disk nearly full) goes on
            if self.fsync == "chunk" and _regular(file):
                os.fsync(file.fileno())  # the chunk is on the disk before the next one
        except OSError as exc:
            self._cut_partial_chunk(file)
            raise self._fail(exc) from exc
        self.bytes_written += len(data)

    def _cut_partial_chunk(self, file: io.FileIO) -> None:
        # A torn chunk at the end could make the tail undecodable; the whole chunks before
        # it stay valid. Devices and pipes cannot be (and need not be) truncated.
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                os.ftruncate(file.fileno(), self.bytes_written)

    def _close(self) -> None:
        file, self._file = self._file, None
        self._closed = True
        if file is None:
            return
        try:
            regular = _regular(file)
            if self.fsync != "never" and regular and self._error is None:
                os.fsync(file.fileno())
            file.close()
        except OSError as exc:
            if self._error is not None:
                logger.debug("closing %s after %s: %s", self.path, self._error, exc)
                return
            raise self._fail(exc) from exc
        if self.finish and regular and self._error is None and self.bytes_written:
            self._finish()

    def _finish(self) -> None:
        """Replace the streamed file with a finished one; on failure the streamed file,
        which plays as it is, stays. So it does when the copy would lack part of it (the
        file was damaged): the finishing must not lose what was written."""
        from ._repair import repair  # PyAV work, on this thread

        try:
            repair(self.path, self.path, sync=self.fsync != "never", whole=True)
        except (AsyncrecError, OSError) as exc:
            logger.warning("%s: kept as streamed (no Duration or index): %s", self.path, exc)
        else:
            self.finished = True


def _regular(file: io.FileIO) -> bool:
    """Whether ``file`` is a regular file (not a device or a pipe: nothing to sync or finish)."""
    return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
