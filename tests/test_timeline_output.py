"""The timeline of recorded files (issue 4), measured on the output.

* A/V offset: video flashing white and audio beeping at the same source times decode at
  the same file times (within 40 ms), with real-time (live) tracks.
* The file starts at 0: first packets at 0, video frames at their source times, the first
  audio sample at 0.
* Bad source timestamps (missing, repeated, backwards, a jump of an hour, an RTP-style
  wrap-around): the file still decodes, its timestamps increase and its duration is the
  source's real duration.
* Audio gaps (timestamps skipping ahead) become silence: the audio keeps its length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from asyncrec import FrameTrack, SampleTrack
from media_check import ffmpeg_decode_errors
from media_probe import (
    ScriptedTrack,
    audio_frame,
    decode_audio,
    decode_video,
    ffmpeg_decode_errors_vfr,
    probe,
    record,
    solid_yuv420p,
)

FPS = 30
WIDTH, HEIGHT = 160, 120
VIDEO_CLOCK = 90000
RATE = 48000
AV_TOLERANCE = 0.040

WHITE = solid_yuv420p(WIDTH, HEIGHT, (255, 255, 255))
BLACK = solid_yuv420p(WIDTH, HEIGHT, (0, 0, 0))


def copy_of(frame: av.VideoFrame) -> av.VideoFrame:
    """A new frame with the same picture (every frame sent must be its own object)."""
    out = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for dst, src in zip(out.planes, frame.planes, strict=True):
        dst.update(bytes(src))
    return out


def beep_onsets(samples: np.ndarray, rate: int, start: float, threshold: float = 0.1) -> list[float]:
    """Times where the signal rises above ``threshold`` after at least 100 ms below it."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    onsets: list[float] = []
    last = -(10**9)
    for index in loud:
        if index - last > rate // 10:
            onsets.append(start + index / rate)
        last = index
    return onsets


# -- A/V offset -------------------------------------------------------------------------------------

FLASHES = (0.5, 1.5)
AV_SECONDS = 2.0
BEEP = 0.05


def flashing(index: int, seconds: float) -> av.VideoFrame:
    return copy_of(WHITE if index in {round(t * FPS) for t in FLASHES} else BLACK)


def beeping(first: int, count: int) -> np.ndarray:
    t = np.arange(first, first + count) / RATE
    on = np.zeros(count, dtype=bool)
    for flash in FLASHES:
        on |= (t >= flash) & (t < flash + BEEP)
    return (0.5 * np.sin(2 * np.pi * 1000 * t) * on).astype(np.float32)


