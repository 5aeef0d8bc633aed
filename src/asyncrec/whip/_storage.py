"""The disk bounds of ``asyncrec serve``: free space to keep and a quota for recordings.

A guard looks at the recordings' directory every ``interval`` seconds (off the event
loop: ``statvfs`` and a directory scan are file-system calls). Once the file system has
less than ``min_free`` bytes free, or the recordings take more than ``max_bytes``, it is
*full*: running sessions end cleanly (their files finished) and new ones are refused with
507 Insufficient Storage and ``Retry-After``, until space is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil

logger = logging.getLogger(__name__)

#: Seconds between two looks at the disk.
CHECK_INTERVAL = 1.0
#: What a refused publisher is told to wait (s).
RETRY_AFTER = 30


class StorageGuard:
    """Watches one directory's disk use (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        min_free: int | None = None,
        max_bytes: int | None = None,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        if min_free is not None and min_free < 0:
            raise ValueError("min_free must be at least 0")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = os.fspath(directory)
        self.min_free = min_free
        self.max_bytes = max_bytes
        self.interval = interval
        #: Why the disk is full ("free space", "quota"), or None.
        self.full: str | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.min_free is not None or self.max_bytes is not None

    async def start(self) -> None:
        """Look once, then keep looking every ``interval`` until :meth:`stop`."""
        if self.enabled and self._task is None:
            await self.check()
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="asyncrec-storage")

    async def stop(self) -> None:
        """Stop looking. Cancelling the caller cancels the wait (the watch is cancelled
        all the same)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait(), not await task: the task's own cancellation is expected, the
            # caller's must propagate.
            await asyncio.wait([task])

    async def wait_full(self) -> None:
        """Return once the disk is full (at once if it is)."""
        while self.full is None:
            self._changed.clear()
            await self._changed.wait()

    async def check(self) -> str | None:
        """Look at the disk now; returns (and keeps) why it is full, or None."""
        full = await asyncio.to_thread(self._measure)
        if full != self.full:
            if full is not None:
                logger.warning(
                    "storage full (%s): refusing new sessions, ending running ones", full, extra={"reason": full}
                )
            else:
                logger.info("storage available again")
            self.full = full
            self._changed.set()
        return full

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except OSError as exc:
                logger.warning("cannot measure %s: %s", self.directory, exc)

    def _measure(self) -> str | None:
        os.makedirs(self.directory, exist_ok=True)
        if self.min_free is not None and shutil.disk_usage(self.directory).free < self.min_free:
            return "free space"
        if self.max_bytes is not None and _size(self.directory) > self.max_bytes:
            return "quota"
        return None


def _size(directory: str) -> int:
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
