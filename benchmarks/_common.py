"""Helpers shared by the benchmarks: test pictures, non-live tracks (one declaring
``live = False``, one declaring nothing), the plain PyAV loop the recorder is measured
against, output verification, tables, machine info.

Not a benchmark itself; the scripts import it as ``_common`` (they run from this directory).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import aiortc
import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.stream import VideoStream

# The baseline copies asyncrec's settings from the source of truth, so a change there moves both:
# the muxer and encoder setup is in _container, the cluster/fragment/page length in _chunks, the
# video time base, picture size and encoder thread policy in _video.
from asyncrec import MediaRecorder, MediaStream, RecorderStatistics, _container, moving_pattern
from asyncrec._chunks import MAX_CLUSTER_MS
from asyncrec._container import MAX_INTERLEAVE_DELTA_US, NOMINAL_FRAME_RATE, TIMESTAMP_RATE_CONTROL
from asyncrec._formats import CODECS
from asyncrec._video import VIDEO_TIME_BASE, codec_threads, recording_size

YuvArray = npt.NDArray[np.uint8]
#: A picture as ``VideoFrame.from_ndarray`` takes it: yuv420p ``(h * 3 // 2, w)`` or rgb24 ``(h, w, 3)``.
PictureArray = npt.NDArray[np.uint8]

#: Literals in asyncrec's ``_container`` (``_add_video``'s GOP, ``open_container``'s MP4 movflags;
#: no constant to import); ``check_worker_literals`` fails the benchmark if they are no longer there.
GOP_SIZE = 300
MP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+delay_moov"
SOURCE_TIME_BASE = Fraction(1, 90000)


class LagProbe:
    """Sleeps ``interval`` in a loop and records how late each wake-up is: the event loop's
    lag, as the benchmarks measure it.

    Samples are ``(seconds since start, lag in seconds)``, so start-up stalls (codec open,
    container header) can be told apart from the steady state.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._start = 0.0

    def start(self) -> None:
        self._start = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> list[tuple[float, float]]:
        """The samples so far; later ones go to a new list."""
        samples, self.samples = self.samples, []
        return samples

    def lags(self) -> list[float]:
        """The lags taken (seconds): :meth:`take` without the times."""
        return [lag for _, lag in self.take()]

    async def stop(self) -> None:
        """End the probe (waiting for its task; the caller's own cancellation goes on)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)  # the measurement: how late the loop wakes
            self.samples.append((before - self._start, time.perf_counter() - before - self.interval))


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def picture_pool(width: int, height: int, count: int, noise: int) -> list[YuvArray]:
    """``count`` distinct yuv420p pictures as arrays of shape ``(height * 3 // 2, width)``.

    A moving test pattern plus fixed sensor-like grain (``noise``: +-levels on luma), so the
    encoder has real work at the default bitrate; a clean pattern compresses to almost nothing.
    """
    make = moving_pattern(width, height)
    rng = np.random.default_rng(1234)
    pool: list[YuvArray] = []
    for index in range(count):
        array = np.asarray(make(index, index / 30).to_ndarray(), dtype=np.uint8)
        if noise:
            grain = rng.integers(-noise, noise + 1, size=(height, width), dtype=np.int16)
            array[:height] = np.clip(array[:height].astype(np.int16) + grain, 0, 255).astype(np.uint8)
        pool.append(array)
    return pool


def to_rgb24(pool: list[YuvArray]) -> list[PictureArray]:
    """The same pictures as packed rgb24 arrays ``(height, width, 3)``."""
    return [av.VideoFrame.from_ndarray(array, format="yuv420p").to_ndarray(format="rgb24") for array in pool]


def picture_size(array: PictureArray, pixel_format: str) -> tuple[int, int]:
    """``(width, height)`` of a picture array in ``pixel_format`` (yuv420p or a packed format)."""
    if pixel_format == "yuv420p":
        return array.shape[1], array.shape[0] * 2 // 3
    return array.shape[1], array.shape[0]


def check_worker_literals() -> None:
    """Exit if asyncrec's container setup (``_container._add_video`` and
    ``_container._open_muxer``, run on the worker thread) no longer has the settings this
    module copies as literals."""
    for function, literal in (
        (_container._add_video, f"else {GOP_SIZE}"),
        (_container._open_muxer, f'"{MP4_MOVFLAGS}"'),
    ):
        if literal not in inspect.getsource(function):
            raise SystemExit(
                f"benchmark settings drifted: {literal!r} is no longer in asyncrec's _container.{function.__name__}"
            )


def container_options(muxer: str) -> dict[str, str]:
    """asyncrec's muxer options (``_container.open_container``) for a timeslice >= ``MAX_CLUSTER_MS``."""
    options = {"max_interleave_delta": str(MAX_INTERLEAVE_DELTA_US)}
    if muxer in ("webm", "matroska"):
        options["cluster_time_limit"] = str(MAX_CLUSTER_MS)
    elif muxer == "ogg":
        options["page_duration"] = str(MAX_CLUSTER_MS * 1000)
    elif muxer == "mp4":
        options["movflags"] = MP4_MOVFLAGS
        options["frag_duration"] = str(MAX_CLUSTER_MS * 1000)
    return options


