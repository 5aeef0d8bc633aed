"""Video helpers for the worker: picture size, encoder threads, letterboxing."""

from __future__ import annotations

import itertools
import os
import threading
from fractions import Fraction
from typing import Any

import av

from ._formats import CodecSpec

VIDEO_TIME_BASE = Fraction(1, 1000)

_active_lock = threading.Lock()
_active_workers = 0


def codec_threads(encoder: str, width: int, height: int) -> int:
    """Encoder threads for a picture size, given how many recordings share the machine.

    Measured on 2 cores with VP8 realtime: FFmpeg's "auto" (0) ran at 0.4x of one
    thread, and two threads, 1.3x faster on an idle machine, collapsed to a fraction of
    one thread's speed as soon as another process used a core (the threads wait on each
    other). One thread encodes 720p30 in real time with room to spare with every codec
    here, so threads are only used from 1080p up (never for VP8), and with more
    recordings than cores, one thread each and parallelism across recordings.
    """
    cores = os.cpu_count() or 1
    if encoder == "libvpx" or width * height < 1920 * 1080 * 3 // 4:
        return 1
    return max(1, min(4, cores // max(1, _active_workers)))


def recording_size(spec: CodecSpec, width: int, height: int) -> tuple[int, int]:
    """The picture size of a recording whose first frame is ``width`` x ``height``:
    even (4:2:0 chroma) and at least the encoder's minimum."""
    return (max(spec.min_size, width + width % 2), max(spec.min_size, height + height % 2))


class Fitter:
    """Scales a frame of another size into the recording's picture, aspect ratio kept,
    black bars around it, as browsers do when a track changes size. An FFmpeg filter
    graph (it releases the GIL), rebuilt when the input size or format changes."""

    def __init__(self, width: int, height: int, pix_fmt: str) -> None:
        self._size = (width, height)
        self._pix_fmt = pix_fmt
        self._key: tuple[int, int, str] | None = None
        self._graph: Any = None

    def fit(self, frame: av.VideoFrame) -> av.VideoFrame:
        key = (frame.width, frame.height, frame.format.name)
        if key != self._key:
            self._graph = self._build(frame)
            self._key = key
        self._graph.push(frame)
        out: av.VideoFrame = self._graph.pull()
        return out

    def _build(self, frame: av.VideoFrame) -> Any:
        width, height = self._size
        # The picture inside the bars: as large as fits, aspect ratio kept, even, and at
        # least 2x2 however thin the source (641x1 would otherwise scale to nothing).
        factor = min(width / frame.width, height / frame.height)
        inner_w = min(width, max(2, round(frame.width * factor / 2) * 2))
        inner_h = min(height, max(2, round(frame.height * factor / 2) * 2))
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=VIDEO_TIME_BASE),
            graph.add("scale", f"w={inner_w}:h={inner_h}"),
            graph.add("pad", f"w={width}:h={height}:x=(ow-iw)/2:y=(oh-ih)/2:color=black"),
            graph.add("format", self._pix_fmt),
            graph.add("buffersink"),
        ]
        for upstream, downstream in itertools.pairwise(chain):
            upstream.link_to(downstream)
        graph.configure()
        return graph


def worker_started() -> None:
    """Count a running recording (codec_threads shares the cores among them)."""
    global _active_workers
    with _active_lock:
        _active_workers += 1


def worker_finished() -> None:
    global _active_workers
    with _active_lock:
        _active_workers -= 1


def black_frame(width: int, height: int) -> av.VideoFrame:
    """A black yuv420p picture (limited range: Y 16, U and V 128), for a disabled track."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (16, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame
