"""Sources are resources like the recorder: the streams of open_media and getUserMedia
close with ``async with`` or ``aclose()`` (reader threads gone, inputs closed), say so with
a ResourceWarning when dropped unclosed, and end when the loop that read them has closed.

The input files are made here with PyAV (64x48 VP8 + mono Opus in WebM).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from asyncrec import MediaRecorder, MediaStream, getUserMedia, open_media
from conftest import EventLog
from source_check import RELEASE_TIMEOUT, source_threads, wait_threads_ended

#: aclose() of an input blocked on a full queue or waiting for its first reader (s).
PROMPT = 1.0
FPS = 30
RATE = 48000
AUDIO_FRAME = 960  # 20 ms, Opus's frame


def make_webm(path: Path, seconds: float) -> Path:
    """``seconds`` of a 64x48 VP8 ramp at 30 fps and a 440 Hz mono Opus tone, by PyAV."""
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("libopus", rate=RATE, layout="mono")
        for i in range(round(seconds * FPS)):
            picture = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for n in range(round(seconds * RATE / AUDIO_FRAME)):
            t = (np.arange(AUDIO_FRAME) + n * AUDIO_FRAME) / RATE
            samples = (0.2 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
            chunk = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, n * AUDIO_FRAME, Fraction(1, RATE)
            out.mux(audio.encode(chunk))
        out.mux(audio.encode())
    return path


@pytest.fixture(scope="module")
def media_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_webm(tmp_path_factory.mktemp("lifetime") / "short.webm", 1.0)


@pytest.fixture(scope="module")
def long_media_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Longer than a reader's video queue (30 frames): a reader not read blocks on it."""
    return make_webm(tmp_path_factory.mktemp("lifetime") / "long.webm", 3.0)