class UndeclaredPoolTrack(MediaStreamTrack):
    """A video track faster than real time that says nothing of its liveness (no ``live``
    attribute, as users write aiortc tracks): a fresh frame from the pool on every
    ``recv()``, no waiting, timestamps 1/fps apart. asyncrec judges it frame by frame from
    its timestamps against the wall clock; ahead of real time, it must get backpressure and
    never a drop, exactly as :class:`PoolTrack`.

    A fresh ``VideoFrame`` each time is what a decoder or camera hands out; asyncrec itself
    never writes into a caller's frame (it treats frames as read-only and stamps a frame of its
    own, out of its filter graph, that references the same picture when no conversion is needed).
    """

    kind = "video"

    def __init__(self, pool: list[PictureArray], frames: int, fps: float, pixel_format: str = "yuv420p") -> None:
        super().__init__()
        self._pool = pool
        self._frames = frames
        self._format = pixel_format
        self._step = round(SOURCE_TIME_BASE.denominator / fps)
        self._index = 0

    async def recv(self) -> av.VideoFrame:
        if self._index >= self._frames:
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._pool[self._index % len(self._pool)], format=self._format)
        frame.pts = self._index * self._step
        frame.time_base = SOURCE_TIME_BASE
        self._index += 1
        return frame


class PoolTrack(UndeclaredPoolTrack):
    """The same track declaring ``live = False``: backpressure, never drops, every frame
    must reach the file (asyncrec reads the attribute and judges nothing)."""

    def __init__(self, pool: list[PictureArray], frames: int, fps: float, pixel_format: str = "yuv420p") -> None:
        super().__init__(pool, frames, fps, pixel_format)
        self.live = False


