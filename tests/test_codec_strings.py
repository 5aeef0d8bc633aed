"""mimeType after ``start`` names full RFC 6381 codec strings, read from the opened encoders:
checked against the profile and level Debian's ffprobe reads in the file. (That Chromium's
``MediaSource.isTypeSupported`` takes them is checked in test_browser_playback.)"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import asyncrec._recording
from asyncrec import FrameTrack, MediaRecorder, MediaStream, moving_pattern
from asyncrec._codec_strings import av01, avc1, vp9_level
from conftest import EventLog, make_stream
from media_check import ffprobe_video
from media_probe import record


def stream_info(path: Path) -> dict[str, Any]:
    [stream] = ffprobe_video(path, "stream=profile,level")
    return stream


@pytest.mark.parametrize("size", [(160, 120), (640, 480), (1280, 720)], ids=["qqvga", "vga", "720p"])
async def test_avc1_names_the_profile_and_level_in_the_file(size: tuple[int, int], tmp_path: Path) -> None:
    recording = await record(make_stream(duration=0.3, audio=False, size=size), mimeType="video/mp4;codecs=avc1")
    path = recording.save(tmp_path / "out.mp4")
    info = stream_info(path)
    assert info["profile"] == "High"
    assert recording.mime_at_start == f"video/mp4;codecs=avc1.6400{int(info['level']):02X}"
    assert recording.mime_after == recording.mime_at_start


@pytest.mark.parametrize(("size", "level"), [((160, 120), 0), ((1280, 720), 5)], ids=["small", "720p"])
async def test_av01_names_the_level_in_the_file(size: tuple[int, int], level: int, tmp_path: Path) -> None:
    recording = await record(make_stream(duration=0.2, size=size), mimeType="video/mp4;codecs=av01,opus")
    info = stream_info(recording.save(tmp_path / "out.mp4"))
    assert info["profile"] == "Main"
    assert int(info["level"]) == level
    assert recording.mime_at_start == f"video/mp4;codecs=av01.0.{level:02d}M.08,opus"


async def test_vp09_has_profile_0_and_the_level_of_its_size_and_rate(tmp_path: Path) -> None:
    track = FrameTrack(moving_pattern(640, 480), fps=30, realtime=False, duration=0.3)
    recording = await record([track], mimeType="video/mp4;codecs=vp09")
    assert stream_info(recording.save(tmp_path / "out.mp4"))["profile"] == "Profile 0"
    assert recording.mime_at_start == "video/mp4;codecs=vp09.00.30.08"


@pytest.mark.parametrize(
    ("width", "height", "fps", "level"),
    [
        (256, 144, 15, 10),
        (320, 240, 30, 20),
        (640, 480, 30, 30),
        (1280, 720, 30, 31),
        (1920, 1080, 30, 40),
        (1920, 1080, 60, 41),
        (3840, 2160, 30, 50),
        (8192, 4352, 120, 62),
    ],
)
def test_vp9_levels_follow_the_specification_table(width: int, height: int, fps: int, level: int) -> None:
    assert vp9_level(width, height, Fraction(fps)) == level


def test_parsers_read_avcc_annex_b_and_av1c() -> None:
    sps = bytes.fromhex("6742c01e")
    assert avc1(b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01\x68\xce") == "avc1.42C01E"
    assert avc1(bytes.fromhex("014d4029ff")) == "avc1.4D4029"
    assert avc1(b"") is None
    header = bytes.fromhex("0a0b00000024c4ffdf00be0010")
    assert av01(header) == "av01.0.04M.08"
    assert av01(bytes.fromhex("81000c00") + header) == "av01.0.04M.08"
    assert av01(b"\x00") is None


@pytest.mark.parametrize(
    ("mime", "expected"),
    [
        ("video/webm;codecs=vp9,opus", "video/webm;codecs=vp9,opus"),
        ("video/x-matroska;codecs=av1", "video/x-matroska;codecs=av01.0.00M.08,opus"),
        ("video/webm;codecs=av1,opus", "video/webm;codecs=av01.0.00M.08,opus"),
    ],
)
async def test_webm_keeps_chromiums_vp9_and_details_av1(mime: str, expected: str) -> None:
    recording = await record(make_stream(duration=0.2), mimeType=mime)
    assert recording.mime_at_start == expected


async def test_start_waits_a_bounded_time_for_a_silent_track(monkeypatch: pytest.MonkeyPatch) -> None:
    """A track that sends nothing does not hold ``start`` back for long; mimeType gains the
    codec details once the encoders open."""
    monkeypatch.setattr(asyncrec._recording, "START_PATIENCE", 0.2)
    gate = asyncio.Event()

    class Late(FrameTrack):
        async def recv(self) -> Any:
            await gate.wait()
            return await super().recv()

    track = Late(moving_pattern(320, 240), fps=30, realtime=False, duration=0.5)
    recorder = MediaRecorder(MediaStream([track]), mimeType="video/mp4;codecs=avc1")
    log = EventLog(recorder)
    async with asyncio.timeout(10):
        await recorder.start()
    assert log.types == ["start"]
    assert recorder.mimeType == "video/mp4;codecs=avc1"
    gate.set()
    await log.wait_stopped()
    assert recorder.mimeType.startswith("video/mp4;codecs=avc1.6400")
    assert log.types[0] == "start"
    assert log.types[-1] == "stop"
