"""independent_chunks=True: every chunk is a playable file on its own (a header, then a key
frame first), checked chunk by chunk with Debian's ffprobe and ffmpeg; the chunks together
hold every frame once, and each starts where its timecode says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asyncrec import BlobEvent, MediaRecorder
from conftest import EventLog, make_stream
from media_check import _run, _tool, ffmpeg_decode_errors, ffprobe_streams

DURATION = 3.0
FPS = 30


def first_packets(path: Path) -> list[tuple[str, float, str]]:
    """(codec_type, pts_time, flags) of the first packets of each stream, by ffprobe."""
    out = _run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts_time,flags:stream=index,codec_type",
            "-of",
            "compact=p=0:nk=1",
            str(path),
        ]
    )
    assert out.returncode == 0, out.stderr
    kinds: dict[str, str] = {}
    packets = []
    for line in out.stdout.splitlines():
        fields = line.split("|")
        if len(fields) == 2:
            kinds[fields[0]] = fields[1]
        elif len(fields) == 3:
            packets.append(fields)
    return [(kinds[index], float(pts), flags) for index, pts, flags in packets]


async def chunks_of(mime: str, timeslice: int = 500, *, realtime: bool = False) -> list[BlobEvent]:
    stream = make_stream(duration=DURATION, size=(160, 120), realtime=realtime)
    recorder = MediaRecorder(stream, mimeType=mime, independent_chunks=True)
    log = EventLog(recorder)
    recorder.start(timeslice)
    await log.wait_stopped()
    return [e for e in log.events if e.type == "dataavailable"]


@pytest.mark.parametrize(
    ("mime", "suffix"),
    [
        ("video/webm;codecs=vp8,opus", ".webm"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", ".mp4", id="mp4-live", marks=pytest.mark.slow),
        ("video/webm;codecs=vp9,opus", ".webm"),
        ("video/mp4;codecs=avc1,mp4a.40.2", ".mp4"),
        ("video/x-matroska;codecs=avc1,opus", ".mkv"),
        ("audio/ogg;codecs=opus", ".ogg"),
    ],
)
async def test_every_chunk_is_a_file_of_its_own(
    mime: str, suffix: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The live case: real time, so chunks are cut by the wall clock.
    live = request.node.callspec.id == "mp4-live"
    chunks = [c for c in await chunks_of(mime, realtime=live) if c.data]
    assert len(chunks) >= 5, f"{len(chunks)} chunks for {DURATION} s with a 500 ms timeslice"
    video_frames = 0
    for chunk in chunks:
        assert chunk.keyframe
        path = tmp_path / f"chunk{chunk.sequence}{suffix}"
        path.write_bytes(chunk.data)
        assert ffmpeg_decode_errors(path) == "", f"chunk {chunk.sequence} alone"
        packets = first_packets(path)
        video = [p for p in packets if p[0] == "video"]
        if mime.startswith("video/"):
            assert video, f"chunk {chunk.sequence} has no video"
            assert "K" in video[0][2], f"chunk {chunk.sequence} starts with a frame that is not a key frame"
            # Timestamps go on from the recording: the chunk starts where its timecode says.
            assert video[0][1] == pytest.approx(chunk.timecode / 1000, abs=0.002)
            video_frames += {s["codec_type"]: s["nb_read_frames"] for s in ffprobe_streams(path)}["video"]
    if mime.startswith("video/"):
        assert video_frames == DURATION * FPS  # every frame once, in exactly one chunk
    total = sum(c.duration for c in chunks) / 1000
    assert total == pytest.approx(DURATION, abs=0.1)


async def test_request_data_gives_an_independent_chunk_at_once(tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=20.0, realtime=True, size=(160, 120)), independent_chunks=True)
    log = EventLog(recorder)
    await recorder.start()
    await asyncio.sleep(0.6)  # media to cut, not a synchronisation
    await recorder.requestData()
    await asyncio.sleep(0.6)
    await recorder.stop()
    chunks = [e for e in log.events if e.type == "dataavailable"]
    assert len(chunks) == 2
    for chunk in chunks:
        path = tmp_path / f"c{chunk.sequence}.webm"
        path.write_bytes(chunk.data)
        assert ffmpeg_decode_errors(path) == ""
        assert "K" in next(p for p in first_packets(path) if p[0] == "video")[2]


def test_the_option_is_a_bool() -> None:
    with pytest.raises(TypeError):
        MediaRecorder(make_stream(), independent_chunks="yes")  # type: ignore[arg-type]
