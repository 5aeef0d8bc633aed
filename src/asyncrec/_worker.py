"""The recording worker: the thread that owns one recording's encoders and muxer.

One thread per recording owns the container, its streams, the video and audio paths and
the chunk cutter, so PyAV objects are only ever used from one thread (they are not
thread-safe) and calls stay ordered. The thread takes everything the inputs queued at
once, encodes and muxes it (PyAV releases the GIL inside codecs, filters and the muxer),
and hands what it produced back to the loop in one ``call_soon_threadsafe`` per batch.

Before the header can be written every stream must be known, so frames are held until
each track has sent its first one (bounded: ``OPEN_TIMEOUT`` after the first frame, or
``PREOPEN_BYTES`` held, whichever comes first; nothing is dropped). The recording is
then shifted so its earliest frame is at 0.

When the encoder falls behind a real-time source, its video frames that have waited
longer than ``STALE_AFTER`` are dropped (counted), oldest first, so the worker catches up
with the audio, which is never dropped.

A track whose first frame is an encoded one (:class:`~asyncrec._encoded.EncodedFrame`,
a WebRTC peer's, see :mod:`asyncrec._copy`) is copied: its stream has no encoder, and
each frame becomes one packet, at its place on the recording's clock. A copy track
that sent nothing before the header is set up to encode instead (``Opened.encoded``
tells the recording, which then decodes it); encoded frames that still reach it are
not recorded.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

from ._audio import AudioPath, silence_like
from ._chunks import CUT_GRACE, Chunk, ChunkCutter
from ._codec_strings import codec_string
from ._container import StreamSetup, WorkerSettings, open_container, open_piece
from ._encoded import OPUS_SILENCE, EncodedFrame, opus_samples
from ._errors import AsyncrecError, UnknownError, map_av_errors
from ._formats import CODECS, Format
from ._handoff import Cut, FrameItem, HandOff, Pause, Resume, Stop, monotonic
from ._interleave import lower_dts, video_lead
from ._video import VideoPath, black_frame, worker_finished, worker_started

logger = logging.getLogger(__name__)

# SVT-AV1 prints its configuration to stderr at every encoder open unless told not to
# (it reads this when an encoder opens).
os.environ.setdefault("SVT_LOG", "1")

#: How long to wait for the first frame of every track before writing the header (s).
OPEN_TIMEOUT = 3.0
#: Bytes of frames held while waiting for the other tracks' first frames.
PREOPEN_BYTES = 64 * 1024 * 1024
#: How often a worker held back by slow handlers looks at its timers (s).
OUTFLOW_RECHECK = 0.1
#: Real-time video that has waited this long for the encoder is dropped (s).
STALE_AFTER = 0.5


@dataclass(slots=True)
class Failure:
    error: AsyncrecError


@dataclass(slots=True)
class Opened:
    """The encoders are open and the header is written: ``codecs`` are the RFC 6381
    strings of what is recorded, video first."""

    codecs: list[str]
    #: The video's picture size, None without video.
    video_size: tuple[int, int] | None = None
    #: Tracks set up to be encoded (every track that is not copied).
    encoded: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Finished:
    pass


Output = Chunk | Failure | Opened | Finished


@dataclass
class WorkerCounters:
    """Counters the worker updates and the loop reads (plain numbers: atomic under the GIL)."""

    encoded: list[int]
    #: Real-time video dropped because it went stale waiting for the encoder.
    dropped: list[int]
    busy: float = 0.0
    #: Media time (s) encoded so far.
    media_time: float = 0.0
    #: Written audio's end minus the recording's clock for it (s; positive: audio late).
    av_offset: float | None = None
    #: Bytes of frames held until the header can be written (at most ``PREOPEN_BYTES``).
    held_bytes: int = 0


@dataclass(frozen=True)
class TrackInfo:
    kind: str
    frame_rate: Fraction | None = None


@dataclass
class _Track:
    info: TrackInfo
    first: av.VideoFrame | av.AudioFrame | EncodedFrame | None = None
    #: Its frames are copied, not encoded.
    copy: bool = False
    stream: VideoStream | AudioStream | None = None
    last_pts: int = -1
    #: Copied audio: where its last packet ends (stream time base), None before the first.
    copy_end: int | None = None
    frames_since_key: int = 0
    last_key_time: float | None = None
    audio: AudioPath | None = None
    video: VideoPath | None = None


@dataclass
class _Preopen:
    items: list[FrameItem] = field(default_factory=list)
    nbytes: int = 0
    deadline: float | None = None


def measured_rate(items: list[FrameItem]) -> Fraction | None:
    """The frame rate of video frames held before the header, if they are evenly spaced
    (within 10%); None for too few frames or a variable rate."""
    if len(items) < 3 or not isinstance(items[0].frame, av.VideoFrame):
        return None
    steps = [b.time - a.time for a, b in itertools.pairwise(items)]
    low, high = min(steps), max(steps)
    if low <= 0 or high > low * 1.1:
        return None
    return Fraction(len(steps) / sum(steps)).limit_denominator(1001)


class RecordingWorker:
    """Owns one recording's PyAV objects on its own thread (see the module docstring)."""

    def __init__(
        self,
        fmt: Format,
        tracks: list[TrackInfo],
        settings: WorkerSettings,
        handoff: HandOff,
        post: Callable[[list[Output]], None],
        counters: WorkerCounters,
        outflow: threading.Event | None = None,
    ) -> None:
        self._fmt = fmt
        self._outflow = outflow
        self._realtime = False  # the latest frames came from a real-time source
        self._tracks = [_Track(info) for info in tracks]
        self._settings = settings
        self._handoff = handoff
        self._post = post
        self.counters = counters
        self._thread = threading.Thread(target=self._run, name="asyncrec-worker", daemon=True)
        self._container: OutputContainer | None = None
        #: How much lower video dts go to the muxer (see _interleave).
        self._video_lead = Fraction(0)
        self._cutter = ChunkCutter(
            settings.timeslice,
            has_video=any(t.kind == "video" for t in tracks),
            independent=settings.independent_chunks,
            matroska=fmt.muxer in ("webm", "matroska"),
        )
        #: The muxer packets go to: the first one (whose streams hold the encoders) or,
        #: with independent chunks, the current chunk's; None between two chunks.
        self._muxer: OutputContainer | None = None
        self._force_key = False  # the next video frame starts an independent chunk
        self._has_video = any(t.kind == "video" for t in tracks)
        self._video_end_ms = 0.0  # where the video muxed so far ends (audio, if none)
        self._piece_asked: list[int | None] = []  # cuts waiting for the next video frame
        self._piece_deadline: float | None = None
        self._preopen = _Preopen()
        self._start = 0.0  # media time shifted to 0 (s)
        self._outputs: list[Output] = []
        self._failed = False
        self._paused = False

    # -- lifetime (called from the loop) ----------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread; called once it has reported Finished, so it returns at once."""
        self._thread.join()

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        worker_started()
        try:
            self._serve()
        except Exception as exc:  # a bug in asyncrec: report it rather than die silently
            logger.exception("recording worker crashed")
            self._fail(UnknownError(f"recording worker crashed: {exc!r}"))
            self._cutter.finish()
            self._outputs.extend(self._cutter.take())
        finally:
            worker_finished()
            self._outputs.append(Finished())
            self._flush_outputs()

    def _serve(self) -> None:
        while True:
            self._wait_for_outflow()
            items = self._handoff.take(self._timeout())
            now = monotonic()
            newest = {item.track: item for item in items if isinstance(item, FrameItem) and item.droppable}
            for item in items:
                if isinstance(item, FrameItem):
                    if self._stale(item, newest):
                        self.counters.dropped[item.track] += 1
                    else:
                        self._frame(item)
                        if self._cutter.chunks:  # cut by this frame: out now, not after the batch
                            self._outputs.extend(self._cutter.take())
                            self._flush_outputs()
                elif isinstance(item, Stop):
                    self._finish(item.video_end)
                    return
                elif isinstance(item, Cut):
                    if self._cutter.independent and self._container is not None and not self._failed:
                        self._ask_piece(item.request)
                    else:
                        immediate = self._container is None or self._paused or self._failed
                        self._cutter.request(item.request, monotonic(), immediate)
                elif isinstance(item, Pause):
                    self._paused = True
                elif isinstance(item, Resume):
                    self._paused = False
            frames = [item for item in items if isinstance(item, FrameItem)]
            if frames:
                self._realtime = any(item.realtime for item in frames)
                self._cutter.realtime(now, self._realtime)
            self._timers(monotonic())
            self._flush_outputs()

    def _wait_for_outflow(self) -> None:
        """Backpressure: while the loop has too many chunks undelivered, take no more
        frames of sources that can wait (the hand-off fills, their inputs wait). A
        real-time source cannot wait; the recorder's bound stops it if it must."""
        outflow = self._outflow
        while outflow is not None and not outflow.is_set() and not self._realtime:
            outflow.wait(OUTFLOW_RECHECK)
            now = monotonic()
            self._timers(now)
            self._flush_outputs()

    def _stale(self, item: FrameItem, newest: dict[int, FrameItem]) -> bool:
        """Whether ``item`` is real-time video that has waited too long for the encoder
        (judged as it comes up, so a slow batch does not encode frames gone stale while
        it ran) and a newer frame of its track is at hand."""
        return (
            item.droppable
            and self._container is not None
            and newest[item.track] is not item
            and monotonic() - item.arrival > STALE_AFTER
        )

    def _timeout(self) -> float | None:
        deadlines = [
            d for d in (self._cutter.deadline(), self._preopen.deadline, self._piece_deadline) if d is not None
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - monotonic())

    def _timers(self, now: float) -> None:
        if self._container is None and self._preopen.deadline is not None and now >= self._preopen.deadline:
            self._open()
        if self._cutter.independent and self._container is not None:
            if not self._piece_asked and self._cutter.wall_due(now):
                self._ask_piece(None)
            if self._piece_deadline is not None and now >= self._piece_deadline:
                self._piece_now(None)  # no frame came to start it: cut where the video ends
        self._cutter.tick(now)
        self._outputs.extend(self._cutter.take())

    # -- frames -----------------------------------------------------------------------------
    def _frame(self, item: FrameItem) -> None:
        if self._failed:
            return
        if self._container is None:
            self._hold(item)
            return
        self._encode(item)

    def _hold(self, item: FrameItem) -> None:
        """Keep frames until every track has sent one: the header needs all the streams."""
        track = self._tracks[item.track]
        if track.first is None:
            track.first = item.frame
        if self._preopen.deadline is None:
            self._preopen.deadline = monotonic() + OPEN_TIMEOUT
        self._preopen.items.append(item)
        self._preopen.nbytes += item.nbytes
        self.counters.held_bytes = self._preopen.nbytes
        if all(t.first is not None for t in self._tracks) or self._preopen.nbytes > PREOPEN_BYTES:
            self._open()

    def _open(self, *, media_only: bool = False) -> None:
        """Add the streams and write the header. ``media_only``: the recording is ending
        before every track sent a frame; a track that sent none gets no stream (an empty
        stream would only make players and ``mimeType`` name what is not there)."""
        held, self._preopen = self._preopen.items, _Preopen()
        self.counters.held_bytes = 0
        # Tracks of one clock domain may start before the first frame that arrived
        # (negative times): the recording starts at its earliest frame.
        self._start = min(0.0, min((item.time for item in held), default=0.0))
        # A copied track's codec is the stream's, whatever the type's default for its kind.
        for track in self._tracks:
            if isinstance(track.first, EncodedFrame):
                copied = CODECS[track.first.codec]
                if track.info.kind == "video":
                    self._fmt = replace(self._fmt, video=copied)
                else:
                    self._fmt = replace(self._fmt, audio=copied)
        present = [n for n, t in enumerate(self._tracks) if not media_only or t.first is not None]
        setups = [
            StreamSetup(t.info.kind, t.first, t.info.frame_rate or measured_rate([i for i in held if i.track == n]))
            for n, t in ((n, self._tracks[n]) for n in present)
        ]
        try:
            with map_av_errors("opening the muxer"):
                self._container, streams = open_container(
                    self._fmt,
                    setups,
                    self._settings,
                    self._cutter.sink,
                    self._cutter.cluster_ms,
                    self._cutter.matroska_cluster_ms,
                )
                # The header now: the encoders open, so their priming is known before the
                # first packet reaches the interleaver.
                self._container.start_encoding()
                self._video_lead = video_lead(self._container, streams)
                self._muxer = self._container
        except AsyncrecError as exc:
            self._fail(exc)
            return
        codecs = []
        for setup, stream in zip(setups, streams, strict=True):
            spec = self._fmt.video if setup.kind == "video" else self._fmt.audio
            assert spec is not None
            codecs.append(codec_string(spec, self._fmt.container.muxer, stream, setup.frame_rate))
        video = next((s for s in streams if isinstance(s, VideoStream)), None)
        self._has_video = video is not None
        size = None if video is None else (video.codec_context.width, video.codec_context.height)
        encoded = [n for n, setup in zip(present, setups, strict=True) if not isinstance(setup.first, EncodedFrame)]
        self._outputs.append(Opened(codecs, size, encoded))
        for track, stream in zip((self._tracks[n] for n in present), streams, strict=True):
            track.stream = stream
            if isinstance(track.first, EncodedFrame):
                track.copy = True
            elif isinstance(stream, VideoStream):
                track.video = VideoPath(stream)
            else:
                assert self._fmt.audio is not None
                track.audio = AudioPath(stream, self._fmt.audio.frame_size)
        for item in held:
            if self._failed:
                break
            self._encode(item)

    def _encode(self, item: FrameItem) -> None:
        track = self._tracks[item.track]
        at = max(0.0, item.time - self._start)
        # Independent chunks: a video frame starts the next file (as a key frame);
        # audio only follows, unless there is no video.
        starts = track.info.kind == "video" or not self._has_video
        if starts and self._cutter.independent and self._muxer is not None:
            if self._piece_asked:
                self._piece_now(at * 1000)
            elif self._cutter.due(at * 1000):
                self._next_piece(at_ms=at * 1000)
        started = time.perf_counter()
        if track.copy != isinstance(item.frame, EncodedFrame):
            self.counters.dropped[item.track] += 1  # the recording switches this track to decoding
            return
        try:
            with map_av_errors(f"encoding {track.info.kind}"):
                if track.copy:
                    packets = self._copy_packets(track, item, at)
                elif track.video is not None:
                    packets = self._encode_video(track, item, at)
                else:
                    assert track.audio is not None
                    frame = item.frame
                    assert isinstance(frame, av.AudioFrame)
                    packets = track.audio.push(silence_like(frame) if item.blank else frame, at)
                    self.counters.av_offset = track.audio.offset
                self._mux(packets)
        except AsyncrecError as exc:
            self._fail(exc)
            return
        finally:
            self.counters.busy += time.perf_counter() - started
        self.counters.encoded[item.track] += 1
        self.counters.media_time = max(self.counters.media_time, at)
        self._cutter.frame(at, item.arrival, item.realtime)

    def _encode_video(self, track: _Track, item: FrameItem, at: float) -> list[av.Packet[Any]]:
        assert track.video is not None
        assert isinstance(track.stream, VideoStream)
        frame = item.frame
        assert isinstance(frame, av.VideoFrame)
        if item.blank:
            ctx = track.stream.codec_context
            frame = black_frame(ctx.width, ctx.height)
        pts = max(round(at * 1000), track.last_pts + 1)
        track.last_pts = pts
        own = track.video.own(frame, pts, self._force_key or self._key_frame_due(track, at))
        self._force_key = False
        packets = track.stream.encode(own)
        for packet in packets:
            if packet.is_keyframe:
                track.frames_since_key = 0
                track.last_key_time = at
        track.frames_since_key += 1
        return packets

    def _copy_packets(self, track: _Track, item: FrameItem, at: float) -> list[av.Packet[Any]]:
        """An encoded frame as a packet of its track's stream, at ``at`` (s); copied Opus
        after a gap of more than two packets comes after 20 ms packets of silence that
        fill it, as decoded audio's gaps become silence (players stall on a hole)."""
        frame = item.frame
        assert isinstance(frame, EncodedFrame)
        assert track.stream is not None
        time_base = track.stream.time_base
        assert time_base is not None
        pts = round(at / time_base)
        if frame.codec != "opus":
            pts = max(pts, track.last_pts + 1)
            track.last_pts = pts
            return [_packet(track.stream, frame.data, pts, None, frame.key)]
        packets = self._opus_silence(track, until=pts) if track.copy_end is not None else []
        pts = max(pts, track.copy_end or 0)
        duration = round(Fraction(opus_samples(frame.data) or 960, 48_000) / time_base)
        track.copy_end = pts + duration
        return [*packets, _packet(track.stream, frame.data, pts, duration, True)]

    def _opus_silence(self, track: _Track, until: int) -> list[av.Packet[Any]]:
        """Packets of silence from where copied Opus ends to ``until`` (stream time base),
        if that is more than two packets' worth."""
        assert track.stream is not None
        assert track.stream.time_base is not None
        step = round(Fraction(960, 48_000) / track.stream.time_base)
        at = track.copy_end
        if at is None or until - at <= 2 * step:
            return []
        packets = []
        while until - at >= step:
            packets.append(_packet(track.stream, OPUS_SILENCE, at, step, True))
            at += step
        track.copy_end = at
        return packets

    def _key_frame_due(self, track: _Track, at: float) -> bool:
        count = self._settings.key_frame_count
        interval = self._settings.key_frame_interval
        if count is not None:
            return track.frames_since_key >= count
        if interval is not None and track.last_key_time is not None:
            return at - track.last_key_time >= interval
        return False

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self._container is not None
        for packet in packets:
            if self._muxer is None:  # the first packet of an independent chunk
                self._muxer = open_piece(
                    self._fmt,
                    self._encoders(),
                    self._cutter.sink,
                    self._cutter.cluster_ms,
                    self._cutter.matroska_cluster_ms,
                )
            before = self._cutter.sink.total
            if packet.stream.type == "video":
                lower_dts(packet, self._video_lead)
            self._muxer.mux_one(packet)
            at_ms = end_ms = None
            if packet.pts is not None and packet.time_base:
                at_ms = float(packet.pts * packet.time_base * 1000)
                end_ms = at_ms + float((packet.duration or 0) * packet.time_base * 1000)
                if packet.stream.type == "video" or not self._has_video:
                    self._video_end_ms = max(self._video_end_ms, end_ms)
            self._cutter.muxed(before, at_ms, end_ms, packet.stream.index)

    def _encoders(self) -> list[VideoStream | AudioStream]:
        """The streams, in order (a track that never sent a frame may have none)."""
        return [track.stream for track in self._tracks if track.stream is not None]

    def _ask_piece(self, request: int | None) -> None:
        """Independent chunks: cut before the next video frame (so the new file starts
        with it, and the chunks' times meet), or after CUT_GRACE if none comes."""
        if self._muxer is None or self._failed:
            if request is not None:
                self._cutter.answer_empty(request)  # nothing since the last cut
            return
        self._piece_asked.append(request)
        if self._piece_deadline is None:
            self._piece_deadline = monotonic() + CUT_GRACE

    def _piece_now(self, at_ms: float | None) -> None:
        asked, self._piece_asked, self._piece_deadline = self._piece_asked, [], None
        requests = [request for request in asked if request is not None]
        self._next_piece(requests[0] if requests else None, at_ms)
        for request in requests[1:]:
            self._cutter.answer_empty(request)

    def _next_piece(self, request: int | None = None, at_ms: float | None = None) -> None:
        """Independent chunks: close the muxer (its file ends here) and cut; the next
        packet opens a new one, after a forced key frame. ``at_ms``: the media time the
        next chunk starts at (the frame about to be encoded), else where video ends."""
        if self._muxer is None or self._failed:
            if request is not None:
                self._cutter.answer_empty(request)
            return
        if at_ms is None:
            at_ms = self._video_end_ms
        muxer, self._muxer = self._muxer, None
        try:
            with map_av_errors("closing a chunk's file"):
                muxer.close()
        except AsyncrecError as exc:
            self._fail(exc)
        self._cutter.piece_done(request, at_ms)
        self._force_key = True

    # -- ending -----------------------------------------------------------------------------
    def _finish(self, video_end: float | None) -> None:
        if self._container is None and self._preopen.items and not self._failed:
            self._open(media_only=True)  # every track ended before all had sent a frame
        if self._piece_asked:
            self._piece_now(None)
        if self._container is not None:
            end = None if video_end is None else max(0.0, video_end - self._start)
            if not self._failed:
                try:
                    with map_av_errors("flushing the encoders"):
                        for track in self._tracks:
                            if track.copy:
                                # No encoder, nothing held back; copied audio that went
                                # quiet before the video's end is padded up to it.
                                base = track.stream.time_base if track.stream is not None else None
                                if track.copy_end is not None and end is not None and base is not None:
                                    self._mux(self._opus_silence(track, until=round(end / base)))
                                continue
                            if track.audio is not None:
                                self._mux(track.audio.flush(until=end))
                            elif isinstance(track.stream, VideoStream):
                                self._mux(track.stream.encode(None))
                except AsyncrecError as exc:
                    self._fail(exc)
            try:
                with map_av_errors("closing the muxer"):
                    if self._muxer is not None:
                        self._muxer.close()
                    self._container.close()  # the first muxer, if an independent chunk closed it
            except AsyncrecError as exc:
                self._fail(exc)
            self._container = self._muxer = None
        self._cutter.finish()
        self._outputs.extend(self._cutter.take())

    def _fail(self, error: AsyncrecError) -> None:
        if not self._failed:
            self._failed = True
            self._outputs.append(Failure(error))

    def _flush_outputs(self) -> None:
        if self._outputs:
            outputs, self._outputs = self._outputs, []
            self._post(outputs)


def _packet(
    stream: VideoStream | AudioStream, data: bytes, pts: int, duration: int | None, key: bool
) -> av.Packet[Any]:
    """A packet of ``stream`` holding ``data`` at ``pts`` (its time base), dts the same
    (WebRTC sends no B-frames)."""
    base = stream.time_base
    assert base is not None
    packet = av.Packet(data)
    packet.stream = stream
    packet.time_base = base
    packet.pts = packet.dts = pts
    if duration is not None:
        packet.duration = duration
    packet.is_keyframe = key
    return packet