@pytest.mark.parametrize(
    "mime",
    [
        pytest.param("video/webm;codecs=vp8,opus", id="webm-vp8-opus"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", id="mp4-avc1-aac", marks=pytest.mark.slow),
        pytest.param("video/x-matroska;codecs=avc1,mp4a.40.2", id="mkv-avc1-aac", marks=pytest.mark.slow),
    ],
)
async def test_av_offset_with_live_tracks(mime: str, tmp_path: Path) -> None:
    tracks = [
        FrameTrack(flashing, fps=FPS, realtime=True, duration=AV_SECONDS),
        SampleTrack(beeping, realtime=True, duration=AV_SECONDS),
    ]
    recording = await record(tracks, mimeType=mime)
    assert recording.errors == []
    path = recording.save(tmp_path / "av.bin")
    assert ffmpeg_decode_errors(path) == ""

    video = decode_video(path)
    flashes = [t for t, luma in zip(video.times, video.lumas, strict=True) if luma.mean() > 128]
    audio = decode_audio(path)
    onsets = beep_onsets(audio.samples[0], audio.rate, audio.start)
    assert len(flashes) == len(FLASHES), f"white frames at {flashes}"
    assert len(onsets) == len(FLASHES), f"beeps at {onsets}"
    for flash, onset, source in zip(flashes, onsets, FLASHES, strict=True):
        assert abs(flash - onset) <= AV_TOLERANCE, f"flash at {flash:.3f} s, beep at {onset:.3f} s"
        assert flash == pytest.approx(source, abs=0.1)

    # The file starts at 0 for both streams (an encoder's priming may start audio a frame early).
    probed = probe(path)
    for kind in ("video", "audio"):
        first = probed.packets_of(kind)[0]["pts"]
        assert -0.025 <= first <= AV_TOLERANCE, f"first {kind} packet at {first} s"


# -- the file starts at 0 ----------------------------------------------------------------------------


def tone_from_zero(first: int, count: int) -> np.ndarray:
    t = np.arange(first, first + count) / RATE
    return (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "mime",
    [
        pytest.param("video/webm;codecs=vp8,opus", id="webm-vp8-opus"),
        pytest.param("video/x-matroska;codecs=avc1,mp4a.40.2", id="mkv-avc1-aac"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", id="mp4-avc1-aac"),
        pytest.param("video/mp4;codecs=avc1,opus", id="mp4-avc1-opus"),
        pytest.param("video/mp4;codecs=vp09,opus", id="mp4-vp09-opus"),
    ],
)
async def test_file_starts_at_zero(mime: str, tmp_path: Path) -> None:
    """Video frame k decodes at k/30 s and the first audio sample at 0: an encoder's priming
    samples are the container's business (trimmed on decoding), not a shift of the timeline."""
    tracks = [
        FrameTrack(flashing, fps=FPS, realtime=False, duration=1.0),
        SampleTrack(tone_from_zero, realtime=False, duration=1.0),
    ]
    recording = await record(tracks, mimeType=mime)
    path = recording.save(tmp_path / "zero.bin")
    assert ffmpeg_decode_errors(path) == ""

    probed = probe(path)
    for kind in ("video", "audio"):
        first = probed.packets_of(kind)[0]["pts"]
        assert -0.025 <= first <= 0.002, f"first {kind} packet at {first} s"
    video = decode_video(path)
    assert len(video.times) == 30
    shifts = [round(t - k / FPS, 4) for k, t in enumerate(video.times)]
    assert max(abs(s) for s in shifts) <= 0.002, f"video frame time minus source time: {shifts[:5]}..."
    audio = decode_audio(path)
    onset = beep_onsets(audio.samples[0], audio.rate, audio.start)[0]
    assert abs(onset) <= 0.002, f"the first audio sample decodes at {onset * 1000:.1f} ms"
    assert audio.duration == pytest.approx(1.0, abs=0.030)


# -- bad timestamps ------------------------------------------------------------------------------------

BAD_FRAMES = 24  # 0.8 s at 30 fps
AT = 12  # the frame where things go wrong
SECONDS = BAD_FRAMES / FPS
WRAP = 2**32


@dataclass(frozen=True)
class Clock:
    """Source timestamps: ``ticks(index, step, rate)`` is the pts of frame ``index`` for frames
    ``step`` ticks of a ``rate`` Hz clock apart (None: no timestamp). The defect comes at
    frame ``AT``."""

    name: str
    ticks: Callable[[int, int, int], int | None]


CLOCKS = {
    "missing": Clock("missing", lambda i, step, rate: None),
    "some-missing": Clock("some-missing", lambda i, step, rate: None if i % 3 == 1 else i * step),
    "repeated": Clock("repeated", lambda i, step, rate: (AT - 1) * step if i in (AT, AT + 1) else i * step),
    "backwards": Clock("backwards", lambda i, step, rate: i * step if i < AT else (i - AT) * step),
    "hour-jump": Clock("hour-jump", lambda i, step, rate: i * step + (3600 * rate if i >= AT else 0)),
    # RTP timestamps are 32 bits: they wrap to 0 at frame AT.
    "rtp-wrap": Clock("rtp-wrap", lambda i, step, rate: (WRAP - AT * step + i * step) % WRAP),
}


def bad_video(clock: Clock, live: bool) -> ScriptedTrack:
    step = VIDEO_CLOCK // FPS

    def make(index: int) -> av.VideoFrame:
        frame = copy_of(WHITE if index % 2 else BLACK)
        pts = clock.ticks(index, step, VIDEO_CLOCK)
        if pts is not None:
            frame.pts = pts
            frame.time_base = Fraction(1, VIDEO_CLOCK)
        return frame

    return ScriptedTrack("video", make, BAD_FRAMES, due=(lambda i: i / FPS) if live else None)


def bad_audio(clock: Clock, live: bool) -> ScriptedTrack:
    """20 ms frames of a tone at 48 kHz, timestamped by ``clock`` in samples (the defect
    comes at frame ``AT``, 0.24 s)."""
    per_frame = RATE // 50
    count = round(SECONDS * 50)

    def make(index: int) -> av.AudioFrame:
        samples = tone_from_zero(index * per_frame, per_frame).reshape(1, -1).astype(np.float64)
        return audio_frame(samples, "s16", "mono", RATE, clock.ticks(index, per_frame, RATE))

    return ScriptedTrack("audio", make, count, due=(lambda i: i / 50) if live else None)


def check_increasing(probed_times: list[float], what: str) -> None:
    steps = np.diff(probed_times)
    assert (steps > 0).all(), f"{what} timestamps not strictly increasing: {probed_times}"


BAD_CASES = [
    # A frame with no timestamp can only be placed by the wall clock: live sources only.
    pytest.param("missing", True, id="live-missing"),
    pytest.param("some-missing", True, id="live-some-missing"),
    pytest.param("repeated", True, id="live-repeated"),
    pytest.param("backwards", True, id="live-backwards"),
    pytest.param("hour-jump", True, id="live-hour-jump"),
    pytest.param("rtp-wrap", True, id="live-rtp-wrap"),
    pytest.param("repeated", False, id="not-live-repeated"),
    pytest.param("backwards", False, id="not-live-backwards"),
    pytest.param("hour-jump", False, id="not-live-hour-jump"),
    pytest.param("rtp-wrap", False, id="not-live-rtp-wrap"),
]


@pytest.mark.parametrize(("clock_name", "live"), BAD_CASES)
async def test_bad_timestamps(clock_name: str, live: bool, tmp_path: Path) -> None:
    clock = CLOCKS[clock_name]
    recording = await record([bad_video(clock, live), bad_audio(clock, live)], mimeType="video/webm;codecs=vp8,opus")
    assert recording.errors == []
    path = recording.save(tmp_path / "bad.webm")

    # Frames 1 ms apart (a repeated timestamp) are valid; only ffmpeg's 1/30 s output clock
    # would make them collide, so decode in the streams' own time base.
    assert ffmpeg_decode_errors_vfr(path) == ""
    probed = probe(path)
    video_packets = probed.packets_of("video")
    assert len(video_packets) == BAD_FRAMES
    assert probed.stream("video")["nb_read_frames"] == BAD_FRAMES
    check_increasing([p["pts"] for p in video_packets], "video")
    check_increasing([p["pts"] for p in probed.packets_of("audio")], "audio")
    assert video_packets[0]["pts"] == pytest.approx(0.0, abs=0.002)
    # Not stretched by a jump, not squeezed by a step back: the source's real duration.
    assert probed.span("video") == pytest.approx(SECONDS, abs=0.1)
    assert probed.span("audio") == pytest.approx(SECONDS, abs=0.1)

    video = decode_video(path)
    assert len(video.times) == BAD_FRAMES
    check_increasing(video.times, "decoded video")
    assert video.times[-1] - video.times[0] == pytest.approx(SECONDS - 1 / FPS, abs=0.1)
    audio = decode_audio(path)
    assert audio.discontinuities == []
    assert audio.duration == pytest.approx(SECONDS, abs=0.1)


# -- audio gaps ------------------------------------------------------------------------------------------

GAP_AT = 0.5
GAP = 0.3
GAP_SOURCE_SECONDS = 1.0


def gapped_audio(live: bool) -> ScriptedTrack:
    """1 s of a tone in 20 ms frames whose timestamps skip 300 ms after 0.5 s; a live track
    delivers each frame at its timestamp (nothing comes during the gap, as when packets are lost)."""
    per_frame = RATE // 50
    count = round(GAP_SOURCE_SECONDS * 50)

    def at(index: int) -> float:
        t = index / 50
        return t + (GAP if t >= GAP_AT else 0.0)

    def make(index: int) -> av.AudioFrame:
        samples = tone_from_zero(index * per_frame, per_frame).reshape(1, -1).astype(np.float64)
        return audio_frame(samples, "s16", "mono", RATE, round(at(index) * RATE))

    return ScriptedTrack("audio", make, count, due=at if live else None)


@pytest.mark.parametrize(
    ("mime", "live"),
    [
        pytest.param("audio/webm;codecs=opus", True, id="live-opus"),
        pytest.param("video/x-matroska;codecs=mp4a.40.2", True, id="live-aac", marks=pytest.mark.slow),
        pytest.param("audio/webm;codecs=opus", False, id="not-live-opus"),
        pytest.param("video/x-matroska;codecs=mp4a.40.2", False, id="not-live-aac"),
        pytest.param("audio/ogg;codecs=opus", False, id="not-live-ogg"),
    ],
)
async def test_audio_gap_becomes_silence(mime: str, live: bool, tmp_path: Path) -> None:
    recording = await record([gapped_audio(live)], mimeType=mime)
    assert recording.errors == []
    path = recording.save(tmp_path / "gap.bin")
    assert ffmpeg_decode_errors(path) == ""

    expected = GAP_SOURCE_SECONDS + GAP
    probed = probe(path)
    assert probed.span("audio") == pytest.approx(expected, abs=0.030), "packet span (ffprobe)"
    check_increasing([p["pts"] for p in probed.packets_of("audio")], "audio")
    audio = decode_audio(path)
    # The gap is samples of silence, not a hole in the timestamps.
    assert audio.discontinuities == []
    assert audio.duration == pytest.approx(expected, abs=0.030), "decoded samples (PyAV)"

    def rms(start: float, end: float) -> float:
        first, last = (round((t - audio.start) * audio.rate) for t in (start, end))
        return float(np.sqrt((audio.samples[0, first:last] ** 2).mean()))

    tone = 0.5 / np.sqrt(2)
    assert rms(0.05, GAP_AT - 0.05) > 0.6 * tone, "tone before the gap"
    assert rms(GAP_AT + 0.05, GAP_AT + GAP - 0.05) < 0.02 * tone, "silence in the gap"
    assert rms(GAP_AT + GAP + 0.05, expected - 0.05) > 0.6 * tone, "tone after the gap"
