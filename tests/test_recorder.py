"""The spec's state machine and event order (mediacapture-record and its web-platform-tests)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asyncrec import (
    AsyncrecError,
    BlobEvent,
    EncodingError,
    ErrorEvent,
    FrameTrack,
    InvalidModificationError,
    InvalidStateError,
    MediaRecorder,
    MediaStream,
    NotSupportedError,
    SampleTrack,
    moving_pattern,
    sine_tone,
)
from conftest import EventLog, make_stream

EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def test_new_recorder_is_inactive_with_the_constructed_type() -> None:
    recorder = MediaRecorder(make_stream())
    assert recorder.state == "inactive"
    assert recorder.mimeType == ""
    assert recorder.videoBitsPerSecond > 0
    assert recorder.audioBitsPerSecond > 0


def test_inactive_recorder_rejects_pause_resume_request_data_and_ignores_stop() -> None:
    recorder = MediaRecorder(MediaStream())
    done = recorder.stop()
    assert recorder.state == "inactive"
    assert done.done()  # type: ignore[attr-defined]
    for method in (recorder.pause, recorder.resume, recorder.requestData):
        with pytest.raises(InvalidStateError):
            method()
    assert issubclass(InvalidStateError, AsyncrecError)
    assert InvalidStateError.name == "InvalidStateError"


async def test_start_with_an_inactive_stream_raises_not_supported() -> None:
    recorder = MediaRecorder(MediaStream())
    with pytest.raises(NotSupportedError):
        recorder.start()
    assert recorder.state == "inactive"


async def test_start_twice_raises_invalid_state() -> None:
    recorder = MediaRecorder(make_stream())
    log = EventLog(recorder)
    recorder.start()
    assert recorder.state == "recording"
    with pytest.raises(InvalidStateError):
        recorder.start()
    await recorder.stop()
    assert log.types == ["start", "dataavailable", "stop"]


async def test_both_key_frame_options_raise_not_supported_at_start() -> None:
    recorder = MediaRecorder(make_stream(), videoKeyFrameIntervalDuration=1000, videoKeyFrameIntervalCount=30)
    with pytest.raises(NotSupportedError):
        recorder.start()
    assert recorder.state == "inactive"


async def test_mime_type_is_set_when_start_is_dispatched() -> None:
    recorder = MediaRecorder(make_stream(duration=None))
    seen: list[str] = []
    recorder.onstart = lambda event: seen.append(recorder.mimeType)
    started = recorder.start()
    assert recorder.mimeType == ""  # not before "start"
    await started
    assert seen == ["video/webm;codecs=vp8,opus"]
    await recorder.stop()
    assert recorder.mimeType == "video/webm;codecs=vp8,opus"


@pytest.mark.parametrize(
    ("video", "audio", "expected"),
    [(True, False, "video/webm;codecs=vp8"), (False, True, "audio/webm;codecs=opus")],
    ids=["video-only", "audio-only"],
)
async def test_default_type_follows_the_tracks(video: bool, audio: bool, expected: str) -> None:
    recorder = MediaRecorder(make_stream(video=video, audio=audio, duration=None))
    await recorder.start()
    assert recorder.mimeType == expected
    await recorder.stop()


async def test_start_pause_resume_stop_sequence_with_states_seen_by_handlers() -> None:
    # MediaRecorder-events-and-exceptions.html, step by step from inside the handlers.
    recorder = MediaRecorder(make_stream(duration=None))
    log = EventLog(recorder)
    recorder.onstart = lambda e: recorder.pause()
    recorder.onpause = lambda e: recorder.resume()
    recorder.onresume = lambda e: recorder.stop()

    def on_stop(event: object) -> None:
        recorder.stop()  # idempotent
        for method in (recorder.pause, recorder.resume, recorder.requestData):
            with pytest.raises(InvalidStateError):
                method()

    recorder.onstop = on_stop
    recorder.start()
    await log.wait_stopped()
    assert log.types == ["start", "pause", "resume", "dataavailable", "stop"]
    assert log.states == ["recording", "paused", "recording", "inactive", "inactive"]
    assert log.data.startswith(EBML_MAGIC)


async def test_start_then_stop_in_the_same_turn_still_fires_start() -> None:
    recorder = MediaRecorder(make_stream())
    log = EventLog(recorder)
    recorder.start()
    stopped = recorder.stop()
    assert recorder.state == "inactive"
    await stopped
    assert log.types == ["start", "dataavailable", "stop"]


async def test_stop_awaitable_completes_after_stop_dispatched_and_thread_released() -> None:
    recorder = MediaRecorder(make_stream(duration=None))
    log = EventLog(recorder)
    await recorder.start()
    await recorder.stop()
    assert log.types[-1] == "stop"
    assert not [t for t in __import__("threading").enumerate() if t.name == "asyncrec-worker"]
    # stop() again: nothing happens, already complete.
    again = recorder.stop()
    assert again.done()  # type: ignore[attr-defined]
    await again
    assert log.types.count("stop") == 1


async def test_all_tracks_ending_stops_the_recorder_with_a_final_chunk() -> None:
    stream = make_stream(duration=None)
    recorder = MediaRecorder(stream)
    log = EventLog(recorder)
    await recorder.start()
    for track in stream.getTracks():
        track.stop()  # type: ignore[attr-defined]
    assert recorder.state == "recording"  # it notices asynchronously, as in the spec
    await log.wait_stopped()
    assert recorder.state == "inactive"
    assert log.types == ["start", "dataavailable", "stop"]


async def test_tracks_ending_by_themselves_give_the_whole_recording() -> None:
    recorder = MediaRecorder(make_stream(duration=1.0))
    log = EventLog(recorder)
    recorder.start()
    await log.wait_stopped()
    assert log.types == ["start", "dataavailable", "stop"]
    stats = recorder.statistics()
    assert [t.frames_encoded for t in stats.tracks] == [30, 50]
    assert stats.bytes_out == len(log.data) > 0


@pytest.mark.parametrize("change", ["add", "remove"])
async def test_changing_the_track_set_gives_invalid_modification_then_data_then_stop(change: str) -> None:
    stream = make_stream(audio=False, duration=None)
    recorder = MediaRecorder(stream)
    log = EventLog(recorder)
    errors_state: list[str] = []
    recorder.onerror = lambda e: errors_state.append(recorder.state)
    recorder.start()
    if change == "add":
        stream.addTrack(SampleTrack(sine_tone(), realtime=False, duration=1))
    else:
        stream.removeTrack(stream.getVideoTracks()[0])
    await log.wait_stopped()
    assert log.types == ["start", "error", "dataavailable", "stop"]
    error = log.events[1]
    assert isinstance(error, ErrorEvent)
    assert isinstance(error.error, InvalidModificationError)
    assert error.error.name == "InvalidModificationError"
    assert errors_state == ["inactive"]


async def test_stop_in_the_same_turn_as_a_track_removal_gives_no_error() -> None:
    stream = make_stream(duration=None)
    recorder = MediaRecorder(stream)
    log = EventLog(recorder)
    await recorder.start()
    stream.removeTrack(stream.getAudioTracks()[0])
    await recorder.stop()
    assert log.types == ["start", "dataavailable", "stop"]


async def test_request_data_delivers_what_was_gathered_and_keeps_recording() -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True))
    log = EventLog(recorder)
    first_chunk = asyncio.Event()
    recorder.on("dataavailable", lambda e: first_chunk.set())
    await recorder.start()
    await recorder.requestData()
    assert recorder.state == "recording"
    assert log.types == ["start", "dataavailable"]
    chunk = log.events[1]
    assert isinstance(chunk, BlobEvent)
    assert chunk.timecode == 0
    assert chunk.data.startswith(EBML_MAGIC)
    await recorder.stop()
    assert log.types == ["start", "dataavailable", "dataavailable", "stop"]
    assert log.events[2].timecode >= 0


async def test_request_data_while_paused_comes_at_once() -> None:
    recorder = MediaRecorder(make_stream(duration=None, realtime=True))
    log = EventLog(recorder)
    await recorder.start()
    await recorder.pause()
    await asyncio.wait_for(recorder.requestData(), 2)
    assert log.types == ["start", "pause", "dataavailable"]
    await recorder.stop()


async def test_timeslice_gives_regular_chunks_that_concatenate_to_one_file() -> None:
    recorder = MediaRecorder(make_stream(duration=1.5, realtime=True))
    log = EventLog(recorder)
    recorder.start(200)
    await log.wait_stopped()
    chunks = [e for e in log.events if e.type == "dataavailable"]
    assert len(chunks) >= 5  # 1.5 s in 200 ms slices, the final chunk included
    assert log.types[0] == "start"
    assert log.types[-1] == "stop"
    assert chunks[0].data.startswith(EBML_MAGIC)
    timecodes = [c.timecode for c in chunks]
    assert timecodes[0] == 0
    assert timecodes == sorted(timecodes)
    assert timecodes[-1] > 800  # ms of media before the last chunk


async def test_pause_and_resume_are_no_ops_in_their_own_state() -> None:
    recorder = MediaRecorder(make_stream(duration=None))
    log = EventLog(recorder)
    await recorder.start()
    assert recorder.resume().done()  # type: ignore[attr-defined]
    await recorder.pause()
    assert recorder.pause().done()  # type: ignore[attr-defined]
    await recorder.resume()
    await recorder.stop()
    assert log.types == ["start", "pause", "resume", "dataavailable", "stop"]


async def test_a_recorder_can_record_again_after_stop() -> None:
    recorder = MediaRecorder(make_stream(duration=None))
    log = EventLog(recorder)
    await recorder.start()
    first_stop = recorder.stop()
    second_start = recorder.start()  # while the first recording is still finishing
    await first_stop
    await second_start
    await recorder.stop()
    assert log.types == ["start", "dataavailable", "stop", "start", "dataavailable", "stop"]
    first, second = log.events[1].data, log.events[4].data
    assert first.startswith(EBML_MAGIC)
    assert second.startswith(EBML_MAGIC)


async def test_encoder_failure_reports_encoding_error_then_data_then_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncrec import _chunks

    real_write = _chunks.WriteOnlySink.write
    written = 0

    def failing_write(self: _chunks.WriteOnlySink, data: bytes) -> int:
        nonlocal written
        if written > 2000:
            raise OSError(28, "No space left on device")
        written += len(data)
        return real_write(self, data)

    monkeypatch.setattr(_chunks.WriteOnlySink, "write", failing_write)
    recorder = MediaRecorder(make_stream(duration=2.0))
    log = EventLog(recorder)
    recorder.start()
    await log.wait_stopped()
    assert log.types == ["start", "error", "dataavailable", "stop"]
    error = log.events[1].error
    assert isinstance(error, EncodingError)
    assert not isinstance(error.__cause__, AsyncrecError)  # PyAV's error, chained
    assert log.events[2].data.startswith(EBML_MAGIC)  # what was written before is kept


async def test_a_faulty_track_ends_alone_and_the_recording_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Faulty(FrameTrack):
        async def recv(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("camera unplugged")

    audio = SampleTrack(sine_tone(), realtime=False, duration=1.0)
    recorder = MediaRecorder(MediaStream([Faulty(moving_pattern(64, 48)), audio]))
    log = EventLog(recorder)
    with caplog.at_level(logging.WARNING, logger="asyncrec"):
        recorder.start()
        await log.wait_stopped()
    assert log.types == ["start", "dataavailable", "stop"]
    assert "camera unplugged" in caplog.text
    assert recorder.statistics().tracks[1].frames_encoded == 50


async def test_frames_of_the_wrong_type_are_counted_and_skipped() -> None:
    class Wrong(SampleTrack):
        async def recv(self):  # type: ignore[no-untyped-def]
            frame = await super().recv()
            return "not a frame" if frame.pts and frame.pts % 1920 == 0 else frame

    recorder = MediaRecorder(MediaStream([Wrong(sine_tone(), realtime=False, duration=1.0)]))
    log = EventLog(recorder)
    recorder.start()
    await log.wait_stopped()
    stats = recorder.statistics().tracks[0]
    assert stats.frames_invalid > 0
    assert stats.frames_encoded + stats.frames_invalid == stats.frames_in == 50


async def test_pyav_work_runs_on_the_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from asyncrec import _worker

    threads: set[int] = set()
    for name in ("_open", "_encode", "_mux", "_finish"):
        real = getattr(_worker.RecordingWorker, name)

        def spy(self, *args, _real=real, **kwargs):  # type: ignore[no-untyped-def]
            threads.add(threading.get_ident())
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(_worker.RecordingWorker, name, spy)
    recorder = MediaRecorder(make_stream(duration=0.5))
    log = EventLog(recorder)
    recorder.start(100)
    await log.wait_stopped()
    assert threads
    assert threading.get_ident() not in threads
