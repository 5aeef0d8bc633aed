"""Fan-out of tracks: each track is read once, and every consumer gets every frame.

However many recorders (and other asyncrec consumers) record a track, one reader task
calls its ``recv()``; each consumer has its own bounded queue and overflow policy, as
GStreamer's ``tee`` with one ``queue`` per branch. aiortc's ``MediaRelay`` is what this
is not: it hands the same frame to every subscriber through unbounded queues. Frames are
handed on as they are: consumers treat them as read-only.

Backpressure: a consumer that must not drop a frame (audio, a source faster than real
time) makes the reader wait for room, which holds back the source for every consumer (a
file read as fast as the slowest recorder takes it). A real-time source is never held
back by a slow consumer: that consumer drops its own stale video, counted.

The reader ends on ``MediaStreamError`` (the track ended), on any exception from
``recv()`` (logged: a faulty track ends for its consumers, the recordings go on), and on
a ``CancelledError`` that ``recv()`` raises while the reader was not cancelled (an
aiortc inner future cancelled by its owner): that is the track failing, not the reader
being stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError

from ._clock import Pace
from ._stream import Track

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One frame as the reader got it, with what it judged of it."""

    #: The frame (an ``av.VideoFrame``/``av.AudioFrame``; anything else if ``valid`` is False).
    frame: object
    #: When ``recv()`` returned it (monotonic seconds).
    arrival: float
    #: The frame's own timestamp in seconds, or None.
    source_time: float | None
    #: Whether its source runs at real time (see :class:`~asyncrec._clock.Pace`).
    realtime: bool
    #: Bytes of picture or sample data it holds (the unit of every queue bound).
    nbytes: int
    #: Whether it is the frame type the track's kind calls for.
    valid: bool
    #: Seconds the reader had held the source back before this frame (all consumers).
    held: float = 0.0


class Consumer(Protocol):
    """What a fan-out hands frames to (a recording's track input)."""

    def push(self, arrival: Arrival) -> Awaitable[None] | None:
        """Take ``arrival``; return an awaitable to make the reader wait for room
        (backpressure), None when it was taken (or dropped by the consumer's policy)."""

    def end(self, failed: bool) -> None:
        """The track has ended (``failed``: its ``recv()`` raised, or the reader was
        cancelled from outside); no frame follows."""


def frame_bytes(frame: av.VideoFrame | av.AudioFrame) -> int:
    """The bytes of data a frame holds."""
    return sum(plane.buffer_size for plane in frame.planes)


def source_time(frame: av.VideoFrame | av.AudioFrame) -> float | None:
    """A frame's own timestamp in seconds, or None."""
    if frame.pts is None or not frame.time_base:
        return None
    return float(frame.pts * frame.time_base)


class TrackFanout:
    """Reads one track for every consumer of it (see the module docstring).

    Get one with :func:`fanout`; consumers :meth:`subscribe` and :meth:`unsubscribe`.
    Reading starts with the first consumer and stops soon after the last has left.
    """

    def __init__(self, track: Track, loop: asyncio.AbstractEventLoop, table: dict[int, TrackFanout]) -> None:
        self.track = track
        self._loop = loop
        self._table = table
        self._consumers: list[Consumer] = []
        self._task: asyncio.Task[None] | None = None
        self._pace = Pace()
        self._expected: type = av.VideoFrame if track.kind == "video" else av.AudioFrame
        #: True once the track has ended: new consumers are told at once.
        self.ended = False
        self.frames_read = 0

    @property
    def consumers(self) -> int:
        return len(self._consumers)

    def subscribe(self, consumer: Consumer) -> None:
        """Hand every frame read from now on to ``consumer`` too."""
        if self.ended:
            self._loop.call_soon(consumer.end, False)
            return
        self._consumers.append(consumer)
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._read(), name=f"asyncrec-fanout-{self.track.kind}")

    def unsubscribe(self, consumer: Consumer) -> None:
        """Stop handing frames to ``consumer``; reading stops once nobody is left (checked
        on the next loop turn, so a recording that stops and one that starts in the same
        turn share the reader without a gap)."""
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        if not self._consumers:
            self._loop.call_soon(self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        if self._consumers:
            return
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._table.get(id(self.track)) is self:
            del self._table[id(self.track)]

    async def _read(self) -> None:
        failed = False
        try:
            while self._consumers and getattr(self.track, "readyState", "live") != "ended":
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the reader itself is being stopped
                    logger.warning("track %s (%s): recv() raised CancelledError; the track ends", *self._names())
                    failed = True
                    break
                except (KeyboardInterrupt, SystemExit):
                    failed = True
                    raise
                except BaseException:
                    logger.warning("track %s (%s) failed; it ends", *self._names(), exc_info=True)
                    failed = True
                    break
                await self._hand_out(frame)
                # recv() of a source with frames always ready never suspends: let others run.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            if self._consumers:
                failed = True  # cancelled from outside (the loop is shutting down)
            raise
        finally:
            self._finish(failed)

    async def _hand_out(self, frame: object) -> None:
        arrival = time.monotonic()
        self.frames_read += 1
        if isinstance(frame, self._expected):
            assert isinstance(frame, av.VideoFrame | av.AudioFrame)
            when = source_time(frame)
            realtime = self._pace.realtime(when, arrival)
            item = Arrival(frame, arrival, when, realtime, frame_bytes(frame), True, self._pace.held)
        else:
            item = Arrival(frame, arrival, None, False, 0, False)
        for consumer in tuple(self._consumers):
            while consumer in self._consumers:
                wait = consumer.push(item)
                if wait is None:
                    break
                started = time.monotonic()
                try:
                    await wait
                finally:
                    self._pace.held += time.monotonic() - started

    def _finish(self, failed: bool) -> None:
        if self._task is asyncio.current_task():
            self._task = None
        if self._consumers:
            # The loop above only leaves with consumers when the track is over.
            self.ended = True
            consumers, self._consumers = self._consumers, []
            for consumer in consumers:
                consumer.end(failed)
            if self._table.get(id(self.track)) is self:
                del self._table[id(self.track)]

    def _names(self) -> tuple[str, str]:
        return str(getattr(self.track, "id", "?")), str(getattr(self.track, "kind", "?"))


_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, TrackFanout]] = weakref.WeakKeyDictionary()


def fanout(track: Track) -> TrackFanout:
    """The fan-out that reads ``track`` on the running loop (created on first use).

    Must be called with the loop running (RuntimeError otherwise).
    """
    loop = asyncio.get_running_loop()
    table = _tables.get(loop)
    if table is None:
        table = _tables[loop] = {}
    found = table.get(id(track))
    if found is None or found.track is not track:
        found = table[id(track)] = TrackFanout(track, loop, table)
    return found
