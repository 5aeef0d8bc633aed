"""The recording's clock follows the media, not the wall, for sources that are not live.

* A plain aiortc track that declares nothing (no ``live``) loses no frame, with or
  without timestamps.
* A file read at full speed keeps the offset between its tracks.
* ``timeslice`` is media time for a source that is not live.
* The video stream declares the source's real frame rate.
* Audio whose sample count drifts from its timestamps (a sound card's clock) stays with
  the video over ten minutes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from asyncrec import FrameTrack, SampleTrack, moving_pattern, open_media, sine_tone
from media_check import (
    _run,
    _tool,
    ffmpeg_decode_errors,
    ffprobe_duration,
    ffprobe_packet_spans,
    ffprobe_streams,
    ffprobe_video,
)
from media_probe import record
from source_check import sources_released, stop_tracks

VIDEO_CLOCK = 90000
RATE = 48000


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    with sources_released():
        yield


def stream_indices(path: Path) -> dict[str, int]:
    """Stream index per codec type ("video", "audio") in ``path``, by ffprobe."""
    return {s["codec_type"]: index for index, s in enumerate(ffprobe_streams(path))}


# -- 1. a track that declares nothing loses nothing -------------------------------------------------

UNDECLARED_FRAMES = 90
UNDECLARED_FPS = 30


class UndeclaredTrack(MediaStreamTrack):
    """A plain aiortc track: no ``live`` attribute, 320x240 frames as fast as they are asked
    for, then MediaStreamError. With ``stamped`` each frame has its pts (1/90000, 30 fps)."""

    kind = "video"

    def __init__(self, count: int, *, stamped: bool) -> None:
        super().__init__()
        self._count = count
        self._stamped = stamped
        self._index = 0
        self._make = moving_pattern(320, 240)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live" or self._index >= self._count:
            self.stop()
            raise MediaStreamError
        frame = self._make(self._index, self._index / UNDECLARED_FPS)
        if self._stamped:
            frame.pts = self._index * (VIDEO_CLOCK // UNDECLARED_FPS)
            frame.time_base = Fraction(1, VIDEO_CLOCK)
        else:
            frame.pts = None
        self._index += 1
        return frame


@pytest.mark.parametrize("stamped", [pytest.param(True, id="with-pts"), pytest.param(False, id="pts-none")])
async def test_undeclared_track_loses_no_frame(stamped: bool, tmp_path: Path) -> None:
    track = UndeclaredTrack(UNDECLARED_FRAMES, stamped=stamped)
    assert not hasattr(track, "live")
    recording = await record([track], mimeType="video/webm")
    assert recording.errors == []
    path = recording.save(tmp_path / "undeclared.webm")

    (video,) = ffprobe_streams(path)
    assert (video["width"], video["height"]) == (320, 240)
    assert video["nb_read_frames"] == UNDECLARED_FRAMES, "frames in the file (ffprobe -count_frames)"
    # Spread over the media's 3 s, not squeezed into the fraction of a second it took.
    assert ffprobe_duration(path) == pytest.approx(UNDECLARED_FRAMES / UNDECLARED_FPS, abs=0.1)
    (stats,) = recording.statistics.tracks
    assert stats.frames_dropped == 0
    assert stats.frames_encoded == stats.frames_in == UNDECLARED_FRAMES
    assert ffmpeg_decode_errors(path) == ""


# -- 3. a file read at full speed keeps the offset between its tracks -----------------------------

VIDEO_START = 1.0
FILE_SECONDS = 3.0


def make_offset_file(path: Path) -> Path:
    """WebM (VP8 160x120 30 fps + Opus 48 kHz mono) written by PyAV: audio from 0 to 3 s,
    video from 1 s (first pts 1.0 s) to 3 s."""
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=30, options={"deadline": "realtime", "cpu-used": "8"})
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("libopus", rate=RATE, layout="mono")
        make = moving_pattern(160, 120)
        items: list[tuple[float, int, av.VideoFrame | av.AudioFrame]] = []
        for index in range(round(VIDEO_START * 30), round(FILE_SECONDS * 30)):
            frame = make(index, index / 30)
            frame.pts, frame.time_base = index, Fraction(1, 30)
            items.append((index / 30, 0, frame))
        tone = sine_tone(440)
        for first in range(0, round(FILE_SECONDS * RATE), 960):
            sound = av.AudioFrame.from_ndarray(tone(first, 960), format="flt", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = RATE, first, Fraction(1, RATE)
            items.append((first / RATE, 1, sound))
        for _, kind, frame in sorted(items, key=lambda item: item[:2]):
            out.mux((video if kind == 0 else audio).encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


async def test_file_read_at_full_speed_keeps_the_offset_between_tracks(tmp_path: Path) -> None:
    source = make_offset_file(tmp_path / "offset-input.webm")
    spans = ffprobe_packet_spans(source)
    indices = stream_indices(source)
    assert spans[indices["video"]][0] == pytest.approx(VIDEO_START, abs=0.002), "the input as made"
    assert spans[indices["audio"]][0] == pytest.approx(0.0, abs=0.01), "the input as made"

    stream = await open_media(source, realtime=False)
    try:
        recording = await record(stream, mimeType="video/webm;codecs=vp8,opus")
    finally:
        stop_tracks(stream)
    assert recording.errors == []
    path = recording.save(tmp_path / "offset.webm")
    assert ffmpeg_decode_errors(path) == ""

    spans = ffprobe_packet_spans(path)
    indices = stream_indices(path)
    first_video = spans[indices["video"]][0]
    first_audio = spans[indices["audio"]][0]
    assert first_video - first_audio == pytest.approx(VIDEO_START, abs=0.05), (
        f"first video packet at {first_video:.3f} s, first audio packet at {first_audio:.3f} s"
    )


# -- 4. timeslice is media time for a source that is not live ------------------------------------

SLICED_SECONDS = 30.0


async def test_timeslice_is_media_time_for_a_source_that_is_not_live(tmp_path: Path) -> None:
    tracks = [
        FrameTrack(moving_pattern(64, 48), fps=30, realtime=False, duration=SLICED_SECONDS),
        SampleTrack(sine_tone(440), realtime=False, duration=SLICED_SECONDS),
    ]
    recording = await record(tracks, timeslice=1000, mimeType="video/webm;codecs=vp8,opus")
    assert recording.errors == []
    chunks = [(code, data) for code, data in zip(recording.timecodes, recording.chunks, strict=True) if data]
    assert 25 <= len(chunks) <= 35, f"{len(chunks)} non-empty chunks for 30 s of media in 1 s slices"
    steps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(chunks)]
    assert all(800 <= step <= 1300 for step in steps), f"timecode steps (ms): {steps}"

    path = recording.save(tmp_path / "sliced.webm")
    assert ffmpeg_decode_errors(path) == ""
    assert ffprobe_duration(path) == pytest.approx(SLICED_SECONDS, abs=0.2)


# -- 9. the real frame rate is declared -----------------------------------------------------------


def declared_rates(path: Path) -> tuple[Fraction, Fraction]:
    """(avg_frame_rate, r_frame_rate) of the video stream of ``path``, by ffprobe."""
    [stream] = ffprobe_video(path, "stream=avg_frame_rate,r_frame_rate")
    return Fraction(stream["avg_frame_rate"]), Fraction(stream["r_frame_rate"])


def ffmpeg_warnings(path: Path) -> str:
    """What Debian's ffmpeg prints at -v warning while decoding ``path`` to nothing."""
    result = _run([_tool("ffmpeg"), "-nostdin", "-v", "warning", "-i", str(path), "-f", "null", "-"])
    assert result.returncode == 0, result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize("fps", [60, 15])
