"""FileSink: writes a recording's chunks to a file without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import BinaryIO

from ._events import BlobEvent


class FileSink:
    """Appends chunks to a file, in order, with every open, write and close on a thread.

    Use it as the ``dataavailable`` handler; the recorder awaits each write before the
    next chunk, so the file is complete once ``await recorder.stop()`` returns::

        async with FileSink("out.webm") as sink:
            recorder.ondataavailable = sink.write
            ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO | None = None
        #: Bytes written so far.
        self.bytes_written = 0

    async def open(self) -> None:
        """Create (or truncate) the file. Raises OSError as ``open()`` does."""
        if self._file is None:
            self._file = await asyncio.to_thread(open, self.path, "wb")

    async def write(self, chunk: BlobEvent | bytes) -> None:
        """Append a chunk (a ``BlobEvent`` or bytes), opening the file first if needed.

        Raises OSError when the write fails. Cancelling waits for nothing: the write
        already handed to the thread completes.
        """
        data = chunk.data if isinstance(chunk, BlobEvent) else chunk
        if self._file is None:
            await self.open()
        assert self._file is not None
        if data:
            await asyncio.to_thread(self._file.write, data)
            self.bytes_written += len(data)

    async def aclose(self) -> None:
        """Flush and close the file; idempotent."""
        file, self._file = self._file, None
        if file is not None:
            await asyncio.to_thread(file.close)

    async def __aenter__(self) -> FileSink:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
