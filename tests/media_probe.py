"""Helpers for the issue-4 tests: record a stream, scripted tracks, and measurements of the
recorded file (ISO BMFF boxes, packets, decoded pictures and samples).

Debian's ``ffprobe``/``ffmpeg`` and PyAV are both used, as in :mod:`media_check`; a missing
tool fails the test (see ``media_check._tool``).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from asyncrec import MediaRecorder, MediaStream
from media_check import _run, _tool

RECORD_TIMEOUT = 30.0


# -- recording ------------------------------------------------------------------------------------


@dataclass
class Recording:
    """What one recording gave: its chunks and the recorder's mimeType along the way."""

    chunks: list[bytes] = field(default_factory=list)
    timecodes: list[float] = field(default_factory=list)
    #: mimeType seen by the "start" handler.
    mime_at_start: str = ""
    #: mimeType once the recording has stopped.
    mime_after: str = ""
    errors: list[Any] = field(default_factory=list)
    statistics: Any = None

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def save(self, path: Path) -> Path:
        path.write_bytes(self.data)
        return path


async def record(
    tracks: Sequence[Any] | MediaStream,
    *,
    timeslice: float | None = None,
    time_limit: float = RECORD_TIMEOUT,
    **options: Any,
) -> Recording:
    """Record ``tracks`` until they end (the recorder stops by itself), with ``async for``.

    ``options`` go to the MediaRecorder constructor (``mimeType``, bitrates...).
    """
    stream = tracks if isinstance(tracks, MediaStream) else MediaStream(list(tracks))
    result = Recording()
    async with MediaRecorder(stream, **options) as recorder:

        def on_start(_event: Any) -> None:
            result.mime_at_start = recorder.mimeType

        recorder.onstart = on_start
        recorder.onerror = lambda event: result.errors.append(event.error)
        events = aiter(recorder)  # before start(): every chunk, the first one included
        recorder.start(timeslice)
        async with asyncio.timeout(time_limit):
            async for event in events:
                result.chunks.append(event.data)
                result.timecodes.append(event.timecode)
        result.mime_after = recorder.mimeType
        result.statistics = recorder.statistics()
    return result


# -- tracks ---------------------------------------------------------------------------------------


class PacedTrack(MediaStreamTrack):
    """A non-real-time track delivered at ``speed`` times real time (still ``live = False``:
    the recorder applies backpressure and drops nothing). Used to get several chunks out of
    a short recording with a timeslice."""

    def __init__(self, inner: MediaStreamTrack, speed: float) -> None:
        super().__init__()
        self.kind = inner.kind
        self.live = False
        self._inner = inner
        self._speed = speed
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        try:
            frame = await self._inner.recv()
        except MediaStreamError:
            self.stop()
            raise
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + float(frame.pts * frame.time_base) / self._speed
        if due > now:
            await asyncio.sleep(due - now)
        return frame

    def stop(self) -> None:
        self._inner.stop()
        super().stop()


class ScriptedTrack(MediaStreamTrack):
    """A track whose ``count`` frames are made by ``make(index)`` (timestamps and all, as the
    test wants them). With ``due`` (``index -> seconds``) frame ``index`` is delivered at that
    wall time after the first one and the track is live; without it frames come as fast as
    they are taken and the track is not live."""

    def __init__(
        self,
        kind: str,
        make: Callable[[int], av.VideoFrame | av.AudioFrame],
        count: int,
        *,
        due: Callable[[int], float] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.live = due is not None
        self._make = make
        self._count = count
        self._due = due
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live" or self._index >= self._count:
            self.stop()
            raise MediaStreamError
        if self._due is not None:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            delay = self._start + self._due(self._index) - now
            if delay > 0:
                await asyncio.sleep(delay)
        frame = self._make(self._index)
        self._index += 1
        return frame


def solid_yuv420p(width: int, height: int, rgb: tuple[int, int, int]) -> av.VideoFrame:
    """A yuv420p frame of one colour, filled plane by plane (cheap at any size)."""
    levels = [round(level) for level in yuv_means(solid_frame(16, 16, rgb))]
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, level in zip(frame.planes, levels, strict=True):
        plane.update(bytes([level]) * plane.buffer_size)
    return frame


def solid_frame(width: int, height: int, rgb: tuple[int, int, int], fmt: str = "rgb24") -> av.VideoFrame:
    """A frame of one colour in pixel format ``fmt``.

    Made as rgb24 and converted; when PyAV's ``from_ndarray`` knows ``fmt`` the frame is
    rebuilt from the converted array (a frame as a numpy-based source would make it).
    """
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = rgb
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=fmt)
    try:
        return av.VideoFrame.from_ndarray(frame.to_ndarray(), format=fmt)
    except (ValueError, TypeError, AssertionError):
        return frame


