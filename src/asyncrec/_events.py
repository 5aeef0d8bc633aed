"""Events, handlers and the dispatcher: the one place that delivers a recorder's events.

Every event of a recorder goes through one ordered queue and one task, so handlers see
events one at a time and in order, a coroutine handler is awaited before the next handler
and the next event, and every ``async for`` iterator sees every chunk exactly once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, overload

from ._errors import AsyncrecError, SinkError

logger = logging.getLogger(__name__)

EventType = Literal["start", "stop", "dataavailable", "pause", "resume", "error"]
EVENT_TYPES: tuple[EventType, ...] = ("start", "stop", "dataavailable", "pause", "resume", "error")

#: Any handler, as the dispatcher stores it (the public signatures are typed per event).
Handler = Callable[[Any], object]


class Event:
    """An event of a MediaRecorder; ``type`` is its name (``"start"``, ``"stop"``...)."""

    __slots__ = ("type",)

    def __init__(self, type: str) -> None:  # noqa: A002 - the DOM's name
        self.type = type

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type}>"


class BlobEvent(Event):
    """A ``dataavailable`` event: ``data`` holds the chunk's bytes.

    ``timecode`` (milliseconds) is the media time of the chunk's first data, counted from
    the first data of the recording; the first chunk's is 0. Beyond the spec:

    * ``sequence`` numbers the chunks of one recording (0, 1, 2...);
    * ``duration`` is the media the chunk holds (milliseconds; the chunks of a recording
      add up to its length);
    * ``keyframe``: the chunk starts with a key frame, so with the header (the first
      chunk) it decodes without the chunks between (always true for audio only, and for
      every chunk with ``independent_chunks=True``);
    * ``wallclock``: UNIX time (seconds) at which the chunk's first frame reached the
      recorder (for a live source, about when it was captured), so recordings made apart
      can be aligned: ``wallclock - timecode / 1000`` is where the recording's media time
      0 sits on the wall clock. None for an empty chunk.
    """

    __slots__ = ("data", "duration", "keyframe", "sequence", "timecode", "wallclock")

    def __init__(
        self,
        type: str,  # noqa: A002
        data: bytes,
        timecode: float,
        *,
        sequence: int = 0,
        duration: float = 0.0,
        keyframe: bool = False,
        wallclock: float | None = None,
    ) -> None:
        super().__init__(type)
        self.data = data
        self.timecode = timecode
        self.sequence = sequence
        self.duration = duration
        self.keyframe = keyframe
        self.wallclock = wallclock

    def __repr__(self) -> str:
        return f"<BlobEvent {self.type} {len(self.data)} bytes at {self.timecode:.0f} ms>"


class ErrorEvent(Event):
    """An ``error`` event: ``error`` is the :class:`~asyncrec.AsyncrecError` that stopped recording."""

    __slots__ = ("error",)

    def __init__(self, type: str, error: AsyncrecError) -> None:  # noqa: A002
        super().__init__(type)
        self.error = error

    def __repr__(self) -> str:
        return f"<ErrorEvent {self.error.name}: {self.error}>"


EventT = TypeVar("EventT", bound=Event)


class _HasDispatcher(Protocol):
    _dispatcher: EventDispatcher


class HandlerAttribute(Generic[EventT]):
    """An ``on<type>`` attribute of an object with a ``_dispatcher``: one handler slot in
    the listener list, as in the DOM. Typed with the event its handler receives, so
    ``recorder.ondataavailable`` is ``Callable[[BlobEvent], object] | None``."""

    def __init__(self, event_type: EventType, event: type[EventT]) -> None:
        self.type = event_type
        self.event = event
        self.__doc__ = f"Handler for ``{event_type}``, called with a :class:`{event.__name__}` (None for none)."

    @overload
    def __get__(self, obj: None, owner: type[object] | None = None) -> Self: ...
    @overload
    def __get__(self, obj: _HasDispatcher, owner: type[object] | None = None) -> Callable[[EventT], object] | None: ...
    def __get__(
        self, obj: _HasDispatcher | None, owner: type[object] | None = None
    ) -> Self | Callable[[EventT], object] | None:
        if obj is None:
            return self
        return obj._dispatcher.get_attribute(self.type)

    def __set__(self, obj: _HasDispatcher, handler: Callable[[EventT], object] | None) -> None:
        obj._dispatcher.set_attribute(self.type, handler)


class _AttributeHandler:
    """The slot an ``on<event>`` attribute holds in the listener list, as in the DOM."""

    __slots__ = ("handler",)

    def __init__(self, handler: Handler | None) -> None:
        self.handler = handler


class ChunkIterator(AsyncIterator[BlobEvent]):
    """One ``async for`` over a recorder: every chunk dispatched from now until the next stop."""

    def __init__(self, dispatcher: EventDispatcher) -> None:
        self._dispatcher = dispatcher
        self._chunks: deque[BlobEvent] = deque()
        #: Bytes delivered to this iterator and not yet taken.
        self.pending_bytes = 0
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None

    def __aiter__(self) -> ChunkIterator:
        return self

    async def __anext__(self) -> BlobEvent:
        """The next chunk; StopAsyncIteration after the recording's final chunk.

        Cancelling the wait leaves the iterator usable; no chunk is lost.
        """
        while not self._chunks:
            if self._ended:
                self._dispatcher._iterators.discard(self)
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self.pending_bytes -= len(chunk.data)
        if self._dispatcher.on_progress is not None:
            self._dispatcher.on_progress()
        return chunk

    def _push(self, event: BlobEvent) -> None:
        self._chunks.append(event)
        self.pending_bytes += len(event.data)
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def pending(self) -> int:
        """Chunks delivered to this iterator and not yet taken."""
        return len(self._chunks)


Hook = Callable[[], None]


class Completion:
    """What the recorder's methods return: awaiting it waits until the matching event
    has been dispatched to every handler.

    Cancelling a wait does not cancel the event. Awaited from inside a handler (where
    the event cannot be dispatched before the handler returns), it completes at once
    instead of deadlocking.
    """

    __slots__ = ("_dispatcher", "_future")

    def __init__(self, future: asyncio.Future[None] | None, dispatcher: EventDispatcher | None = None) -> None:
        self._future = future
        self._dispatcher = dispatcher

    def done(self) -> bool:
        """True once the event has been dispatched (always, for a method that did nothing)."""
        return self._future is None or self._future.done()

    def __await__(self) -> Generator[Any, None, None]:
        if self._future is None or self._future.done():
            return
        if self._dispatcher is not None and self._dispatcher.dispatching():
            return
        yield from asyncio.shield(self._future).__await__()

    def __repr__(self) -> str:
        return f"<Completion {'done' if self.done() else 'pending'}>"


class EventDispatcher:
    """Delivers events in order to handlers, attribute handlers and iterators."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Handler | _AttributeHandler]] = {t: [] for t in EVENT_TYPES}
        self._attributes: dict[str, _AttributeHandler] = {}
        self._queue: deque[tuple[Event, Hook | None, asyncio.Future[None] | None]] = deque()
        self._task: asyncio.Task[None] | None = None
        # Weak: an iterator the user dropped (a `break` out of `async for`) stops
        # receiving chunks instead of holding them forever.
        self._iterators: weakref.WeakSet[ChunkIterator] = weakref.WeakSet()
        self._queued_bytes = 0
        self._closed = False
        #: Called with the SinkError a ``dataavailable`` handler raised (the recorder
        #: stops the recording); other handler exceptions are only logged.
        self.on_sink_error: Callable[[SinkError], None] | None = None
        #: Called whenever undelivered bytes go down (an event delivered, a chunk taken).
        self.on_progress: Hook | None = None

    # -- handlers -------------------------------------------------------------------------
    def add(self, type: str, handler: Handler) -> None:  # noqa: A002
        """Add ``handler`` for ``type``; adding the same handler twice has no effect."""
        listeners = self._listeners_for(type)
        if handler not in listeners:
            listeners.append(handler)

    def remove(self, type: str, handler: Handler) -> None:  # noqa: A002
        """Remove ``handler`` for ``type``; an unknown handler is ignored."""
        listeners = self._listeners_for(type)
        if handler in listeners:
            listeners.remove(handler)

    def get_attribute(self, type: str) -> Handler | None:  # noqa: A002
        slot = self._attributes.get(type)
        return None if slot is None else slot.handler

    def set_attribute(self, type: str, handler: Handler | None) -> None:  # noqa: A002
        if handler is not None and not callable(handler):
            raise TypeError(f"on{type} must be callable or None")
        slot = self._attributes.get(type)
        if slot is None:
            if handler is None:
                return
            slot = self._attributes[type] = _AttributeHandler(handler)
            self._listeners_for(type).append(slot)
        slot.handler = handler

    def _listeners_for(self, type: str) -> list[Handler | _AttributeHandler]:  # noqa: A002
        try:
            return self._listeners[type]
        except KeyError:
            raise ValueError(f"unknown event type {type!r}; expected one of {EVENT_TYPES}") from None

    # -- iteration ------------------------------------------------------------------------
    def iterator(self) -> ChunkIterator:
        """A new iterator over the chunks dispatched from now on."""
        it = ChunkIterator(self)
        if self._closed:
            it._end()
        else:
            self._iterators.add(it)
        return it

    def close_iterators(self) -> None:
        """End every iterator (the recorder is closed); later iterators end at once."""
        self._closed = True
        for it in self._iterators:
            it._end()
        self._iterators.clear()

    def reopen(self) -> None:
        self._closed = False

    @property
    def iterator_backlog(self) -> int:
        """The most chunks any iterator has waiting."""
        return max((it.pending for it in self._iterators), default=0)

    @property
    def undelivered_bytes(self) -> int:
        """Chunk bytes queued for handlers plus the largest iterator backlog."""
        return self._queued_bytes + max((it.pending_bytes for it in self._iterators), default=0)

    # -- dispatch -------------------------------------------------------------------------
    def queue(self, event: Event, before: Hook | None = None) -> asyncio.Future[None]:
        """Queue ``event``; the future completes once every handler has seen it.

        ``before`` runs just before the event is delivered (to set attributes the spec
        sets "when the task runs", such as ``mimeType`` at ``start``).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((event, before, done))
        if isinstance(event, BlobEvent):
            self._queued_bytes += len(event.data)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="asyncrec-dispatcher")
        return done

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered."""
        return len(self._queue)

    def dispatching(self) -> bool:
        """True when called from a handler (the dispatcher's own task)."""
        return self._task is not None and asyncio.current_task() is self._task

    async def idle(self) -> None:
        """Wait until every queued event has been delivered.

        Cancelling the wait does not cancel the delivery.
        """
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while self._queue:
            event, before, done = self._queue.popleft()
            if isinstance(event, BlobEvent):
                self._queued_bytes -= len(event.data)
            try:
                if before is not None:
                    before()
                await self._deliver(event)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)
                if self.on_progress is not None and isinstance(event, BlobEvent):
                    self.on_progress()

    async def _deliver(self, event: Event) -> None:
        if isinstance(event, BlobEvent):
            for it in self._iterators:
                it._push(event)
        elif event.type == "stop":
            for it in self._iterators:
                it._end()
            self._iterators.clear()
        for listener in list(self._listeners[event.type]):
            handler = listener.handler if isinstance(listener, _AttributeHandler) else listener
            if handler is None:
                continue
            failure = await _call_handler(handler, event)
            if failure is not None and self.on_sink_error is not None:
                self.on_sink_error(failure)


async def _call_handler(handler: Handler, event: Event) -> SinkError | None:
    """Run one handler; its exception is logged, never raised (the recording goes on),
    except a SinkError from a ``dataavailable`` handler, which is returned: a sink that
    cannot write ends the recording with an error rather than losing chunks quietly."""
    try:
        result = handler(event)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise exc
        logger.error("%s handler %r was cancelled", event.type, handler)
    except SinkError as exc:
        if event.type != "dataavailable":
            logger.exception("%s handler %r raised", event.type, handler)
            return None
        logger.debug("%s handler %r failed: %s", event.type, handler, exc)
        return exc
    except Exception:
        logger.exception("%s handler %r raised", event.type, handler)
    return None
