"""The bounded hand-off between the track readers (event loop) and a recording's worker thread.

Overflow policy, per track:

* live video: the oldest queued frame of that track is dropped (and counted) to make room,
  so latency and memory stay bounded when the encoder falls behind;
* audio, and video from sources that are not live: the reader waits for room, which
  slows the source down; nothing is dropped.

Control items (cut, pause, resume, stop) are never refused and keep their place in the
order. The worker takes everything queued at once, so each wake-up is one lock round and
at most one ``call_soon_threadsafe`` back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class FrameItem:
    """A frame and its time on the recording's clock (seconds)."""

    track: int
    frame: Any
    time: float
    #: Record black or silence in its place (the track is not enabled).
    blank: bool = False


@dataclass(slots=True)
class ControlItem:
    """A command for the worker: ``cut`` (with a request id), ``pause``, ``resume``, ``stop``."""

    command: str
    arg: int = 0


Item = FrameItem | ControlItem


class HandOff:
    """A thread-safe queue with a bound per track (see the module docstring)."""

    def __init__(self, capacities: list[int], loop: asyncio.AbstractEventLoop) -> None:
        self._capacities = capacities
        self._counts = [0] * len(capacities)
        self._items: deque[Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._loop = loop
        self._room: list[asyncio.Future[None]] = []
        self._room_wanted = False
        self._closed = False

    # -- event loop side ------------------------------------------------------------------
    def depth(self) -> int:
        """Items waiting for the worker."""
        return len(self._items)

    def offer(self, item: FrameItem) -> FrameItem | None:
        """Queue ``item``, dropping the oldest frame of its track if full; returns the dropped one."""
        dropped: FrameItem | None = None
        with self._cond:
            if self._counts[item.track] >= self._capacities[item.track]:
                for queued in self._items:
                    if isinstance(queued, FrameItem) and queued.track == item.track:
                        dropped = queued
                        break
                if dropped is not None:
                    self._items.remove(dropped)
                    self._counts[item.track] -= 1
            self._items.append(item)
            self._counts[item.track] += 1
            self._cond.notify()
        return dropped

    async def put(self, item: FrameItem) -> None:
        """Queue ``item``, waiting while its track's queue is full.

        Cancelling the wait leaves the queue as it was (the item is not queued).
        """
        while True:
            with self._cond:
                if self._closed or self._counts[item.track] < self._capacities[item.track]:
                    self._items.append(item)
                    self._counts[item.track] += 1
                    self._cond.notify()
                    return
                waiter = self._loop.create_future()
                self._room.append(waiter)
                self._room_wanted = True
            try:
                await waiter
            finally:
                if waiter in self._room:
                    self._room.remove(waiter)

    def control(self, command: str, arg: int = 0) -> None:
        """Queue a command for the worker; never refused, never blocks."""
        with self._cond:
            self._items.append(ControlItem(command, arg))
            self._cond.notify()

    def close(self) -> None:
        """Stop bounding (the worker is gone); wake every waiting reader."""
        with self._cond:
            self._closed = True
        self._wake_room()

    def _wake_room(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- worker side ----------------------------------------------------------------------
    def take(self, timeout: float | None) -> list[Item]:
        """Wait up to ``timeout`` seconds (None: forever) for items and take them all."""
        with self._cond:
            if not self._items:
                if timeout is None:
                    self._cond.wait()
                elif timeout > 0:
                    self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            self._counts = [0] * len(self._capacities)
            wake = self._room_wanted
            self._room_wanted = False
        if wake:
            self._call_loop(self._wake_room)
        return items

    def _call_loop(self, callback: Any) -> None:
        # A closed loop has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)


def monotonic() -> float:
    """The clock of the recording (seconds); the same on the loop and the worker."""
    return time.monotonic()
