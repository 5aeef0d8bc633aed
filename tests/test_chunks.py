"""Chunk metadata: sequence numbers and durations that add up to the file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from asyncrec import BlobEvent, MediaRecorder
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_duration


@pytest.mark.parametrize(
    "mime",
    [
        pytest.param("video/webm;codecs=vp8,opus", id="webm"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", id="mp4"),
        pytest.param("audio/ogg;codecs=opus", id="ogg"),
    ],
)
async def test_chunks_are_numbered_and_their_durations_add_up_to_the_file(mime: str, tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=3.0, realtime=False), mimeType=mime)
    log = EventLog(recorder)
    recorder.start(500)
    await log.wait_stopped()
    chunks: list[BlobEvent] = [e for e in log.events if e.type == "dataavailable"]
    assert len(chunks) >= 4, f"{len(chunks)} chunks for 3 s of media with a 500 ms timeslice"
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    path = tmp_path / "out.bin"
    path.write_bytes(log.data)
    assert ffmpeg_decode_errors(path) == ""
    total = sum(c.duration for c in chunks) / 1000
    # The file's duration as ffprobe measures it (packets' end), within a frame or two.
    assert total == pytest.approx(ffprobe_duration(path), abs=0.06)
    for before, after in itertools.pairwise(chunks):
        if after.data:
            assert after.timecode == pytest.approx(before.timecode + before.duration, abs=1.0)
