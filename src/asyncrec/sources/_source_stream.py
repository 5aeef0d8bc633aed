"""SourceStream: a MediaStream that owns the inputs its tracks are read from, closed like
the recorder (``async with``, ``aclose()``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from .._stream import MediaStream, Track
from ._reader import MediaReader

logger = logging.getLogger(__name__)


class SourceStream(MediaStream):
    """A MediaStream reading devices, fake devices or media files, each input on its own
    thread: what ``getUserMedia()`` and ``open_media()`` return.

    The stream owns its inputs: close it with ``async with stream:`` or
    ``await stream.aclose()``, which stops its tracks, closes the inputs (a camera is
    free again) and waits until their threads have exited.

    Stopping every track of an input also closes it. A stream dropped unclosed is closed
    by the garbage collector once neither it nor its tracks are referenced, with a
    ``ResourceWarning``; while another holder still has its tracks (``MediaStream(
    stream.getTracks())``), they keep their inputs open until they are stopped or dropped.
    """

    def __init__(self, tracks: Iterable[Track] = (), readers: Iterable[MediaReader] = ()) -> None:
        super().__init__(tracks)
        self._readers = list(readers)
        self._closed = False

    def __repr__(self) -> str:
        kinds = ",".join(t.kind for t in self._tracks.values())
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.id} [{kinds}]{state}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`aclose` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the tracks of every input of the stream and tell the inputs to close,
        without waiting: their threads close them and exit promptly. Tracks added with
        ``addTrack`` from elsewhere are not the stream's and are left alone.

        Idempotent; raises nothing.
        """
        self._closed = True
        for reader in self._readers:
            for track in reader.tracks:
                track.stop()
            reader.close()

    async def aclose(self) -> None:
        """:meth:`close`, then wait, without blocking the loop, until every input's thread
        has closed its input and exited. Idempotent: a second call only waits again for a
        thread still ending.

        Raises nothing of its own.
        Cancellation: the inputs were told to close before the wait, so they close all the
        same; only the wait ends, and CancelledError propagates at once (a device that
        hangs cannot hold the caller). Call ``aclose()`` again to wait for the threads.
        """
        self.close()
        for reader in self._readers:
            await reader.wait_closed()
        logger.debug("%r: every input is closed", self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["SourceStream"]
