"""Helpers for the source tests (devices, media files, disabled tracks, command line):
the reader threads of sources, input files made with Debian's ffmpeg, and measurements
of decoded pictures and samples.

Import from a test module as ``from source_check import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from asyncrec import MediaRecorder, MediaStream
from conftest import STOP_TIMEOUT, EventLog
from media_check import _run, _tool

#: The name of the thread that reads one input (device, fake device, media file).
SOURCE_THREAD = "asyncrec-source"
#: How long a reader thread may take to end once its input is released (s).
RELEASE_TIMEOUT = 5.0
#: Limited-range black luma, and how far a decoded black picture may stray from it.
BLACK_LUMA = 16.0
BLACK_TOLERANCE = 3.0
#: RMS (float samples in [-1, 1]) below which decoded audio counts as silence, and above
#: which it counts as the tone (the tones used here have an RMS of 0.09 to 0.2).
SILENCE_RMS = 0.002
TONE_RMS = 0.03


def source_threads() -> set[threading.Thread]:
    """The live reader threads of every source."""
    return {t for t in threading.enumerate() if t.name == SOURCE_THREAD and t.is_alive()}


async def wait_threads_ended(
    threads: set[threading.Thread], within: float = RELEASE_TIMEOUT, *, leave: int = 0
) -> set[threading.Thread]:
    """Wait (bounded, short sleeps: a thread's end has no event) until at most ``leave`` of
    ``threads`` are alive, for at most ``within`` s; returns those alive then."""
    deadline = time.monotonic() + within
    alive = {t for t in threads if t.is_alive()}
    while len(alive) > leave and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        alive = {t for t in alive if t.is_alive()}
    return alive


@contextlib.contextmanager
def sources_released() -> Iterator[None]:
    """For a test's autouse fixture: after the test, wait a bounded time for the reader
    threads it started to end (one may still be on its way out when the test returns);
    the conftest's leak check then fails the test if one is still running."""
    before = source_threads()
    yield
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while (source_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.02)


def stop_tracks(stream: MediaStream) -> None:
    for track in stream.getTracks():
        track.stop()  # type: ignore[attr-defined]


def make_input_file(path: Path, *, duration: float = 1.0, size: str = "160x120", rate: int = 30) -> Path:
    """A WebM file (VP8 test pattern + Opus 440 Hz tone) made by Debian's ffmpeg, not by asyncrec."""
    result = _run(
        [
            _tool("ffmpeg"),
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate={rate}",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(duration),
            "-c:v",
            "libvpx",
            "-b:v",
            "500k",
            "-c:a",
            "libopus",
            str(path),
        ]
    )
    assert result.returncode == 0, f"ffmpeg could not make {path}: {result.stderr.strip()}"
    return path


async def record_until_stopped(
    stream: MediaStream, path: Path, *, seconds: float | None = None, within: float = STOP_TIMEOUT, **options: Any
) -> EventLog:
    """Record ``stream`` to ``path``: until the recorder stops by itself, or for ``seconds``
    of wall time and then ``stop()``. Fails the test when the recording has not stopped
    ``within`` s after that (the recorder is then stopped, so nothing is left running)."""
    async with MediaRecorder(stream, **options) as recorder:
        log = EventLog(recorder)
        await recorder.start()
        if seconds is not None:
            await asyncio.sleep(seconds)
            await recorder.stop()
        try:
            async with asyncio.timeout(within):
                await log.stopped.wait()
            timed_out = False
        except TimeoutError:
            timed_out = True
    if timed_out:
        what = "stop()" if seconds is not None else "it started (the sources never ended)"
        pytest.fail(f"the recording had not stopped {within} s after {what}", pytrace=False)
    save(path, log.data)
    return log


def save(path: Path, data: bytes) -> None:
    """Write a recording (small files: fine on the loop in a test)."""
    path.write_bytes(data)


def luma_means(path: Path) -> list[tuple[float, float]]:
    """(time in s, mean luma) of each decoded picture of the first video stream, decoded by PyAV."""
    means: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture = frame if frame.format.name in ("yuv420p", "yuvj420p") else frame.reformat(format="yuv420p")
            plane = picture.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : picture.width]
            means.append((float(frame.time or 0.0), float(luma.mean())))
    return means


def audio_rms(path: Path) -> list[tuple[float, float]]:
    """(time in s, RMS of float samples) of each decoded frame of the first audio stream."""
    levels: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("s16"):
                samples /= 32768.0
            levels.append((float(frame.time or 0.0), float(np.sqrt(np.mean(samples**2)))))
    return levels
