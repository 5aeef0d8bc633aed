"""Media files and URLs as a stream: the spec's media element, asyncrec's ``open_media``."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any, Self

from .._stream import Track
from ._reader import InputSpec, MediaReader, SourceTrack
from ._source_stream import SourceStream

#: How long a stream used without ``await`` may wait for its input to open (s).
BLOCKING_OPEN_TIMEOUT = 10.0


class MediaFileStream(SourceStream):
    """The tracks of a media file or URL, demuxed and decoded on their own thread.

    Await it (``stream = await open_media(path)``) to open the input without blocking the
    loop; ``async with open_media(path) as stream:`` opens it the same way and closes it
    at the end. Used without ``await``, the first look at its tracks waits for the input
    to open (a local file takes milliseconds; prefer ``await`` for URLs).

    When the media ends, its tracks end, so a recorder of this stream stops by itself
    with its final chunk. ``realtime=True`` delivers frames at their pace (a live source);
    ``realtime=False`` as fast as the recorder takes them, nothing dropped.
    ``loop=True`` plays the media again from the start at its end, forever.

    Close it (``aclose()``, ``async with``) to release the input: see
    :class:`SourceStream`. A stream closed before it was opened never opens, and has no
    tracks.
    """

    def __init__(self, path_or_url: str | os.PathLike[str], *, realtime: bool = True, loop: bool = False) -> None:
        url = os.fspath(path_or_url)
        reader = MediaReader(
            InputSpec(url, label=os.path.basename(url) or url), live=realtime, realtime=realtime, loop_media=loop
        )
        super().__init__(readers=[reader])
        self._reader = reader
        self._opened = False

    def __await__(self) -> Generator[Any, None, Self]:
        return self._open().__await__()

    async def __aenter__(self) -> Self:
        """Open the input (if not yet) and return the stream. Raises as :func:`open_media`."""
        return await self._open()

    async def _open(self) -> Self:
        """Open the input. Raises NotFoundError or NotReadableError (see :func:`open_media`),
        InvalidStateError when the stream was closed while its input was opening.
        Cancelling it closes the input."""
        if not self._opened and not self._closed:
            self._adopt(await self._reader.open())
        return self

    def _adopt(self, tracks: list[SourceTrack]) -> None:
        if not self._opened:
            self._opened = True
            for track in tracks:
                self._tracks.setdefault(track.id, track)
        if self._closed:  # closed while it was opening: its tracks end at once
            self.close()

    def _track_map(self) -> dict[str, Track]:
        if not self._opened and not self._closed:
            self._adopt(self._reader.open_blocking(BLOCKING_OPEN_TIMEOUT))
        return self._tracks


def open_media(path_or_url: str | os.PathLike[str], *, realtime: bool = True, loop: bool = False) -> MediaFileStream:
    """A MediaStream playing a media file or URL; see :class:`MediaFileStream`.

    ``await open_media(...)`` opens it without blocking the loop; close it with
    ``aclose()`` or ``async with``. The errors below are raised when it is opened.

    Raises:
        NotFoundError: the file does not exist.
        NotReadableError: it cannot be opened or has neither audio nor video.
        InvalidStateError: the stream was closed while its input was opening.
    """
    return MediaFileStream(path_or_url, realtime=realtime, loop=loop)


__all__ = ["MediaFileStream", "open_media"]
