"""A ready WHIP session callback: record each session to a file in a directory."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from .._encoder_pool import EncoderPool
from .._errors import SinkError
from .._events import BlobEvent
from .._formats import CONTAINERS, check_type, parse_mime_type
from .._object_storage import ObjectSink, parse_url, s3_client
from .._recorder import MediaRecorder
from .._sink import FileSink
from ._endpoint import WhipSession
from ._metrics import ServerMetrics
from ._receivers import ReceiverWatch
from ._storage import StorageGuard

logger = logging.getLogger(__name__)

#: File extension per container MIME type.
EXTENSIONS = {spec.mime: spec.extension for spec in CONTAINERS.values()}
#: Recordings in progress carry this suffix; a finished one is renamed without it.
PARTIAL = ".part"
#: The largest picture a publisher may send by default, either way round: what decoding
#: and encoding cost grows with (per session: ~100 MiB at 1080p, ~430 MiB at 4K).
MAX_PUBLISH_SIZE = (1920, 1080)
#: Media held for one session by default: received and not yet encoded or delivered.
MAX_SESSION_MEMORY = 128 * 1024 * 1024
#: How often a session's held memory is looked at (s).
MEMORY_CHECK = 0.2
#: Chunks not yet written to the file, at most (the recorder's bound, lowered for a server).
MAX_UNWRITTEN = 16 * 1024 * 1024


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
    max_publish_size: tuple[int, int] | None = MAX_PUBLISH_SIZE,
    max_session_memory: int | None = MAX_SESSION_MEMORY,
    storage: StorageGuard | None = None,
    metrics: ServerMetrics | None = None,
    worker_id: str | None = None,
    passthrough: bool = True,
    encoder_pool: EncoderPool | None = None,
) -> Callable[[WhipSession], Awaitable[None]]:
    """A WhipEndpoint callback that records each session to ``directory``, or to objects
    under ``s3://BUCKET/PREFIX`` (:class:`~asyncrec.ObjectSink`).

    The file is ``<UTC time>-[<worker_id>-]<session id><ext>`` (a safe name, in
    ``directory`` only; with the worker's id, names from workers sharing a bucket never
    collide), written chunk by chunk as ``<name>.part`` and renamed when the recording is
    final (an object appears when its upload completes):
    on DELETE, when the peer disconnects or ICE fails, when its tracks end, after
    ``max_session_seconds``, or when ``storage`` says the disk is full. Video larger than
    ``max_video_size`` is scaled down. Each session is logged (start, codecs, resolution,
    end reason, file, bytes, frames) and counted in ``metrics``.

    Bounds whatever the publisher sends: a video key frame declaring a picture larger than
    ``max_publish_size`` is never decoded and ends the session (``video too large``); more
    than ``max_session_memory`` bytes of media held for the session (in aiortc's receive
    queues, the recorder's queues and its unwritten chunks) end it too (``memory limit``).
    Either way what was recorded is kept.

    ``passthrough``: a publisher's frames are copied as they came when their codec fits
    the container (see :class:`~asyncrec.MediaRecorder`), else, or with False, decoded
    and encoded; the log says which, per track. ``encoder_pool``: sessions are encoded
    and muxed in its processes (see :class:`~asyncrec.EncoderPool`).

    Raises NotSupportedError at once for a ``mimeType`` that cannot be recorded.
    """
    check_type(mimeType)
    assert not mimeType or parse_mime_type(mimeType) is not None
    folder = os.fspath(directory)
    to_objects = folder.startswith("s3://")
    if to_objects:
        parse_url(f"{folder.rstrip('/')}/name")  # ValueError now for a malformed URL

    async def record(session: WhipSession) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        worker = f"{worker_id}-" if worker_id else ""
        name = f"{stamp}-{worker}{session.id}{extension_for(mimeType)}"
        sink: FileSink | ObjectSink
        if to_objects:
            # An upload in progress is no object yet: no partial name needed.
            final = partial = f"{folder.rstrip('/')}/{name}"
            sink = ObjectSink(final)
        else:
            await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
            final = os.path.join(folder, name)
            partial = final + PARTIAL
            sink = FileSink(partial)
        recorder = MediaRecorder(
            session.stream,
            mimeType=mimeType,
            max_video_size=max_video_size,
            passthrough=passthrough,
            encoder_pool=encoder_pool,
        )
        recorder.max_undelivered_bytes = MAX_UNWRITTEN
        facts = {"session": session.id, "remote": session.remote}
        refused = asyncio.Event()

        def oversized(width: int, height: int) -> None:
            logger.warning(
                "session %s: the publisher's video is %dx%d, larger than %dx%d; refused",
                session.id,
                width,
                height,
                *(max_publish_size or (0, 0)),
                extra={**facts, "resolution": f"{width}x{height}"},
            )
            if metrics is not None:
                metrics.refuse("video_too_large")
            refused.set()

        watch = ReceiverWatch(session.pc, max_size=max_publish_size, on_oversized=oversized)
        stopped = asyncio.Event()
        recorder.onstop = lambda event: stopped.set()
        recorder.onerror = lambda event: logger.warning(
            "session %s: %s", session.id, event.error, extra={**facts, "error": str(event.error)}
        )

        def started() -> None:
            stats = recorder.statistics()
            size = stats.video_size
            resolution = None if size is None else f"{size[0]}x{size[1]}"
            how = {t.kind: "copied" if t.copied else "transcoded" for t in stats.tracks}
            logger.info(
                "session %s recording %s %s (%s)",
                session.id,
                recorder.mimeType,
                resolution or "(no video)",
                ", ".join(f"{kind} {mode}" for kind, mode in how.items()) or "nothing",
                extra={
                    **facts,
                    "codecs": recorder.mimeType,
                    "resolution": resolution,
                    "copied": ",".join(kind for kind, mode in how.items() if mode == "copied") or "none",
                },
            )

        first_bytes = True

        async def deliver(event: BlobEvent) -> None:
            nonlocal first_bytes
            if first_bytes and event.data:
                # The header is written: the codecs, the picture size and what is copied
                # are known (the start event may come before them, for a slow track).
                first_bytes = False
                started()
            await sink.write(event)

        if metrics is not None:
            metrics.session_started(session.id, recorder)
        reason = None
        failure: SinkError | None = None
        try:
            async with sink, recorder:
                recorder.ondataavailable = deliver
                recorder.start(timeslice)
                waits = {
                    asyncio.ensure_future(session.wait_closed()): None,
                    asyncio.ensure_future(stopped.wait()): "tracks ended",
                }
                if storage is not None:
                    waits[asyncio.ensure_future(storage.wait_full())] = "storage full"
                waits[asyncio.ensure_future(refused.wait())] = "video too large"
                if max_session_memory is not None:
                    held = _held_memory(recorder, watch, max_session_memory)
                    waits[asyncio.ensure_future(held)] = "memory limit"
                try:
                    done, _ = await asyncio.wait(
                        waits, timeout=max_session_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                    reason = next((waits[task] for task in done), "time limit")
                finally:
                    for task in waits:
                        task.cancel()
        except SinkError as exc:
            # The storage failed for good (the recorder's error event said so): what was
            # written is kept where the error says; the session ends, counted and logged.
            failure, reason = exc, "storage error"
        # The recording is finished (the sink closed it); the publisher goes too.
        if reason in ("time limit", "storage full", "video too large", "memory limit", "storage error"):
            session._end(reason)
        stats = recorder.statistics()
        written = sink.bytes_written
        try:
            if failure is not None:
                pass  # left as it is: the error names it
            elif to_objects:
                if not written:
                    await _delete_object(final)
            elif written:
                await asyncio.to_thread(os.replace, partial, final)
            else:
                await asyncio.to_thread(os.remove, partial)
        finally:
            if metrics is not None:
                metrics.session_ended(session.id, written)
        logger.log(
            logging.WARNING if failure is not None else logging.INFO,
            "session %s ended (%s): %s",
            session.id,
            session.end_reason or reason,
            (str(failure) if failure is not None else final) if written else "nothing recorded",
            extra={
                **facts,
                "reason": session.end_reason or reason,
                "file": final if written else None,
                "bytes": written,
                "seconds": round(stats.recorded_time, 3),
                "frames_received": sum(t.frames_in for t in stats.tracks),
                "frames_dropped": sum(t.frames_dropped for t in stats.tracks),
                "copied": ",".join(t.kind for t in stats.tracks if t.copied) or "none",
            },
        )

    return record


async def _delete_object(url: str) -> None:
    """Remove the (empty) object of a session that recorded nothing."""
    bucket, key = parse_url(url)
    async with s3_client() as client:
        await client.delete_object(Bucket=bucket, Key=key)


def held_memory(recorder: MediaRecorder, watch: ReceiverWatch) -> tuple[int, int, int]:
    """Bytes of media held for a session: in aiortc's queues (not yet decoded or read),
    in the recorder's (not yet encoded), and encoded but not yet written."""
    stats = recorder.statistics()
    return watch.held_bytes, stats.queued_bytes, stats.undelivered_bytes


async def _held_memory(recorder: MediaRecorder, watch: ReceiverWatch, limit: int) -> None:
    """Return once more than ``limit`` bytes are held for the session (logged)."""
    while True:
        held = held_memory(recorder, watch)
        if sum(held) > limit:
            logger.warning(
                "session holds %d bytes of media, more than %d (receiving %d, encoding %d, writing %d): ending it",
                sum(held),
                limit,
                *held,
            )
            return
        await asyncio.sleep(MEMORY_CHECK)  # a periodic measurement: no event says "grew"


__all__ = ["EXTENSIONS", "MAX_PUBLISH_SIZE", "MAX_SESSION_MEMORY", "extension_for", "held_memory", "record_sessions"]
