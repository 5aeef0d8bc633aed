"""The finished recordings of ``asyncrec serve``: listing them with their duration and a
thumbnail, serving a thumbnail, deleting one.

Only plain names of finished recordings are ever turned into paths (:func:`safe_path`): no
separators, no dot files, no ``.part`` file, nothing outside the directory. Reading a file
is PyAV's work and the file system's, always on a worker thread, never on the event loop;
what a file holds is kept per (name, size, mtime) in a bounded cache, so a listing polled
every few seconds opens only the files that are new.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from stat import S_ISREG
from typing import TypeVar

import av

from ._recording import EXTENSIONS, PARTIAL

T = TypeVar("T")

#: The longest name a recording may have (a file name is at most 255 bytes).
MAX_NAME = 255
#: What the cache keeps: this many files' duration and thumbnail.
CACHE_SIZE = 256
#: A thumbnail's width in pixels (its height keeps the picture's aspect ratio).
THUMBNAIL_WIDTH = 160
#: Seconds into the recording of the picture a thumbnail shows (the first picture of a
#: shorter recording).
THUMBNAIL_AT = 1.0
#: Errors that say a file cannot be read as media (damaged, removed meanwhile...).
_UNREADABLE = (av.FFmpegError, OSError, EOFError, ValueError, IndexError)


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording: its name, size (bytes), modification time (epoch s), duration
    (seconds, None when unreadable) and whether it has a thumbnail (video)."""

    name: str
    size: int
    mtime: float
    duration: float | None
    has_thumbnail: bool


@dataclass(frozen=True, slots=True)
class _Probe:
    duration: float | None
    thumbnail: bytes | None


class Library:
    """The recordings in ``folder`` (an absolute, resolved path). Every method may be
    called from the event loop: none blocks it. Cancelling one waits for its worker
    thread to return (a file is never left half-read), then propagates."""

    def __init__(self, folder: Path, *, cache_size: int = CACHE_SIZE) -> None:
        self.folder = folder
        self._cache: OrderedDict[tuple[str, int, int], _Probe] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    async def file(self, name: str) -> Path | None:
        """The path of recording ``name``; None unless that is a safe name (see
        :func:`safe_path`) of a regular file."""
        path = safe_path(self.folder, name)
        if path is None or not await _in_thread(is_file, path):
            return None
        return path

    async def recordings(self) -> list[Recording]:
        """Every finished recording, sorted by name (so by time)."""
        return await _in_thread(self._list)

    async def thumbnail(self, name: str) -> bytes | None:
        """The JPEG thumbnail of recording ``name``; None for an unknown name, a recording
        without video, or one that cannot be read."""
        return await _in_thread(self._thumbnail, name)

    async def delete(self, name: str) -> bool:
        """Delete recording ``name``: True if it was deleted, False for an unknown or unsafe
        name (a recording in progress, ``NAME.part``, is not a recording's name).

        Raises PermissionError when the file system refuses, other OSError for the
        system's own failures. Cancellation waits for the removal, which is quick."""
        return await _in_thread(self._delete, name)

    # -- on worker threads ---------------------------------------------------------------------------
    def _list(self) -> list[Recording]:
        try:
            paths = sorted(self.folder.iterdir())
        except OSError:  # no directory yet: nothing recorded
            return []
        items = []
        for path in paths:
            if safe_path(self.folder, path.name) is None:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue  # removed meanwhile
            if S_ISREG(stat.st_mode):
                probe = self._probe(path, stat)
                items.append(
                    Recording(path.name, stat.st_size, stat.st_mtime, probe.duration, probe.thumbnail is not None)
                )
        return items

    def _thumbnail(self, name: str) -> bytes | None:
        path = safe_path(self.folder, name)
        if path is None:
            return None
        try:
            stat = path.stat()
        except (OSError, ValueError):
            return None
        if not S_ISREG(stat.st_mode):
            return None
        return self._probe(path, stat).thumbnail

    def _delete(self, name: str) -> bool:
        if safe_path(self.folder, name) is None:
            return False
        # The name itself, not what it resolves to: a link inside the folder is the link.
        path = self.folder / name
        try:
            if not S_ISREG(path.stat().st_mode):
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return False
        with self._lock:
            for key in [key for key in self._cache if key[0] == name]:
                del self._cache[key]
        return True

    def _probe(self, path: Path, stat: os.stat_result) -> _Probe:
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            probe = self._cache.get(key)
            if probe is not None:
                self._cache.move_to_end(key)
                return probe
        probe = probe_file(path)
        with self._lock:
            self._cache[key] = probe
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return probe


def safe_path(folder: Path, name: str) -> Path | None:
    """``folder/name`` if ``name`` is a plain finished recording's name, else None: no
    separators, no dot files, nothing that resolves outside ``folder``."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name or name.endswith(PARTIAL):
        return None
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return None
    if os.path.splitext(name)[1] not in EXTENSIONS.values():
        return None
    try:
        path = (folder / name).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop (RuntimeError before Python 3.13)
        return None
    return path if path.parent == folder else None


def is_file(path: Path) -> bool:
    """Whether ``path`` is a regular file; False for any name the system refuses."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def probe_file(path: Path) -> _Probe:
    """Open ``path`` with PyAV: its duration and a thumbnail of its first video stream.
    Blocks (call it on a worker thread); a file that cannot be read gives (None, None)."""
    try:
        with av.open(str(path)) as container:
            duration = container.duration / av.time_base if container.duration is not None else None
            thumbnail = None
            if container.streams.video:
                thumbnail = _thumbnail(container)
            if duration is None:  # written as a stream, not finished: the packets say
                duration = _packet_duration(path)
    except _UNREADABLE:
        return _Probe(None, None)
    return _Probe(duration, thumbnail)


def _thumbnail(container: av.container.InputContainer) -> bytes | None:
    """A JPEG of the picture at :data:`THUMBNAIL_AT` s (the first one if the video is
    shorter), :data:`THUMBNAIL_WIDTH` pixels wide."""
    stream = container.streams.video[0]
    first = chosen = None
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    for frame in container.decode(stream):
        if first is None:
            first = frame
        if frame.time is not None and frame.time - start >= THUMBNAIL_AT:
            chosen = frame
            break
    picture = chosen or first
    if picture is None or picture.width < 1 or picture.height < 1:
        return None
    width = THUMBNAIL_WIDTH
    height = max(2, round(picture.height * width / picture.width / 2) * 2)
    small = picture.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    packets = [*encoder.encode(small), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets) or None


def _packet_duration(path: Path) -> float | None:
    """The end of the last packet minus the start of the first, over every stream."""
    start: float | None = None
    end: float | None = None
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            begin = float(packet.pts * packet.time_base)
            finish = begin + float((packet.duration or 0) * packet.time_base)
            start = begin if start is None else min(start, begin)
            end = finish if end is None else max(end, finish)
    if start is None or end is None:
        return None
    return end - max(0.0, start)


async def _in_thread(function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` on a worker thread. Cancellation waits for it to return (a
    worker is never abandoned in the middle of a file), then propagates."""
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the caller is gone, its cancellation goes on
        raise


__all__ = ["CACHE_SIZE", "MAX_NAME", "THUMBNAIL_AT", "THUMBNAIL_WIDTH", "Library", "Recording", "is_file", "safe_path"]
