"""What a reader thread and the event loops that use it wait on: a one-shot signal set on
the thread and awaited on any loop, and the pacing of real-time files."""

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
