"""EncoderPool: recordings encoded and muxed in other processes behave as on threads."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from asyncrec import EncoderPool, InvalidStateError, MediaRecorder, UnknownError
from asyncrec._encoder_pool import ProcessWorker
from asyncrec._encoder_process import NICENESS, ChannelHandOff, Priority, send_items
from asyncrec._handoff import Cut, FrameItem, Stop
from asyncrec.whip._logs import configure
from conftest import EventLog, make_stream
from media_check import ffmpeg_decode_errors, ffprobe_streams


@pytest.fixture
async def encoder_pool() -> AsyncIterator[EncoderPool]:
    async with EncoderPool(2) as pool:
        yield pool


def packets(data: bytes) -> dict[str, list[int | None]]:
    """The timestamps of a recording's packets, per kind (not their bytes: libvpx's
    realtime mode decides by the clock, so a loaded machine encodes differently)."""
    found: dict[str, list[int | None]] = {}
    with av.open(io.BytesIO(data)) as container:
        for packet in container.demux():
            if packet.size:
                found.setdefault(packet.stream.type, []).append(packet.pts)
    return found


@contextlib.asynccontextmanager
async def stopped_after(*recorders: MediaRecorder) -> AsyncIterator[None]:
    """Whatever the test asserts, its recorders are stopped and their tracks too: a pool
    closes only once its recordings have ended."""
    try:
        yield
    finally:
        for recorder in recorders:
            if recorder.state != "inactive":
                await recorder.stop()
            for track in recorder.stream.getTracks():
                track.stop()


def worker_of(recorder: MediaRecorder) -> ProcessWorker:
    worker = recorder._last_recording._worker  # type: ignore[union-attr]
    assert isinstance(worker, ProcessWorker)
    return worker


async def record(stream_seconds: float, pool: EncoderPool | None) -> tuple[EventLog, MediaRecorder]:
    recorder = MediaRecorder(make_stream(duration=stream_seconds, size=(320, 240)), encoder_pool=pool)
    log = EventLog(recorder)
    await recorder.start(200)
    await log.wait_stopped()
    return log, recorder


async def test_a_recording_in_a_process_is_the_one_a_thread_makes(encoder_pool: EncoderPool, tmp_path: Path) -> None:
    """A source that is not real time is cut by media time, so both ways give the same
    events and the same packets at the same times."""
    in_thread, thread_recorder = await record(2.0, None)
    in_process, process_recorder = await record(2.0, encoder_pool)
    assert in_process.types == in_thread.types
    assert in_process.types[0] == "start"
    assert in_process.types[-1] == "stop"
    assert in_process.types.count("dataavailable") >= 10
    assert packets(in_process.data) == packets(in_thread.data)
    stats = process_recorder.statistics()
    assert [t.frames_encoded for t in stats.tracks] == [t.frames_in for t in stats.tracks] == [60, 100]
    assert stats.encoder_busy_time > 0
    assert stats.bytes_out == len(in_process.data)
    assert process_recorder.mimeType == thread_recorder.mimeType == "video/webm;codecs=vp8,opus"
    path = tmp_path / "pool.webm"
    path.write_bytes(in_process.data)
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert streams["video"]["codec_name"] == "vp8"
    assert int(streams["video"]["nb_read_frames"]) == 60
    assert streams["audio"]["codec_name"] == "opus"
    assert ffmpeg_decode_errors(path) == ""


def round_trip(frames: list[av.VideoFrame | av.AudioFrame]) -> list[av.VideoFrame | av.AudioFrame]:
    ours, theirs = socket.socketpair()
    sender, receiver = Connection(ours.detach()), Connection(theirs.detach())
    items = [FrameItem(0, f, 0.1 * n, 5.0, 10, True, True) for n, f in enumerate(frames)]
    # A batch larger than the socket's buffer: the send waits for the reader.
    thread = threading.Thread(target=send_items, args=(sender, [*items, Cut(7), Stop(None)]))
    thread.start()
    got = ChannelHandOff(receiver).take(5.0)
    thread.join()
    sender.close()
    receiver.close()
    assert got[-2:] == [Cut(7), Stop(None)]
    assert [(i.time, i.arrival, i.realtime) for i in got[:-2]] == [(i.time, i.arrival, i.realtime) for i in items]  # type: ignore[union-attr]
    return [i.frame for i in got[:-2]]  # type: ignore[union-attr]


def decoded_frame(width: int, height: int) -> av.VideoFrame:
    """A frame as a decoder gives it: rows padded wider than a new frame's."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        rng = np.random.default_rng(1)
        picture = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height * 3 // 2, width), np.uint8), format="yuv420p")
        for packet in [*stream.encode(picture), *stream.encode()]:
            out.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as source:
        frame = next(source.decode(video=0))
    assert frame.planes[0].line_size != av.VideoFrame(width, height, "yuv420p").planes[0].line_size
    return frame


