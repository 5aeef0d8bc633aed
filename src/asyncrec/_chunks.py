"""Cutting the muxer's output into ``dataavailable`` chunks, on the worker thread.

The muxer writes into a write-only sink (no seek, so FFmpeg never rewrites bytes that may
already have left in a chunk), and bytes leave it only between two ``mux`` calls: a chunk
always ends on a cluster (WebM, Matroska), fragment (MP4) or page (Ogg) boundary. Those
are kept short (at most ``MAX_CLUSTER_MS`` of media), so a chunk holds about what was asked.

With a timeslice, Matroska clusters hold one block each (``matroska_cluster_ms`` 0).
FFmpeg's muxer keeps a cluster's bytes until a later packet closes it, and PyAV has no
call to flush it. Chromium's muxer writes each block as it comes, and one-block clusters
are the closest FFmpeg gets. A chunk can then end at any block: it is cut as soon as the
first block past the timeslice reaches the muxer. Longer clusters made a frame wait for
its cluster to close. A key frame or 32 KiB also close a cluster early, and the chunk then
waited for a whole second cluster (167 ms for a 100 ms timeslice). The cost is about 5
bytes per block (measured: 0.1 % of a 2.7 Mb/s 480p file).

The muxer (and FFmpeg's interleaver before it) still holds the newest packets, so what a
chunk holds is read back from its bytes: PyAV's demuxer counts its packets per stream,
and the chunk ends where the first packet still held starts (the cutter keeps each stream's
packet times in the order they went in, which is the order they come out). The timeslice
is counted from the packet that cut the last chunk: the true end trails it by about as
much each time.

When a chunk is cut (the spec's ``timeslice`` is "the number of milliseconds of data to
return in a single Blob"):

* **media time**: once the muxer has written ``timeslice`` of media since the last cut;
* **wall time**, for real-time sources only: ``timeslice`` after the last cut, so a live
  source that stalls still delivers on time (for a source faster than real time the
  wall clock means nothing and is ignored);
* ``requestData()``: at the next cluster boundary (at most one short cluster later), or
  after ``CUT_GRACE`` with what there is;
* ``stop()``: everything left, as the final chunk.

With independent chunks the worker closes the muxer and opens a new one at each cut
(:meth:`ChunkCutter.due`, :meth:`ChunkCutter.wall_due`, and at once for
``requestData()``), so every chunk is a file of its own; this then only keeps the times.

Each chunk also says whether it starts with a key frame (its first video frame decodes
without an earlier chunk: read back with PyAV's demuxer behind the first chunk, which
holds the header) and when, by the wall clock, its first frame reached the recorder.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import av

logger = logging.getLogger(__name__)

#: Longest span of media the muxer holds before writing it out (ms).
MAX_CLUSTER_MS = 100
#: A requestData() waits at most this long past the muxer's cluster for it to close (s).
CUT_GRACE = 0.1


@dataclass(slots=True)
class Chunk:
    """Bytes for one ``dataavailable``; ``request`` is the requestData() id that asked for it."""

    data: bytes
    #: Media time of the chunk's first data (ms from the recording's start).
    timecode: float
    #: Media the chunk holds (ms).
    duration: float
    request: int | None = None
    final: bool = False
    #: Its first video frame is a key frame (or it holds no video: nothing to wait for).
    keyframe: bool = False
    #: UNIX time (s) at which its first frame reached the recorder; None if empty.
    wallclock: float | None = None


class WriteOnlySink:
    """A write-only file for the muxer (no ``seek``/``tell``)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.total = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self.total += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data

    @property
    def pending(self) -> bool:
        return bool(self._parts)


@dataclass
class _Requests:
    ids: list[int] = field(default_factory=list)
    deadline: float = 0.0
    mark: int = 0


