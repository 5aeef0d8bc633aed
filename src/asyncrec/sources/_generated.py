"""Tracks made from numpy arrays or callables: for users' generated media, demos and tests.

Both follow aiortc's track contract (``recv()`` returns PyAV frames and raises
``MediaStreamError`` at the end) and say whether they are ``live``: a real-time track
(``realtime=True``, the default) delivers frames at their pace, like a camera; otherwise
frames come as fast as they can be made and the recorder slows the track down instead of
dropping frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import TypeAlias

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ._sync import Pacer

VIDEO_TIME_BASE = Fraction(1, 90000)

VideoSource: TypeAlias = (
    npt.NDArray[np.uint8]
    | Callable[[int, float], npt.NDArray[np.uint8] | av.VideoFrame]
    | Iterable[npt.NDArray[np.uint8] | av.VideoFrame]
)
AudioSource: TypeAlias = npt.NDArray[np.generic] | Callable[[int, int], npt.NDArray[np.generic]]


class FrameTrack(MediaStreamTrack):
    """A video track from numpy arrays or PyAV frames.

    ``source`` is one of:

    * an array (``height x width x 3`` for ``rgb24``, or any layout PyAV's
      ``VideoFrame.from_ndarray`` takes for ``format``): the same picture every frame;
    * a callable ``source(index, seconds) -> array | av.VideoFrame``;
    * an iterable of arrays or frames; the track ends when it is exhausted.

    ``duration`` (seconds) ends the track after that much media; None runs until
    :meth:`stop`. ``clock_domain``: tracks given the same (any hashable) share a time
    origin when recorded, e.g. a FrameTrack and a SampleTrack made from one source; by
    default each track is its own. ``frame_rate`` is ``fps``, declared in recordings.
    """

    kind = "video"

    def __init__(
        self,
        source: VideoSource,
        *,
        fps: float = 30.0,
        format: str = "rgb24",  # noqa: A002 - PyAV's name
        realtime: bool = True,
        duration: float | None = None,
        clock_domain: object = None,
    ) -> None:
        super().__init__()
        if fps <= 0:
            raise ValueError("fps must be positive")
        self._fps = fps
        self.frame_rate = fps
        self.clock_domain = clock_domain
        self._format = format
        self._limit = None if duration is None else max(0, round(duration * fps))
        self._index = 0
        self._pacer = Pacer() if realtime else None
        self.live = realtime
        #: False records black frames in this track's place (the spec's "not enabled").
        self.enabled = True
        self._make: Callable[[int, float], npt.NDArray[np.uint8] | av.VideoFrame]
        if isinstance(source, np.ndarray):
            image = source
            self._make = lambda i, t: image
        elif callable(source):
            self._make = source
        else:
            iterator: Iterator[npt.NDArray[np.uint8] | av.VideoFrame] = iter(source)
            self._make = lambda i, t: next(iterator)

    async def recv(self) -> av.VideoFrame:
        """The next frame. Raises MediaStreamError once the track has ended."""
        if self.readyState != "live" or (self._limit is not None and self._index >= self._limit):
            self.stop()
            raise MediaStreamError
        seconds = self._index / self._fps
        if self._pacer is not None:
            await self._pacer.wait(seconds)
        try:
            picture = self._make(self._index, seconds)
        except StopIteration:
            self.stop()
            raise MediaStreamError from None
        frame = (
            picture if isinstance(picture, av.VideoFrame) else av.VideoFrame.from_ndarray(picture, format=self._format)
        )
        frame.pts = round(seconds * VIDEO_TIME_BASE.denominator)
        frame.time_base = VIDEO_TIME_BASE
        self._index += 1
        return frame


class SampleTrack(MediaStreamTrack):
    """An audio track from numpy sample arrays.

    ``source`` is one of:

    * an array of shape ``(channels, samples)`` (or ``(samples,)`` for mono), played once;
    * a callable ``source(first_sample, count) -> array`` of shape ``(channels, count)``.

    Float arrays are samples in [-1, 1]; int16 arrays are 16-bit samples. Frames are
    packed ``s16`` (what aiortc's Opus encoder takes) of ``frame_ms`` milliseconds each.
    ``clock_domain`` as for :class:`FrameTrack`.
    """

    kind = "audio"

    def __init__(
        self,
        source: AudioSource,
        *,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: float = 20.0,
        realtime: bool = True,
        duration: float | None = None,
        clock_domain: object = None,
    ) -> None:
        super().__init__()
        self.clock_domain = clock_domain
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self._rate = sample_rate
        self._channels = channels
        self._per_frame = max(1, round(sample_rate * frame_ms / 1000))
        self._limit = None if duration is None else max(0, round(duration * sample_rate))
        self._next = 0
        self._pacer = Pacer() if realtime else None
        self.live = realtime
        #: False records silence in this track's place (the spec's "not enabled").
        self.enabled = True
        self._read: Callable[[int, int], npt.NDArray[np.generic]]
        if isinstance(source, np.ndarray):
            samples = source.reshape(1, -1) if source.ndim == 1 else source
            self._limit = samples.shape[1] if self._limit is None else min(self._limit, samples.shape[1])
            self._read = lambda first, count: samples[:, first : first + count]
        else:
            self._read = source

    async def recv(self) -> av.AudioFrame:
        """The next frame. Raises MediaStreamError once the track has ended."""
        count = self._per_frame
        if self._limit is not None:
            count = min(count, self._limit - self._next)
        if self.readyState != "live" or count <= 0:
            self.stop()
            raise MediaStreamError
        if self._pacer is not None:
            await self._pacer.wait(self._next / self._rate)
        data = np.asarray(self._read(self._next, count))
        if data.ndim == 1:
            data = data.reshape(1, -1)
        if data.dtype != np.int16:
            data = (np.clip(data, -1.0, 1.0) * 32767).astype(np.int16)
        # Packed s16, what aiortc's Opus sender (and most consumers) take as is.
        interleaved = np.ascontiguousarray(data.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            interleaved, format="s16", layout="mono" if self._channels == 1 else "stereo"
        )
        frame.sample_rate = self._rate
        frame.pts = self._next
        frame.time_base = Fraction(1, self._rate)
        self._next += data.shape[1]
        return frame


def moving_pattern(width: int = 640, height: int = 480) -> Callable[[int, float], av.VideoFrame]:
    """A cheap moving test picture (colour bars sliding sideways, a bright square moving
    down), for :class:`FrameTrack`. Frames are yuv420p, made by slicing one buffer."""
    if width < 2 or height < 2:
        raise ValueError("the pattern needs at least 2x2 pixels")
    bars = np.array([235, 210, 170, 145, 106, 81, 41, 16], dtype=np.uint8)
    luma_row = np.repeat(bars, math.ceil(2 * width / len(bars)))[: 2 * width]
    luma = np.tile(luma_row, (height, 1))
    cw, ch = (width + 1) // 2, (height + 1) // 2
    u_row = np.repeat(np.array([128, 16, 166, 54, 202, 90, 240, 128], np.uint8), math.ceil(2 * cw / 8))[: 2 * cw]
    v_row = np.repeat(np.array([128, 146, 16, 34, 222, 240, 110, 128], np.uint8), math.ceil(2 * cw / 8))[: 2 * cw]
    u = np.tile(u_row, (ch, 1))
    v = np.tile(v_row, (ch, 1))
    box = max(2, min(width, height) // 8)

    def make(index: int, seconds: float) -> av.VideoFrame:
        shift = (index * 4) % width
        frame = av.VideoFrame(width, height, "yuv420p")
        y_plane = np.ascontiguousarray(luma[:, shift : shift + width])
        top = (index * 3) % max(1, height - box)
        y_plane[top : top + box, (width - box) // 2 : (width + box) // 2] = 255
        _fill(frame.planes[0], y_plane)
        _fill(frame.planes[1], u[:, shift // 2 : shift // 2 + cw])
        _fill(frame.planes[2], v[:, shift // 2 : shift // 2 + cw])
        return frame

    return make


def _fill(plane: av.video.plane.VideoPlane, data: npt.NDArray[np.uint8]) -> None:
    view = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    view[:, : data.shape[1]] = data


def sine_tone(
    frequency: float = 440.0, sample_rate: int = 48000, *, channels: int = 1, amplitude: float = 0.3
) -> Callable[[int, int], npt.NDArray[np.float32]]:
    """A sine tone for :class:`SampleTrack`: ``(first_sample, count) -> (channels, count)``."""

    def read(first: int, count: int) -> npt.NDArray[np.float32]:
        t = (np.arange(first, first + count, dtype=np.float64)) / sample_rate
        wave = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        return np.tile(wave, (channels, 1))

    return read