def test_frames_cross_to_the_process_intact() -> None:
    rgb = av.VideoFrame.from_ndarray(np.arange(481 * 643 * 3, dtype=np.uint32).astype(np.uint8).reshape(481, 643, 3))
    rgb.pts, rgb.time_base = 12, Fraction(1, 90000)
    padded = decoded_frame(642, 482)
    stereo = av.AudioFrame.from_ndarray(np.arange(1920, dtype=np.int16).reshape(1, 1920), format="s16", layout="stereo")
    stereo.sample_rate, stereo.pts, stereo.time_base = 48000, 960, Fraction(1, 48000)
    planar = av.AudioFrame.from_ndarray(np.linspace(-1, 1, 2 * 441, dtype=np.float32).reshape(2, 441), format="fltp")
    planar.sample_rate = 44100
    sent = [rgb, padded, stereo, planar]
    got = round_trip(sent)
    for a, b in zip(sent, got, strict=True):
        assert type(a) is type(b)
        assert a.format.name == b.format.name
        assert np.array_equal(a.to_ndarray(), b.to_ndarray())
        assert (a.pts, a.time_base) == (b.pts, b.time_base)
    assert (got[0].width, got[0].height) == (643, 481)
    assert (got[2].sample_rate, got[2].layout.name, got[2].samples) == (48000, "stereo", 960)
    assert (got[3].sample_rate, got[3].layout.name, got[3].samples) == (44100, "stereo", 441)


async def test_a_killed_process_fails_only_its_recordings(encoder_pool: EncoderPool, tmp_path: Path) -> None:
    """The recordings in a process that dies report an error and keep what was delivered;
    a recording in the other process goes on; the next recording gets a new process."""
    doomed = MediaRecorder(make_stream(realtime=True, duration=None), encoder_pool=encoder_pool)
    other = MediaRecorder(make_stream(realtime=True, duration=None), encoder_pool=encoder_pool)
    doomed_log, other_log = EventLog(doomed), EventLog(other)
    async with stopped_after(doomed, other):
        await doomed.start(200)
        await other.start(200)
        await kill_one(doomed, doomed_log, other, other_log, encoder_pool, tmp_path)
    log, recorder = await record(0.5, encoder_pool)
    assert "error" not in log.types
    assert recorder.statistics().tracks[0].frames_encoded == 15
    assert len(encoder_pool.pids) == 2


