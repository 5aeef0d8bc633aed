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

Lifetime: the reader closes when ``close()`` is called (its stream's ``aclose()``, or the
stop of its last track), when the loop that reads its tracks has closed, or when its tracks
are garbage-collected while it still runs (with a ResourceWarning). Its thread closes the
container and exits; ``wait_closed()`` awaits that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .._errors import AsyncrecError, InvalidStateError, NotFoundError, NotReadableError
from ._sync import Pacer, Signal

logger = logging.getLogger(__name__)

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
        # Full, an append drops the oldest frame (live, or a track nobody reads); put()
        # counts it, and otherwise (not live) waits for room first.
        self.frames: deque[Any] = deque(maxlen=QUEUE_LIMITS[kind])
        self.cond = threading.Condition(threading.Lock())
        self.loop: asyncio.AbstractEventLoop | None = None  # the consumer's, set by get()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False  # the track was stopped: frames are discarded
        self.ended = False  # the input ended or failed
        self.dropped = 0

    # reader thread
    def full(self) -> bool:
        return len(self.frames) == self.frames.maxlen

    def put(self, frame: Any, should_stop: Callable[[], bool]) -> None:
        with self.cond:
            if self.closed:
                return
            if self.full() and not self.live:
                # Waits in short steps: a stop, an abandoned track or a closed loop only
                # set flags (no notify), and must end this wait promptly too.
                while self.full() and not self.closed and not should_stop():
                    if not self.consumed and self.reading.for_longer_than(UNREAD_GRACE):
                        # Nobody reads this track (an audio-only recording of a video
                        # file): drop its oldest frame rather than stall the others.
                        break
                    self.cond.wait(0.1)
                if self.closed or should_stop():
                    return
            if self.full():
                self.dropped += 1  # the append drops the oldest frame
            self.frames.append(frame)
            wake = self.waiter is not None
        if wake:
            self._call(self._wake)

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()
        self._call(self._wake)

    def consumer_gone(self) -> bool:
        """True once the loop that read this track is closed: nobody will read it again."""
        loop = self.loop
        return loop is not None and loop.is_closed()

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
        # Set at every get, not only when waiting: a consumer that always finds frames ready
        # must still be seen gone when its loop closes (consumer_gone).
        self.loop = asyncio.get_running_loop()
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
                self.waiter = self.loop.create_future()
                waiter = self.waiter
            await waiter

    # any thread
    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.frames.clear()
            self.cond.notify_all()
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake()
        else:  # the waiter belongs to the loop: resolve it there
            self._call(self._wake)

    def abandon(self) -> None:
        """Close without taking the lock: for a finalizer, which may run on a thread that
        holds it (the garbage collector runs wherever it is triggered). The reader thread
        sees the flag within one wait step; the frames go with the queue."""
        self.closed = True


