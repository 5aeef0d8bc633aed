"""A consumer that stalls is bounded: past max_undelivered_bytes the recording stops with
QuotaExceededError, and everything produced is still delivered (nothing is dropped)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asyncrec import BlobEvent, MediaRecorder, QuotaExceededError
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, pyav_frame_counts


async def test_an_iterator_that_stops_pulling_stops_the_recording_without_losing_data(tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True, size=(320, 240)))
    recorder.max_undelivered_bytes = 30_000
    log = EventLog(recorder)
    stalled = aiter(recorder)  # held, never pulled while recording
    recorder.start(50)
    await log.wait_stopped()
    assert log.types[0] == "start"
    assert log.types[-3:] == ["error", "dataavailable", "stop"]
    assert isinstance(log.events[-3].error, QuotaExceededError)
    chunks = [chunk async for chunk in stalled]  # everything is still there, in order
    assert [c.data for c in chunks] == [e.data for e in log.events if isinstance(e, BlobEvent)]
    path = tmp_path / "stalled.webm"
    path.write_bytes(b"".join(c.data for c in chunks))
    assert ffmpeg_decode_errors(path) == ""
    assert pyav_frame_counts(path)["video"] == recorder.statistics().tracks[0].frames_encoded


async def test_a_dropped_iterator_does_not_hold_chunks() -> None:
    recorder = MediaRecorder(make_stream(duration=0.5, realtime=True))
    recorder.max_undelivered_bytes = 10_000
    log = EventLog(recorder)
    recorder.start(50)
    async for _chunk in recorder:
        break  # the iterator is dropped here: no backlog builds up behind it
    await log.wait_stopped()
    assert "error" not in log.types


async def test_a_slow_handler_is_bounded_and_sees_every_chunk(tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True, size=(320, 240)))
    recorder.max_undelivered_bytes = 10_000
    seen: list[bytes] = []

    async def slow(event: BlobEvent) -> None:
        await asyncio.sleep(0.05)  # a handler slower than the chunks come (work, not synchronisation)
        seen.append(event.data)

    recorder.ondataavailable = slow
    log = EventLog(recorder)
    recorder.start(20)
    await log.wait_stopped()
    assert "error" in log.types
    assert isinstance(log.events[log.types.index("error")].error, QuotaExceededError)
    assert recorder.statistics().pending_events == 0
    path = tmp_path / "slow.webm"
    path.write_bytes(b"".join(seen))
    assert seen == [e.data for e in log.events if isinstance(e, BlobEvent)]
    assert ffmpeg_decode_errors(path) == ""
