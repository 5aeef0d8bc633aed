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


async def test_a_slow_sink_holds_back_a_source_that_can_wait(tmp_path: Path) -> None:
    """Backpressure: a handler slower than a file-like source (not real time) slows the
    recording down instead of failing it; what waits for the handler stays bounded and
    nothing is lost."""
    recorder = MediaRecorder(make_stream(duration=4.0, realtime=False, size=(320, 240)))
    recorder.max_undelivered_bytes = 40_000  # a fraction of the recording
    seen: list[bytes] = []
    backlog: list[int] = []

    async def slow(event: BlobEvent) -> None:
        backlog.append(recorder._dispatcher.undelivered_bytes)
        await asyncio.sleep(0.02)  # a sink slower than the encoder (work, not synchronisation)
        seen.append(event.data)

    recorder.ondataavailable = slow
    log = EventLog(recorder)
    recorder.start(50)
    await log.wait_stopped()
    assert "error" not in log.types
    assert len(seen) > 20
    assert sum(map(len, seen)) > 2 * recorder.max_undelivered_bytes
    # Chunks waiting for the handler stay near the high-water mark (a quarter of the
    # bound, plus what the worker had in hand when it stopped taking frames).
    assert max(backlog) < recorder.max_undelivered_bytes // 2, max(backlog)
    path = tmp_path / "slow-sink.webm"
    path.write_bytes(b"".join(seen))
    assert ffmpeg_decode_errors(path) == ""
    stats = recorder.statistics()
    assert pyav_frame_counts(path)["video"] == stats.tracks[0].frames_in == 120
