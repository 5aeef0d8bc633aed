"""max_video_size: larger video is scaled down to fit, aspect ratio kept; smaller video is
recorded as it is (checked with Debian's ffprobe)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncrec import FrameTrack, MediaRecorder, MediaStream, moving_pattern
from media_check import ffprobe_streams
from media_probe import record


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        ((1920, 1080), (1280, 720), (1280, 720)),
        ((1920, 1080), (640, 640), (640, 360)),
        ((1080, 1920), (1280, 720), (404, 720)),  # portrait: the height binds
        ((640, 480), (1280, 720), (640, 480)),  # smaller: as it is
    ],
)
async def test_larger_video_is_scaled_down_to_fit(
    size: tuple[int, int], limit: tuple[int, int], expected: tuple[int, int], tmp_path: Path
) -> None:
    track = FrameTrack(moving_pattern(*size), fps=30, realtime=False, duration=0.2)
    recording = await record([track], mimeType="video/webm;codecs=vp8", max_video_size=limit)
    [video] = ffprobe_streams(recording.save(tmp_path / "out.webm"))
    assert (video["width"], video["height"]) == expected
    assert video["nb_read_frames"] == 6


@pytest.mark.parametrize("bad", [(1, 100), (100, 0), (640.0, 480), "640x480"])
def test_a_bad_size_is_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        MediaRecorder(MediaStream([]), max_video_size=bad)  # type: ignore[arg-type]