def join_all(threads: set[threading.Thread], timeout: float = RELEASE_TIMEOUT) -> set[threading.Thread]:
    """Join (bounded) and return those still alive."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {t for t in threads if t.is_alive()}


def drop(holder: list[Any]) -> None:
    """Drop the only reference to what ``holder`` holds, and collect."""
    holder.clear()
    gc.collect()


# -- async with and aclose() -------------------------------------------------------------------


async def test_async_with_an_opened_media_file_releases_its_thread(media_file: Path) -> None:
    before = source_threads()
    async with await open_media(media_file) as stream:
        assert source_threads() - before
        tracks = stream.getTracks()
        assert sorted(t.kind for t in tracks) == ["audio", "video"]
        await tracks[0].recv()
    assert source_threads() - before == set()  # gone when the block ends, not later
    assert all(t.readyState == "ended" for t in tracks)
    assert not stream.active


async def test_async_with_opens_a_media_file_not_awaited(media_file: Path) -> None:
    before = source_threads()
    async with open_media(media_file, realtime=False) as stream:
        assert len(stream.getTracks()) == 2
        await stream.getVideoTracks()[0].recv()
    assert source_threads() - before == set()


async def test_aclose_of_fake_devices_releases_both_devices() -> None:
    before = source_threads()
    stream = await getUserMedia(video={"width": 64, "height": 48}, audio=True, fake=True)
    try:
        assert len(source_threads() - before) == 2  # one reader per device
        await stream.getVideoTracks()[0].recv()
    finally:
        await stream.aclose()
    assert source_threads() - before == set()
    assert [t.readyState for t in stream.getTracks()] == ["ended", "ended"]


async def test_async_with_fake_devices() -> None:
    before = source_threads()
    async with await getUserMedia(audio=True, fake=True) as stream:
        assert (await stream.getAudioTracks()[0].recv()).samples > 0
    assert source_threads() - before == set()
    assert stream.getAudioTracks()[0].readyState == "ended"


async def test_aclose_twice_is_fine(media_file: Path) -> None:
    before = source_threads()
    stream = await open_media(media_file)
    await stream.aclose()
    await stream.aclose()
    assert stream.closed
    assert source_threads() - before == set()
    devices = await getUserMedia(video={"width": 64, "height": 48}, fake=True)
    await devices.aclose()
    await devices.aclose()
    assert source_threads() - before == set()


async def test_a_stream_closed_before_it_was_opened_never_opens(media_file: Path) -> None:
    before = source_threads()
    stream = open_media(media_file)
    await stream.aclose()
    assert stream.getTracks() == []  # no blocking open of a closed stream
    assert await stream is stream
    assert source_threads() - before == set()


async def test_aclose_is_prompt_while_the_reader_waits_for_room(long_media_file: Path) -> None:
    before = source_threads()
    stream = await open_media(long_media_file, realtime=False)
    await stream.getVideoTracks()[0].recv()  # the reader then fills the queue and waits
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < PROMPT
    assert source_threads() - before == set()


async def test_aclose_is_prompt_while_the_reader_waits_for_a_first_reader(media_file: Path) -> None:
    before = source_threads()
    stream = await open_media(media_file, realtime=False)  # not live: waits until read
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await stream.aclose()
    assert time.monotonic() - started < PROMPT
    assert source_threads() - before == set()


async def test_cancelled_aclose_still_closes_the_inputs() -> None:
    before = source_threads()
    stream = await getUserMedia(video={"width": 64, "height": 48}, audio=True, fake=True)
    task = asyncio.ensure_future(stream.aclose())
    await asyncio.sleep(0)  # aclose() has told the inputs to close and waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.closed
    assert all(t.readyState == "ended" for t in stream.getTracks())
    assert await wait_threads_ended(source_threads() - before) == set()
    await stream.aclose()  # still fine afterwards


async def test_a_media_stream_is_recorded_before_aclose(media_file: Path) -> None:
    async with await open_media(media_file, realtime=False) as stream:
        async with MediaRecorder(stream) as recorder:
            log = EventLog(recorder)
            await recorder.start()
            await log.wait_stopped()  # the media's end stops the recorder
        assert len(log.data) > 0
        assert log.types[-1] == "stop"


# -- dropped unclosed ---------------------------------------------------------------------------


async def test_dropping_an_open_media_stream_warns_and_ends_its_thread(media_file: Path) -> None:
    before = source_threads()
    holder = [await open_media(media_file)]
    threads = source_threads() - before
    assert threads
    with pytest.warns(ResourceWarning, match="short.webm"):
        drop(holder)
    assert join_all(threads) == set()


async def test_dropping_fake_devices_warns_and_releases_them() -> None:
    before = source_threads()
    holder = [await getUserMedia(video={"width": 64, "height": 48}, audio=True, fake=True)]
    threads = source_threads() - before
    assert len(threads) == 2
    with pytest.warns(ResourceWarning):
        drop(holder)
    assert join_all(threads) == set()


async def test_tracks_taken_from_a_dropped_stream_keep_their_input(media_file: Path) -> None:
    """What the command line does: keep the tracks, not the stream."""
    before = source_threads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = MediaStream((await getUserMedia(audio=True, fake=True)).getTracks())
        gc.collect()
        [audio] = stream.getAudioTracks()
        assert (await audio.recv()).samples > 0
        assert audio.readyState == "live"
        audio.stop()  # type: ignore[attr-defined]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert await wait_threads_ended(source_threads() - before) == set()


async def test_a_stopped_then_dropped_stream_does_not_warn(media_file: Path) -> None:
    stream = await open_media(media_file)
    for track in stream.getTracks():
        track.stop()  # type: ignore[attr-defined]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stream, track
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_reader_blocked_for_a_loop_that_closed_ends(long_media_file: Path) -> None:
    """The stream is still referenced, never closed, and its reader waits for room in a
    queue that the closed loop will never empty: it ends all the same."""

    async def read_one_frame() -> MediaStream:
        stream = await open_media(long_media_file, realtime=False)
        await stream.getVideoTracks()[0].recv()
        await asyncio.sleep(0.3)  # the reader fills the video queue and waits for room
        return stream

    before = source_threads()
    stream = asyncio.run(read_one_frame())
    try:
        threads = source_threads() - before
        assert join_all(threads) == set()
    finally:
        stream.close()  # type: ignore[attr-defined]
