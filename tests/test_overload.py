"""Bounded memory: a live source that outruns the encoder loses video frames at the input
(counted), never audio; a source that is not live is slowed down and loses nothing."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest

from asyncrec import FrameTrack, MediaRecorder, MediaStream, SampleTrack, _handoff, _worker, sine_tone
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors
from media_probe import probe

SLOW_ENCODE = 0.05  # seconds per video frame: 20 fps, slower than the 30 fps source


@pytest.fixture
def slow_video_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _worker.RecordingWorker._encode_video

    def slow(self: _worker.RecordingWorker, track: object, item: object, at: float) -> object:
        time.sleep(SLOW_ENCODE)  # on the worker thread: an encoder that cannot keep up
        return real(self, track, item, at)  # type: ignore[arg-type]

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
    # The queue never held more than its bound of video frames plus the audio in flight
    # (20 ms frames while the worker encodes a batch); unbounded, 20 more video frames.
    assert max(depths) <= _handoff.VIDEO_QUEUE_FRAMES + 30


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
    assert max(depths) <= _handoff.VIDEO_QUEUE_FRAMES + 250


@pytest.fixture
def slowest_vp8(monkeypatch: pytest.MonkeyPatch) -> None:
    """libvpx's "best" deadline at its slowest speed: on noise, about 7 fps at 320x240."""
    from asyncrec import _formats

    spec = _formats.CODECS["vp8"]
    slow = dataclasses.replace(spec, options={"deadline": "best", "cpu-used": "0", "lag-in-frames": "0"})
    monkeypatch.setitem(_formats.CODECS, "vp8", slow)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
async def test_a_slow_codec_setting_under_a_live_source_drops_counted_frames_with_memory_bounded(
    slowest_vp8: None,
) -> None:
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(8)]  # hard to encode
    video = FrameTrack(lambda i, t: noise[i % len(noise)], fps=30, duration=3.0)
    audio = SampleTrack(sine_tone(), duration=3.0)
    recorder = MediaRecorder(MediaStream([video, audio]), mimeType="video/webm;codecs=vp8,opus")
    log = EventLog(recorder)
    queued: list[int] = []
    rss: list[int] = []

    def sample(event: object) -> None:
        queued.append(recorder.statistics().queued_bytes)
        rss.append(rss_bytes())

    recorder.ondataavailable = sample
    recorder.start(200)
    await log.wait_stopped()
    video, audio = recorder.statistics().tracks
    assert video.frames_dropped > 0
    assert video.frames_encoded + video.frames_dropped == video.frames_in == 90
    assert audio.frames_dropped == 0
    assert audio.frames_encoded == audio.frames_in == 150
    # The queue is bounded in bytes: live video gives way, audio waits (a frame of this
    # codec setting can take a second to encode, and audio keeps coming meanwhile).
    assert max(queued) <= _handoff.VIDEO_QUEUE_BYTES + _handoff.AUDIO_QUEUE_BYTES
    # Memory stays flat: the backlog is bounded, whatever the encoder's speed.
    assert max(rss) - rss[0] < 64 * 1024 * 1024


async def test_live_audio_that_outruns_its_bound_stops_the_recording_keeping_every_frame(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Live audio cannot be dropped and cannot wait (it would pile up in the source, as in
    # aiortc's unbounded receive queue): past its bound the recording fails, whole.
    monkeypatch.setattr(_handoff, "AUDIO_QUEUE_BYTES", 64 * 1024)  # ~0.3 s of 48 kHz stereo s16
    real = _worker.RecordingWorker._encode

    def stalled(self: _worker.RecordingWorker, item: _handoff.FrameItem) -> None:
        time.sleep(0.05)  # every 20 ms frame takes 50 ms: 2.5x slower than real time
        real(self, item)

    monkeypatch.setattr(_worker.RecordingWorker, "_encode", stalled)
    recorder = MediaRecorder(make_stream(video=False, duration=3.0, realtime=True), mimeType="audio/webm")
    log = EventLog(recorder)
    recorder.start()
    await log.wait_stopped()
    assert log.types[0] == "start"
    assert log.types[-3:] == ["error", "dataavailable", "stop"]
    error = next(e.error for e in log.events if e.type == "error")
    assert error.name == "QuotaExceededError"
    (audio,) = recorder.statistics().tracks
    assert 0 < audio.frames_in < 150  # stopped early, well before the 3 s source ended
    assert audio.frames_encoded == audio.frames_in  # every frame received is recorded
    assert audio.frames_dropped == 0
    assert recorder.state == "inactive"
    # What was received is in the file, and it decodes to its end.
    path = tmp_path / "out.webm"
    path.write_bytes(log.data)
    assert not ffmpeg_decode_errors(path)
    assert probe(path).span("audio") == pytest.approx(audio.frames_in * 0.020, abs=0.1)
