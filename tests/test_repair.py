"""Repair: a recording cut short becomes a finished, seekable file; garbage is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncrec import MediaRecorder, NotReadableError, repair
from asyncrec._repair import WHOLE_SLACK
from conftest import EventLog, make_stream
from media_check import _run, _tool, ffmpeg_decode_errors


def recorded(mime: str, seconds: float) -> bytes:
    """The chunks of a recording of generated media (on a loop of its own)."""

    async def record() -> bytes:
        recorder = MediaRecorder(make_stream(duration=seconds), mimeType=mime)
        log = EventLog(recorder)
        recorder.start(250)
        await log.wait_stopped()
        return log.data

    return asyncio.run(record())


def damaged_mp4(data: bytes) -> bytes:
    """``data`` (a streamed, fragmented MP4) with the size of a fragment a quarter of the
    way in made absurd: FFmpeg's demuxer takes it for the end of the file, and says nothing."""
    at = data.index(b"moof", len(data) // 4) - 4
    return data[:at] + b"\x7f\xff\xff\xff" + data[at + 4 :]


def format_duration(path: Path) -> str:
    out = _run([_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)])
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("mime", "ext"),
    [
        pytest.param("video/webm;codecs=vp8,opus", ".webm", id="webm"),
        pytest.param("video/x-matroska;codecs=avc1,opus", ".mkv", id="mkv"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", ".mp4", id="mp4"),
        pytest.param("audio/ogg;codecs=opus", ".ogg", id="ogg"),
        # PyAV has no AV1 decoder: the copy must not need one.
        pytest.param("video/webm;codecs=av1,opus", ".webm", id="webm-av1"),
        pytest.param("video/mp4;codecs=av01,opus", ".mp4", id="mp4-av1"),
    ],
)
def test_a_file_cut_short_becomes_a_finished_seekable_one(mime: str, ext: str, tmp_path: Path) -> None:
    data = recorded(mime, 3.0)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 6 // 10])  # a crash 60% of the way through
    fixed = tmp_path / f"fixed{ext}"
    result = repair(cut, fixed)
    assert sum(result.packets.values()) > 10
    assert ffmpeg_decode_errors(fixed) == ""
    duration = format_duration(fixed)
    assert duration not in ("", "N/A"), "a finished file states its duration"
    assert float(duration) == pytest.approx(result.duration, abs=0.05)
    assert 0.5 < float(duration) < 3.0
    if ext in (".webm", ".mkv"):
        # Cues: the index a player seeks with (the streamed file has none).
        assert b"\x1c\x53\xbb\x6b" in fixed.read_bytes()
        assert b"\x1c\x53\xbb\x6b" not in cut.read_bytes()
    assert not list(tmp_path.glob("*.repairing"))


def test_garbage_is_refused_with_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(os.urandom(10_000))
    with pytest.raises(NotReadableError, match="not a media file"):
        repair(garbage, tmp_path / "out.webm")
    done = subprocess.run(
        [sys.executable, "-m", "asyncrec", "repair", str(garbage), str(tmp_path / "out.webm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("asyncrec: error: ")
    assert str(garbage) in lines[0]
    assert not (tmp_path / "out.webm").exists()


def test_the_command_repairs_and_says_what_it_kept(tmp_path: Path) -> None:
    data = recorded("video/webm", 2.0)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 2])
    done = subprocess.run(
        [sys.executable, "-m", "asyncrec", "repair", str(cut), str(tmp_path / "ok.webm")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "video packets" in done.stdout
    assert "audio packets" in done.stdout
    assert format_duration(tmp_path / "ok.webm") not in ("", "N/A")


@pytest.mark.parametrize("sync", [True, False])
def test_the_new_file_is_on_the_disk_before_it_replaces_the_old(
    sync: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rec.webm"
    path.write_bytes(recorded("video/webm;codecs=vp8,opus", 1.0))
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    repair(path, path, sync=sync)
    if sync:
        assert calls == [f"fsync {path}.repairing", "replace", f"fsync {tmp_path}"]
    else:
        assert calls == ["replace"]
    assert ffmpeg_decode_errors(path) == ""


def test_webm_stays_webm_whatever_the_target_is_named(tmp_path: Path) -> None:
    """A recording being written under a temporary name (``asyncrec serve`` writes
    ``NAME.webm.partial``) is finished as WebM, the DocType players and MediaSource check."""
    partial = tmp_path / "rec.webm.partial"
    partial.write_bytes(recorded("video/webm;codecs=vp8,opus", 1.0))
    repair(partial, partial)
    out = _run(["mkvinfo", str(partial)]).stdout
    assert "Document type: webm" in out
    assert "Duration" in out


@pytest.mark.parametrize(
    ("mime", "ext"),
    [
        pytest.param("video/webm;codecs=vp8,opus", ".webm", id="webm"),
        pytest.param("video/x-matroska;codecs=avc1,opus", ".mkv", id="mkv"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", ".mp4", id="mp4"),
        pytest.param("audio/ogg;codecs=opus", ".ogg", id="ogg"),
        pytest.param("audio/webm;codecs=opus", ".weba", id="weba"),
        pytest.param("audio/mp4;codecs=mp4a.40.2", ".m4a", id="m4a"),
    ],
)
def test_a_whole_streamed_recording_is_copied_whole(mime: str, ext: str, tmp_path: Path) -> None:
    streamed = tmp_path / f"streamed{ext}"
    streamed.write_bytes(recorded(mime, 3.0))
    result = repair(streamed, tmp_path / f"finished{ext}", whole=True)
    assert not result.truncated
    assert 0 <= result.unread <= WHOLE_SLACK


def test_a_copy_that_would_lose_data_is_refused_when_the_whole_file_is_wanted(tmp_path: Path) -> None:
    # FFmpeg stops reading an MP4 at a damaged fragment as if it were the end, without an
    # error: only the bytes left unread tell. A sink finishing what it wrote must keep it.
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(damaged_mp4(recorded("video/mp4;codecs=avc1,mp4a.40.2", 12.0)))
    cut = repair(damaged, tmp_path / "cut.mp4")
    assert not cut.truncated
    assert cut.unread > WHOLE_SLACK
    assert cut.duration < 6.0
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the file before")
    with pytest.raises(NotReadableError, match="bytes before the end: a copy would lose the rest"):
        repair(damaged, out, whole=True)
    assert out.read_bytes() == b"the file before"
    assert not list(tmp_path.glob("*.repairing"))
