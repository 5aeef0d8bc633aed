"""Audio path for the worker: any rate, layout and format to the encoder's, re-framed."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

AUDIO_RATE = 48000
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
#: An audio source this far behind its own sample count is continued after a gap of silence.
AUDIO_GAP = 0.06
#: An audio track this far short of the recording's end at stop is padded with silence (s).
TRAILING_GAP = 0.25


def silence_like(frame: av.AudioFrame) -> av.AudioFrame:
    """Silence with the format, layout, rate and length of ``frame`` (a disabled track)."""
    silent = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    silent.sample_rate = frame.sample_rate
    zero = b"\x80" if frame.format.name.startswith("u8") else b"\x00"  # unsigned 8-bit silence is 128
    for plane in silent.planes:
        plane.update(zero * plane.buffer_size)
    return silent


class AudioPath:
    """Converts any audio frame to the encoder's format and re-frames it, keeping a
    sample-exact clock: output timestamps count samples, and a gap in the input becomes
    silence."""

    def __init__(self, stream: Any, frame_size: int) -> None:
        self._stream = stream
        ctx = stream.codec_context
        self._format = ctx.format.name
        self._layout = ctx.layout.name
        self._frame_size = frame_size or 960
        self._fifo = av.AudioFifo()
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._next_pts: int | None = None
        self._expected: float | None = None  # media time of the next input sample
        #: Where the written audio ends minus where the recording's clock says it ends (s).
        self.offset = 0.0

    def push(self, frame: av.AudioFrame, at: float) -> list[av.Packet[Any]]:
        if self._next_pts is None:
            self._next_pts = round(at * AUDIO_RATE)
        elif self._expected is not None and at - self._expected > AUDIO_GAP:
            self._silence(at - self._expected)
        duration = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
        self._expected = (at if self._expected is None or at > self._expected else self._expected) + duration
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input_key:
            self._drain_resampler()
            # rematrix_maxval keeps a downmix (5.1 to stereo) from exceeding full scale in
            # float formats, as it already does for integer ones.
            self._resampler = av.AudioResampler(
                format=self._format, layout=self._layout, rate=AUDIO_RATE, options={"rematrix_maxval": "1.0"}
            )
            self._input_key = key
        assert self._resampler is not None
        frame.pts = None
        for out in self._resampler.resample(frame):
            self._write(out)
        packets = self._encode_ready(final=False)
        assert self._next_pts is not None
        self.offset = (self._next_pts + self._fifo.samples) / AUDIO_RATE - (at + duration)
        return packets

    def flush(self, until: float | None = None) -> list[av.Packet[Any]]:
        """The last packets. A live source that went quiet before ``until`` (the
        recording's end on its clock) is padded with silence up to it."""
        self._drain_resampler()
        if until is not None and self._expected is not None and until - self._expected > TRAILING_GAP:
            self._silence(until - self._expected)
        packets = self._encode_ready(final=True)
        packets.extend(self._stream.encode(None))
        return packets

    def _drain_resampler(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._write(out)
            self._resampler = None

    def _write(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        self._fifo.write(frame)

    def _silence(self, seconds: float) -> None:
        samples = round(seconds * AUDIO_RATE)
        if samples <= 0:
            return
        silent = av.AudioFrame(format=self._format, layout=self._layout, samples=samples)
        silent.sample_rate = AUDIO_RATE
        for plane in silent.planes:
            plane.update(bytes(plane.buffer_size))
        self._write(silent)

    def _encode_ready(self, *, final: bool) -> list[av.Packet[Any]]:
        packets: list[av.Packet[Any]] = []
        while self._fifo.samples >= self._frame_size or (final and self._fifo.samples):
            out = self._fifo.read(min(self._frame_size, self._fifo.samples))
            assert out is not None
            assert self._next_pts is not None
            out.pts = self._next_pts
            out.time_base = AUDIO_TIME_BASE
            out.sample_rate = AUDIO_RATE
            self._next_pts += out.samples
            packets.extend(self._stream.encode(out))
        return packets
