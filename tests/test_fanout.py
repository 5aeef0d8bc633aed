"""Frames as the recorder shares them with others.

* Several recorders on one stream each get every frame of every track (a track's frames
  are fanned out, not shared out between the readers).
* Frames are read-only to the recorder: the track (and whoever else holds the frames)
  finds them as it made them after the recording.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from asyncrec import MediaRecorder, MediaStream
from conftest import STOP_TIMEOUT, EventLog, make_stream
from media_check import ffmpeg_decode_errors
from media_probe import ScriptedTrack, audio_frame, probe, record, solid_yuv420p

FPS = 30
SECONDS = 2.0
VIDEO_FRAMES = 60
AUDIO_FRAMES = 100  # 20 ms frames


# -- 2. several recorders on one stream ---------------------------------------------------------------


async def record_together(stream: MediaStream, mimes: tuple[str, ...], tmp_path: Path) -> list[tuple[Path, Any]]:
    """Start one recorder per type on ``stream`` in the same turn of the loop and wait until
    every one has stopped by itself; (file, statistics) per recorder."""
    recorders = [MediaRecorder(stream, mimeType=mime) for mime in mimes]
    logs = [EventLog(recorder) for recorder in recorders]
    try:
        for recorder in recorders:
            recorder.start()
        await asyncio.wait_for(asyncio.gather(*(log.stopped.wait() for log in logs)), STOP_TIMEOUT)
    finally:
        for recorder in recorders:
            await asyncio.wait_for(recorder.aclose(), STOP_TIMEOUT)
    results = []
    for index, (recorder, log) in enumerate(zip(recorders, logs, strict=True)):
        assert [e for e in log.events if e.type == "error"] == []
        path = tmp_path / f"recorder{index}.webm"
        path.write_bytes(log.data)
        assert ffmpeg_decode_errors(path) == ""
        results.append((path, recorder.statistics()))
    return results


def frames_in(statistics: Any) -> dict[str, int]:
    return {track.kind: track.frames_in for track in statistics.tracks}


async def test_two_recorders_on_one_stream_each_get_every_frame(tmp_path: Path) -> None:
    stream = make_stream(duration=SECONDS)
    (video_path, video_stats), (audio_path, audio_stats) = await record_together(
        stream, ("video/webm", "audio/webm"), tmp_path
    )

    assert frames_in(video_stats) == {"video": VIDEO_FRAMES, "audio": AUDIO_FRAMES}
    assert frames_in(audio_stats) == {"audio": AUDIO_FRAMES}
    for stats in (video_stats, audio_stats):
        for track in stats.tracks:
            assert track.frames_dropped == 0
            assert track.frames_encoded == track.frames_in

    video_file = probe(video_path)
    assert video_file.stream("video")["nb_read_frames"] == VIDEO_FRAMES
    assert video_file.audio_duration() == pytest.approx(SECONDS, abs=0.1)
    audio_file = probe(audio_path)
    assert [s["codec_type"] for s in audio_file.streams] == ["audio"]
    assert audio_file.audio_duration() == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mimes",
    [
        pytest.param(("video/webm", "audio/webm"), id="video-and-audio-only"),
        pytest.param(("video/webm", "video/webm"), id="two-video"),
    ],
)
async def test_two_recorders_on_one_real_time_stream_each_get_every_frame(
    mimes: tuple[str, ...], tmp_path: Path
) -> None:
    stream = make_stream(duration=SECONDS, realtime=True)
    results = await record_together(stream, mimes, tmp_path)
    for path, stats in results:
        probed = probe(path)
        counts = frames_in(stats)
        assert counts["audio"] >= AUDIO_FRAMES - 5, f"{path.name}: {counts}"
        assert probed.audio_duration() >= SECONDS - 0.1, f"{path.name}: audio decoded"
        if "video" in counts:
            assert counts["video"] >= VIDEO_FRAMES - 5, f"{path.name}: {counts}"
            assert probed.stream("video")["nb_read_frames"] >= VIDEO_FRAMES - 5, f"{path.name}: frames in the file"


# -- 5. frames are read-only to the recorder ----------------------------------------------------------

WIDTH, HEIGHT = 160, 120
VIDEO_CLOCK = 90000
RATE = 48000
COLOURS = [solid_yuv420p(WIDTH, HEIGHT, (255, 255, 255)), solid_yuv420p(WIDTH, HEIGHT, (0, 0, 0))]
BIG_COLOURS = [solid_yuv420p(2 * WIDTH, 2 * HEIGHT, (255, 0, 0)), solid_yuv420p(2 * WIDTH, 2 * HEIGHT, (0, 0, 255))]


def copy_of(frame: av.VideoFrame) -> av.VideoFrame:
    out = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for dst, src in zip(out.planes, frame.planes, strict=True):
        dst.update(bytes(src))
    return out


class Kept:
    """Every frame a track handed out, with the pts, time_base and pict_type it had then."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, int, Fraction, Any]] = []

    def keep(self, frame: Any) -> Any:
        self.frames.append((frame, frame.pts, frame.time_base, getattr(frame, "pict_type", None)))
        return frame

    def changed(self) -> list[str]:
        changes = []
        for index, (frame, pts, time_base, pict_type) in enumerate(self.frames):
            now = (frame.pts, frame.time_base, getattr(frame, "pict_type", None))
            if now != (pts, time_base, pict_type):
                size = f"{frame.width}x{frame.height} " if isinstance(frame, av.VideoFrame) else ""
                changes.append(f"{size}frame {index}: {(pts, time_base, pict_type)} became {now}")
        return changes


def keeping_video(kept: Kept, resize: bool) -> ScriptedTrack:
    """30 yuv420p frames at 30 fps; with ``resize`` every frame after the first is 320x240."""

    def make(index: int) -> av.VideoFrame:
        palette = BIG_COLOURS if resize and index > 0 else COLOURS
        frame = copy_of(palette[index % 2])
        frame.pts = index * (VIDEO_CLOCK // FPS)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        return kept.keep(frame)

    return ScriptedTrack("video", make, FPS)


def keeping_audio(kept: Kept) -> ScriptedTrack:
    """1 s of 20 ms frames of a tone (s16 mono, 48 kHz), timestamped in samples."""
    per_frame = RATE // 50

    def make(index: int) -> av.AudioFrame:
        t = np.arange(index * per_frame, (index + 1) * per_frame) / RATE
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).reshape(1, -1)
        return kept.keep(audio_frame(samples, "s16", "mono", RATE, index * per_frame))

    return ScriptedTrack("audio", make, 50)


@pytest.mark.parametrize("resize", [pytest.param(False, id="recording-size"), pytest.param(True, id="resized")])
async def test_frames_are_read_only_to_the_recorder(resize: bool, tmp_path: Path) -> None:
    video, audio = Kept(), Kept()
    recording = await record(
        [keeping_video(video, resize), keeping_audio(audio)], mimeType="video/webm;codecs=vp8,opus"
    )
    assert recording.errors == []
    path = recording.save(tmp_path / "kept.webm")
    assert ffmpeg_decode_errors(path) == ""
    probed = probe(path)
    assert (probed.stream("video")["width"], probed.stream("video")["height"]) == (WIDTH, HEIGHT)
    assert probed.stream("video")["nb_read_frames"] == FPS
    assert probed.audio_duration() == pytest.approx(1.0, abs=0.03)
    assert len(video.frames) == FPS
    assert len(audio.frames) == 50

    changes = [f"video {change}" for change in video.changed()] + [f"audio {change}" for change in audio.changed()]
    assert changes == [], f"the recorder changed {len(changes)} of the track's frames"