def plane_array(frame: av.VideoFrame, index: int) -> np.ndarray:
    """Plane ``index`` of an 8-bit planar frame as a (height, width) array."""
    plane = frame.planes[index]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def yuv_means(frame: av.VideoFrame) -> tuple[float, float, float]:
    """Mean Y, U and V of ``frame`` once converted to yuv420p (limited range)."""
    converted = frame.reformat(format="yuv420p")
    y, u, v = (float(plane_array(converted, i).mean()) for i in range(3))
    return y, u, v


def audio_frame(samples: np.ndarray, fmt: str, layout: str, rate: int, pts: int | None) -> av.AudioFrame:
    """An AudioFrame of ``fmt``/``layout`` from float samples in [-1, 1] of shape (channels, n)."""
    base = fmt.rstrip("p")
    planar = fmt.endswith("p")
    if base == "s16":
        data = (samples * 32767).astype(np.int16)
    elif base == "s32":
        data = (samples * 2147483647.0).astype(np.int32)
    elif base == "flt":
        data = samples.astype(np.float32)
    elif base == "dbl":
        data = samples.astype(np.float64)
    else:
        raise ValueError(fmt)
    array = np.ascontiguousarray(data) if planar else np.ascontiguousarray(data.T).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
    frame.sample_rate = rate
    if pts is not None:
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
    return frame


# -- ISO BMFF -------------------------------------------------------------------------------------


def iso_boxes(data: bytes) -> list[tuple[str, int]]:
    """The top-level boxes of ``data`` as (type, size); fails unless ``data`` is whole boxes."""
    boxes: list[tuple[str, int]] = []
    pos = 0
    while pos < len(data):
        assert pos + 8 <= len(data), f"box header at {pos} is cut off ({len(data) - pos} bytes left)"
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            assert pos + 16 <= len(data), f"large box header at {pos} is cut off"
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        assert size != 0, f"box {kind!r} at {pos} runs to the end of the file (size 0): not a whole box"
        assert size >= header, f"box {kind!r} at {pos} has an impossible size {size}"
        assert pos + size <= len(data), f"box {kind!r} at {pos} of {size} bytes is cut off at {len(data)}"
        boxes.append((kind.decode("latin-1"), size))
        pos += size
    return boxes


# -- packets and decoding -------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    return None if value in (None, "N/A") else float(value)


@dataclass
class Probe:
    """One run of Debian's ffprobe over a file: its streams, packets and decoded frames."""

    #: Per stream, in index order: ``codec_name``, ``codec_type``, ``width``, ``height``,
    #: ``channels``, ``sample_rate``, ``nb_read_frames`` (frames decoded).
    streams: list[dict[str, Any]]
    #: In file order: ``stream_index``, ``codec_type``, ``pts``, ``dts``, ``duration``
    #: (seconds or None), ``size`` (bytes), ``key`` (bool).
    packets: list[dict[str, Any]]
    #: Samples decoded per stream index (audio streams only).
    samples: dict[int, int]

    def stream(self, kind: str) -> dict[str, Any]:
        matches = [s for s in self.streams if s["codec_type"] == kind]
        assert len(matches) == 1, f"{len(matches)} {kind} streams"
        return matches[0]

    def packets_of(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.packets if p["codec_type"] == kind]

    def span(self, kind: str | None = None) -> float:
        """Media duration from the packets (of ``kind``, or all): the end of the last one
        (pts + duration) minus the first pts, a negative start (priming samples the decoder
        drops) counting as 0, as ``media_check.ffprobe_duration`` does."""
        packets = [p for p in self.packets if p["pts"] is not None and (kind is None or p["codec_type"] == kind)]
        assert packets, f"no {kind or ''} packets"
        start = max(0.0, min(p["pts"] for p in packets))
        return max(p["pts"] + (p["duration"] or 0.0) for p in packets) - start

    def audio_duration(self) -> float:
        """Seconds of audio decoded (the first audio stream)."""
        audio = self.stream("audio")
        return self.samples.get(audio["index"], 0) / audio["sample_rate"]


def probe(path: str | Path) -> Probe:
    """Streams, packets and decoded frames of ``path`` by Debian's ffprobe, in one run."""
    result = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=index,codec_name,codec_type,width,height,channels,sample_rate,nb_read_frames"
            ":packet=stream_index,pts_time,dts_time,duration_time,size,flags"
            ":frame=stream_index,nb_samples",
            "-of",
            "json",
            str(path),
        ]
    )
    assert result.returncode == 0, f"ffprobe failed on {path}: {result.stderr.strip()}"
    parsed = json.loads(result.stdout)

    def number(value: Any) -> int | None:
        return None if value in (None, "N/A") else int(value)

    streams = [
        {
            "index": int(s["index"]),
            "codec_name": s.get("codec_name"),
            "codec_type": s.get("codec_type"),
            "width": number(s.get("width")),
            "height": number(s.get("height")),
            "channels": number(s.get("channels")),
            "sample_rate": number(s.get("sample_rate")),
            "nb_read_frames": number(s.get("nb_read_frames")),
        }
        for s in sorted(parsed.get("streams", []), key=lambda s: s["index"])
    ]
    types = {s["index"]: s["codec_type"] for s in streams}
    # Asked for together, packets and frames come interleaved in one list.
    entries = parsed.get("packets_and_frames", [])
    packets = [
        {
            "stream_index": int(p["stream_index"]),
            "codec_type": types.get(int(p["stream_index"])),
            "pts": _float(p.get("pts_time")),
            "dts": _float(p.get("dts_time")),
            "duration": _float(p.get("duration_time")),
            "size": int(p["size"]),
            "key": "K" in p.get("flags", ""),
        }
        for p in entries
        if p.get("type") == "packet"
    ]
    samples: dict[int, int] = {}
    for frame in entries:
        if frame.get("type") == "frame" and "nb_samples" in frame:
            index = int(frame["stream_index"])
            samples[index] = samples.get(index, 0) + int(frame["nb_samples"])
    return Probe(streams, packets, samples)


def ffmpeg_decode_errors_vfr(path: str | Path) -> str:
    """Like ``media_check.ffmpeg_decode_errors``, with the output in each stream's own time
    base (``-enc_time_base -1``): ffmpeg's default (1/frame rate) makes two valid frames 1 ms
    apart collide on its null output and report it as an error."""
    result = _run(
        [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-enc_time_base", "-1", "-f", "null", "-"]
    )
    errors = result.stderr.strip()
    if result.returncode != 0 and not errors:
        errors = f"ffmpeg exited with status {result.returncode}"
    return errors


@dataclass
class DecodedVideo:
    times: list[float]
    lumas: list[np.ndarray]  # the Y plane of each frame
    width: int
    height: int


def decode_video(path: str | Path) -> DecodedVideo:
    """Every frame of the first video stream, decoded by PyAV: times and Y planes."""
    times: list[float] = []
    lumas: list[np.ndarray] = []
    width = height = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            times.append(float(frame.time))
            converted = frame.reformat(format="yuv420p")
            lumas.append(plane_array(converted, 0).copy())
            width, height = frame.width, frame.height
    return DecodedVideo(times, lumas, width, height)


@dataclass
class DecodedAudio:
    #: Samples (channels, n) as float in [-1, 1], every decoded frame end to end.
    samples: np.ndarray
    rate: int
    #: Time of the first decoded sample (s).
    start: float
    #: (time, seconds) wherever a frame's time is not where the previous frame ended
    #: (by more than the 1 ms rounding of Matroska): the samples do not tell the whole timeline there.
    discontinuities: list[tuple[float, float]]

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.rate

    def time_of(self, index: int) -> float:
        return self.start + index / self.rate


def audio_array(frame: av.AudioFrame) -> np.ndarray:
    """The samples of ``frame`` as float64 in [-1, 1], shape (channels, n)."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T
    scale = {"s16": 32768.0, "s32": 2147483648.0, "u8": 128.0}.get(frame.format.name.rstrip("p"), 1.0)
    result = array.astype(np.float64)
    if frame.format.name.rstrip("p") == "u8":
        result -= 128.0
    return result / scale


def decode_audio(path: str | Path) -> DecodedAudio:
    """The first audio stream decoded by PyAV into float samples."""
    parts: list[np.ndarray] = []
    start: float | None = None
    position = 0
    rate = 0
    discontinuities: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            rate = frame.sample_rate
            array = audio_array(frame)
            if start is None:
                start = float(frame.time) if frame.time is not None else 0.0
            elif frame.time is not None:
                gap = float(frame.time) - (start + position / rate)
                if abs(gap) > 0.0011:  # WebM/Matroska times are whole milliseconds
                    discontinuities.append((float(frame.time), gap))
            parts.append(array)
            position += array.shape[1]
    assert parts, f"no audio decoded from {path}"
    return DecodedAudio(np.concatenate(parts, axis=1), rate, start or 0.0, discontinuities)
