"""Chunk metadata: sequence numbers and durations that add up to the file."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from asyncrec import BlobEvent, FrameTrack, MediaRecorder, MediaStream, SampleTrack, sine_tone
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_packets, ffprobe_video


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


async def recorded_chunks(mime: str, **options: object) -> list[BlobEvent]:
    recorder = MediaRecorder(make_stream(duration=3.0, realtime=False), mimeType=mime, **options)  # type: ignore[arg-type]
    log = EventLog(recorder)
    recorder.start(250)
    await log.wait_stopped()
    return [e for e in log.events if e.type == "dataavailable" and e.data]


@pytest.mark.parametrize(
    ("mime", "every"),
    [
        pytest.param("video/webm;codecs=vp8,opus", None, id="webm-one-key-frame"),
        pytest.param("video/webm;codecs=vp8,opus", 1, id="webm-all-key-frames"),
        pytest.param("video/webm;codecs=vp8,opus", 10, id="webm-key-every-10"),
        pytest.param("video/mp4;codecs=avc1,mp4a.40.2", 10, id="mp4-key-every-10"),
    ],
)
async def test_keyframe_says_whether_the_chunk_starts_with_a_key_frame(
    mime: str, every: int | None, tmp_path: Path
) -> None:
    chunks = await recorded_chunks(mime, videoKeyFrameIntervalCount=every)
    assert len(chunks) >= 6
    assert chunks[0].keyframe
    for chunk in chunks[1:]:
        # Checked by Debian's ffprobe: the first chunk (the header), then this one.
        path = tmp_path / f"chunk{chunk.sequence}.bin"
        path.write_bytes(chunks[0].data + chunk.data)
        packets = ffprobe_video(path, "packet=pos,flags")
        first = next(p["flags"] for p in packets if int(p["pos"]) >= len(chunks[0].data))
        assert chunk.keyframe == ("K" in first), f"chunk {chunk.sequence}"
    flags = [c.keyframe for c in chunks[1:]]
    if every == 1:
        assert all(flags)
    elif every is None:
        assert not any(flags)  # VP8's one key frame is the first frame


async def test_audio_chunks_all_start_with_a_key_frame() -> None:
    chunks = await recorded_chunks("audio/webm;codecs=opus")
    assert len(chunks) >= 6
    assert all(c.keyframe for c in chunks)


@pytest.mark.slow
async def test_wallclock_aligns_two_recordings_of_one_live_stream() -> None:
    """Two recorders on one live stream, the second started 1 s later: each chunk's
    ``wallclock - timecode`` (where its recording's 0 sits on the wall clock) tells when
    each recording started, within a frame or two, and the first chunk's is when start()
    was called."""
    stream = make_stream(duration=4.0, realtime=True, size=(160, 120))
    first = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus")
    second = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus")
    logs = EventLog(first), EventLog(second)
    started = [time.time()]
    first.start(500)
    await asyncio.sleep(1.0)  # the offset under test, not a synchronisation
    started.append(time.time())
    second.start(500)
    await asyncio.gather(*(log.wait_stopped() for log in logs))
    origins = []
    for log, when in zip(logs, started, strict=True):
        chunks = [e for e in log.events if e.type == "dataavailable" and e.data]
        assert len(chunks) >= 4
        zeros = [c.wallclock - c.timecode / 1000 for c in chunks]
        assert max(zeros) - min(zeros) < 0.1, zeros  # one origin for the whole recording
        assert zeros[0] == pytest.approx(when, abs=0.15)
        origins.append(zeros[0])
    assert origins[1] - origins[0] == pytest.approx(started[1] - started[0], abs=0.07)


async def test_a_live_recording_never_doubles_its_timeslice() -> None:
    # A cluster can start on an audio packet and end a few ms short of the timeslice; the
    # wall-clock deadline then passes while the muxer still holds the next cluster. The
    # chunk is cut as soon as the muxer writes, not a whole timeslice later.
    rng = np.random.default_rng(1)
    pictures = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(10)]  # camera-like work
    video = FrameTrack(lambda index, _t: pictures[index % len(pictures)], fps=30, duration=4.0)
    stream = MediaStream([video, SampleTrack(sine_tone(440), duration=4.0)])
    recorder = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus")
    log = EventLog(recorder)
    recorder.start(100)
    await log.wait_stopped()
    chunks = [e for e in log.events if e.type == "dataavailable"]
    assert len(chunks) >= 30
    durations = [chunk.duration for chunk in chunks[1:-1]]  # the header's and the final one aside
    assert max(durations) < 160, durations


@pytest.mark.parametrize("every", [pytest.param(10, id="key-every-10"), pytest.param(None, id="one-key-frame")])
async def test_a_live_webm_chunk_ends_at_the_first_block_past_its_timeslice(every: int | None, tmp_path: Path) -> None:
    # Camera-like pictures make key frames of more than 4 KiB, on which FFmpeg's muxer starts
    # a new cluster: with clusters as long as the timeslice, the chunk holding one then
    # waited for the rest of a second cluster (up to 167 ms of media for 100 ms, and as
    # much latency). Judged by where Debian's ffprobe finds each chunk's packets.
    rng = np.random.default_rng(2)
    pictures = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(10)]
    video = FrameTrack(lambda index, _t: pictures[index % len(pictures)], fps=30, duration=3.0)
    stream = MediaStream([video, SampleTrack(sine_tone(440), duration=3.0)])
    recorder = MediaRecorder(stream, mimeType="video/webm;codecs=vp8,opus", videoKeyFrameIntervalCount=every)
    log = EventLog(recorder)
    recorder.start(100)
    await log.wait_stopped()
    chunks = [e for e in log.events if e.type == "dataavailable" and e.data]
    path = tmp_path / "out.webm"
    path.write_bytes(log.data)
    ends = list(itertools.accumulate(len(chunk.data) for chunk in chunks))
    starts: dict[int, float] = {}  # chunk -> pts of its earliest packet (s)
    for packet in ffprobe_packets(path):
        chunk = next(i for i, end in enumerate(ends) if int(packet["pos"]) < end)
        starts[chunk] = min(starts.get(chunk, float("inf")), float(packet["pts_time"]))
    assert len(starts) >= 25
    # From the third chunk: the first ones also hold the frames gathered while the
    # encoders opened, muxed at once.
    spans = [starts[i + 1] - starts[i] for i in range(2, len(starts) - 1)]
    # At least the timeslice, less the 6.5 ms Opus blocks are written after their packet's
    # time (a chunk may start on one) and one 20 ms audio packet: the muxer and FFmpeg's
    # interleaver hold the newest packets when a chunk is cut, one audio packet more now
    # and then (seen once in a dozen runs); at most the timeslice and a frame.
    assert min(spans) >= 0.1 - 0.007 - 0.02, spans
    assert max(spans) <= 0.1 + 1 / 30 + 0.001, spans
    # Each chunk says truly where its media starts (the muxer still held the packets just
    # before the one that cut the last chunk: they are in this one).
    for index in range(1, len(starts)):
        assert chunks[index].timecode == pytest.approx(starts[index] * 1000, abs=1.5), index
