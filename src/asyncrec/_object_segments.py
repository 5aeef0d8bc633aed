"""ObjectSegmentSink: segments (or independent chunks) as separate objects in S3-compatible
storage, named by a key template.

Each segment is made exactly as :class:`~asyncrec.SegmentSink` makes its files (finished,
seekable, starting at 0), in a local spool directory, then uploaded as
``s3://BUCKET/KEY`` with the template's ``{index}`` filled, and its local file removed. A
segment is uploaded as soon as it is finished, while the recording goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ._errors import SinkError
from ._events import BlobEvent
from ._object_storage import _describe, mime_for_key, parse_url, s3_client, upload_file
from ._segments import Segment, SegmentSink


class ObjectSegmentSink:
    """Segments of a recording made with ``independent_chunks=True``, each uploaded as an
    object: ``template`` is ``s3://BUCKET/KEY`` with an ``{index}`` field
    (``s3://rec/talk/{index:05d}.webm``). ``max_duration`` and ``max_bytes`` are
    :class:`~asyncrec.SegmentSink`'s (neither: one object per chunk).

    ``on_segment(segment)`` is called once a segment is uploaded, with its
    :class:`~asyncrec.Segment` whose ``path`` is the object's URL; :attr:`segments` lists
    them. A segment is uploaded by the ``write`` after the one that finished it (or by
    ``aclose``), before that chunk is taken; transient failures are retried for
    ``retry_for`` seconds.

    Raises SinkError (from ``write``/``aclose``) when a segment cannot be made or
    uploaded; the segment's file is then kept in ``spool_dir`` (named in the message).
    ValueError for a template that is not ``s3://`` with an ``{index}`` field.
    Cancelling stops the wait; a segment being made or uploaded is finished first by
    the next call.
    """

    def __init__(
        self,
        template: str,
        *,
        max_duration: float | None = None,
        max_bytes: int | None = None,
        on_segment: Callable[[Segment], object] | None = None,
        retry_for: float = 60.0,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        parse_url(template.format(index=0))
        self.template = template
        self.on_segment = on_segment
        self.retry_for = retry_for
        self.segments: list[Segment] = []
        self._spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._folder: str | None = None
        self._limits: dict[str, Any] = {"max_duration": max_duration, "max_bytes": max_bytes}
        self._local: SegmentSink | None = None
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._pending: list[Segment] = []
        self._uploading = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ObjectSegmentSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def write(self, chunk: BlobEvent) -> None:
        """Add a chunk to the current segment; segments finished so far are uploaded
        first (in order)."""
        await self._start()
        assert self._local is not None
        await self._uploads()
        await self._local.write(chunk)
        await self._uploads()

    async def aclose(self) -> None:
        """Finish and upload the last segment; idempotent. Cancelling stops the wait; the
        closing goes on, and a later call waits for it."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            if self._local is not None:
                await self._local.aclose()
                await self._uploads()
        finally:
            await self._stack.aclose()
            if self._folder is not None:
                await asyncio.to_thread(_remove_empty, self._folder)

    async def _start(self) -> None:
        if self._local is not None:
            return
        folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="asyncrec-segments-", dir=self._spool_dir)
        self._client = await self._stack.enter_async_context(s3_client())
        suffix = os.path.splitext(self.template)[1]
        local = os.path.join(folder, "{index}" + suffix)
        self._folder = folder
        # Finished segments wait in _pending until uploaded: a cancelled upload is retried
        # by the next call, never skipped.
        self._local = SegmentSink(local, on_segment=self._pending.append, fsync=False, **self._limits)

    async def _uploads(self) -> None:
        async with self._uploading:
            while self._pending:
                await self._upload(self._pending[0])
                self._pending.pop(0)

    async def _upload(self, segment: Segment) -> None:
        url = self.template.format(index=segment.index)
        bucket, key = parse_url(url)
        try:
            await upload_file(self._client, segment.path, bucket, key, mime_for_key(key), self.retry_for)
        except Exception as exc:
            raise SinkError(
                url, f"uploading segment {segment.index} failed: {_describe(exc)}; kept as {segment.path}"
            ) from exc
        await asyncio.to_thread(os.remove, segment.path)
        uploaded = dataclasses.replace(segment, path=url)
        self.segments.append(uploaded)
        if self.on_segment is not None:
            result = self.on_segment(uploaded)
            if asyncio.iscoroutine(result):
                await result


def _remove_empty(folder: str) -> None:
    """Remove the spool directory if every segment went up (else keep what failed)."""
    with contextlib.suppress(OSError):
        if not any(name for name in os.listdir(folder) if not name.endswith(".partial")):
            shutil.rmtree(folder)


__all__ = ["ObjectSegmentSink"]
