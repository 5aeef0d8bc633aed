"""Bounded memory: a live source that outruns the encoder loses video frames at the input
(counted), never audio; a source that is not live is slowed down and loses nothing."""

from __future__ import annotations

import time

import pytest

from asyncrec import MediaRecorder, _session, _worker
from conftest import EventLog, make_stream

SLOW_ENCODE = 0.05  # seconds per video frame: 20 fps, slower than the 30 fps source


@pytest.fixture
def slow_video_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _worker.RecordingWorker._encode_video

    def slow(self: _worker.RecordingWorker, track: object, item: object) -> object:
        time.sleep(SLOW_ENCODE)  # on the worker thread: an encoder that cannot keep up
        return real(self, track, item)  # type: ignore[arg-type]

    monkeypatch.setattr(_worker.RecordingWorker, "_encode_video", slow)


async def test_live_video_is_dropped_at_the_input_and_counted_audio_never(slow_video_encoder: None) -> None:
    recorder = MediaRecorder(make_stream(duration=2.0, realtime=True))
    log = EventLog(recorder)
    depths: list[int] = []
    recorder.ondataavailable = lambda e: depths.append(recorder.statistics().queue_depth)
    recorder.start(100)
    await log.wait_stopped()
    video, audio = recorder.statistics().tracks
    assert video.frames_in == 60
    assert video.frames_dropped > 0
    assert video.frames_encoded + video.frames_dropped == video.frames_in
    assert audio.frames_dropped == 0
    assert audio.frames_encoded == audio.frames_in == 100
    # The queue never held more than its bound of video frames plus the audio in flight.
    assert max(depths) <= _session.VIDEO_QUEUE + 20


async def test_a_source_that_is_not_live_is_slowed_down_not_dropped(slow_video_encoder: None) -> None:
    recorder = MediaRecorder(make_stream(duration=1.0, realtime=False))
    log = EventLog(recorder)
    depths: list[int] = []
    recorder.ondataavailable = lambda e: depths.append(recorder.statistics().queue_depth)
    recorder.start(50)
    await log.wait_stopped()
    video, audio = recorder.statistics().tracks
    assert video.frames_dropped == 0
    assert video.frames_encoded == video.frames_in == 30
    assert audio.frames_encoded == audio.frames_in == 50
    assert max(depths) <= _session.VIDEO_QUEUE + _session.AUDIO_QUEUE
