"""What a reader thread and the event loops that use it wait on: a one-shot signal set on
the thread and awaited on any loop, and the pacing of real-time sources (files on their
reader thread, generated tracks on the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class Signal:
    """A one-shot event, set on any thread, awaited on any loop (or waited for blocking).

    Each waiting loop gets one ``call_soon_threadsafe`` when it is set; a loop that has
    closed meanwhile is skipped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flag = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._event = threading.Event()

    def is_set(self) -> bool:
        return self._flag  # a plain read, without the lock: safe in a finalizer

    def set(self) -> None:
        """Set it and wake every waiter. Idempotent, any thread."""
        with self._lock:
            self._flag = True
            waiters, self._waiters = self._waiters, []
        self._event.set()
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, waiter)

    async def wait(self) -> None:
        """Return once it is set. Cancellation only stops this wait."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._flag:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        finally:
            with self._lock, contextlib.suppress(ValueError):  # ValueError: set() took it already
                self._waiters.remove((loop, waiter))

    def wait_blocking(self, timeout: float | None) -> bool:
        """Block until it is set or ``timeout`` s have passed; True if it is set."""
        return self._event.wait(timeout)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a cancelled wait leaves a done future
        waiter.set_result(None)


class Pacer:
    """Real-time pacing: media time ``at`` is due ``at - first`` seconds after the wall
    time of the first call (``first`` being that call's media time).

    One clock for every real-time source; only the waiting differs: :meth:`wait_blocking`
    on a reader thread (interruptible by an event), :meth:`wait` on an event loop.
    """

    def __init__(self) -> None:
        self._origin: tuple[float, float] | None = None  # (wall time, media time) of the first call

    def delay(self, at: float) -> float:
        """Seconds to wait until media time ``at`` is due (0 when it is already)."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, at)
            return 0.0
        wall, first = self._origin
        return max(0.0, wall + (at - first) - now)

    def wait_blocking(self, at: float, interrupt: threading.Event) -> None:
        """Block until ``at`` is due, or until ``interrupt`` is set (unlike a sleep)."""
        delay = self.delay(at)
        if delay > 0:
            interrupt.wait(delay)

    async def wait(self, at: float) -> None:
        """Sleep on the loop until ``at`` is due."""
        delay = self.delay(at)
        if delay > 0:
            await asyncio.sleep(delay)