class SourceTrack(MediaStreamTrack):
    """A track fed by a :class:`MediaReader` (a device, a fake device or a media file).

    ``label`` names the device or file. ``live`` is True for devices and real-time
    files. ``stop()`` ends the track; when every track of an input has stopped (or been
    garbage-collected), the input is closed and the device released.
    """

    def __init__(self, reader: MediaReader, kind: str, queue: _Queue) -> None:
        super().__init__()
        self.kind = kind
        self._reader = reader
        self._queue = queue
        self.label = reader.spec.label
        self.live = queue.live
        #: The tracks of one input share a time origin, so a file's offsets between its
        #: tracks are kept at any reading pace.
        self.clock_domain = reader.clock_domain
        #: The input's constant frame rate (video), declared in recordings.
        self.frame_rate = reader.frame_rate if kind == "video" else None
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

    Use :meth:`open` (a coroutine: the input is opened on the thread) to get the tracks,
    :meth:`close` then :meth:`wait_closed` to release the input. The reader holds its
    tracks weakly (the thread keeps the reader alive, not them), so that tracks nobody
    holds any more release the input.
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
        # Set instead of _stopping by a finalizer, which must not take locks (see _Queue.abandon).
        self._abandoned = False
        # An input that is not live waits for its first reader: nothing read before the
        # recorder starts is lost (a live device is read at once and drops when unread).
        self._reading = _Reading()
        self._thread = threading.Thread(target=self._run, name="asyncrec-source", daemon=True)
        self._started = False
        self._queues: dict[int, _Queue] = {}
        self._opened = Signal()  # the input is open, or failed to open
        self._exited = Signal()  # the container is closed and the thread is leaving
        self._open_error: AsyncrecError | None = None
        self._track_refs: list[weakref.ref[SourceTrack]] = []
        #: Per kind: what the input really gives (width, height, rate, channels).
        self.stream_info: dict[str, dict[str, int]] = {}
        #: The video stream's declared frame rate, if it has a constant one.
        self.frame_rate: Fraction | None = None
        #: The tracks of one input share a time origin (see asyncrec._clock).
        self.clock_domain = object()
        self._container: Any = None

    @property
    def name(self) -> str:
        return self.spec.label or self.spec.url

    @property
    def tracks(self) -> list[SourceTrack]:
        """The tracks of the input that still exist (made by :meth:`open`)."""
        return [track for ref in self._track_refs if (track := ref()) is not None]

    @property
    def closed(self) -> bool:
        """True once the reader was told to close (its thread may still be ending)."""
        return self._stopping.is_set() or self._abandoned

    async def open(self) -> list[SourceTrack]:
        """Open the input (on its thread) and return one track per kind it has.

        Raises:
            NotFoundError: the device or file does not exist.
            NotReadableError: it exists but cannot be opened or has none of the kinds.
            InvalidStateError: the reader was closed before it was opened.
        Cancelling the wait closes the input.
        """
        self._start()
        try:
            await self._opened.wait()
        except BaseException:  # cancelled: close the input, and the cancellation goes on
            self.close()
            raise
        return self._result()

    def open_blocking(self, timeout: float | None = None) -> list[SourceTrack]:
        """Like :meth:`open`, for a caller that is not on an event loop (or accepts
        waiting on it). Raises TimeoutError when the input takes longer than ``timeout``."""
        self._start()
        if not self._opened.wait_blocking(timeout):
            self.close()
            raise TimeoutError(f"opening {self.name} took more than {timeout} s")
        return self._result()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.closed:  # never open a device only to close it
            self._open_error = InvalidStateError(f"{self.name} was closed before it was opened")
            self._opened.set()
            self._exited.set()
            return
        self._thread.start()

    def _result(self) -> list[SourceTrack]:
        if self._open_error is not None:
            raise self._open_error
        if self._track_refs:
            return self.tracks
        tracks = [SourceTrack(self, q.kind, q) for q in self._queues.values()]
        for track in tracks:
            # A track dropped while live is stopped by the garbage collector. Not at exit:
            # the daemon thread dies with the interpreter anyway.
            weakref.finalize(track, self._track_collected, track._queue).atexit = False
        self._track_refs = [weakref.ref(track) for track in tracks]
        return tracks

    def close(self) -> None:
        """Stop reading and release the input (on its thread). Idempotent, never blocks,
        callable from any thread."""
        self._stopping.set()
        self._reading.mark()
        for queue in list(self._queues.values()):
            queue.close()

    async def wait_closed(self) -> None:
        """Wait, without blocking the loop, until the thread has closed the input and exited
        (at once if it never started). Does not close it: call :meth:`close` first.

        Cancellation only stops this wait; the thread goes on to its end.
        """
        if not self._started:
            return
        await self._exited.wait()
        # _exited is set as the thread's last act; what remains is the threading module's
        # bookkeeping (microseconds, no event to await), so poll rather than block in join().
        while self._thread.is_alive():  # noqa: ASYNC110
            await asyncio.sleep(0.001)

    def _track_stopped(self) -> None:
        if all(t.readyState == "ended" for t in self.tracks):
            self.close()

    def _track_collected(self, queue: _Queue) -> None:
        """Finalizer of a track: it runs wherever the garbage collector does, maybe on the
        reader thread inside one of its locks, so it only sets flags (no lock, no notify);
        the thread sees them within one wait step."""
        queue.abandon()
        if self.closed or self._exited.is_set() or any(t.readyState == "live" for t in self.tracks):
            return  # already released, ended by itself, or another track still reads it
        self._abandoned = True
        warnings.warn(
            f"asyncrec source {self.name!r} was dropped without aclose() or stop(); closing it",
            ResourceWarning,
            stacklevel=1,
        )

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._open_input():
                self._read_all()
        except Exception:  # a bug or a failing device: the tracks end, the recorder goes on
            logger.warning("input %s failed", self.name, exc_info=True)
        finally:
            for queue in self._queues.values():
                queue.end()
            # Closed here, on the thread that used it (FFmpeg contexts are not thread-safe).
            with contextlib.suppress(Exception):
                if self._container is not None:
                    self._container.close()
            self._container = None
            self._exited.set()

    def _open_input(self) -> bool:
        """Open on the thread; True when it can be read. Every failure becomes the error
        that open() raises, so open() never waits for nothing."""
        try:
            if self.closed:
                raise InvalidStateError(f"{self.name} was closed before it was opened")
            self._open_on_thread()
        except AsyncrecError as exc:
            self._open_error = exc
        except Exception as exc:
            logger.warning("opening %s failed", self.name, exc_info=True)
            self._open_error = NotReadableError(f"cannot open {self.name}: {exc}")
        finally:
            self._opened.set()
        return self._open_error is None

    def _open_on_thread(self) -> None:
        # A file is named by the path it was given (errors must say which file); a
        # device or lavfi graph by its label.
        name = self.spec.url if self.spec.format is None else self.name
        try:
            self._container = av.open(self.spec.url, format=self.spec.format, options=self.spec.options or {})
        except FileNotFoundError as exc:
            raise NotFoundError(f"{name}: {exc.strerror or exc}") from exc
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise NotReadableError(f"{name}: {getattr(exc, 'strerror', None) or exc}") from exc
        for kind in self._kinds:
            streams = [s for s in self._container.streams if s.type == kind]
            if streams:
                stream = streams[0]
                stream.thread_type = "AUTO"
                self._queues[stream.index] = _Queue(kind, self._live, self._reading)
                ctx = stream.codec_context
                if kind == "video":
                    self.stream_info[kind] = {"width": ctx.width, "height": ctx.height}
                    # Declared only when constant: average and base rates agree.
                    rate = stream.average_rate
                    if rate and rate == stream.base_rate:
                        self.frame_rate = Fraction(rate)
                else:
                    self.stream_info[kind] = {"rate": ctx.sample_rate, "channels": ctx.channels}
        if not self._queues:
            raise NotReadableError(f"{name} has no {' or '.join(self._kinds)}")

    def _consumer_gone(self) -> bool:
        """True once the loop that reads the tracks is closed: nobody will read again."""
        return any(q.consumer_gone() for q in self._queues.values())

    def _should_stop(self) -> bool:
        return self._stopping.is_set() or self._abandoned or self._consumer_gone()

    def _read_all(self) -> None:
        if not self._live:
            while not self._reading.event.wait(0.25):
                if self._should_stop():
                    return
        container = self._container
        streams = [s for s in container.streams if s.index in self._queues]
        pacer = Pacer() if self._realtime else None
        offset = 0.0  # media time added to each pass when looping
        while not self._should_stop():
            last = 0.0
            for packet in container.demux(streams):
                if self._should_stop():
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
                            pacer.wait_blocking(at, self._stopping)
                    queue.put(frame, self._should_stop)
            if not self._loop_media:
                return
            offset += last + 0.04  # one frame after the last, so time keeps increasing
            container.seek(0)
