"""The recording worker: the only code that touches PyAV's encoders and muxer.

One thread per recording owns the container, its streams, the audio converter and the
sink, so PyAV objects are only ever used from one thread (they are not thread-safe) and
calls stay ordered. The thread takes everything the readers queued at once, encodes and
muxes it (PyAV releases the GIL inside codecs, scalers and the muxer), and hands what it
produced back to the loop in one ``call_soon_threadsafe`` per batch.

Chunks follow the muxer's own rhythm: the muxer writes into a write-only sink, and bytes
leave the sink only between two ``mux`` calls, so a chunk always ends on a cluster (WebM,
Matroska), fragment (MP4) or page (Ogg) boundary. Those are kept short (at most 100 ms of
media) so the muxer never holds more than a short span of media.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av

from ._audio import AUDIO_RATE, AUDIO_TIME_BASE, AudioPath, silence_like
from ._errors import AsyncrecError, UnknownError, map_av_errors
from ._formats import CodecSpec, Format
from ._handoff import ControlItem, FrameItem, HandOff, monotonic
from ._video import (
    VIDEO_TIME_BASE,
    Fitter,
    black_frame,
    codec_threads,
    recording_size,
    worker_finished,
    worker_started,
)

logger = logging.getLogger("asyncrec")

# SVT-AV1 prints its configuration to stderr at every encoder open unless told not to
# (it reads this when an encoder opens).
os.environ.setdefault("SVT_LOG", "1")

#: Longest span of media the muxer holds before writing it out (ms).
MAX_CLUSTER_MS = 100
#: How long the muxer waits for a late track before writing the others (microseconds).
MAX_INTERLEAVE_DELTA_US = 500_000
#: How long to wait for the first frame of every track before writing the header (s).
OPEN_TIMEOUT = 3.0
#: Size used for a video track that sent nothing by then.
DEFAULT_VIDEO_SIZE = (640, 480)
#: Video frames kept while waiting for the other tracks' first frames.
MAX_PREOPEN_VIDEO = 30
#: A requestData() waits at most this long past the muxer's cluster for it to close (s).
CUT_GRACE = 0.1


@dataclass(frozen=True)
class WorkerSettings:
    """What the encoders and the muxer are asked to do."""

    video_bits_per_second: int
    audio_bits_per_second: int
    audio_bitrate_mode: str
    #: Seconds between chunks, or None for one chunk at the end.
    timeslice: float | None
    #: Force a key frame after this many seconds or frames (None: the encoder decides).
    key_frame_interval: float | None = None
    key_frame_count: int | None = None


@dataclass(slots=True)
class Chunk:
    """Bytes for one ``dataavailable``; ``request`` is the requestData() id that asked for it."""

    data: bytes
    timecode: float
    request: int | None = None
    final: bool = False


@dataclass(slots=True)
class Failure:
    error: AsyncrecError


@dataclass(slots=True)
class Finished:
    pass


Output = Chunk | Failure | Finished


@dataclass
class WorkerCounters:
    """Counters the worker updates and the loop reads (plain ints: atomic under the GIL)."""

    encoded: list[int]
    dropped_before_open: list[int]
    busy: float = 0.0
    #: Audio's offset from the recording's clock (s; positive: audio late), None without audio.
    av_offset: float | None = None


class _Sink:
    """A write-only file for the muxer. No seek/tell, so FFmpeg never rewrites bytes
    that may already have left in a chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.total = 0

    def write(self, data: Any) -> int:
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
class _Track:
    kind: str
    first: Any = None
    stream: Any = None
    last_pts: int = -1
    frames_since_key: int = 0
    last_key_time: float | None = None
    audio: AudioPath | None = None
    fitter: Fitter | None = None
    preopen_video: int = 0


@dataclass
class _Cuts:
    ids: list[int] = field(default_factory=list)
    deadline: float = 0.0
    mark: int = 0


