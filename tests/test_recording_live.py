"""Real-time recordings checked on the output: chunk cadence, requestData content, pause."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from asyncrec import MediaRecorder
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_duration, ffprobe_streams, pyav_frame_counts


async def test_chunks_come_at_least_every_timeslice() -> None:
    recorder = MediaRecorder(make_stream(duration=1.6, realtime=True))
    arrivals: list[float] = []
    recorder.ondataavailable = lambda e: arrivals.append(time.monotonic())
    log = EventLog(recorder)
    started = time.monotonic()
    recorder.start(200)
    await log.wait_stopped()
    gaps = [b - a for a, b in zip([started, *arrivals], arrivals, strict=False)]
    assert len(arrivals) >= 7
    assert max(gaps) < 0.2 + 0.15  # the timeslice plus a generous scheduling margin


async def test_request_data_includes_everything_gathered_so_far(tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True, audio=False))
    log = EventLog(recorder)
    await recorder.start()
    await asyncio.sleep(1.0)  # let a second of media be captured (not a synchronisation)
    requested = recorder.statistics().tracks[0].frames_in
    await recorder.requestData()
    path = tmp_path / "first.webm"
    path.write_bytes(log.events[1].data)
    # The chunk holds every frame captured before the request (the muxer's open cluster
    # included), as a playable file on its own.
    assert pyav_frame_counts(path)["video"] >= requested
    assert ffmpeg_decode_errors(path) == ""
    await recorder.stop()


@pytest.mark.slow
async def test_pause_removes_the_paused_time_from_the_media(tmp_path: Path) -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True, size=(320, 240)))
    log = EventLog(recorder)
    await recorder.start(500)
    await asyncio.sleep(2.0)
    await recorder.pause()
    await asyncio.sleep(1.0)
    await recorder.resume()
    await asyncio.sleep(2.0)
    await recorder.stop()
    path = tmp_path / "paused.webm"
    path.write_bytes(log.data)
    assert ffmpeg_decode_errors(path) == ""
    # 2 s + 1 s paused + 2 s gives 4 s of media.
    assert ffprobe_duration(path) == pytest.approx(4.0, abs=0.2)
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert streams["video"]["nb_read_frames"] == pytest.approx(120, abs=8)
    assert streams["audio"]["nb_read_frames"] == pytest.approx(200, abs=8)
    stats = recorder.statistics()
    assert stats.tracks[0].frames_paused == pytest.approx(30, abs=4)
