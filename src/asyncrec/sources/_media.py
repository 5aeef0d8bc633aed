"""Media files and URLs as a stream: the spec's media element, asyncrec's ``open_media``."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from .._stream import MediaStream, Track
from ._reader import InputSpec, MediaReader

#: How long a stream used without ``await`` may wait for its input to open (s).
BLOCKING_OPEN_TIMEOUT = 10.0


class MediaFileStream(MediaStream):
    """The tracks of a media file or URL, demuxed and decoded on their own thread.

    Await it (``stream = await open_media(path)``) to open the input without blocking the
    loop. Used without ``await``, the first look at its tracks waits for the input to open
    (a local file takes milliseconds; prefer ``await`` for URLs).

    When the media ends, its tracks end, so a recorder of this stream stops by itself
    with its final chunk. ``realtime=True`` delivers frames at their pace (a live source);
    ``realtime=False`` as fast as the recorder takes them, nothing dropped.
    ``loop=True`` plays the media again from the start at its end, forever.
    """

    def __init__(self, path_or_url: str | os.PathLike[str], *, realtime: bool = True, loop: bool = False) -> None:
        super().__init__()
        url = os.fspath(path_or_url)
        self._reader = MediaReader(
            InputSpec(url, label=os.path.basename(url) or url), live=realtime, realtime=realtime, loop_media=loop
        )
        self._opened = False

    def __await__(self) -> Generator[Any, None, MediaFileStream]:
        return self._open().__await__()

    async def _open(self) -> MediaFileStream:
        """Open the input. Raises NotFoundError or NotReadableError."""
        if not self._opened:
            self._adopt(await self._reader.open())
        return self

    def _adopt(self, tracks: list[Any]) -> None:
        if not self._opened:
            self._opened = True
            for track in tracks:
                self._tracks.setdefault(track.id, track)

    def _track_map(self) -> dict[str, Track]:
        if not self._opened:
            self._adopt(self._reader.open_blocking(BLOCKING_OPEN_TIMEOUT))
        return self._tracks

    def close(self) -> None:
        """Stop every track and release the input."""
        for track in list(self._tracks.values()):
            track.stop()  # type: ignore[attr-defined]
        self._reader.close()


def open_media(path_or_url: str | os.PathLike[str], *, realtime: bool = True, loop: bool = False) -> MediaFileStream:
    """A MediaStream playing a media file or URL; see :class:`MediaFileStream`.

    ``await open_media(...)`` opens it without blocking the loop.

    Raises (when opened):
        NotFoundError: the file does not exist.
        NotReadableError: it cannot be opened or has neither audio nor video.
    """
    return MediaFileStream(path_or_url, realtime=realtime, loop=loop)


__all__ = ["MediaFileStream", "open_media"]
