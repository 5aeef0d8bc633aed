"""SegmentSink: a recording made of independent chunks, written to numbered files that
each play and seek on their own, rotated by media duration and/or size."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Any

import av
from av.container import InputContainer, OutputContainer

from ._errors import SinkError
from ._events import BlobEvent
from ._interleave import lower_dts, video_lead
from ._repair import _muxer, _sync
from ._serial import SerialThread

logger = logging.getLogger(__name__)

#: Suffix of the segment being written; renamed away once the segment is finished.
PARTIAL_SUFFIX = ".partial"
#: A segment whose media is within this of ``max_duration`` has reached it (timestamps
#: are rounded to the container's time base: a millisecond in Matroska).
_DURATION_SLACK = Fraction(1, 1000)
_NOT_INDEPENDENT = "record with MediaRecorder(..., independent_chunks=True) to write segments"


@dataclass(frozen=True)
class Segment:
    """A finished segment of a :class:`SegmentSink`: a file that plays and seeks on its own.

    Its timestamps start at 0: a moment ``t`` ms into the file is ``start + t`` ms into
    the recording.
    """

    #: The file (the sink's template filled with ``index``).
    path: str
    #: Its number: 0 for the first segment, then 1, 2...
    index: int
    #: Where it starts in the recording, in milliseconds of media: at its earliest packet,
    #: which is where its first chunk starts (that chunk's ``timecode``, give or take a
    #: frame; 0 for the first segment).
    start: float
    #: The media it holds, in milliseconds: from its start to the end of its last packet,
    #: what the file's own duration says. The recorder cuts chunks at video key frames and
    #: audio packets do not split there, so a segment's audio can end a little after the
    #: next segment's ``start`` (no media is in two segments; both files are whole).
    duration: float
    #: The size of the file.
    bytes: int


class _Open:
    """The segment being written (used on the sink's thread only)."""

    def __init__(self, index: int, path: str, output: OutputContainer, streams: dict[int, Any]) -> None:
        self.index = index
        self.path = path
        self.partial = path + PARTIAL_SUFFIX
        self.output = output
        #: Output stream per input stream index.
        self.streams = streams
        self.lead = video_lead(output, streams.values())
        self.start: float | None = None  # ms in the recording (see _origin)
        self.offset = Fraction(0)  # seconds subtracted from every timestamp (start, in s)
        self.end = Fraction(0)  # seconds of media (segment time) written so far
        self.media_bytes = 0  # packet payload written so far
        self.last_dts: dict[int, Fraction] = {}


class SegmentSink:
    """Writes a recording to numbered files, each playable and seekable on its own,
    starting a new file whenever the current one holds ``max_duration`` seconds of media
    or ``max_bytes`` bytes.

    The recording must be made with ``independent_chunks=True`` (every chunk a file of its
    own); use the sink as its ``dataavailable`` handler::

        async with SegmentSink("out/rec-{index:05d}.webm", max_duration=600) as sink:
            recorder = MediaRecorder(stream, mimeType="video/webm", independent_chunks=True)
            recorder.ondataavailable = sink.write
            recorder.start(timeslice=1000)
            ...
            await recorder.stop()

    ``template`` is a path with a ``str.format`` field ``{index}`` (0, 1, 2...: one per
    segment; other fields are not allowed). An existing file of that name is replaced.

    A segment is one or more consecutive chunks: each chunk's packets are read with PyAV
    and copied (never re-encoded) into the segment's file, their timestamps moved so that
    every segment starts at 0: its earliest packet (the video key frame that starts its
    first chunk, or audio of that chunk from a little before it) is at 0, the others keep
    their places beside it, and :attr:`Segment.start` says where 0 is in the recording.
    (Only the first segment has media before 0: the encoder's audio priming, as in the
    recording, which players skip.) The container is the chunks' own (WebM stays WebM when its codecs allow,
    as :func:`~asyncrec.repair` chooses; MP4; Ogg). A segment ends at a chunk boundary,
    once it has reached either limit, so it may pass a limit by up to one chunk: choose
    the recorder's ``timeslice`` accordingly. ``max_bytes`` counts the media (packet
    payload) copied, which the finished file passes by its container's overhead (headers
    and index, typically 1 or 2 %). With neither limit, every chunk is a segment of its
    own (rewritten as a finished, seekable file).

    Finished and durable: a segment is written under a temporary name (its path +
    ``".partial"``); once complete its muxer is closed, which writes what a streamed file
    lacks (WebM/Matroska: Duration and Cues; MP4: the ``moov``, moved to the front by
    ``+faststart``), the file is flushed to the disk (with ``fsync``, the default) and
    renamed to its final name. A crash therefore never leaves a half segment under a
    final name; the ``.partial`` file it leaves holds whole chunks and can be finished
    with :func:`~asyncrec.repair`.

    After each finished segment ``on_segment(segment)`` is called on the event loop with
    its :class:`Segment` (a coroutine it returns is awaited), from the :meth:`write` (or
    :meth:`aclose`) that finished it, once the segment is appended to :attr:`segments`.
    An exception it raises propagates out of that call; the sink goes on.

    All PyAV and file work runs on a thread, one operation at a time and in order; the
    sink holds one chunk at a time (its bytes and its packets, while they are copied).

    Failures: a chunk that is not a media file on its own (a recording made without
    ``independent_chunks=True``: its second chunk), or whose streams differ from those
    of the first chunk, raises :class:`SinkError`, and so does any ``OSError`` (a missing
    directory, a full disk, permission), naming the segment's path; a recorder whose
    ``dataavailable`` handler raises it stops with an ``"error"`` event. The sink then
    stays failed: later writes raise the same error at once. The segments finished before
    stay as they are; the one in progress is finished by :meth:`aclose` if the failure
    was in a chunk (it holds the whole chunks before it), and left as ``.partial`` if
    writing its file failed.

    Cancelling a call stops the wait at once, but an operation already handed to its
    thread cannot be interrupted: it completes (a chunk is copied whole, a segment
    finished), and the next call waits for it; the ``on_segment`` call for a segment it
    finished is made by the next call.

    Raises:
        ValueError: ``template`` has no ``{index}`` field (or has another field), or a
            limit is not positive.
    """

    def __init__(
        self,
        template: str,
        *,
        max_duration: float | None = None,
        max_bytes: int | None = None,
        on_segment: Callable[[Segment], object] | None = None,
        fsync: bool = True,
    ) -> None:
        try:
            first, second = template.format(index=0), template.format(index=1)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"template must have an {{index}} field and no other: {template!r} ({exc!r})") from exc
        if first == second:
            raise ValueError(f"template has no {{index}} field: {template!r}")
        if max_duration is not None and not max_duration > 0:
            raise ValueError(f"max_duration must be positive (seconds), not {max_duration!r}")
        if max_bytes is not None and not max_bytes > 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes!r}")
        self.template = template
        self.max_duration = max_duration
        self.max_bytes = max_bytes
        self.on_segment = on_segment
        self.fsync = fsync
        #: The finished segments, in order.
        self.segments: list[Segment] = []
        self._index = 0  # the next segment's
        self._current: _Open | None = None
        self._demuxer: str | None = None  # FFmpeg's name ("matroska,webm"), from the first chunk
        self._layout: list[tuple[str, str]] | None = None  # (type, codec) per stream, likewise
        self._error: SinkError | None = None
        self._closed = False
        # Finished segments not yet announced (appended on the thread, taken on the loop).
        self._finished_segments: deque[Segment] = deque()
        self._announcing = asyncio.Lock()
        self._thread = SerialThread()

    @property
    def error(self) -> SinkError | None:
        """The failure that ended this sink, or None while it works."""
        return self._error

    async def write(self, chunk: BlobEvent) -> None:
        """Copy a chunk into the current segment (starting one if needed); finish the
        segment if it has reached a limit, then call ``on_segment``. A chunk with no data
        is skipped.

        Raises:
            SinkError: the chunk is not a media file on its own (the recording was made
                without ``independent_chunks=True``) or its streams differ from the
                first chunk's, a segment's file cannot be written (from the ``OSError``), the
                sink failed before (the same error, at once), or it is closed.

        Cancelling stops the wait; a chunk already on its thread is still copied whole
        (and its segment finished, if due) before any later call runs.
        """
        self._check()
        await self._announce()
        if chunk.data:
            await self._thread.call(functools.partial(self._add, chunk.data))
            await self._announce()

    async def aclose(self) -> None:
        """Finish the segment in progress (then call ``on_segment``); idempotent.

        After a failure it finishes the segment if that holds whole chunks and its file
        works, without raising the failure again: the call that met it reported it.

        Raises:
            SinkError: finishing the segment failed (from the ``OSError``; it is left as
                ``.partial``) and nothing failed before.

        Cancelling stops the wait; the segment is finished all the same (its
        ``on_segment`` is then not called).
        """
        try:
            await self._thread.call(self._close)
        finally:
            await self._announce()

    async def __aenter__(self) -> SegmentSink:
        self._check()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- on the event loop -------------------------------------------------------------------
    async def _announce(self) -> None:
        """Hand each finished segment to ``segments`` and ``on_segment``, in order."""
        async with self._announcing:
            while self._finished_segments:
                segment = self._finished_segments.popleft()
                self.segments.append(segment)
                if self.on_segment is not None:
                    result = self.on_segment(segment)
                    if inspect.isawaitable(result):
                        await result

    # -- on the thread (and _check on either) ------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise SinkError(self._path(), "the sink is closed")

    def _path(self) -> str:
        """The path of the segment in progress, or of the next one."""
        return self._current.path if self._current is not None else self.template.format(index=self._index)

    def _fail(self, message: str, path: str | None = None) -> SinkError:
        """A SinkError for the segment in progress (or ``path``); the sink's first
        failure is the one it keeps raising."""
        error = SinkError(path or self._path(), message)
        if self._error is None:
            self._error = error
        return error

    def _add(self, data: bytes) -> None:
        self._check()
        try:
            # Every chunk after the first is read as a file of the same kind.
            kind = self._demuxer.split(",")[0] if self._demuxer is not None else None
            source = av.open(io.BytesIO(data), mode="r", format=kind)
        except (av.FFmpegError, EOFError, OSError, ValueError) as exc:
            raise self._fail(f"a chunk is not a media file of its own ({_words(exc)}); {_NOT_INDEPENDENT}") from exc
        assert isinstance(source, InputContainer)
        with source:
            streams = [s for s in source.streams if s.type in ("video", "audio")]
            packets = self._read(source, streams)
            if not packets:
                return  # a header alone: nothing to keep
            if self._current is None:
                self._begin(streams)
            segment = self._current
            assert segment is not None
            if segment.start is None:
                segment.offset = _origin(packets)
                segment.start = float(segment.offset * 1000)
            self._copy(segment, packets)
        if self._due(segment):
            self._finish()

    def _read(self, source: InputContainer, streams: list[Any]) -> list[av.Packet[Any]]:
        """Every packet of a chunk, which is checked whole before any of it is written."""
        layout = [(s.type, s.codec_context.name) for s in streams]
        if not streams:
            raise self._fail(f"a chunk holds no audio or video; {_NOT_INDEPENDENT}")
        if self._layout is not None and layout != self._layout:
            raise self._fail(f"a chunk's streams {layout} differ from the recording's {self._layout}")
        packets = []
        try:
            for packet in source.demux(streams):
                if packet.dts is None or packet.size == 0 or not packet.time_base:
                    continue  # a flush packet
                packets.append(packet)
        except (av.FFmpegError, EOFError) as exc:
            raise self._fail(f"a chunk cannot be read ({_words(exc)}); {_NOT_INDEPENDENT}") from exc
        video = next((p for p in packets if p.stream.type == "video"), None)
        if video is not None and not video.is_keyframe:
            raise self._fail(f"a chunk does not start with a key frame; {_NOT_INDEPENDENT}")
        if self._demuxer is None:
            self._demuxer = source.format.name
            self._layout = layout
        return packets

    def _begin(self, streams: list[Any]) -> None:
        """Open the next segment's file (as ``.partial``), with ``streams`` as templates."""
        path = self.template.format(index=self._index)
        partial = path + PARTIAL_SUFFIX
        assert self._demuxer is not None
        muxer = _muxer(self._demuxer, [s.codec_context.name for s in streams], path)
        # A real file, so the muxer can seek back: Duration and Cues (Matroska), the moov (MP4).
        options = {"movflags": "+faststart"} if muxer == "mp4" else {}
        try:
            output = av.open(partial, mode="w", format=muxer, options=options)
        except (av.FFmpegError, OSError) as exc:
            raise self._fail(_reason(exc, f"cannot write {muxer}"), path) from exc
        try:
            mapped = {s.index: output.add_stream_from_template(s, opaque=True) for s in streams}
            output.start_encoding()
        except (av.FFmpegError, OSError, ValueError) as exc:
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                output.close()
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise self._fail(_reason(exc, "cannot start the file"), path) from exc
        self._current = _Open(self._index, path, output, mapped)
        self._index += 1

    def _copy(self, segment: _Open, packets: list[av.Packet[Any]]) -> None:
        """Mux a chunk's packets into the segment, moved to the segment's time."""
        try:
            for packet in packets:
                time_base = packet.time_base
                assert time_base is not None
                assert packet.dts is not None
                shift = round(segment.offset / time_base)
                packet.dts -= shift
                if packet.pts is not None:
                    packet.pts -= shift
                stream = segment.streams[packet.stream.index]
                # Strictly increasing per stream, as muxers require.
                dts = packet.dts * time_base
                if stream.index in segment.last_dts and dts <= segment.last_dts[stream.index]:
                    continue
                segment.last_dts[stream.index] = dts
                if packet.pts is not None:
                    segment.end = max(segment.end, (packet.pts + (packet.duration or 0)) * time_base)
                if packet.stream.type == "video":
                    lower_dts(packet, segment.lead)
                segment.media_bytes += packet.size
                packet.stream = stream
                segment.output.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abandon(segment)
            raise self._fail(_reason(exc, "cannot write a chunk"), segment.path) from exc

    def _due(self, segment: _Open) -> bool:
        if self.max_duration is None and self.max_bytes is None:
            return True  # no limit: every chunk a segment
        if self.max_duration is not None and segment.end >= Fraction(self.max_duration) - _DURATION_SLACK:
            return True
        return self.max_bytes is not None and segment.media_bytes >= self.max_bytes

    def _finish(self) -> None:
        """Close the segment in progress, sync it and give it its final name."""
        segment = self._current
        if segment is None:
            return
        try:
            segment.output.close()  # the trailer: Duration and Cues, or the moov
            size = os.path.getsize(segment.partial)
            if self.fsync:
                _sync(segment.partial)
            os.replace(segment.partial, segment.path)
            if self.fsync:
                _sync(os.path.dirname(os.path.abspath(segment.path)), directory=True)
        except (av.FFmpegError, OSError) as exc:
            self._abandon(segment)
            raise self._fail(_reason(exc, "cannot finish the file"), segment.path) from exc
        self._current = None
        start = segment.start if segment.start is not None else 0.0
        self._finished_segments.append(Segment(segment.path, segment.index, start, float(segment.end * 1000), size))

    def _abandon(self, segment: _Open) -> None:
        """Leave a segment whose file failed as ``.partial`` (its whole chunks can be repaired)."""
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):
            segment.output.close()
        if self._current is segment:
            self._current = None
        logger.warning("%s: left unfinished as %s", segment.path, segment.partial)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        failed = self._error
        try:
            self._finish()
        except SinkError as exc:
            if failed is None:
                raise
            logger.debug("finishing a segment after %s failed too: %s", failed, exc)


def _origin(packets: list[av.Packet[Any]]) -> Fraction:
    """Where a segment whose first chunk holds ``packets`` starts in the recording (s):
    at its earliest packet, or at 0 for the first chunk, whose audio starts before 0 by
    the encoder's priming (which stays before the segment's 0, as in the recording)."""
    starts = [p.pts * p.time_base for p in packets if p.pts is not None and p.time_base]
    return max(Fraction(0), min(starts, default=Fraction(0)))


def _reason(exc: BaseException, what: str) -> str:
    """An OSError's own words (``No such file or directory``), else ``what: ...``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{what}: {_words(exc)}"


def _words(exc: BaseException) -> str:
    """FFmpeg's message for a PyAV error, without its errno and file name."""
    strerror = getattr(exc, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else str(exc)