async def kill_one(
    doomed: MediaRecorder, doomed_log: EventLog, other: MediaRecorder, other_log: EventLog, pool: EncoderPool, tmp: Path
) -> None:
    three = asyncio.Event()
    doomed.on("dataavailable", lambda _: three.set() if doomed_log.types.count("dataavailable") >= 3 else None)
    await asyncio.wait_for(three.wait(), 10)
    pid = worker_of(doomed).pid
    assert pid is not None
    assert worker_of(other).pid not in (None, pid), "two recordings, two processes"
    os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(doomed_log.wait_stopped(), 10)
    # What the process had not cut into a chunk went with it: no final chunk.
    assert doomed_log.types[-2:] == ["error", "stop"]
    [error] = [e.error for e in doomed_log.events if e.type == "error"]
    assert isinstance(error, UnknownError)
    assert "encoder process" in str(error)
    assert doomed_log.data.startswith(b"\x1a\x45\xdf\xa3")  # what was delivered is kept
    for track in doomed.statistics().tracks:  # what went with the process is counted
        accounted = track.frames_encoded + track.frames_dropped
        # (a frame or two may still come in as the recording stops)
        assert accounted <= track.frames_in <= accounted + 3, track
    assert other.state == "recording"
    await other.stop()
    path = tmp / "other.webm"
    path.write_bytes(other_log.data)
    assert "error" not in other_log.types
    assert ffmpeg_decode_errors(path) == ""
    assert pid not in pool.pids


async def test_recordings_go_to_the_least_busy_process(encoder_pool: EncoderPool) -> None:
    recorders = [MediaRecorder(make_stream(realtime=True, duration=None), encoder_pool=encoder_pool) for _ in range(4)]
    logs = [EventLog(r) for r in recorders]
    async with stopped_after(*recorders):
        for recorder in recorders:
            await recorder.start(500)
        started = [asyncio.Event() for _ in recorders]
        for recorder, event in zip(recorders, started, strict=True):
            recorder.on("dataavailable", lambda _, e=event: e.set())  # its process has produced a chunk
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 10)
        pids = [worker_of(r).pid for r in recorders]
        assert sorted(pids.count(pid) for pid in set(pids)) == [2, 2]
        # The default priority: the encoders take only what the loop leaves.
        assert [os.sched_getscheduler(pid) for pid in encoder_pool.pids] == [os.SCHED_IDLE] * 2
        await asyncio.gather(*(r.stop() for r in recorders))
        for recorder, log in zip(recorders, logs, strict=True):
            assert log.types[-1] == "stop"
            assert "error" not in log.types
            for track in recorder.stream.getTracks():
                track.stop()


async def test_a_closed_pool_is_refused_and_bad_options_raise() -> None:
    pool = EncoderPool(1)
    await pool.start()
    [pid] = pool.pids
    await pool.close()
    await pool.close()
    assert pool.closed
    assert pool.pids == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # it exited (and was waited for)
    recorder = MediaRecorder(make_stream(), encoder_pool=pool)
    with pytest.raises(InvalidStateError):
        await recorder.start()
    assert recorder.state == "inactive"
    with pytest.raises(InvalidStateError):
        await pool.start()
    with pytest.raises(ValueError, match="at least 1"):
        EncoderPool(0)
    with pytest.raises(TypeError, match="EncoderPool"):
        MediaRecorder(make_stream(), encoder_pool=2)  # type: ignore[arg-type]


async def test_a_pool_closed_under_running_recordings_lets_them_finish() -> None:
    pool = EncoderPool(1)
    await pool.start()
    recorder = MediaRecorder(make_stream(realtime=True, duration=1.0), encoder_pool=pool)
    log = EventLog(recorder)
    await recorder.start(200)
    await asyncio.sleep(0.3)  # a third of the recording
    closing = asyncio.ensure_future(pool.close())
    await log.wait_stopped()
    await closing
    assert "error" not in log.types
    assert recorder.statistics().tracks[0].frames_encoded == 30


async def test_copied_webrtc_tracks_through_the_pool(
    peers: tuple[RTCPeerConnection, RTCPeerConnection], encoder_pool: EncoderPool, tmp_path: Path
) -> None:
    from test_passthrough import connect

    remote = await connect(*peers)
    recorder = MediaRecorder(remote, encoder_pool=encoder_pool)
    log = EventLog(recorder)
    await recorder.start(250)
    await asyncio.sleep(1.5)  # media to record
    await recorder.stop()
    stats = recorder.statistics()
    assert [t.copied for t in stats.tracks] == [True, True]
    path = tmp_path / "copied.webm"
    path.write_bytes(log.data)
    streams = {s["codec_type"]: s for s in ffprobe_streams(path)}
    assert int(streams["video"]["nb_read_frames"]) == stats.tracks[0].frames_encoded > 20
    assert ffmpeg_decode_errors(path) == ""


