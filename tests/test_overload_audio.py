"""Overload loses no audio: more live 720p recordings at once than two cores can encode.

Video may be dropped (and every dropped frame is counted); the audio of every recording is
whole, lasts in the file as long as the track delivered, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from asyncrec import FrameTrack, SampleTrack, moving_pattern, sine_tone
from media_check import ffmpeg_decode_errors
from media_probe import Recording, probe, record

RECORDINGS = 8
WIDTH, HEIGHT = 1280, 720
FPS = 30
SECONDS = 6.0
AUDIO_FRAME = 0.020  # SampleTrack's default frame_ms
MAX_RSS_GROWTH = 500 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def sample_peak(peak: list[int]) -> None:
    """Keep ``peak[0]`` at the largest RSS seen, until cancelled (a measurement, not a wait)."""
    while True:
        peak[0] = max(peak[0], rss_bytes())
        await asyncio.sleep(0.1)


async def one_recording() -> Recording:
    tracks = [
        FrameTrack(moving_pattern(WIDTH, HEIGHT), fps=FPS, realtime=True, duration=SECONDS),
        SampleTrack(sine_tone(440), realtime=True, duration=SECONDS),
    ]
    return await record(tracks, mimeType="video/webm;codecs=vp8,opus", time_limit=60)


@pytest.mark.slow
async def test_overload_loses_no_audio_and_counts_every_video_frame(tmp_path: Path) -> None:
    before = rss_bytes()
    peak = [before]
    sampler = asyncio.ensure_future(sample_peak(peak))
    try:
        recordings = await asyncio.wait_for(asyncio.gather(*(one_recording() for _ in range(RECORDINGS))), 90)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    peak[0] = max(peak[0], rss_bytes())

    report = []
    for index, recording in enumerate(recordings):
        assert recording.errors == [], f"recording {index}"
        stats = {track.kind: track for track in recording.statistics.tracks}
        video, audio = stats["video"], stats["audio"]
        path = recording.save(tmp_path / f"overload{index}.webm")
        assert ffmpeg_decode_errors(path) == "", f"recording {index}"
        probed = probe(path)
        in_file = probed.stream("video")["nb_read_frames"]
        delivered = audio.frames_in * AUDIO_FRAME
        report.append(
            f"#{index}: video in/encoded/dropped/file {video.frames_in}/{video.frames_encoded}/"
            f"{video.frames_dropped}/{in_file}; audio in/encoded/dropped {audio.frames_in}/"
            f"{audio.frames_encoded}/{audio.frames_dropped}, {probed.audio_duration():.3f} s decoded, "
            f"{probed.span('audio'):.3f} s of packets"
        )
        summary = "\n".join(report)

        # Audio: every frame the track delivered is in the file, and only those.
        assert audio.frames_in == round(SECONDS / AUDIO_FRAME), summary
        assert audio.frames_dropped == 0, summary
        assert audio.frames_encoded == audio.frames_in, summary
        assert probed.audio_duration() == pytest.approx(delivered, abs=0.1), summary
        assert probed.span("audio") == pytest.approx(SECONDS, abs=0.1), summary

        # Video: whatever is not in the file is counted as dropped.
        assert video.frames_in == round(SECONDS * FPS), summary
        assert video.frames_in == video.frames_encoded + video.frames_dropped, summary
        assert in_file == video.frames_encoded, summary

    growth = peak[0] - before
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth / 2**20:.0f} MiB"
