"""MediaReader: demuxes and decodes one input (a device, a lavfi graph, a file) on its own
thread, and SourceTrack, the aiortc track that hands its frames to the loop.

Devices, fake devices and media files all come through here, so a fake device behaves
exactly like a real one. Opening, reading, decoding, pacing and closing happen on the
reader's thread; the loop only takes frames out of a bounded queue. The thread wakes a
waiting track with one ``call_soon_threadsafe``, never one per frame while the track is
busy.

Overflow, per track: a live input (device, real-time file) drops its oldest frames when
nobody takes them (nothing reads a device's past); an input that is not live (a file read
as fast as possible) waits for room, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .._errors import AsyncrecError, NotFoundError, NotReadableError

logger = logging.getLogger("asyncrec")

#: Frames a track may have waiting: about 1 s of video, 2 s of audio.
QUEUE_LIMITS = {"video": 30, "audio": 100}
#: A track that is not live and not read for this long, while others are, is not waited for (s).
UNREAD_GRACE = 1.0


@dataclass(frozen=True)
class InputSpec:
    """What to open: ``av.open(url, format=format, options=options)``."""

    url: str
    format: str | None = None
    options: dict[str, str] | None = None
    #: Shown as the tracks' label.
    label: str = ""


class _Reading:
    """When the first track of an input was first read."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.since = 0.0

    def mark(self) -> None:
        if not self.event.is_set():
            self.since = time.monotonic()
            self.event.set()

    def for_longer_than(self, seconds: float) -> bool:
        return self.event.is_set() and time.monotonic() - self.since > seconds


class _Queue:
    """One track's frames, filled by the reader thread, emptied on the loop."""

    def __init__(self, kind: str, live: bool, reading: _Reading) -> None:
        self.kind = kind
        self.live = live
        self.reading = reading  # marked at the first get() of any track of the input
        self.consumed = False  # this track has been read
        self.limit = QUEUE_LIMITS[kind]
        self.frames: deque[Any] = deque()
        self.cond = threading.Condition(threading.Lock())
        self.loop: asyncio.AbstractEventLoop | None = None  # the consumer's, set by get()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False  # the track was stopped: frames are discarded
        self.ended = False  # the input ended or failed
        self.dropped = 0

    # reader thread
    def put(self, frame: Any, stopping: threading.Event) -> None:
        with self.cond:
            if self.closed:
                return
            if len(self.frames) >= self.limit:
                if self.live:
                    self.frames.popleft()
                    self.dropped += 1
                else:
                    while len(self.frames) >= self.limit and not self.closed and not stopping.is_set():
                        if not self.consumed and self.reading.for_longer_than(UNREAD_GRACE):
                            # Nobody reads this track (an audio-only recording of a video
                            # file): drop its oldest frame rather than stall the others.
                            self.frames.popleft()
                            self.dropped += 1
                            break
                        self.cond.wait(0.1)
                    if self.closed or stopping.is_set():
                        return
            self.frames.append(frame)
            wake = self.waiter is not None
        if wake:
            self._call(self._wake)

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()
        self._call(self._wake)

    def _call(self, callback: Callable[[], None]) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self.loop.call_soon_threadsafe(callback)

    # loop
    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        if not self.consumed:
            self.consumed = True
            self.reading.mark()
        while True:
            with self.cond:
                if self.frames:
                    frame = self.frames.popleft()
                    self.cond.notify_all()  # room for a reader waiting on a full queue
                    return frame
                if self.ended or self.closed:
                    raise MediaStreamError
                self.loop = asyncio.get_running_loop()
                self.waiter = self.loop.create_future()
                waiter = self.waiter
            await waiter

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.frames.clear()
            self.cond.notify_all()
        self._wake()


class SourceTrack(MediaStreamTrack):
    """A track fed by a :class:`MediaReader` (a device, a fake device or a media file).

    ``label`` names the device or file. ``live`` is True for devices and real-time
    files. ``stop()`` ends the track; when every track of an input has stopped, the input
    is closed and the device released.
    """

    def __init__(self, reader: MediaReader, kind: str, queue: _Queue) -> None:
        super().__init__()
        self.kind = kind
        self._reader = reader
        self._queue = queue
        self.label = reader.spec.label
        self.live = queue.live
        #: Set to False to record black frames or silence in its place (the spec's
        #: "not enabled"); the recorder honours it for any track.
        self.enabled = True

    @property
    def frames_dropped(self) -> int:
        """Frames the input dropped because nobody took them in time."""
        return self._queue.dropped

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        """The next frame. Raises MediaStreamError once the track or its input has ended."""
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame: av.VideoFrame | av.AudioFrame = await self._queue.get()
        except MediaStreamError:
            self.stop()
            raise
        return frame

    def stop(self) -> None:
        """End the track; the input is closed once all its tracks have stopped."""
        if self.readyState == "live":
            super().stop()
            self._queue.close()
            self._reader._track_stopped()


