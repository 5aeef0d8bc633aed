"""The bounded hand-off between a recording's track inputs (event loop) and its worker thread.

Bounds are in bytes of frame data, per track. Overflow policy:

* video of a source running at real time: the oldest queued frame of that track that may
  be dropped is dropped (and counted) to make room, so latency and memory stay bounded
  when the encoder falls behind;
* audio, and video of sources that are not at real time (faster, slower, or without
  timestamps): the input waits for room, which holds the source back; nothing is dropped.
  Live audio cannot be held back (it would pile up unbounded in the source, e.g. aiortc's
  receive queue): when its bound is reached (the encoder ~40 s behind), the recording
  fails with ``QuotaExceededError`` and everything received so far is recorded.

Tracks also stay together in media time: a frame that is not real time waits while it is
more than ``MEDIA_LEAD`` ahead of another track that has started and not ended (for at
most ``LEAD_PATIENCE`` of wall time, so a track that stalls never stops the others).
Otherwise a generated or file source races ahead by megabytes of audio, the muxer's
interleaving gives way, and clusters hold blocks out of time order, which Chromium's
``MediaSource`` refuses.

Control messages (cut, pause, resume, stop) are never refused and keep their place in the
order. The worker takes everything queued at once, so each wake-up is one lock round and
at most one ``call_soon_threadsafe`` back to the loop.

Frames to copy are taken in batches (:meth:`HandOff.batch`): while they flow, such a frame
does not wake the worker; the worker looks every ``BATCH_WINDOW`` and takes what has
gathered. Copying a frame costs the worker little, so a wake-up per frame (tens per second
per recording, hundreds of threads) is mostly a fight for the GIL with the event loop;
measured with 25 copied WebRTC publishers, the server's CPU went from 0.91 to 0.75 cores.
Frames to encode still wake the worker at once: their encoding (milliseconds) dwarfs the
wake-up, and encoding them as they come keeps a chunk's latency (encoding a batch at the
cut measured 132 ms p99 for a 100 ms timeslice). So do the first frame after a quiet
spell, a control message, and a track half way to its bound; and the worker cuts a chunk
only after taking what is queued, so no frame misses the chunk it arrived in time for.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av

from ._encoded import EncodedFrame

#: Per track, bytes of video frames waiting for the worker (about 11 frames of 720p),
#: and at most this many frames whatever their size (latency).
VIDEO_QUEUE_BYTES = 16 * 1024 * 1024
VIDEO_QUEUE_FRAMES = 8
#: Per track, bytes of audio waiting for the worker (about 40 s of 48 kHz stereo s16).
AUDIO_QUEUE_BYTES = 8 * 1024 * 1024
#: How far (s of media) a track that is not real time may run ahead of the others; well
#: inside the muxer's max_interleave_delta.
MEDIA_LEAD = 0.2
#: The longest a frame waits for a lagging track (s of wall time).
LEAD_PATIENCE = 0.5
#: While frames flow, how often a batching worker takes them (s).
BATCH_WINDOW = 0.02


@dataclass(slots=True)
class FrameItem:
    """A frame and its place on the recording's clock."""

    track: int
    #: A decoded frame, or an encoded one to copy.
    frame: av.VideoFrame | av.AudioFrame | EncodedFrame
    #: Media time (s) on the recording's clock.
    time: float
    #: When it arrived (monotonic s): the worker drops real-time video gone stale.
    arrival: float
    nbytes: int
    #: Its source runs at real time (the worker then also cuts chunks by the wall clock).
    realtime: bool
    #: Real-time video: may be dropped when the encoder falls behind.
    droppable: bool
    #: Record black or silence in its place (the track is not enabled).
    blank: bool = False


@dataclass(frozen=True, slots=True)
class Cut:
    """requestData(): deliver everything gathered so far, answering ``request``."""

    request: int


