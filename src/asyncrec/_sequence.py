"""The recordings of one recorder, dispatched strictly one after the other.

Each recording queues its own events in the order the spec gives them (see
:mod:`asyncrec._recording`); this moves the ready ones of the oldest recording to the
dispatcher, and the next recording's only once the oldest one's ``stop`` is queued, so two
recordings' events never interleave (``start(); stop(); start(); stop()`` gives the first
recording's events, final chunk and ``stop``, then the second's).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator

from ._events import BlobEvent, EventDispatcher
from ._recording import Recording


class RecordingSequence:
    """Recordings whose events are not all dispatched yet, oldest first."""

    def __init__(self, dispatcher: EventDispatcher, on_chunk: Callable[[Recording], None]) -> None:
        self._dispatcher = dispatcher
        self._on_chunk = on_chunk  # called after each chunk is queued (the backlog check)
        self._recordings: deque[Recording] = deque()
        self._last_queued: asyncio.Future[None] | None = None
        self._waiting = False
        self._pumping = False  # pump() is running: a nested call only asks it to go round again
        self._more = False

    def __bool__(self) -> bool:
        return bool(self._recordings)

    def __iter__(self) -> Iterator[Recording]:
        return iter(tuple(self._recordings))

    @property
    def head(self) -> Recording | None:
        """The recording whose events reach handlers now."""
        return self._recordings[0] if self._recordings else None

    @property
    def pending_events(self) -> int:
        return sum(len(r.slots) for r in self._recordings)

    def append(self, recording: Recording) -> None:
        self._recordings.append(recording)

    def pump(self) -> None:
        """Move every ready event to the dispatcher, in order."""
        if self._pumping:
            self._more = True  # e.g. an error queued while a chunk was being moved
            return
        self._pumping = True
        try:
            self._more = True
            while self._more:
                self._more = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        while self._recordings:
            head = self._recordings[0]
            while head.slots and head.slots[0].event is not None:
                slot = head.slots[0]
                assert slot.event is not None
                if slot.event.type == "stop" and self._last_queued is not None and not self._last_queued.done():
                    # Every event before "stop" is delivered first, so an error that a
                    # sink raises on the final chunk still comes before "stop".
                    if not self._waiting:
                        self._waiting = True
                        self._last_queued.add_done_callback(self._pump_again)
                    return
                head.slots.popleft()
                queued = self._last_queued = self._dispatcher.queue(slot.event, slot.before)
                _chain(queued, slot.done)
                if isinstance(slot.event, BlobEvent):
                    self._on_chunk(head)
                if slot.event.type == "stop":
                    head.stop_queued = True
                    break
            if not head.stop_queued:
                return
            self._recordings.popleft()

    def _pump_again(self, _: object) -> None:
        self._waiting = False
        self.pump()


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    """Complete ``target`` when ``source`` completes."""

    def copy(_: asyncio.Future[None]) -> None:
        if not target.done():
            target.set_result(None)

    source.add_done_callback(copy)