class RecordingWorker:
    """Owns one recording's PyAV objects on its own thread (see the module docstring)."""

    def __init__(
        self,
        fmt: Format,
        kinds: list[str],
        settings: WorkerSettings,
        handoff: HandOff,
        post: Callable[[list[Output]], None],
        counters: WorkerCounters,
    ) -> None:
        self._fmt = fmt
        self._tracks = [_Track(kind) for kind in kinds]
        self._settings = settings
        self._handoff = handoff
        self._post = post
        self.counters = counters
        self._thread = threading.Thread(target=self._run, name="asyncrec-worker", daemon=True)
        self._container: Any = None
        self._sink = _Sink()
        self._preopen: list[FrameItem] = []
        self._open_deadline: float | None = None
        self._outputs: list[Output] = []
        self._failed = False
        self._paused = False
        self._cuts = _Cuts()
        self._chunk_timecode = 0.0
        self._written_until_ms = 0.0
        timeslice = settings.timeslice
        self._cluster_ms = (
            MAX_CLUSTER_MS if timeslice is None else max(10, min(MAX_CLUSTER_MS, round(timeslice * 1000)))
        )
        self._next_slice: float | None = None

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
            if self._settings.timeslice is not None:
                self._next_slice = monotonic() + self._settings.timeslice
            self._serve()
        except Exception as exc:  # a bug in asyncrec: report it rather than die silently
            logger.exception("recording worker crashed")
            self._fail(UnknownError(f"recording worker crashed: {exc!r}"))
            self._emit_cuts()
            self._emit(final=True)
        finally:
            worker_finished()
            self._outputs.append(Finished())
            self._flush_outputs()

    def _serve(self) -> None:
        while True:
            items = self._handoff.take(self._timeout())
            for item in items:
                if isinstance(item, FrameItem):
                    self._frame(item)
                elif item.command == "stop":
                    self._finish(item.arg / 1000 if item.arg >= 0 else None)
                    return
                else:
                    self._control(item)
            self._timers(monotonic())
            self._flush_outputs()

    def _timeout(self) -> float | None:
        deadlines = [d for d in (self._next_slice, self._open_deadline) if d is not None]
        if self._cuts.ids:
            deadlines.append(self._cuts.deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - monotonic())

    def _timers(self, now: float) -> None:
        if self._open_deadline is not None and now >= self._open_deadline and self._container is None:
            self._open()
        if self._cuts.ids and (now >= self._cuts.deadline or self._sink.total > self._cuts.mark):
            self._emit_cuts()
        if self._next_slice is not None and now >= self._next_slice:
            if self._sink.pending:
                self._emit()
            assert self._settings.timeslice is not None
            self._next_slice += self._settings.timeslice
            if self._next_slice <= now:  # fell behind: keep the rhythm from now on
                self._next_slice = now + self._settings.timeslice

    def _control(self, item: ControlItem) -> None:
        if item.command == "cut":
            self._cuts.ids.append(item.arg)
            if self._container is None or self._paused or self._failed or len(self._cuts.ids) > 1:
                # Nothing can still be in the muxer's cluster that is not already coming.
                if len(self._cuts.ids) == 1:
                    self._emit_cuts()
                return
            self._cuts.deadline = monotonic() + self._cluster_ms / 1000 + CUT_GRACE
            self._cuts.mark = self._sink.total
        elif item.command == "pause":
            self._paused = True
        elif item.command == "resume":
            self._paused = False

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
        if self._open_deadline is None:
            self._open_deadline = monotonic() + OPEN_TIMEOUT
        if track.kind == "video":
            if track.preopen_video >= MAX_PREOPEN_VIDEO:
                oldest = next(i for i in self._preopen if i.track == item.track)
                self._preopen.remove(oldest)
                self.counters.dropped_before_open[item.track] += 1
            else:
                track.preopen_video += 1
        self._preopen.append(item)
        if all(t.first is not None for t in self._tracks):
            self._open()

    def _open(self) -> None:
        held, self._preopen = self._preopen, []
        self._open_deadline = None
        try:
            with map_av_errors("opening the muxer"):
                self._container = self._open_container()
        except AsyncrecError as exc:
            self._fail(exc)
            return
        for item in held:
            if self._failed:
                break
            self._encode(item)

    def _open_container(self) -> Any:
        muxer = self._fmt.muxer
        options: dict[str, str] = {"max_interleave_delta": str(MAX_INTERLEAVE_DELTA_US)}
        if muxer in ("webm", "matroska"):
            options["cluster_time_limit"] = str(self._cluster_ms)
        elif muxer == "ogg":
            options["page_duration"] = str(self._cluster_ms * 1000)
        elif muxer == "mp4":
            # Fragmented, so nothing needs a seek back: ftyp+moov first, then moof/mdat
            # fragments as short as Matroska's clusters. delay_moov writes the moov with
            # the first fragment, once the encoders' priming is known, so an edit list
            # keeps AAC and Opus priming out of the timeline.
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof+delay_moov"
            options["frag_duration"] = str(self._cluster_ms * 1000)
        container = av.open(self._sink, mode="w", format=muxer, container_options=options)
        try:
            for track in self._tracks:
                if track.kind == "video":
                    assert self._fmt.video is not None
                    track.stream = self._add_video(container, self._fmt.video, track.first)
                else:
                    assert self._fmt.audio is not None
                    track.stream = self._add_audio(container, self._fmt.audio, track.first)
        except BaseException:
            container.close()
            raise
        return container

    def _add_video(self, container: Any, spec: CodecSpec, first: av.VideoFrame | None) -> Any:
        width, height = recording_size(
            spec, *((first.width, first.height) if first is not None else DEFAULT_VIDEO_SIZE)
        )
        stream = container.add_stream(spec.encoder, rate=30, options=dict(spec.options))
        stream.width = width
        stream.height = height
        stream.pix_fmt = spec.pix_fmt
        stream.bit_rate = self._settings.video_bits_per_second
        ctx = stream.codec_context
        ctx.time_base = VIDEO_TIME_BASE
        # FFmpeg's default GOP of 12 frames would spend most of the bitrate on key frames;
        # an interval the user asked for is forced frame by frame instead.
        asked = self._settings.key_frame_count is not None or self._settings.key_frame_interval is not None
        ctx.gop_size = 1 << 20 if asked else 300
        ctx.thread_count = codec_threads(spec.encoder, width, height)
        return stream

    def _add_audio(self, container: Any, spec: CodecSpec, first: av.AudioFrame | None) -> Any:
        channels = 1 if first is not None and first.layout.nb_channels == 1 else 2
        options = dict(spec.options)
        if spec.id == "opus":
            options["vbr"] = "off" if self._settings.audio_bitrate_mode == "constant" else "on"
        stream = container.add_stream(spec.encoder, rate=AUDIO_RATE, options=options)
        stream.bit_rate = min(510_000, max(6_000, self._settings.audio_bits_per_second))
        ctx = stream.codec_context
        ctx.layout = "mono" if channels == 1 else "stereo"
        ctx.time_base = AUDIO_TIME_BASE
        return stream

    def _encode(self, item: FrameItem) -> None:
        track = self._tracks[item.track]
        started = time.perf_counter()
        try:
            with map_av_errors(f"encoding {track.kind}"):
                if track.kind == "video":
                    packets = self._encode_video(track, item)
                else:
                    if track.audio is None:
                        assert self._fmt.audio is not None
                        track.audio = AudioPath(track.stream, self._fmt.audio.frame_size)
                    frame = silence_like(item.frame) if item.blank else item.frame
                    packets = track.audio.push(frame, item.time)
                    self.counters.av_offset = track.audio.offset
                self._mux(packets)
        except AsyncrecError as exc:
            self._fail(exc)
            return
        finally:
            self.counters.busy += time.perf_counter() - started
        self.counters.encoded[item.track] += 1

    def _encode_video(self, track: _Track, item: FrameItem) -> list[av.Packet[Any]]:
        frame: av.VideoFrame = item.frame
        ctx = track.stream.codec_context
        if item.blank:
            frame = black_frame(ctx.width, ctx.height)
        if frame.width != ctx.width or frame.height != ctx.height:
            if track.fitter is None:
                track.fitter = Fitter(ctx.width, ctx.height, ctx.pix_fmt)
            frame = track.fitter.fit(frame)
        pts = round(item.time * 1000)
        if pts <= track.last_pts:
            pts = track.last_pts + 1
        track.last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.NONE
        if self._key_frame_due(track, item.time):
            frame.pict_type = av.video.frame.PictureType.I
        packets: list[av.Packet[Any]] = track.stream.encode(frame)
        for packet in packets:
            if packet.is_keyframe:
                track.frames_since_key = 0
                track.last_key_time = item.time
        track.frames_since_key += 1
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
        for packet in packets:
            before = self._sink.total
            self._container.mux_one(packet)
            # When the muxer has just written out what it held, its new cluster starts about here.
            if self._sink.total != before and packet.pts is not None and packet.time_base is not None:
                self._written_until_ms = float(packet.pts * packet.time_base * 1000)
        if self._cuts.ids and self._sink.total > self._cuts.mark:
            self._emit_cuts()

    # -- ending -----------------------------------------------------------------------------
    def _finish(self, end: float | None) -> None:
        if self._container is None and self._preopen and not self._failed:
            self._open()  # every track ended before all had sent a frame
        if self._container is not None:
            if not self._failed:
                try:
                    with map_av_errors("flushing the encoders"):
                        for track in self._tracks:
                            if track.audio is not None:
                                self._mux(track.audio.flush(until=end))
                            elif track.kind == "video":
                                self._mux(track.stream.encode(None))
                except AsyncrecError as exc:
                    self._fail(exc)
            try:
                with map_av_errors("closing the muxer"):
                    self._container.close()
            except AsyncrecError as exc:
                self._fail(exc)
            self._container = None
        if self._cuts.ids:
            self._emit_cuts()
        self._emit(final=True)

    def _fail(self, error: AsyncrecError) -> None:
        if not self._failed:
            self._failed = True
            self._outputs.append(Failure(error))

    def _emit_cuts(self) -> None:
        ids, self._cuts.ids = self._cuts.ids, []
        for request in ids:
            self._emit(request=request)

    def _emit(self, *, request: int | None = None, final: bool = False) -> None:
        data = self._sink.take()
        self._outputs.append(Chunk(data, self._chunk_timecode, request, final))
        if data:
            self._chunk_timecode = self._written_until_ms

    def _flush_outputs(self) -> None:
        if self._outputs:
            outputs, self._outputs = self._outputs, []
            self._post(outputs)