@dataclass(frozen=True, slots=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish the recording. ``video_end``: where the video ends on the recording's clock
    (s), so audio that went quiet before it is padded up to it; None without video."""

    video_end: float | None


Control = Cut | Pause | Resume | Stop
Item = FrameItem | Control


class HandOff:
    """A thread-safe queue bounded in bytes per track (see the module docstring)."""

    def __init__(self, kinds: list[str], loop: asyncio.AbstractEventLoop) -> None:
        self._kinds = list(kinds)
        self._limits = [VIDEO_QUEUE_BYTES if kind == "video" else AUDIO_QUEUE_BYTES for kind in kinds]
        self._max_frames = [VIDEO_QUEUE_FRAMES if kind == "video" else 0 for kind in kinds]
        self._bytes = [0] * len(kinds)
        self._frames = [0] * len(kinds)
        self._items: deque[Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._loop = loop
        self._room: list[asyncio.Future[None]] = []
        self._room_wanted = False
        self._closed = False
        # Media-time gate (loop side only): each track's latest time, whether it ended,
        # since when it waits for a lagging track, and who waits.
        self._front: list[float | None] = [None] * len(kinds)
        self._ended = [False] * len(kinds)
        self._gated_since: list[float | None] = [None] * len(kinds)
        self._gated: list[asyncio.Future[None]] = []
        # Batching (worker side sets it): how long the worker lets frames gather, and
        # whether its last look found none (then the next frame wakes it).
        self._window = 0.0
        self._quiet = True

    def batch(self, window: float = BATCH_WINDOW) -> None:
        """Let frames to copy gather up to ``window`` seconds while they flow (see the
        module docstring); 0: every frame wakes the worker."""
        with self._cond:
            self._window = window

    # -- event loop side ------------------------------------------------------------------
    def depth(self) -> int:
        """Items waiting for the worker."""
        return len(self._items)

    def queued_bytes(self) -> int:
        """Bytes of frames waiting for the worker."""
        return sum(self._bytes)

    def _full(self, track: int, nbytes: int) -> bool:
        if self._closed or self._frames[track] == 0:
            return False  # one frame always fits, whatever its size
        limit = self._max_frames[track]
        return self._bytes[track] + nbytes > self._limits[track] or (limit > 0 and self._frames[track] >= limit)

    def _ahead(self, item: FrameItem) -> bool:
        if item.realtime or self._closed:
            return False
        since = self._gated_since[item.track]
        if since is not None and time.monotonic() - since >= LEAD_PATIENCE:
            return False
        return any(
            front is not None and not ended and item.time > front + MEDIA_LEAD
            for n, (front, ended) in enumerate(zip(self._front, self._ended, strict=True))
            if n != item.track
        )

    def bytes_only(self, track: int, on: bool = True) -> None:
        """Bound ``track`` by bytes alone (copied video: its frames are small, and one
        that does not fit breaks the stream until the next key frame), or again by
        frames too."""
        with self._cond:
            self._max_frames[track] = 0 if on or self._kinds[track] != "video" else VIDEO_QUEUE_FRAMES

    def track_ended(self, track: int) -> None:
        """``track`` sends no more: nobody waits for it."""
        self._ended[track] = True
        self._wake_gated()

    def offer(self, item: FrameItem) -> int:
        """Queue ``item``, dropping the oldest droppable frames of its track while full;
        returns how many were dropped. Never waits."""
        dropped = 0
        with self._cond:
            while self._full(item.track, item.nbytes):
                oldest = next(
                    (q for q in self._items if isinstance(q, FrameItem) and q.track == item.track and q.droppable),
                    None,
                )
                if oldest is None:
                    break  # only frames that must not be dropped: the bound gives way
                self._items.remove(oldest)
                self._account(oldest, -1)
                dropped += 1
            self._append(item)
        return dropped

    def overflowing(self, item: FrameItem) -> bool:
        """Whether ``item``'s track has no room for it (its bound would be exceeded)."""
        with self._cond:
            return not self._closed and self._full(item.track, item.nbytes)

    def room(self, item: FrameItem) -> asyncio.Future[None] | None:
        """Queue ``item`` if its track has room and return None; else return a future
        that completes when the worker has taken items (then offer it again)."""
        if self._ahead(item):
            if self._gated_since[item.track] is None:
                self._gated_since[item.track] = time.monotonic()
                self._loop.call_later(LEAD_PATIENCE, self._wake_gated)
            waiter = self._loop.create_future()
            self._gated.append(waiter)
            return waiter
        self._gated_since[item.track] = None
        with self._cond:
            if not self._full(item.track, item.nbytes):
                self._append(item)
                return None
            waiter = self._loop.create_future()
            self._room.append(waiter)
            self._room_wanted = True
            return waiter

    def control(self, message: Control) -> None:
        """Queue a message for the worker; never refused, never blocks."""
        with self._cond:
            self._items.append(message)
            self._cond.notify()

    def close(self) -> None:
        """Stop bounding (the recording is ending: everything received gets in); wake
        every waiting input."""
        with self._cond:
            self._closed = True
        self._wake_room()
        self._wake_gated()

    def _append(self, item: FrameItem) -> None:
        self._items.append(item)
        self._account(item, 1)
        if not self._window or self._quiet or not isinstance(item.frame, EncodedFrame) or self._half_full(item.track):
            self._cond.notify()
        front = self._front[item.track]
        if front is None or item.time > front:
            self._front[item.track] = item.time
            if self._gated:
                # Called on the loop (offer, room): a lagging track moved, so retry.
                self._loop.call_soon(self._wake_gated)

    def _half_full(self, track: int) -> bool:
        limit = self._max_frames[track]
        return self._bytes[track] * 2 >= self._limits[track] or (limit > 0 and self._frames[track] * 2 >= limit)

    def _wake_gated(self) -> None:
        waiters, self._gated = self._gated, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _account(self, item: FrameItem, sign: int) -> None:
        self._bytes[item.track] += sign * item.nbytes
        self._frames[item.track] += sign

    def _wake_room(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- worker side ----------------------------------------------------------------------
    def take(self, timeout: float | None) -> list[Item]:
        """Wait up to ``timeout`` seconds (None: forever) for items and take them all.
        Batching while frames flow, it looks again after ``window`` at the latest."""
        with self._cond:
            if not self._items:
                if self._window and not self._quiet:
                    # Frames to copy were flowing: the next ones come without a wake-up.
                    timeout = self._window if timeout is None else min(timeout, self._window)
                if timeout is None:
                    self._cond.wait()
                elif timeout > 0:
                    self._cond.wait(timeout)
            self._quiet = not any(
                isinstance(item, FrameItem) and isinstance(item.frame, EncodedFrame) for item in self._items
            )
            items = list(self._items)
            self._items.clear()
            self._bytes = [0] * len(self._bytes)
            self._frames = [0] * len(self._frames)
            wake = self._room_wanted
            self._room_wanted = False
        if wake:
            self._call_loop(self._wake_room)
        return items

    def _call_loop(self, callback: Callable[[], None]) -> None:
        # A closed loop has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)


def monotonic() -> float:
    """The clock of the recording (seconds); the same on the loop and the worker."""
    return time.monotonic()
