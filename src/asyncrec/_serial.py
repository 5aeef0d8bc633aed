"""Blocking work of a sink on a thread, one operation at a time, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


class SerialThread:
    """Runs blocking operations (file writes, PyAV) off the event loop, never two at once.

    A thread cannot be stopped: when the caller of :meth:`call` is cancelled, its operation
    goes on, and the next call waits for it rather than run beside it, so writes stay
    whole and in order.
    """

    def __init__(self) -> None:
        # The operation in progress, kept past a cancelled caller.
        self._busy: asyncio.Future[Any] | None = None

    async def call(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` on a thread, after the previous one has finished; return or
        raise what it does.

        Cancelling stops the wait at once; the operation still completes.
        """
        while self._busy is not None:
            await asyncio.wait([self._busy])
        busy = asyncio.ensure_future(asyncio.to_thread(operation))
        self._busy = busy
        busy.add_done_callback(self._finished)
        return await asyncio.shield(busy)

    def _finished(self, busy: asyncio.Future[Any]) -> None:
        if self._busy is busy:
            self._busy = None
        if not busy.cancelled():
            # Marked retrieved: a cancelled caller no longer awaits it, and the sinks keep
            # their failure for the next call anyway.
            busy.exception()