class MediaReader:
    """Reads one input on its own thread (see the module docstring).

    Use :meth:`open` (a coroutine: the input is opened on the thread) to get the tracks.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        live: bool,
        realtime: bool = False,
        loop_media: bool = False,
        kinds: tuple[str, ...] = ("video", "audio"),
    ) -> None:
        self.spec = spec
        self._live = live
        self._realtime = realtime
        self._loop_media = loop_media
        self._kinds = kinds
        self._stopping = threading.Event()
        # An input that is not live waits for its first reader: nothing read before the
        # recorder starts is lost (a live device is read at once and drops when unread).
        self._reading = _Reading()
        self._thread = threading.Thread(target=self._run, name="asyncrec-source", daemon=True)
        self._queues: dict[int, _Queue] = {}
        self._open_done = threading.Event()
        self._open_error: AsyncrecError | None = None
        self._notify: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.tracks: list[SourceTrack] = []
        #: Per kind: what the input really gives (width, height, rate, channels).
        self.stream_info: dict[str, dict[str, int]] = {}
        self._container: Any = None

    async def open(self) -> list[SourceTrack]:
        """Open the input (on its thread) and return one track per kind it has.

        Raises:
            NotFoundError: the device or file does not exist.
            NotReadableError: it exists but cannot be opened or has none of the kinds.
        Cancelling the wait closes the input.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._notify = (loop, done)
        self._thread.start()
        try:
            await asyncio.shield(done)
        except BaseException:  # cancelled: close the input, and the cancellation goes on
            self.close()
            raise
        return self._result()

    def open_blocking(self, timeout: float | None = None) -> list[SourceTrack]:
        """Like :meth:`open`, for a caller that is not on an event loop (or accepts
        waiting on it). Raises TimeoutError when the input takes longer than ``timeout``."""
        if not self._thread.is_alive() and not self._open_done.is_set():
            self._thread.start()
        if not self._open_done.wait(timeout):
            self.close()
            raise TimeoutError(f"opening {self.spec.label or self.spec.url} took more than {timeout} s")
        return self._result()

    def _result(self) -> list[SourceTrack]:
        if self._open_error is not None:
            raise self._open_error
        if not self.tracks:
            self.tracks = [SourceTrack(self, q.kind, q) for q in self._queues.values()]
        return self.tracks

    def close(self) -> None:
        """Stop reading and release the input (on its thread). Idempotent, never blocks."""
        self._stopping.set()
        self._reading.mark()
        for queue in self._queues.values():
            queue.close()

    def _track_stopped(self) -> None:
        if all(t.readyState == "ended" for t in self.tracks):
            self.close()

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._open_on_thread()
        except AsyncrecError as exc:
            self._open_error = exc
            self._opened()
            return
        self._opened()
        try:
            self._read_all()
        except Exception:  # a bug or a failing device: the tracks end, the recorder goes on
            logger.warning("input %s failed", self.spec.label or self.spec.url, exc_info=True)
        finally:
            for queue in self._queues.values():
                queue.end()
            with contextlib.suppress(Exception):
                self._container.close()

    def _opened(self) -> None:
        self._open_done.set()
        if self._notify is not None:
            loop, done = self._notify

            def resolve() -> None:
                if not done.done():
                    done.set_result(None)

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve)

    def _open_on_thread(self) -> None:
        name = self.spec.label or self.spec.url
        try:
            self._container = av.open(self.spec.url, format=self.spec.format, options=self.spec.options or {})
        except FileNotFoundError as exc:
            raise NotFoundError(f"{name}: {exc.strerror or exc}") from exc
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise NotReadableError(f"cannot open {name}: {exc}") from exc
        for kind in self._kinds:
            streams = [s for s in self._container.streams if s.type == kind]
            if streams:
                stream = streams[0]
                stream.thread_type = "AUTO"
                self._queues[stream.index] = _Queue(kind, self._live, self._reading)
                ctx = stream.codec_context
                if kind == "video":
                    self.stream_info[kind] = {"width": ctx.width, "height": ctx.height}
                else:
                    self.stream_info[kind] = {"rate": ctx.sample_rate, "channels": ctx.channels}
        if not self._queues:
            self._container.close()
            raise NotReadableError(f"{name} has no {' or '.join(self._kinds)}")

    def _consumer_gone(self) -> bool:
        """True once the loop that reads the tracks is closed: nobody will read again."""
        return any(q.loop is not None and q.loop.is_closed() for q in self._queues.values())

    def _read_all(self) -> None:
        if not self._live:
            while not self._reading.event.wait(0.25):
                if self._stopping.is_set():
                    return
        container = self._container
        streams = [s for s in container.streams if s.index in self._queues]
        pacer = _Pacer(self._stopping) if self._realtime else None
        offset = 0.0  # media time added to each pass when looping
        while not self._stopping.is_set():
            last = 0.0
            for packet in container.demux(streams):
                if self._stopping.is_set() or self._consumer_gone():
                    return
                queue = self._queues[packet.stream.index]
                for frame in packet.decode():
                    at = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                    if at is not None:
                        last = max(last, at)
                        if offset:
                            frame.pts += round(offset / frame.time_base)
                            at += offset
                        if pacer is not None:
                            pacer.wait_until(at)
                    queue.put(frame, self._stopping)
            if not self._loop_media:
                return
            offset += last + 0.04  # one frame after the last, so time keeps increasing
            container.seek(0)


class _Pacer:
    """Waits on the reader thread until a media time is due (real-time files)."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._start: float | None = None
        self._first: float | None = None

    def wait_until(self, at: float) -> None:
        now = time.monotonic()
        if self._start is None or self._first is None:
            self._start, self._first = now, at
            return
        delay = self._start + (at - self._first) - now
        if delay > 0:
            self._stopping.wait(delay)  # interruptible, unlike a sleep
