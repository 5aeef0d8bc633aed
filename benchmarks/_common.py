"""Helpers shared by the benchmarks: test pictures, output verification, tables, machine info.

Not a benchmark itself; the scripts import it as ``_common`` (they run from this directory).
"""

from __future__ import annotations

import io
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import aiortc
import av
import numpy as np
import numpy.typing as npt

from asyncrec import moving_pattern

YuvArray = npt.NDArray[np.uint8]


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
    threads instead of its own choice (0: FFmpeg's auto). Patches a private function; src is
    not changed."""
    from asyncrec import _worker

    _worker.codec_threads = lambda encoder, width, height: count