async def test_statistics_follow_the_process_between_chunks(encoder_pool: EncoderPool) -> None:
    """No timeslice: no chunk until stop, yet frames_encoded keeps up with the process."""
    recorder = MediaRecorder(make_stream(realtime=True, duration=None), encoder_pool=encoder_pool)
    log = EventLog(recorder)
    await recorder.start()
    await asyncio.sleep(1.5)  # media to encode
    encoded = recorder.statistics().tracks[0].frames_encoded
    assert log.types == ["start"]
    assert encoded >= 30, f"statistics() saw {encoded} video frames encoded after 1.5 s"
    await recorder.stop()
    for track in recorder.stream.getTracks():
        track.stop()


async def test_a_fault_in_the_feeder_ends_the_recording_with_an_error(
    encoder_pool: EncoderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug on this side (here: sending raises TypeError) must not leave the recording
    waiting for ever: "error", then "stop"."""
    import asyncrec._encoder_pool

    def broken(conn: Connection, items: list[object]) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(asyncrec._encoder_pool, "send_items", broken)
    recorder = MediaRecorder(make_stream(realtime=True, duration=None), encoder_pool=encoder_pool)
    log = EventLog(recorder)
    await recorder.start(200)
    await log.wait_stopped()
    assert log.types[-2:] == ["error", "stop"]
    [error] = [e.error for e in log.events if e.type == "error"]
    assert "a bug" in str(error)
    for track in recorder.stream.getTracks():
        track.stop()


async def test_the_processes_import_what_this_process_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module in the current directory named like one PyAV needs does not shadow it in
    the encoder processes (they do not put the current directory first on their path)."""
    (tmp_path / "numpy.py").write_text("raise SystemExit('the wrong numpy')\n")
    monkeypatch.chdir(tmp_path)
    async with EncoderPool(1) as pool:
        log, recorder = await record(0.5, pool)
    assert "error" not in log.types
    assert recorder.statistics().tracks[0].frames_encoded == 15


@pytest.mark.parametrize(
    ("priority", "policy", "nice"), [("low", os.SCHED_BATCH, NICENESS), ("normal", os.SCHED_OTHER, 0)]
)
async def test_priority_other_than_idle(priority: Priority, policy: int, nice: int, tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    async with EncoderPool(1, priority=priority) as pool:
        [pid] = pool.pids
        assert os.sched_getscheduler(pid) == policy
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + nice)
        recorder = MediaRecorder(make_stream(), encoder_pool=pool)
        log = EventLog(recorder)
        async with stopped_after(recorder):
            await recorder.start()
            await asyncio.wait_for(log.wait_stopped(), 30)  # the 1 s stream ends by itself
        assert "error" not in log.types
        path = tmp_path / "low.webm"
        path.write_bytes(log.data)
        assert ffmpeg_decode_errors(path) == ""


def test_priority_must_be_known() -> None:
    with pytest.raises(ValueError, match="priority"):
        EncoderPool(priority="high")  # type: ignore[arg-type]


async def test_the_processes_log_as_this_process_does(capfd: pytest.CaptureFixture[str]) -> None:
    """Under ``asyncrec serve --log-format json`` the encoder processes write JSON lines
    too (to the same stderr), at this process's level: each says it is ready."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure("info", "json")
    try:
        async with EncoderPool(1) as pool:
            [pid] = pool.pids
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    lines = [line for line in capfd.readouterr().err.splitlines() if "asyncrec._encoder_process" in line]
    assert lines, "the encoder process logged nothing"
    record = json.loads(lines[0])  # a JSON line, not text
    assert record["level"] == "info"
    assert record["message"].startswith(f"encoder process {pid} ready")
