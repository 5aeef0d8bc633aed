"""One recorder's recordings and events, in order, whatever its tracks do.

* Two recordings of one recorder never interleave: every event of the first, its final
  chunk and ``stop`` included, comes before the second's ``start``.
* The recorder never wedges: a track whose ``recv()`` raises CancelledError (an inner
  future cancelled by its owner, as in aiortc) or another BaseException ends for the
  recording; the recorder stops by itself once no track is left and can start again.
* ``requestData(); pause()`` dispatches the requested chunk before ``pause``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamTrack

from asyncrec import BlobEvent, FrameTrack, MediaRecorder, MediaStream, SampleTrack, moving_pattern, sine_tone
from conftest import STOP_TIMEOUT, EventLog, make_stream
from media_check import EBML_MAGIC, ffmpeg_decode_errors
from media_probe import probe

#: The first recording and the second race to finish on their worker threads: in one turn
#: of the loop the order is decided by the threads' scheduling, so try many times.
SYNC_REPEATS = 200
#: Decode the files of one attempt in this many (the order is checked in every one).
DECODE_EVERY = 20
#: With a first recording that has media to finish, every attempt is a race it loses.
REPEATS = 20
#: A track that failed must not keep the recorder from stopping longer than this (s).
WEDGE_TIMEOUT = 10.0


def lasting_stream() -> MediaStream:
    """Video and audio that are not live and do not end by themselves: frames as fast as the
    recorder takes them, so its hand-off to the worker is always full."""
    return MediaStream(
        [
            FrameTrack(moving_pattern(160, 120), fps=30, realtime=False),
            SampleTrack(sine_tone(440), realtime=False),
        ]
    )


def stop_tracks(stream: MediaStream) -> None:
    for track in stream.getTracks():
        track.stop()  # type: ignore[attr-defined]


async def bounded(awaitable: Any, seconds: float = STOP_TIMEOUT) -> Any:
    async def wait() -> Any:
        return await awaitable

    return await asyncio.wait_for(wait(), seconds)


def split_recordings(log: EventLog) -> list[list[Any]]:
    """The events of ``log`` cut after each ``stop``."""
    recordings: list[list[Any]] = [[]]
    for event in log.events:
        recordings[-1].append(event)
        if event.type == "stop":
            recordings.append([])
    return [r for r in recordings if r]


def check_order(events: list[Any], what: str) -> None:
    """``start``, at least one ``dataavailable``, ``stop``, nothing else."""
    types = [e.type for e in events]
    assert types == ["start", *["dataavailable"] * max(1, len(types) - 2), "stop"], f"{what}: {types}"


def check_decodes(events: list[Any], path: Path, what: str) -> bytes:
    """The chunks, if they hold anything, are one file Debian's ffmpeg decodes without error."""
    data = b"".join(e.data for e in events if e.type == "dataavailable")
    if data:
        assert data.startswith(EBML_MAGIC), f"{what}: the chunks do not start with a WebM header"
        path.write_bytes(data)
        assert ffmpeg_decode_errors(path) == "", f"{what}: the chunks do not decode"
    return data


async def record_with_first_data(recorder: MediaRecorder) -> None:
    """start(100) and wait for the first chunk with bytes in it."""
    first_data = asyncio.Event()

    def on_data(event: BlobEvent) -> None:
        if event.data:
            first_data.set()

    recorder.on("dataavailable", on_data)
    recorder.start(100)
    await bounded(first_data.wait())
    recorder.off("dataavailable", on_data)


# -- 6. two recordings of one recorder never interleave ------------------------------------------------


async def test_start_stop_start_stop_in_one_turn_gives_two_ordered_recordings(tmp_path: Path) -> None:
    for attempt in range(SYNC_REPEATS):
        stream = lasting_stream()
        try:
            async with MediaRecorder(stream, mimeType="video/webm") as recorder:
                log = EventLog(recorder)
                recorder.start()
                recorder.stop()
                recorder.start()
                second = recorder.stop()
                await bounded(second)
        finally:
            stop_tracks(stream)
        recordings = split_recordings(log)
        assert len(recordings) == 2, f"attempt {attempt}: {log.types}"
        for number, events in enumerate(recordings, 1):
            what = f"attempt {attempt}, recording {number}"
            check_order(events, what)
            if attempt % DECODE_EVERY == 0:
                check_decodes(events, tmp_path / f"{attempt}-{number}.webm", what)