async def test_the_real_frame_rate_is_declared(fps: int, tmp_path: Path) -> None:
    seconds = 2
    track = FrameTrack(moving_pattern(160, 120), fps=fps, realtime=False, duration=seconds)
    recording = await record([track], mimeType="video/webm")
    assert recording.errors == []
    path = recording.save(tmp_path / f"rate{fps}.webm")

    (video,) = ffprobe_streams(path)
    assert video["nb_read_frames"] == fps * seconds
    average, real = declared_rates(path)
    assert abs(average - fps) <= 1 or abs(real - fps) <= 1, f"avg_frame_rate {average}, r_frame_rate {real}"
    assert ffmpeg_warnings(path) == ""


# -- 12. audio whose clock drifts from its timestamps --------------------------------------------

DRIFT_SECONDS = 600.0


class DriftingAudio(MediaStreamTrack):
    """Audio that is not live whose pts advance 960 ticks (1/48000) a frame while each frame
    carries ``samples`` samples: a sound card whose clock is a little fast or slow."""

    kind = "audio"

    def __init__(self, samples: int, seconds: float) -> None:
        super().__init__()
        self.live = False
        self._count = round(seconds * RATE / 960)
        self._index = 0
        tone = sine_tone(440)(0, samples)
        self._data = (tone * 32767).astype(np.int16).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live" or self._index >= self._count:
            self.stop()
            raise MediaStreamError
        frame = av.AudioFrame.from_ndarray(self._data, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._index * 960
        frame.time_base = Fraction(1, RATE)
        self._index += 1
        return frame


@pytest.mark.slow
@pytest.mark.parametrize("samples", [pytest.param(961, id="fast"), pytest.param(959, id="slow")])
async def test_drifting_audio_clock_stays_with_the_video(samples: int, tmp_path: Path) -> None:
    tracks = [
        FrameTrack(moving_pattern(64, 48), fps=30, realtime=False, duration=DRIFT_SECONDS),
        DriftingAudio(samples, DRIFT_SECONDS),
    ]
    recording = await record(tracks, mimeType="video/webm;codecs=vp8,opus", time_limit=90)
    assert recording.errors == []
    path = recording.save(tmp_path / "drift.webm")

    spans = ffprobe_packet_spans(path)
    indices = stream_indices(path)
    video_end = spans[indices["video"]][1]
    audio_end = spans[indices["audio"]][1]
    assert video_end == pytest.approx(DRIFT_SECONDS, abs=0.1)
    assert abs(audio_end - video_end) <= 0.040, f"audio ends at {audio_end:.3f} s, video at {video_end:.3f} s"
