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
from ._metrics import ServerMetrics
from ._storage import StorageGuard

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
    max_session_seconds: float | None = None,
    max_video_size: tuple[int, int] | None = None,
    storage: StorageGuard | None = None,
    metrics: ServerMetrics | None = None,
) -> Callable[[WhipSession], Awaitable[None]]:
    """A WhipEndpoint callback that records each session to ``directory``.

    The file is ``<UTC time>-<session id><ext>`` (a safe name, in ``directory`` only),
    written chunk by chunk as ``<name>.part`` and renamed when the recording is final:
    on DELETE, when the peer disconnects or ICE fails, when its tracks end, after
    ``max_session_seconds``, or when ``storage`` says the disk is full. Video larger than
    ``max_video_size`` is scaled down. Each session is logged (start, codecs, resolution,
    end reason, file, bytes, frames) and counted in ``metrics``.

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
        recorder = MediaRecorder(session.stream, mimeType=mimeType, max_video_size=max_video_size)
        facts = {"session": session.id, "remote": session.remote}
        stopped = asyncio.Event()
        recorder.onstop = lambda event: stopped.set()
        recorder.onerror = lambda event: logger.warning(
            "session %s: %s", session.id, event.error, extra={**facts, "error": str(event.error)}
        )

        def started(_event: object) -> None:
            size = recorder.statistics().video_size
            resolution = None if size is None else f"{size[0]}x{size[1]}"
            logger.info(
                "session %s recording %s %s",
                session.id,
                recorder.mimeType,
                resolution or "(no video)",
                extra={**facts, "codecs": recorder.mimeType, "resolution": resolution},
            )

        recorder.onstart = started
        if metrics is not None:
            metrics.session_started(session.id, recorder)
        reason = None
        async with FileSink(partial) as sink, recorder:
            recorder.ondataavailable = sink.write
            recorder.start(timeslice)
            waits = {
                asyncio.ensure_future(session.wait_closed()): None,
                asyncio.ensure_future(stopped.wait()): "tracks ended",
            }
            if storage is not None:
                waits[asyncio.ensure_future(storage.wait_full())] = "storage full"
            try:
                done, _ = await asyncio.wait(waits, timeout=max_session_seconds, return_when=asyncio.FIRST_COMPLETED)
                reason = next((waits[task] for task in done), "time limit")
            finally:
                for task in waits:
                    task.cancel()
        # The recording is finished (the sink closed it); the publisher goes too.
        if reason in ("time limit", "storage full"):
            session._end(reason)
        stats = recorder.statistics()
        written = sink.bytes_written
        if written:
            await asyncio.to_thread(os.replace, partial, final)
        else:
            await asyncio.to_thread(os.remove, partial)
        if metrics is not None:
            metrics.session_ended(session.id, written)
        logger.info(
            "session %s ended (%s): %s",
            session.id,
            session.end_reason or reason,
            final if written else "nothing recorded",
            extra={
                **facts,
                "reason": session.end_reason or reason,
                "file": final if written else None,
                "bytes": written,
                "seconds": round(stats.recorded_time, 3),
                "frames_received": sum(t.frames_in for t in stats.tracks),
                "frames_dropped": sum(t.frames_dropped for t in stats.tracks),
            },
        )

    return record


__all__ = ["EXTENSIONS", "extension_for", "record_sessions"]