async def test_stop_start_stop_in_one_turn_while_recording_keeps_the_first_file_whole(tmp_path: Path) -> None:
    """The first recording has media to finish (its worker has a full queue to encode and a
    file to close) while the second, stopped at once, has none: it still waits for the first."""
    for attempt in range(REPEATS):
        stream = lasting_stream()
        try:
            async with MediaRecorder(stream, mimeType="video/webm") as recorder:
                log = EventLog(recorder)
                await record_with_first_data(recorder)
                recorder.stop()
                recorder.start()
                await bounded(recorder.stop())
        finally:
            stop_tracks(stream)
        recordings = split_recordings(log)
        assert len(recordings) == 2, f"attempt {attempt}: {log.types}"
        for number, events in enumerate(recordings, 1):
            check_order(events, f"attempt {attempt}, recording {number}")
        first = tmp_path / f"{attempt}-1.webm"
        assert check_decodes(recordings[0], first, f"attempt {attempt}, recording 1"), "recording 1 is empty"
        assert probe(first).stream("video")["nb_read_frames"] >= 1
        check_decodes(recordings[1], tmp_path / f"{attempt}-2.webm", f"attempt {attempt}, recording 2")


async def test_iterator_started_before_ends_with_the_first_recording(tmp_path: Path) -> None:
    for attempt in range(REPEATS // 2):
        stream = lasting_stream()
        try:
            async with MediaRecorder(stream, mimeType="video/webm") as recorder:
                log = EventLog(recorder)
                chunks = aiter(recorder)  # before start(): every chunk of recording 1

                async def drain(iterator: Any = chunks) -> list[BlobEvent]:
                    return [chunk async for chunk in iterator]

                received = asyncio.ensure_future(drain())
                await record_with_first_data(recorder)
                recorder.stop()
                recorder.start()
                second = recorder.stop()
                got = await bounded(received)  # StopAsyncIteration ended it
                await bounded(second)
        finally:
            stop_tracks(stream)
        recordings = split_recordings(log)
        assert len(recordings) == 2, f"attempt {attempt}: {log.types}"
        for number, events in enumerate(recordings, 1):
            check_order(events, f"attempt {attempt}, recording {number}")
        first_chunks = [e for e in recordings[0] if e.type == "dataavailable"]
        # The very chunks of recording 1, its final one included, and nothing of recording 2.
        assert [id(e) for e in got] == [id(e) for e in first_chunks], (
            f"attempt {attempt}: the iterator got {len(got)} chunks, recording 1 had {len(first_chunks)}; "
            f"events {log.types}"
        )
        assert check_decodes(recordings[0], tmp_path / f"{attempt}.webm", f"attempt {attempt}, recording 1")


# -- 7. the recorder never wedges -----------------------------------------------------------------------


class Boom(BaseException):
    """Not an Exception: what a badly behaved track might raise."""


class FailingTrack(MediaStreamTrack):
    """Video that is not live: ``frames`` frames of 160x120 at 30 fps, then ``recv()`` raises
    ``error()`` from inside (the track itself is not stopped, as when an aiortc track's inner
    future is cancelled by its owner)."""

    kind = "video"

    def __init__(self, error: Callable[[], BaseException], frames: int = 5) -> None:
        super().__init__()
        self.live = False
        self._error = error
        self._frames = frames
        self._index = 0
        self._make = moving_pattern(160, 120)

    async def recv(self) -> av.VideoFrame:
        if self._index >= self._frames:
            raise self._error()
        frame = self._make(self._index, self._index / 30)
        frame.pts = self._index * 3000
        frame.time_base = Fraction(1, 90000)
        self._index += 1
        return frame


ERRORS = [
    pytest.param(asyncio.CancelledError, id="cancelled-error"),
    pytest.param(Boom, id="base-exception"),
]


async def restart_works(recorder: MediaRecorder, log: EventLog, tmp_path: Path) -> None:
    """The same recorder records again, once its stream holds a fresh track."""
    for track in recorder.stream.getTracks():
        recorder.stream.removeTrack(track)
    recorder.stream.addTrack(FrameTrack(moving_pattern(160, 120), fps=30, realtime=False, duration=0.5))
    before = len(log.events)
    log.stopped.clear()
    recorder.start()  # no InvalidStateError
    await asyncio.wait_for(log.stopped.wait(), WEDGE_TIMEOUT)
    check_order(log.events[before:], "the recording after the failed one")
    path = tmp_path / "again.webm"
    path.write_bytes(b"".join(e.data for e in log.events[before:] if e.type == "dataavailable"))
    assert ffmpeg_decode_errors(path) == ""
    assert probe(path).stream("video")["nb_read_frames"] == 15


@pytest.mark.parametrize("error", ERRORS)
async def test_a_track_raising_from_recv_alone_stops_the_recording(
    error: Callable[[], BaseException], tmp_path: Path
) -> None:
    me = asyncio.current_task()
    assert me is not None
    async with MediaRecorder(MediaStream([FailingTrack(error)]), mimeType="video/webm") as recorder:
        log = EventLog(recorder)
        recorder.start()
        await asyncio.wait_for(log.stopped.wait(), WEDGE_TIMEOUT)
        assert recorder.state == "inactive"
        check_order(log.events, "the recording whose only track failed")
        path = tmp_path / "five.webm"
        path.write_bytes(log.data)
        assert ffmpeg_decode_errors(path) == ""
        assert probe(path).stream("video")["nb_read_frames"] == 5
        await restart_works(recorder, log, tmp_path)
    assert me.cancelling() == 0, "the test's own task was cancelled"


@pytest.mark.parametrize("error", ERRORS)
async def test_a_track_raising_from_recv_leaves_the_other_track_recording(
    error: Callable[[], BaseException], tmp_path: Path
) -> None:
    me = asyncio.current_task()
    assert me is not None
    audio = SampleTrack(sine_tone(440), realtime=False, duration=1.0)
    async with MediaRecorder(MediaStream([FailingTrack(error), audio]), mimeType="video/webm") as recorder:
        log = EventLog(recorder)
        recorder.start()
        await asyncio.wait_for(log.stopped.wait(), WEDGE_TIMEOUT)
        assert recorder.state == "inactive"
        assert "error" not in log.types
        stats = {track.kind: track for track in recorder.statistics().tracks}
        video_stats, audio_stats = stats["video"], stats["audio"]
        assert video_stats.frames_in == 5
        assert audio_stats.frames_in == audio_stats.frames_encoded == 50
        path = tmp_path / "audio-goes-on.webm"
        path.write_bytes(log.data)
        assert ffmpeg_decode_errors(path) == ""
        probed = probe(path)
        assert probed.stream("video")["nb_read_frames"] == 5
        assert probed.audio_duration() == pytest.approx(1.0, abs=0.05), "the audio track's whole second"
        await restart_works(recorder, log, tmp_path)
    assert me.cancelling() == 0, "the test's own task was cancelled"


@pytest.mark.parametrize("independent_chunks", [False, True])
async def test_a_track_that_ends_before_its_first_frame_gets_no_stream(
    tmp_path: Path, independent_chunks: bool
) -> None:
    """The recording ends before the video sent anything (a publisher refused, a camera
    that never started): the file (each file, with independent chunks) and ``mimeType``
    hold the audio only, no empty video stream for players to wait on."""
    from aiortc.mediastreams import MediaStreamError

    audio = SampleTrack(sine_tone(440), realtime=False, duration=0.5)
    stream = MediaStream([FailingTrack(MediaStreamError, frames=0), audio])
    recorder = MediaRecorder(stream, mimeType="video/webm", independent_chunks=independent_chunks)
    log = EventLog(recorder)
    recorder.start(200 if independent_chunks else None)
    await log.wait_stopped()
    assert "error" not in log.types
    assert recorder.mimeType == "video/webm;codecs=opus"
    files = [e.data for e in log.events if e.type == "dataavailable" and e.data] if independent_chunks else [log.data]
    assert len(files) >= (2 if independent_chunks else 1)
    duration = 0.0
    for n, data in enumerate(files):
        path = tmp_path / f"audio-only-{n}.webm"
        path.write_bytes(data)
        assert ffmpeg_decode_errors(path) == ""
        probed = probe(path)
        assert [s["codec_type"] for s in probed.streams] == ["audio"]
        duration += probed.audio_duration()
    assert duration == pytest.approx(0.5, abs=0.05 * len(files))


# -- 8. requestData(); pause() ----------------------------------------------------------------------------


async def test_request_data_then_pause_dispatches_the_data_first() -> None:
    stream = make_stream(realtime=True, duration=None)
    try:
        async with MediaRecorder(stream, mimeType="video/webm") as recorder:
            log = EventLog(recorder)
            await bounded(recorder.start())
            requested = recorder.requestData()
            paused = recorder.pause()
            await bounded(asyncio.gather(bounded(requested), bounded(paused)))
            assert log.types == ["start", "dataavailable", "pause"]
            await bounded(recorder.resume())
            await bounded(recorder.stop())
    finally:
        stop_tracks(stream)
    assert log.types == ["start", "dataavailable", "pause", "resume", "dataavailable", "stop"]