class ChunkCutter:
    """Decides when the sink's bytes leave as a chunk (see the module docstring)."""

    def __init__(
        self, timeslice: float | None, *, has_video: bool = False, independent: bool = False, matroska: bool = False
    ) -> None:
        self.sink = WriteOnlySink()
        self._has_video = has_video
        self.independent = independent
        self._header = b""  # the first chunk's bytes: what later chunks are read behind
        # Wall clock: UNIX time = monotonic + this; and the least (arrival - media time)
        # of the frames since the last cut, the capture delay least disturbed by jitter.
        self._epoch = time.time() - time.monotonic()
        self._arrival_offset = math.inf
        self._timeslice = timeslice
        self.cluster_ms = MAX_CLUSTER_MS if timeslice is None else max(10, min(MAX_CLUSTER_MS, round(timeslice * 1000)))
        #: Matroska's cluster_time_limit: one block per cluster when chunks are timed.
        self.matroska_cluster_ms = MAX_CLUSTER_MS if timeslice is None else 0
        #: One-block clusters: per stream index, the (start, end) in ms of each packet muxed
        #: and not yet in a chunk, in order (see the module docstring).
        self._fed: dict[int, deque[tuple[float, float]]] | None = (
            {} if matroska and timeslice is not None and not independent else None
        )
        self._requests = _Requests()
        self._chunk_start = 0.0  # ms
        self._written_until = 0.0  # ms: the media the sink's bytes cover
        # Where the timeslice is counted from: the chunk's start, or with one-block
        # clusters the packet that cut the last chunk (the muxer holds the newest packets,
        # so a chunk's true end trails it by about as much each time: counting from the
        # true end would make every chunk that much short).
        self._slice_start = 0.0  # ms
        self._media_end = 0.0  # ms: where the media muxed so far ends
        self._wall_deadline: float | None = None
        # The wall-clock deadline passed while the muxer still held its cluster: the chunk
        # is cut as soon as the muxer writes (not a whole timeslice later).
        self._overdue = False
        self.chunks: list[Chunk] = []

    # -- what happened ----------------------------------------------------------------------
    def frame(self, at: float, arrival: float, realtime: bool) -> None:
        """A frame at media time ``at`` (s) that arrived at ``arrival`` (monotonic s) is
        encoded. Real time: the least delay since the last cut (jitter only adds delay);
        otherwise media and wall time part ways, and the chunk's first frame says when."""
        if realtime:
            self._arrival_offset = min(self._arrival_offset, arrival - at)
        elif not math.isfinite(self._arrival_offset):
            self._arrival_offset = arrival - at

    def realtime(self, now: float, realtime: bool) -> None:
        """Whether the recording's sources run at real time, as its latest frames tell."""
        if self._timeslice is None:
            return
        if not realtime:
            self._wall_deadline = None
            self._overdue = False
        elif self._wall_deadline is None:
            self._wall_deadline = now + self._timeslice

    def muxed(self, before: int, at_ms: float | None, end_ms: float | None = None, stream: int = 0) -> None:
        """The muxer took a packet of ``stream`` (its index) at media time ``at_ms`` (ending
        at ``end_ms``); the sink held ``before`` bytes."""
        if end_ms is not None:
            self._media_end = max(self._media_end, end_ms)
            if self._fed is not None and at_ms is not None:
                self._fed.setdefault(stream, deque()).append((at_ms, end_ms))
        if self.sink.total != before and at_ms is not None:
            # The muxer has just written out what it held: its new cluster starts about here.
            self._written_until = max(self._written_until, at_ms)
            if self.independent:
                return  # the worker cuts where a new file can start
            if self._timeslice is not None and (
                self._overdue or self._written_until - self._slice_start >= self._timeslice * 1000
            ):
                self.cut()
        if self._requests.ids and self.sink.total > self._requests.mark:
            self._answer_requests()

    def request(self, request: int, now: float, immediate: bool) -> None:
        """requestData(): cut at the next cluster boundary (``immediate``: now, nothing
        more can come from the muxer before it)."""
        self._requests.ids.append(request)
        if immediate or len(self._requests.ids) > 1:
            if len(self._requests.ids) == 1:
                self._answer_requests()
            return
        self._requests.deadline = now + self.cluster_ms / 1000 + CUT_GRACE
        self._requests.mark = self.sink.total

    # -- independent chunks -------------------------------------------------------------------
    def due(self, at_ms: float) -> bool:
        """Whether media at ``at_ms`` belongs in the next chunk (by the timeslice)."""
        return self._timeslice is not None and at_ms - self._chunk_start >= self._timeslice * 1000

    def wall_due(self, now: float) -> bool:
        """Whether a real-time recording's chunk is due by the wall clock."""
        if self._wall_deadline is None or now < self._wall_deadline:
            return False
        if not self.sink.pending:
            assert self._timeslice is not None
            self._wall_deadline = now + self._timeslice
            return False
        return True

    def piece_done(self, request: int | None, at_ms: float) -> None:
        """The worker closed the muxer: everything muxed is in the sink; cut it, the
        next chunk starting at ``at_ms``."""
        self._written_until = max(self._written_until, at_ms)
        self.cut(request=request)

    def answer_empty(self, request: int) -> None:
        """A requestData() when nothing was muxed since the last cut."""
        self.chunks.append(Chunk(b"", self._chunk_start, 0.0, request))

    # -- timers -----------------------------------------------------------------------------
    def deadline(self) -> float | None:
        deadlines = [d for d in (self._wall_deadline,) if d is not None]
        if self._requests.ids:
            deadlines.append(self._requests.deadline)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> None:
        if self.independent:
            return  # the worker asks wall_due()
        if self._requests.ids and now >= self._requests.deadline:
            self._answer_requests()
        if self._wall_deadline is not None and now >= self._wall_deadline:
            if self.sink.pending:
                self.cut()
            else:
                assert self._timeslice is not None
                self._wall_deadline = now + self._timeslice
                self._overdue = True

    # -- cutting ----------------------------------------------------------------------------
    def cut(self, *, request: int | None = None, final: bool = False) -> None:
        data = self.sink.take()
        duration = max(0.0, self._written_until - self._chunk_start) if data else 0.0
        chunk = Chunk(data, self._chunk_start, duration, request, final)
        if data:
            chunk.keyframe, end = self._read_back(data)
            if end is not None:
                chunk.duration = max(0.0, end - self._chunk_start)
            if math.isfinite(self._arrival_offset):
                chunk.wallclock = self._epoch + self._arrival_offset + self._chunk_start / 1000
                self._arrival_offset = math.inf
        self.chunks.append(chunk)
        if data:
            self._chunk_start = self._chunk_start + chunk.duration
            self._slice_start = self._written_until
            self._overdue = False
        if self._wall_deadline is not None and self._timeslice is not None:
            self._wall_deadline = time.monotonic() + self._timeslice

    def _read_back(self, data: bytes) -> tuple[bool, float | None]:
        """Whether the chunk ``data`` starts with a key frame, and where its media ends
        (ms) when it must be read back (one-block clusters; else None): where the first
        packet the muxer still holds starts, or the end of the last one if it holds none."""
        first = not self._header
        if first:
            self._header = data
        if self._fed is None:
            if first or not self._has_video or self.independent:
                return True, None  # the header and the first frames; audio frames all decode alone
            return read_chunk(self._header, data, count=False)[0], None
        header = b"" if first else self._header
        key, counts = read_chunk(header, data)
        if counts is None:  # not expected (the muxer's own bytes): count as other muxers do
            self._fed = None
            return first, None
        ends: list[float] = []
        for index, count in counts.items():
            fed = self._fed.get(index)
            while fed and count:
                ends.append(fed.popleft()[1])
                count -= 1
        held = [fed[0][0] for fed in self._fed.values() if fed]
        end = min(held) if held else max([*ends, self._media_end])
        return first or not self._has_video or key, max(self._chunk_start, end)

    def finish(self) -> None:
        """The muxer is closed: answer what is asked, then the final chunk (which holds
        the media up to the end of the last packet)."""
        self._written_until = max(self._written_until, self._media_end)
        self._answer_requests()
        self.cut(final=True)

    def _answer_requests(self) -> None:
        ids, self._requests.ids = self._requests.ids, []
        for request in ids:
            self.cut(request=request)

    def take(self) -> list[Chunk]:
        chunks, self.chunks = self.chunks, []
        return chunks


def read_chunk(header: bytes, data: bytes, *, count: bool = True) -> tuple[bool, dict[int, int] | None]:
    """Whether the first video packet in ``data`` is a key frame (True if it has none),
    and how many packets of each stream index it holds (None if it cannot be read), read
    by PyAV's demuxer from ``header + data`` (``header``: the recording's first chunk;
    empty for that chunk). ``count=False`` reads only the video, up to its first packet
    in ``data``: the key frame answer alone."""
    counts: dict[int, int] = {}
    key: bool | None = None
    try:
        with av.open(io.BytesIO(header + data), mode="r") as container:
            streams = list(container.streams) if count else list(container.streams.video[:1])
            for packet in container.demux(streams) if streams else ():
                if packet.pos is not None and packet.pos >= len(header) and packet.size:
                    counts[packet.stream.index] = counts.get(packet.stream.index, 0) + 1
                    if key is None and packet.stream.type == "video":
                        key = bool(packet.is_keyframe)
                        if not count:
                            break
    except (av.FFmpegError, EOFError) as exc:
        logger.debug("chunk not readable behind the header: %s", exc)
        return False, None
    return key is None or key, counts
