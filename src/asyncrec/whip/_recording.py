"""A ready WHIP session callback: record each session to a file in a directory."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from .._formats import CONTAINERS, check_type, parse_mime_type
from .._recorder import MediaRecorder
from .._sink import FileSink
from ._endpoint import WhipSession

logger = logging.getLogger(__name__)

#: File extension per container MIME type.
EXTENSIONS = {spec.mime: spec.extension for spec in CONTAINERS.values()}
#: Recordings in progress carry this suffix; a finished one is renamed without it.
PARTIAL = ".part"


def extension_for(mime_type: str) -> str:
    parsed = parse_mime_type(mime_type) if mime_type else None
    essence = parsed.essence if parsed else "video/webm"
    return EXTENSIONS.get(essence, ".webm")


def record_sessions(
    directory: str | os.PathLike[str],
    *,
    mimeType: str = "",  # noqa: N803 - W3C spelling
    timeslice: int = 1000,
) -> Callable[[WhipSession], Awaitable[None]]:
    """A WhipEndpoint callback that records each session to ``directory``.

    The file is ``<UTC time>-<session id><ext>`` (a safe name, in ``directory`` only),
    written chunk by chunk as ``<name>.part`` and renamed when the recording is final:
    on DELETE, when the peer disconnects or ICE fails, or when its tracks end.

    Raises NotSupportedError at once for a ``mimeType`` that cannot be recorded.
    """
    check_type(mimeType)
    assert not mimeType or parse_mime_type(mimeType) is not None
    folder = os.fspath(directory)

    async def record(session: WhipSession) -> None:
        await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}-{session.id}{extension_for(mimeType)}"
        final = os.path.join(folder, name)
        partial = final + PARTIAL
        recorder = MediaRecorder(session.stream, mimeType=mimeType)
        stopped = asyncio.Event()
        recorder.onstop = lambda event: stopped.set()
        recorder.onerror = lambda event: logger.warning("session %s: %s", session.id, event.error)
        async with FileSink(partial) as sink, recorder:
            recorder.ondataavailable = sink.write
            recorder.start(timeslice)
            ended = asyncio.ensure_future(session.wait_closed())
            done = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait([ended, done], return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                done.cancel()
        if sink.bytes_written:
            await asyncio.to_thread(os.replace, partial, final)
            logger.info("session %s recorded to %s (%d bytes)", session.id, final, sink.bytes_written)
        else:
            await asyncio.to_thread(os.remove, partial)

    return record


__all__ = ["EXTENSIONS", "extension_for", "record_sessions"]
