"""The video path of the worker: the picture size, encoder threads, and the filter graph
that turns any frame into one the encoder takes, with the recording's timestamp.

Frames belong to their senders (aiortc's ``MediaRelay`` hands one frame object to every
subscriber, on other threads): the path never writes into them. Each frame goes through
an FFmpeg filter graph (``buffer`` → [``scale`` + ``pad``] → ``format`` →
``buffersink``), whose output is a new frame of our own that references the sender's
picture when nothing needs converting (no copy), and the timestamp and picture type are
set on that one. The graph also does the conversion to the encoder's pixel format and the
letterboxing of frames of another size, both with the GIL released.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction

import av
from av.video.stream import VideoStream

from ._formats import CodecSpec
from ._graphs import configure_chain

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
    cores = _cores
    if encoder == "libvpx" or width * height < 1920 * 1080 * 3 // 4:
        return 1
    return max(1, min(4, cores // max(1, _active_workers)))


def recording_size(spec: CodecSpec, width: int, height: int, limit: tuple[int, int] | None = None) -> tuple[int, int]:
    """The picture size of a recording whose first frame is ``width`` x ``height``:
    scaled down (aspect ratio kept) to fit ``limit`` if it is larger, even (4:2:0 chroma)
    and at least the encoder's minimum."""
    if limit is not None and (width > limit[0] or height > limit[1]):
        scale = min(limit[0] / width, limit[1] / height)
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
        width, height = width - width % 2, height - height % 2  # down to even: stays within
    return (max(spec.min_size, width + width % 2), max(spec.min_size, height + height % 2))


class VideoPath:
    """Our own frame for each of a track's frames, in the recording's size and pixel
    format (see the module docstring). A graph is built per input size and format."""

    def __init__(self, stream: VideoStream) -> None:
        ctx = stream.codec_context
        self._size = (ctx.width, ctx.height)
        self._pix_fmt = ctx.pix_fmt or "yuv420p"
        self._key: tuple[int, int, str] | None = None
        self._graph: av.filter.Graph | None = None

    def own(self, frame: av.VideoFrame, pts: int, key_frame: bool) -> av.VideoFrame:
        """Our frame for ``frame`` (read-only), stamped ``pts`` (ms)."""
        key = (frame.width, frame.height, frame.format.name)
        if key != self._key or self._graph is None:
            self._graph = self._build(frame)
            self._key = key
        self._graph.push(frame)
        out = self._graph.pull()
        assert isinstance(out, av.VideoFrame)
        out.pts = pts
        out.time_base = VIDEO_TIME_BASE
        out.pict_type = av.video.frame.PictureType.I if key_frame else av.video.frame.PictureType.NONE
        return out

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        width, height = self._size
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=VIDEO_TIME_BASE)
        ]
        if (frame.width, frame.height) != self._size:
            # The picture inside the bars: as large as fits, aspect ratio kept, even, and
            # at least 2x2 however thin the source (641x1 would otherwise scale to nothing).
            factor = min(width / frame.width, height / frame.height)
            inner_w = min(width, max(2, round(frame.width * factor / 2) * 2))
            inner_h = min(height, max(2, round(frame.height * factor / 2) * 2))
            chain.append(graph.add("scale", f"w={inner_w}:h={inner_h}"))
            chain.append(graph.add("pad", f"w={width}:h={height}:x=(ow-iw)/2:y=(oh-ih)/2:color=black"))
        if frame.format.name.startswith("yuvj"):
            # Full-range ("JPEG") YUV: the format filter would only relabel it.
            chain.append(graph.add("scale", "in_range=full:out_range=limited"))
        chain.append(graph.add("format", self._pix_fmt))
        chain.append(graph.add("buffersink"))
        return configure_chain(graph, *chain)


#: The cores this process's recordings share (all of them, unless an encoder pool gave this
#: process its share).
def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_cores = usable_cores()


def share_cores(cores: int) -> None:
    """This process's recordings get ``cores`` cores (an encoder process's share)."""
    global _cores
    _cores = max(1, cores)


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