class WriteOnlySink:
    """The same kind of sink as asyncrec's: ``write`` only (no seek), each buffer copied."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        return len(chunk)


@dataclass
class Run:
    wall: float
    cpu: float
    data: bytes
    stats: RecorderStatistics | None = None


def run_plain_pyav(
    pool: list[PictureArray],
    frames: int,
    fps: float,
    codec: str,
    muxer: str,
    bps: int,
    pixel_format: str = "yuv420p",
    threads: int | None = None,
) -> Run:
    """A synchronous PyAV loop doing what asyncrec does, with the same settings:
    ``from_ndarray``, encode (PyAV's reformatter converting to the encoder's pixel format if
    needed; asyncrec's worker does it in its filter graph, both with swscale) and mux into a
    write-only sink, all in one thread."""
    spec = CODECS[codec]
    sink = WriteOnlySink()
    wall, cpu = time.perf_counter(), time.process_time()
    container = av.open(sink, mode="w", format=muxer, container_options=container_options(muxer))
    width, height = recording_size(spec, *picture_size(pool[0], pixel_format))
    # asyncrec's declared rate for a track without ``frame_rate`` (``_container._add_video``):
    # none for encoders whose rate control follows the timestamps (VP8/VP9), a nominal one else.
    rate = None if spec.encoder in TIMESTAMP_RATE_CONTROL else NOMINAL_FRAME_RATE
    stream = cast(VideoStream, container.add_stream(spec.encoder, rate=rate, options=dict(spec.options)))
    stream.width, stream.height = width, height
    stream.pix_fmt = spec.pix_fmt
    stream.bit_rate = bps
    stream.codec_context.time_base = VIDEO_TIME_BASE
    if rate is None:
        stream.codec_context.framerate = Fraction(0, 1)
    stream.codec_context.gop_size = GOP_SIZE
    # asyncrec's thread policy (one recording at a time here), or --codec-threads on both sides.
    stream.codec_context.thread_count = codec_threads(spec.encoder, width, height) if threads is None else threads
    step = round(SOURCE_TIME_BASE.denominator / fps)
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(pool[index % len(pool)], format=pixel_format)
        # asyncrec's timestamps: the source's 1/90000 spacing rounded to milliseconds.
        frame.pts = round(index * step / 90)
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.NONE
        for packet in stream.encode(frame):
            container.mux_one(packet)
    for packet in stream.encode(None):
        container.mux_one(packet)
    container.close()
    return Run(time.perf_counter() - wall, time.process_time() - cpu, b"".join(sink.parts))


async def _record(
    pool: list[PictureArray],
    frames: int,
    fps: float,
    mime: str,
    bps: int,
    timeslice: int,
    pixel_format: str,
    live: bool | None,
) -> Run:
    track: UndeclaredPoolTrack
    if live is None:
        track = UndeclaredPoolTrack(pool, frames, fps, pixel_format)
        if hasattr(track, "live"):
            raise SystemExit("benchmark broken: the undeclared track has a `live` attribute")
    elif live is False:
        track = PoolTrack(pool, frames, fps, pixel_format)
    else:
        raise ValueError("a pool track is faster than real time: live must be False or None")
    recorder = MediaRecorder(MediaStream([track]), mimeType=mime, videoBitsPerSecond=bps)
    chunks: list[bytes] = []
    wall, cpu = time.perf_counter(), time.process_time()
    recorder.start(timeslice)
    # The recorder stops by itself when the track ends; the iterator ends after "stop".
    async for event in recorder:
        chunks.append(event.data)
    run = Run(time.perf_counter() - wall, time.process_time() - cpu, b"".join(chunks), recorder.statistics())
    await recorder.aclose()
    return run


def run_asyncrec(
    pool: list[PictureArray],
    frames: int,
    fps: float,
    mime: str,
    bps: int,
    timeslice: int,
    pixel_format: str = "yuv420p",
    live: bool | None = False,
) -> Run:
    """asyncrec recording ``frames`` frames of a non-live pool track; chunks kept in memory.

    ``live=False``: a :class:`PoolTrack` (declares ``live = False``); ``live=None``: an
    :class:`UndeclaredPoolTrack` (no ``live`` attribute; asyncrec judges it per frame).
    """
    # A fresh loop per run (outside the timing), as a user's program would have.
    return asyncio.run(_record(pool, frames, fps, mime, bps, timeslice, pixel_format, live))


@dataclass
class MediaCounts:
    """What a recorded file holds, found by decoding it."""

    video_frames: int = 0
    audio_frames: int = 0
    video_seconds: float = 0.0
    audio_seconds: float = 0.0
    error: str | None = None


def count_media(source: bytes | Path, fps: float = 30.0) -> MediaCounts:
    """Decode every frame of a recording and count them (what ``ffprobe -count_frames`` does).

    ``video_seconds`` spans the first to the last video frame plus one frame period, so a
    complete 300-frame 30 fps file gives 10.0 s even without a Duration element.
    """
    counts = MediaCounts()
    first: float | None = None
    last: float | None = None
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r") as container:
            for frame in container.decode(*container.streams.video, *container.streams.audio):
                if isinstance(frame, av.VideoFrame):
                    counts.video_frames += 1
                    if frame.time is not None:
                        first = frame.time if first is None else min(first, frame.time)
                        last = frame.time if last is None else max(last, frame.time)
                elif isinstance(frame, av.AudioFrame):
                    counts.audio_frames += 1
                    counts.audio_seconds += frame.samples / frame.sample_rate
    except av.FFmpegError as exc:
        # A truncated file still reports what decoded before the damage.
        counts.error = f"{type(exc).__name__}: {exc}"
    if first is not None and last is not None:
        counts.video_seconds = last - first + 1 / fps
    return counts


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 1600 samples is a real sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [str(cells[0]).ljust(widths[0])]
        parts += [str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(parts)

    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def set_switch_interval(ms: float | None) -> None:
    """Set the GIL switch interval (Python's default is 5 ms) when asked to."""
    if ms is not None:
        sys.setswitchinterval(ms / 1000)


def machine_info() -> str:
    """One line to paste next to the figures; a high load average means other work skews them."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PyAV {av.__version__} "
        f"(FFmpeg {av.ffmpeg_version_info}), aiortc {aiortc.__version__}, "
        f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms, load average {load}"
    )


def patch_asyncrec_codec_threads(count: int) -> None:
    """EXPERIMENT, off by default: make asyncrec open its video encoders with ``count`` codec
    threads instead of its own choice (0: FFmpeg's auto). Patches the name ``_container._add_video``
    calls (imported there from ``_video``); src is not changed."""
    if not hasattr(_container, "codec_threads"):
        raise SystemExit("benchmark broken: asyncrec._container no longer uses codec_threads")
    _container.codec_threads = lambda encoder, width, height: count
