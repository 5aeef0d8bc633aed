"""The audio path of the worker: any rate, layout and format to the encoder's, re-framed,
with the recording's clock kept sample-exact.

FFmpeg's ``aresample`` filter does the conversion with ``async`` compensation: it
stretches or squeezes the audio (at most ``ASYNC_SAMPLES`` samples per second, inaudible)
so it follows its timestamps, which are the frames' places on the recording's clock. A
source whose sample clock runs a little fast or slow against its timestamps therefore
stays in sync with video however long it runs, and a gap in the input (a peer's
silence suppression, a stall) becomes silence.
https://ffmpeg.org/ffmpeg-filters.html#aresample-1 and https://ffmpeg.org/ffmpeg-resampler.html

Frames belong to their senders: the path never writes into them. A frame is first
referenced through a pass-through filter graph (no copy of its samples), and the
timestamp is set on that reference.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
from av.audio.stream import AudioStream

from ._graphs import configure_chain

AUDIO_RATE = 48000
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
#: An audio source this far behind its timestamps is continued after a gap of silence (s).
AUDIO_GAP = 0.06
#: At most this many samples per second are stretched or squeezed to follow timestamps.
ASYNC_SAMPLES = 1000
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


def _pull_all(graph: av.filter.Graph) -> list[av.AudioFrame]:
    frames: list[av.AudioFrame] = []
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return frames
        assert isinstance(frame, av.AudioFrame)
        frames.append(frame)


class _Converter:
    """The filter graphs for one input configuration (format, layout, rate)."""

    def __init__(self, frame: av.AudioFrame, out_format: str, out_layout: str) -> None:
        rate = frame.sample_rate
        self.rate = rate
        self._ref = av.filter.Graph()
        configure_chain(
            self._ref,
            self._ref.add_abuffer(
                format=frame.format.name, sample_rate=rate, layout=frame.layout.name, time_base=Fraction(1, rate)
            ),
            self._ref.add("abuffersink"),
        )
        self._graph = av.filter.Graph()
        # rematrix_maxval keeps a downmix (5.1 to stereo) within full scale in float formats.
        resample = f"{AUDIO_RATE}:async={ASYNC_SAMPLES}:min_hard_comp={AUDIO_GAP}:rematrix_maxval=1.0"
        configure_chain(
            self._graph,
            self._graph.add_abuffer(
                format=frame.format.name, sample_rate=rate, layout=frame.layout.name, time_base=Fraction(1, rate)
            ),
            self._graph.add("aresample", resample),
            self._graph.add("aformat", f"sample_fmts={out_format}:channel_layouts={out_layout}"),
            self._graph.add("abuffersink"),
        )

    def push(self, frame: av.AudioFrame, at: float) -> list[av.AudioFrame]:
        self._ref.push(frame)
        owned = _pull_all(self._ref)  # a reference to the sender's samples, not a copy
        for own in owned:
            own.pts = round(at * self.rate)
            own.time_base = Fraction(1, self.rate)
            self._graph.push(own)
        return _pull_all(self._graph)

    def drain(self) -> list[av.AudioFrame]:
        self._graph.push(None)
        return _pull_all(self._graph)


class AudioPath:
    """Converts and re-frames one audio track for its encoder (see the module docstring)."""

    def __init__(self, stream: AudioStream, frame_size: int) -> None:
        self._stream = stream
        ctx = stream.codec_context
        self._format = ctx.format.name
        self._layout = ctx.layout.name
        self._frame_size = frame_size or 960
        self._fifo = av.AudioFifo()
        self._converter: _Converter | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._next_pts: int | None = None
        #: Media time where the input so far ends (s).
        self._end: float | None = None
        #: Where the written audio ends minus where the recording's clock says it ends (s).
        self.offset = 0.0

    def push(self, frame: av.AudioFrame, at: float) -> list[av.Packet[Any]]:
        """Convert ``frame`` (read-only), placed at media time ``at`` (s); returns the
        packets it completes."""
        if self._next_pts is None:
            self._next_pts = round(at * AUDIO_RATE)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input_key or self._converter is None:
            self._drain_converter()
            self._converter = _Converter(frame, self._format, self._layout)
            self._input_key = key
            written = self._written_end()
            if self._end is not None and at - written > AUDIO_GAP:
                self._silence(at - written)  # a new graph knows nothing of the gap before it
        for out in self._converter.push(frame, at):
            self._write(out)
        duration = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
        self._end = at + duration
        packets = self._encode_ready(final=False)
        self.offset = self._written_end() - self._end
        return packets

    def flush(self, until: float | None = None) -> list[av.Packet[Any]]:
        """The last packets. A source that went quiet before ``until`` (the recording's
        end on its clock) is padded with silence up to it."""
        self._drain_converter()
        if self._next_pts is None:
            # The track sent nothing at all (it ended before its first frame): silence
            # up to the video's end keeps the declared stream honest.
            self._next_pts = 0
            if until is not None and until > 0:
                self._silence(until)
        written = self._written_end()
        if until is not None and self._end is not None and until - written > TRAILING_GAP:
            self._silence(until - written)
        packets = self._encode_ready(final=True)
        packets.extend(self._stream.encode(None))
        return packets

    def _written_end(self) -> float:
        assert self._next_pts is not None
        return (self._next_pts + self._fifo.samples) / AUDIO_RATE

    def _drain_converter(self) -> None:
        if self._converter is not None:
            for out in self._converter.drain():
                self._write(out)
            self._converter = None

    def _write(self, frame: av.AudioFrame) -> None:
        frame.pts = None  # the fifo counts samples; our own frame
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
